"""Telecom cohort aggregates for the mobility kinds: arrivals from a home region, and exposure from stays.

Each is one SQL statement over the raw tables, in standard SQL (window functions, ``CAST``, ``LIKE``, row
values in ``IN``, interval arithmetic) apart from DuckDB's ``$name`` parameters and the ``unnest`` of the
domain and district-list parameters, so another store backend can run it. Each returns a fresh ``uint64``
vector (layouts below); every count is of distinct subscribers, so the sum over carriers is exact (a
subscriber has one carrier).

*arrivals(h, d, window)*: subscribers whose ``home_district`` code starts with ``h`` and who are present in d
(their last event of a day is in d) on some day t of the window but were not present in d on day t − 1 (no
event that day, or a last event elsewhere); day t − 1 may be the day before the window. Length n, index d_idx.

*exposure(risk, window)*: per district d, j = 0: subscribers whose last event of the window's last day is in d
and who had a stay (:mod:`adapters.aggregates.stays`, district level) of at least 4 hours inside the window in a
district of ``risk``; j = 1: all subscribers whose last event of that day is in d (present(d) on the last day).
Length 2n, index d_idx * 2 + j. The time of a stay that counts is its part inside the window, from
max(stay start, window start) to its end as the window's events give it: the first event after the run, or
the run's own last event when nothing follows inside the window. So a stay running past the window's end
counts up to its last event inside it, and an answer never depends on data after the window. The run that is
under way when the window opens is found from the subscriber's last event of the day before the window: an
earlier one (a phone silent for a whole day) starts no stay, so the answer depends on the window and that day
only, and a release charges that day too (federation.privacy.accounting).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import duckdb
import numpy as np
import numpy.typing as npt

from adapters.aggregates.stays import DISTRICT_AREA, stays_sql
from adapters.store import DOMAIN_CTE, count_vector, domain_param, window_params

__all__ = ["EXPOSURE_STAY_HOURS", "arrivals", "exposure"]

EXPOSURE_STAY_HOURS = 4

# Presence days of the home region's subscribers from the day before the window, then the (subscriber,
# district) pairs with a present day whose previous day was not in the same district. A last event in a cell
# that is not listed is a day present nowhere, so the next day in any district is an arrival.
_ARRIVALS = f"""
WITH {DOMAIN_CTE},
home_region AS (
    SELECT subscriber_id FROM subscribers WHERE CAST(home_district AS VARCHAR) LIKE $home_prefix || '%'
),
last_event AS (
    SELECT subscriber_id, day, cell_id
    FROM (
        SELECT signalling.subscriber_id, CAST(signalling.ts AS DATE) AS day, signalling.cell_id,
               row_number() OVER (
                   PARTITION BY signalling.subscriber_id, CAST(signalling.ts AS DATE)
                   ORDER BY signalling.ts DESC, signalling.cell_id DESC
               ) AS latest
        FROM signalling
        WHERE signalling.ts >= $before_ts AND signalling.ts < $end_excl_ts
          AND signalling.subscriber_id IN (SELECT subscriber_id FROM home_region)
    ) AS ranked
    WHERE latest = 1
),
present AS (
    SELECT last_event.subscriber_id, last_event.day, cells.district
    FROM last_event JOIN cells ON cells.cell_id = last_event.cell_id
),
arrived AS (
    SELECT DISTINCT today.subscriber_id, today.district
    FROM present AS today
    LEFT JOIN present AS yesterday
           ON yesterday.subscriber_id = today.subscriber_id
          AND yesterday.district = today.district
          AND yesterday.day = today.day - 1
    WHERE today.day >= $start_day AND yesterday.subscriber_id IS NULL
)
SELECT CAST(dom.idx AS BIGINT) AS pos, CAST(count(*) AS UBIGINT) AS n
FROM arrived JOIN domain_index AS dom ON dom.district = arrived.district
GROUP BY dom.idx
"""

# The window's events plus each subscriber's last event before it (every event at that instant: the run in
# progress at the window's start is the one the latest of them, by cell_id, belongs to).
_WINDOW_EVENTS = """signalling.ts < $end_excl_ts AND (
    signalling.ts >= $start_ts
    OR (signalling.subscriber_id, signalling.ts) IN (
        SELECT subscriber_id, max(ts) FROM signalling WHERE ts >= $before_ts AND ts < $start_ts GROUP BY subscriber_id
    )
)"""

_EXPOSURE = f"""
WITH {DOMAIN_CTE},
risk_district AS (SELECT unnest($risk::INTEGER[]) AS district),
stays AS ({stays_sql(DISTRICT_AREA, _WINDOW_EVENTS)}),
exposed AS (
    SELECT DISTINCT subscriber_id
    FROM stays
    WHERE area IN (SELECT district FROM risk_district)
      AND stay_end - greatest(stay_start, $start_ts) >= INTERVAL '{EXPOSURE_STAY_HOURS} hours'
),
last_event AS (
    SELECT subscriber_id, cell_id
    FROM (
        SELECT subscriber_id, cell_id,
               row_number() OVER (PARTITION BY subscriber_id ORDER BY ts DESC, cell_id DESC) AS latest
        FROM signalling
        WHERE ts >= $last_day_ts AND ts < $end_excl_ts
    ) AS ranked
    WHERE latest = 1
),
counted AS (
    SELECT dom.idx, count(*) AS present, count(exposed.subscriber_id) AS exposed
    FROM last_event
    JOIN cells ON cells.cell_id = last_event.cell_id
    JOIN domain_index AS dom ON dom.district = cells.district
    LEFT JOIN exposed ON exposed.subscriber_id = last_event.subscriber_id
    GROUP BY dom.idx
)
SELECT CAST(idx AS BIGINT) * 2 AS pos, CAST(exposed AS UBIGINT) AS n FROM counted WHERE exposed > 0
UNION ALL
SELECT CAST(idx AS BIGINT) * 2 + 1 AS pos, CAST(present AS UBIGINT) AS n FROM counted
"""


def arrivals(
    con: duckdb.DuckDBPyConnection, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, home_prefix: str
) -> npt.NDArray[np.uint64]:
    """Per district (length n): distinct subscribers of home region ``home_prefix`` arriving in d in the window.

    ``home_prefix`` must be digits only (the caller validates it): it becomes a ``LIKE`` pattern.
    """
    params = {
        "domain": domain_param(domain),
        "home_prefix": home_prefix,
        "before_ts": dt.datetime.combine(start - dt.timedelta(days=1), dt.time()),
        "start_day": start,
        **window_params(start, end),
    }
    del params["start_ts"]
    return count_vector(con, _ARRIVALS, params, len(domain))


def exposure(
    con: duckdb.DuckDBPyConnection,
    domain: npt.NDArray[np.int32],
    start: dt.date,
    end: dt.date,
    risk_districts: Sequence[int],
) -> npt.NDArray[np.uint64]:
    """Per district (length 2n, index d_idx * 2 + j): j = 0 exposed, j = 1 present on ``end`` (module docstring)."""
    params = {
        "domain": domain_param(domain),
        "risk": [int(code) for code in risk_districts],
        "last_day_ts": dt.datetime.combine(end, dt.time()),
        "before_ts": dt.datetime.combine(start - dt.timedelta(days=1), dt.time()),
        **window_params(start, end),
    }
    return count_vector(con, _EXPOSURE, params, 2 * len(domain))
