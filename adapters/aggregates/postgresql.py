"""The aggregates in PostgreSQL's dialect: the same definitions as the DuckDB SQL beside it, statement for statement.

The contribution bounds (a person's first ``max_trips_per_day`` trips or tickets of a day; a case once per person,
status and day) are the same ``row_number()`` over the same partitions and orders as in DuckDB.
Differences from DuckDB, and why each is equivalent: ``DISTINCT ON (...) ORDER BY ... DESC`` picks the last event
of a (subscriber, day) where DuckDB uses ``QUALIFY row_number() = 1``: both order by ``(ts, cell_id)``. The
domain is ``unnest(...) WITH ORDINALITY``.
Parameters are bound by psycopg on the client (COPY takes no server-side parameters); every value is typed.
The mobility cohorts (arrivals, exposure) are DuckDB's statements with psycopg's markers, ``DISTINCT ON`` for
the last events and the shared stays relation (:mod:`adapters.aggregates.stays`, standard SQL) as it is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from adapters.aggregates.mobility import EXPOSURE_STAY_HOURS
from adapters.aggregates.stays import DISTRICT_AREA, stays_sql
from adapters.backends import Store
from adapters.store import od_params
from federation.catalog.aggregates import ODFrame, od_frame
from federation.vocabulary import CASE_ORIGINS, CASE_STATUSES, CLUSTER_WINDOW_DAYS, DEFAULT_MAX_TRIPS_PER_DAY

#: (store, domain, start, end, checked params) -> vector: the shape of every non-DuckDB implementation.
Compute = Callable[[Store, npt.NDArray[np.int32], dt.date, dt.date, Mapping[str, str]], npt.NDArray[np.uint64]]
#: The trips aggregates take the contribution bound and the vector's frame as well:
#: (..., max_trips_per_day, frame or None for the whole domain) -> vector.
BoundedCompute = Callable[
    [Store, npt.NDArray[np.int32], dt.date, dt.date, Mapping[str, str], int, ODFrame | None],
    npt.NDArray[np.uint64],
]

__all__ = [
    "BOUNDED",
    "SQL",
    "BoundedCompute",
    "Compute",
    "arrivals",
    "cases",
    "exposure",
    "presence",
    "residents",
    "roamers",
    "telecom_trips",
    "transport_trips",
]

_DOMAIN = (
    "domain_index AS (SELECT d.district, (d.ord - 1)::bigint AS idx "
    "FROM unnest(%(domain)s::integer[]) WITH ORDINALITY AS d(district, ord))"
)

# adapters.store.OD_CTE: an origin × destination vector's rows and columns as two relations.
_OD = (
    "origin_index AS (SELECT o.district, o.idx FROM unnest(%(origin_codes)s::integer[], %(origin_idx)s::bigint[]) "
    "AS o(district, idx)), destination_index AS (SELECT d.district, d.idx FROM "
    "unnest(%(destination_codes)s::integer[], %(destination_idx)s::bigint[]) AS d(district, idx))"
)

_LAST_EVENT_OF_DAY = f"""
WITH {_DOMAIN},
last_event AS (
    SELECT DISTINCT ON (subscriber_id, ts::date) subscriber_id, ts::date AS day, cell_id
    FROM signalling
    WHERE ts >= %(start_ts)s AND ts < %(end_excl_ts)s {{subscriber_filter}}
    ORDER BY subscriber_id, ts::date, ts DESC, cell_id DESC
)
SELECT dom.idx * %(days)s + (last_event.day - %(start)s::date) AS pos, count(*)::bigint AS n
FROM last_event
JOIN cells USING (cell_id)
JOIN domain_index AS dom ON dom.district = cells.district
GROUP BY 1
"""

_ROAMER_FILTER = """
      AND subscriber_id IN (
          SELECT subscriber_id FROM subscribers WHERE starts_with(home_district::text, %(home_prefix)s)
      )"""

_RESIDENTS = f"""
WITH {_DOMAIN}
SELECT dom.idx AS pos, count(DISTINCT subscriber_id)::bigint AS n
FROM subscribers
JOIN domain_index AS dom ON dom.district = subscribers.home_district
GROUP BY 1
"""

# adapters.aggregates.telecom's trips: the lag() over the window's events and the day before it, a trip only
# where the predecessor is on the later event's day or the day before.
_TELECOM_TRIPS = f"""
WITH {_OD},
pairs AS (
    SELECT signalling.subscriber_id, signalling.ts, signalling.cell_id, cells.district,
           lag(cells.district) OVER earlier AS origin, lag(signalling.ts) OVER earlier AS origin_ts
    FROM signalling LEFT JOIN cells USING (cell_id)
    WHERE signalling.ts >= %(before_ts)s AND signalling.ts < %(end_excl_ts)s
    WINDOW earlier AS (PARTITION BY signalling.subscriber_id ORDER BY signalling.ts, signalling.cell_id)
),
numbered AS (
    SELECT origin, district,
           row_number() OVER (PARTITION BY subscriber_id, ts::date ORDER BY ts, cell_id) AS nth
    FROM pairs
    WHERE ts >= %(start_ts)s AND origin IS NOT NULL AND district IS NOT NULL AND origin <> district
      AND origin_ts >= ts::date - INTERVAL '1 day'
)
SELECT o.idx * %(n)s + d.idx AS pos, count(*)::bigint AS n
FROM numbered
JOIN origin_index AS o ON o.district = numbered.origin
JOIN destination_index AS d ON d.district = numbered.district
WHERE nth <= %(max_trips)s AND o.idx * %(n)s + d.idx < %(cells)s
GROUP BY 1
"""

# adapters.aggregates.mobility's arrivals: the home region's presence days from the day before the window, then
# the (subscriber, district) pairs with a present day whose previous day was not in the same district.
_ARRIVALS = f"""
WITH {_DOMAIN},
home_region AS (
    SELECT subscriber_id FROM subscribers WHERE starts_with(home_district::text, %(home_prefix)s)
),
last_event AS (
    SELECT DISTINCT ON (subscriber_id, ts::date) subscriber_id, ts::date AS day, cell_id
    FROM signalling
    WHERE ts >= %(before_ts)s AND ts < %(end_excl_ts)s
      AND subscriber_id IN (SELECT subscriber_id FROM home_region)
    ORDER BY subscriber_id, ts::date, ts DESC, cell_id DESC
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
    WHERE today.day >= %(start)s::date AND yesterday.subscriber_id IS NULL
)
SELECT dom.idx AS pos, count(*)::bigint AS n
FROM arrived JOIN domain_index AS dom ON dom.district = arrived.district
GROUP BY 1
"""

# adapters.aggregates.mobility's exposure: the window's events plus each subscriber's last event before it.
_WINDOW_EVENTS = """signalling.ts < %(end_excl_ts)s AND (
    signalling.ts >= %(start_ts)s
    OR (signalling.subscriber_id, signalling.ts) IN (
        SELECT subscriber_id, max(ts) FROM signalling
        WHERE ts >= %(before_ts)s AND ts < %(start_ts)s GROUP BY subscriber_id
    )
)"""

_EXPOSURE = f"""
WITH {_DOMAIN},
stays AS ({stays_sql(DISTRICT_AREA, _WINDOW_EVENTS)}),
exposed AS (
    SELECT DISTINCT subscriber_id
    FROM stays
    WHERE area = ANY(%(risk)s::integer[])
      AND stay_end - greatest(stay_start, %(start_ts)s) >= INTERVAL '{EXPOSURE_STAY_HOURS} hours'
),
last_event AS (
    SELECT DISTINCT ON (subscriber_id) subscriber_id, cell_id
    FROM signalling
    WHERE ts >= %(last_day_ts)s AND ts < %(end_excl_ts)s
    ORDER BY subscriber_id, ts DESC, cell_id DESC
),
counted AS (
    SELECT dom.idx, count(*) AS present, count(exposed.subscriber_id) AS exposed
    FROM last_event
    JOIN cells ON cells.cell_id = last_event.cell_id
    JOIN domain_index AS dom ON dom.district = cells.district
    LEFT JOIN exposed ON exposed.subscriber_id = last_event.subscriber_id
    GROUP BY dom.idx
)
SELECT idx * 2 AS pos, exposed::bigint AS n FROM counted WHERE exposed > 0
UNION ALL
SELECT idx * 2 + 1 AS pos, present::bigint AS n FROM counted
"""

_STATUS_INDEX = " ".join(f"WHEN '{status}' THEN {i}" for i, status in enumerate(CASE_STATUSES))

_CASES = f"""
WITH {_DOMAIN},
firsts AS (
    SELECT district, status,
           row_number() OVER (PARTITION BY person_id, status, report_date ORDER BY case_id) AS nth
    FROM cases
    WHERE report_date >= %(start)s AND report_date <= %(end)s
      AND status IN ({", ".join(f"'{status}'" for status in CASE_STATUSES)})
)
SELECT dom.idx * {len(CASE_STATUSES)} + (CASE firsts.status {_STATUS_INDEX} END) AS pos, count(*)::bigint AS n
FROM firsts
JOIN domain_index AS dom ON dom.district = firsts.district
WHERE nth = 1
GROUP BY 1
"""

_TRANSPORT_TRIPS = f"""
WITH {_OD},
numbered AS (
    SELECT origin, destination, mode,
           row_number() OVER (PARTITION BY passenger_id, departure::date ORDER BY departure, ticket_id) AS nth
    FROM tickets
    WHERE departure >= %(start_ts)s AND departure < %(end_excl_ts)s
)
SELECT o.idx * %(n)s + d.idx AS pos, count(*)::bigint AS n
FROM numbered
JOIN origin_index AS o ON o.district = numbered.origin
JOIN destination_index AS d ON d.district = numbered.destination
WHERE nth <= %(max_trips)s AND (%(mode)s = 'all' OR numbered.mode = %(mode)s) AND o.idx * %(n)s + d.idx < %(cells)s
GROUP BY 1
"""


def _confirmed_daily_sql(date_column: str) -> str:
    return f"""
