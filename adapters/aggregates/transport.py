"""Transport aggregates (docs/protocol.md §6): ticket origin × destination flows, one SQL statement in DuckDB."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import numpy.typing as npt

from adapters.store import OD_CTE, count_vector, od_params, window_params
from federation.catalog.aggregates import ODFrame, od_frame
from federation.vocabulary import DEFAULT_MAX_TRIPS_PER_DAY

__all__ = ["trips"]

# Modes a ticket may have; "all" (the default of the ``mode`` parameter) counts every one of them.

# The contribution bound ranks a passenger's tickets of a day among all of them (every mode, every district)
# before the mode and the domain are applied, so a bound is one per person-day whatever the request.
_TRIPS = f"""
WITH {OD_CTE},
numbered AS (
    SELECT origin, destination, mode,
           row_number() OVER (
               PARTITION BY passenger_id, CAST(departure AS DATE) ORDER BY departure, ticket_id
           ) AS nth
    FROM tickets
    WHERE departure >= $start_ts AND departure < $end_excl_ts
)
SELECT o.idx::BIGINT * $n + d.idx AS pos, count(*)::UBIGINT AS n
FROM numbered
JOIN origin_index AS o ON o.district = numbered.origin
JOIN destination_index AS d ON d.district = numbered.destination
WHERE nth <= $max_trips AND ($mode = 'all' OR numbered.mode = $mode) AND o.idx::BIGINT * $n + d.idx < $cells
GROUP BY ALL
"""


def trips(
    con: duckdb.DuckDBPyConnection,
    domain: npt.NDArray[np.int32],
    start: dt.date,
    end: dt.date,
    mode: str,
    max_trips_per_day: int = DEFAULT_MAX_TRIPS_PER_DAY,
    frame: ODFrame | None = None,
) -> npt.NDArray[np.uint64]:
    """Origin × destination: tickets departing on a day in [start, end]; index o_idx*n + d_idx (length n*n), or
    as a provincial layout's ``frame`` places them (:func:`federation.catalog.aggregates.od_frame`).

    ``mode`` is one of :data:`federation.vocabulary.TRANSPORT_MODES` or ``"all"``. A ticket with origin ==
    destination counts on the diagonal: unlike telecom trips, a ticket is a trip by definition. Contribution bound
    (the privacy unit is a person-day): only a passenger's first ``max_trips_per_day`` tickets of each day, by
    ``(departure, ticket_id)`` among all their tickets of that day (any mode, any district), count.
    """
    frame = frame or od_frame(None, np.ones(len(domain), dtype=np.bool_))
    params = {**od_params(domain, frame), "mode": mode, "max_trips": max_trips_per_day, **window_params(start, end)}
    return count_vector(con, _TRIPS, params, frame.cells)
