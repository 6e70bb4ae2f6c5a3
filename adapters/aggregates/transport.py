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
WITH {DOMAIN_CTE},
numbered AS (
    SELECT o.idx::BIGINT * $n + d.idx AS pos,
           row_number() OVER (
               PARTITION BY tickets.passenger_id, CAST(tickets.departure AS DATE)
               ORDER BY tickets.departure, tickets.ticket_id
           ) AS nth
    FROM tickets
    JOIN domain_index AS o ON o.district = tickets.origin
    JOIN domain_index AS d ON d.district = tickets.destination
    WHERE tickets.departure >= $start_ts AND tickets.departure < $end_excl_ts
      AND ($mode = 'all' OR tickets.mode = $mode)
)
SELECT pos, count(*)::UBIGINT AS n FROM numbered WHERE nth <= $max_trips GROUP BY pos
"""


def trips(
    con: duckdb.DuckDBPyConnection,
    domain: npt.NDArray[np.int32],
    start: dt.date,
    end: dt.date,
    mode: str,
    max_trips_per_day: int = 4,
) -> npt.NDArray[np.uint64]:
    """Origin × destination: tickets departing on a day in [start, end]; index o_idx*n + d_idx (length n*n).

    ``mode`` is one of :data:`federation.vocabulary.TRANSPORT_MODES` or ``"all"``. A ticket with origin ==
    destination counts on the diagonal: unlike telecom trips, a ticket is a trip by definition. Contribution bound
    (the privacy unit is a person-day): only a passenger's first ``max_trips_per_day`` tickets of each day, by
    ``(departure, ticket_id)`` among the tickets this vector counts, count.
    """
    n = len(domain)
    params = {
        "domain": domain_param(domain),
        "n": n,
        "mode": mode,
        "max_trips": max_trips_per_day,
        **window_params(start, end),
    }
    return count_vector(con, _TRIPS, params, n * n)