WITH {_DOMAIN},
firsts AS (
    SELECT district, {date_column} AS day, CASE WHEN imported THEN 1 ELSE 0 END AS origin,
           row_number() OVER (PARTITION BY person_id, {date_column} ORDER BY case_id) AS nth
    FROM cases
    WHERE status = 'confirmed' AND {date_column} >= %(start)s::date AND {date_column} <= %(end)s::date
)
SELECT (dom.idx * %(days)s + (firsts.day - %(start)s::date)) * 2 + firsts.origin AS pos, count(*)::bigint AS n
FROM firsts
JOIN domain_index AS dom ON dom.district = firsts.district
WHERE nth = 1
GROUP BY 1
"""


_CONFIRMED_DAILY = {"report": _confirmed_daily_sql("report_date"), "onset": _confirmed_daily_sql("onset_date")}

_LAGS = ", ".join(f"({k})" for k in range(CLUSTER_WINDOW_DAYS))
_CLUSTERS = f"""
WITH {_DOMAIN},
lags AS (SELECT * FROM (VALUES {_LAGS}) AS lags(k)),
firsts AS (
    SELECT district, cluster_id, report_date,
           row_number() OVER (PARTITION BY person_id, report_date ORDER BY case_id) AS nth
    FROM cases
    WHERE status = 'confirmed' AND report_date >= %(start)s::date AND report_date <= %(end)s::date
),
spread AS (
    SELECT firsts.district, firsts.cluster_id, firsts.report_date + lags.k AS day
    FROM firsts CROSS JOIN lags
    WHERE firsts.nth = 1 AND firsts.cluster_id IS NOT NULL
),
active AS (
    SELECT district, cluster_id, day FROM spread
    WHERE day <= %(end)s::date
    GROUP BY district, cluster_id, day
    HAVING count(*) >= 2
)
SELECT dom.idx * %(days)s + (active.day - %(start)s::date) AS pos, count(*)::bigint AS n
FROM active
JOIN domain_index AS dom ON dom.district = active.district
GROUP BY 1
"""


_CLUSTER_CASES = f"""
WITH {_DOMAIN},
firsts AS (
    SELECT district, cluster_id,
           row_number() OVER (PARTITION BY person_id, report_date ORDER BY case_id) AS nth
    FROM cases
    WHERE status = 'confirmed' AND report_date >= %(start)s::date AND report_date <= %(end)s::date
),
clustered AS (
    SELECT district, cluster_id, count(*) AS n FROM firsts
    WHERE nth = 1 AND cluster_id IS NOT NULL
    GROUP BY district, cluster_id
    HAVING count(*) >= 2
)
SELECT dom.idx AS pos, sum(clustered.n)::bigint AS n
FROM clustered
JOIN domain_index AS dom ON dom.district = clustered.district
GROUP BY 1
"""


def _base(domain: npt.NDArray[np.int32], start: dt.date, end: dt.date) -> dict[str, Any]:
    return {
        "domain": domain.tolist(),
        "start": start,
        "end": end,
        "start_ts": dt.datetime.combine(start, dt.time()),
        "end_excl_ts": dt.datetime.combine(end + dt.timedelta(days=1), dt.time()),
        "days": (end - start).days + 1,
        "n": len(domain),
    }


def presence(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    values = _base(domain, start, end)
    return store.counts(_LAST_EVENT_OF_DAY.format(subscriber_filter=""), values, len(domain) * values["days"])


def roamers(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    values = {**_base(domain, start, end), "home_prefix": params["home_prefix"]}
    sql = _LAST_EVENT_OF_DAY.format(subscriber_filter=_ROAMER_FILTER)
    return store.counts(sql, values, len(domain) * values["days"])


def residents(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    return store.counts(_RESIDENTS, {"domain": domain.tolist()}, len(domain))


def telecom_trips(
    store: Store,
    domain: npt.NDArray[np.int32],
    start: dt.date,
    end: dt.date,
    params: Mapping[str, str],
    max_trips_per_day: int = DEFAULT_MAX_TRIPS_PER_DAY,
    frame: ODFrame | None = None,
) -> npt.NDArray[np.uint64]:
    frame = frame or od_frame(None, np.ones(len(domain), dtype=np.bool_))
    values = {
        **_base(domain, start, end),
        **od_params(domain, frame),
        "max_trips": int(max_trips_per_day),
        "before_ts": dt.datetime.combine(start - dt.timedelta(days=1), dt.time()),
    }
    return store.counts(_TELECOM_TRIPS, values, frame.cells)


def arrivals(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    values = {
        **_base(domain, start, end),
        "home_prefix": params["home_prefix"],
        "before_ts": dt.datetime.combine(start - dt.timedelta(days=1), dt.time()),
    }
    return store.counts(_ARRIVALS, values, len(domain))


def exposure(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    values = {
        **_base(domain, start, end),
        # Checked by the request: ascending distinct six-digit codes, comma-separated.
        "risk": [int(code) for code in params["risk_districts"].split(",")],
        "last_day_ts": dt.datetime.combine(end, dt.time()),
        "before_ts": dt.datetime.combine(start - dt.timedelta(days=1), dt.time()),
    }
    return store.counts(_EXPOSURE, values, 2 * len(domain))


def cases(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    return store.counts(_CASES, _base(domain, start, end), len(domain) * len(CASE_STATUSES))


def confirmed_daily(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    values = _base(domain, start, end)
    sql = _CONFIRMED_DAILY[params.get("date", "report")]
    return store.counts(sql, values, len(domain) * values["days"] * len(CASE_ORIGINS))


def clusters(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    values = _base(domain, start, end)
    return store.counts(_CLUSTERS, values, len(domain) * values["days"])


def cluster_cases(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    return store.counts(_CLUSTER_CASES, _base(domain, start, end), len(domain))


def transport_trips(
    store: Store,
    domain: npt.NDArray[np.int32],
    start: dt.date,
    end: dt.date,
    params: Mapping[str, str],
    max_trips_per_day: int = DEFAULT_MAX_TRIPS_PER_DAY,
    frame: ODFrame | None = None,
) -> npt.NDArray[np.uint64]:
    frame = frame or od_frame(None, np.ones(len(domain), dtype=np.bool_))
    values = {
        **_base(domain, start, end),
        **od_params(domain, frame),
        "mode": params["mode"],
        "max_trips": int(max_trips_per_day),
    }
    return store.counts(_TRANSPORT_TRIPS, values, frame.cells)


#: Aggregate name -> this dialect's implementation (``adapters.aggregates.IMPLEMENTATIONS`` reads it).
SQL: Mapping[str, Compute] = {
    "telecom.presence": presence,
    "telecom.residents": residents,
    "telecom.trips": telecom_trips,
    "telecom.roamers": roamers,
    "telecom.arrivals": arrivals,
    "telecom.exposure": exposure,
    "health.cases": cases,
    "health.confirmed_daily": confirmed_daily,
    "health.clusters": clusters,
    "health.cluster_cases": cluster_cases,
    "transport.trips": transport_trips,
}

#: The aggregates whose implementation takes the trips bound (``adapters.aggregates.IMPLEMENTATIONS`` passes the
#: agency's ``max_trips_per_day`` to these; :data:`SQL` holds them too, at the default bound).
BOUNDED: Mapping[str, BoundedCompute] = {"telecom.trips": telecom_trips, "transport.trips": transport_trips}
