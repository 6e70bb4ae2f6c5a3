"""Telecom aggregates (docs/protocol.md §6): presence, residents, trips and roamers, each one SQL statement in DuckDB.

Event order: a subscriber's signalling events are ordered by ``(ts, cell_id)``, so ties in ``ts`` are broken by
the larger ``cell_id`` counting as later. An event whose cell is missing from ``cells`` or lies outside the domain
is still an event (it can be a subscriber's last event of a day, or one end of a consecutive pair); it just
counts nowhere. Every function returns a fresh ``uint64`` vector in the layout documented on it.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import numpy.typing as npt

from adapters.store import DOMAIN_CTE, OD_CTE, count_vector, domain_param, od_params, window_params
from federation.catalog.aggregates import ODFrame, od_frame
from federation.vocabulary import DEFAULT_MAX_TRIPS_PER_DAY

__all__ = ["presence", "residents", "roamers", "trips"]

# The last event of each (subscriber, day) in the window, mapped to its district's position; one row per pair,
# so count(*) is a count of distinct subscribers. QUALIFY row_number() measured faster than arg_max here.
_LAST_EVENT_OF_DAY = f"""
WITH {DOMAIN_CTE},
last_event AS (
    SELECT subscriber_id, ts::DATE AS day, cell_id
    FROM signalling
    WHERE ts >= $start_ts AND ts < $end_excl_ts {{subscriber_filter}}
    QUALIFY row_number() OVER (PARTITION BY subscriber_id, ts::DATE ORDER BY ts DESC, cell_id DESC) = 1
)
SELECT dom.idx::BIGINT * $days + date_diff('day', $start_ts::DATE, last_event.day) AS pos, count(*)::UBIGINT AS n
FROM last_event
JOIN cells USING (cell_id)
JOIN domain_index AS dom ON dom.district = cells.district
GROUP BY ALL
"""

_ROAMER_FILTER = """
      AND subscriber_id IN (
          SELECT subscriber_id FROM subscribers WHERE starts_with(home_district::VARCHAR, $home_prefix)
      )"""

_RESIDENTS = f"""
WITH {DOMAIN_CTE}
SELECT dom.idx::BIGINT AS pos, count(DISTINCT subscriber_id)::UBIGINT AS n
FROM subscribers
JOIN domain_index AS dom ON dom.district = subscribers.home_district
GROUP BY ALL
"""

# A trip's origin is its later event's predecessor, and only a predecessor on the later event's day or the day
# before makes a trip (docs/protocol.md, "Definitions"): so the window's events plus the day before it are all
# a trip of the window can depend on, and that day is charged with the window (accounting.charged_window). The
# lag() runs over exactly those events: an in-window event whose true predecessor is older than the day before
# the window gets no predecessor here, which is the same answer (no trip), and a predecessor two or more days
# back inside the window is dropped by the origin_ts test. The contribution bound ranks a subscriber's trips of
# a day among all their trips between listed cells, before the domain is applied, so the bound (and the daily
# partials built from it) does not depend on the domain.
_TRIPS = f"""
WITH {OD_CTE},
pairs AS (
    SELECT signalling.subscriber_id, signalling.ts, signalling.cell_id, cells.district,
           lag(cells.district) OVER earlier AS origin, lag(signalling.ts) OVER earlier AS origin_ts
    FROM signalling LEFT JOIN cells USING (cell_id)
    WHERE signalling.ts >= $before_ts AND signalling.ts < $end_excl_ts
    WINDOW earlier AS (PARTITION BY signalling.subscriber_id ORDER BY signalling.ts, signalling.cell_id)
),
numbered AS (
    SELECT origin, district,
           row_number() OVER (PARTITION BY subscriber_id, CAST(ts AS DATE) ORDER BY ts, cell_id) AS nth
    FROM pairs
    WHERE ts >= $start_ts AND origin IS NOT NULL AND district IS NOT NULL AND origin <> district
      AND origin_ts >= CAST(ts AS DATE) - INTERVAL 1 DAY
)
SELECT o.idx::BIGINT * $n + d.idx AS pos, count(*)::UBIGINT AS n
FROM numbered
JOIN origin_index AS o ON o.district = numbered.origin
JOIN destination_index AS d ON d.district = numbered.district
WHERE nth <= $max_trips AND o.idx::BIGINT * $n + d.idx < $cells
GROUP BY ALL
"""


def presence(
    con: duckdb.DuckDBPyConnection, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date
) -> npt.NDArray[np.uint64]:
    """District × day: distinct subscribers whose last event of day t is in district d; index d_idx*days + t_idx."""
    return _last_event_counts(con, domain, start, end, home_prefix=None)


def roamers(
    con: duckdb.DuckDBPyConnection, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, home_prefix: str
) -> npt.NDArray[np.uint64]:
    """Presence counting only subscribers whose home_district code starts with ``home_prefix``; same layout."""
    return _last_event_counts(con, domain, start, end, home_prefix=home_prefix)


def residents(con: duckdb.DuckDBPyConnection, domain: npt.NDArray[np.int32]) -> npt.NDArray[np.uint64]:
    """Per district (length n): distinct subscribers whose home_district is d."""
    return count_vector(con, _RESIDENTS, {"domain": domain_param(domain)}, len(domain))


def trips(
    con: duckdb.DuckDBPyConnection,
    domain: npt.NDArray[np.int32],
    start: dt.date,
    end: dt.date,
    max_trips_per_day: int = DEFAULT_MAX_TRIPS_PER_DAY,
    frame: ODFrame | None = None,
) -> npt.NDArray[np.uint64]:
    """Origin × destination over the window (length n*n, index o_idx*n + d_idx; or ``frame.cells`` cells as a
    provincial layout's ``frame`` places them, :func:`federation.catalog.aggregates.od_frame`).

    Consecutive events (by ``(ts, cell_id)``, over the subscriber's whole history) in different districts are one
    trip, dated by the later event's day, when the earlier event is on that day or the day before (which may be
    the day before the window); an earlier event two or more days back makes no trip. Contribution bound (the
    privacy unit is a person-day): only a subscriber's first ``max_trips_per_day`` trips of each day, by the
    later event's ``(ts, cell_id)`` among all their trips between listed cells (inside the domain or not), count.
    """
    frame = frame or od_frame(None, np.ones(len(domain), dtype=np.bool_))
    params = {
        **od_params(domain, frame),
        "max_trips": max_trips_per_day,
        "before_ts": dt.datetime.combine(start - dt.timedelta(days=1), dt.time()),
        **window_params(start, end),
    }
    return count_vector(con, _TRIPS, params, frame.cells)


def _last_event_counts(
    con: duckdb.DuckDBPyConnection,
    domain: npt.NDArray[np.int32],
    start: dt.date,
    end: dt.date,
    *,
    home_prefix: str | None,
) -> npt.NDArray[np.uint64]:
    days = (end - start).days + 1
    params = {"domain": domain_param(domain), "days": days, **window_params(start, end)}
    if home_prefix is None:
        sql = _LAST_EVENT_OF_DAY.format(subscriber_filter="")
    else:
        sql = _LAST_EVENT_OF_DAY.format(subscriber_filter=_ROAMER_FILTER)
        params["home_prefix"] = home_prefix
    return count_vector(con, sql, params, len(domain) * days)
