"""Transport aggregates (docs/protocol.md §6): ticket origin × destination flows, one SQL statement in DuckDB."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import numpy.typing as npt

from adapters.store import DOMAIN_CTE, count_vector, domain_param, window_params

__all__ = ["trips"]

# Modes a ticket may have; "all" (the default of the ``mode`` parameter) counts every one of them.

_TRIPS = f"""
WITH {DOMAIN_CTE}
SELECT o.idx::BIGINT * $n + d.idx AS pos, count(*)::UBIGINT AS n
FROM tickets
JOIN domain_index AS o ON o.district = tickets.origin
JOIN domain_index AS d ON d.district = tickets.destination
WHERE tickets.departure >= $start_ts AND tickets.departure < $end_excl_ts
  AND ($mode = 'all' OR tickets.mode = $mode)
GROUP BY ALL
"""


def trips(
    con: duckdb.DuckDBPyConnection, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, mode: str
) -> npt.NDArray[np.uint64]:
    """Origin × destination: tickets departing on a day in [start, end]; index o_idx*n + d_idx (length n*n).

    ``mode`` is one of :data:`federation.vocabulary.TRANSPORT_MODES` or ``"all"``. A ticket with origin ==
    destination counts on the diagonal: unlike telecom trips, a ticket is a trip by definition.
    """
    n = len(domain)
    params = {"domain": domain_param(domain), "n": n, "mode": mode, **window_params(start, end)}
    return count_vector(con, _TRIPS, params, n * n)
