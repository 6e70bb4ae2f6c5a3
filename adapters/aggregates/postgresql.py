"""The aggregates in PostgreSQL's dialect: the same definitions as the DuckDB SQL beside it, statement for statement.

Differences from DuckDB, and why each is equivalent: ``DISTINCT ON (...) ORDER BY ... DESC`` picks the last event
of a (subscriber, day) where DuckDB uses ``QUALIFY row_number() = 1``, and the last event before the window where
DuckDB takes a struct ``max``: both order by ``(ts, cell_id)``. The domain is ``unnest(...) WITH ORDINALITY``.
Parameters are bound by psycopg on the client (COPY takes no server-side parameters); every value is typed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from adapters.backends import Store
from federation.vocabulary import CASE_ORIGINS, CASE_STATUSES, CLUSTER_WINDOW_DAYS

#: (store, domain, start, end, checked params) -> vector: the shape of every non-DuckDB implementation.
Compute = Callable[[Store, npt.NDArray[np.int32], dt.date, dt.date, Mapping[str, str]], npt.NDArray[np.uint64]]

__all__ = ["SQL", "Compute", "cases", "presence", "residents", "roamers", "telecom_trips", "transport_trips"]

_DOMAIN = (
    "domain_index AS (SELECT d.district, (d.ord - 1)::bigint AS idx "
    "FROM unnest(%(domain)s::integer[]) WITH ORDINALITY AS d(district, ord))"
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

_TELECOM_TRIPS = f"""
WITH {_DOMAIN},
cell_index AS (
    SELECT cells.cell_id, dom.idx FROM cells JOIN domain_index AS dom ON dom.district = cells.district
),
before_window AS (
    SELECT DISTINCT ON (subscriber_id) subscriber_id, ts, cell_id
    FROM signalling WHERE ts < %(start_ts)s
    ORDER BY subscriber_id, ts DESC, cell_id DESC
),
events AS (
    SELECT subscriber_id, ts, cell_id FROM signalling WHERE ts >= %(start_ts)s AND ts < %(end_excl_ts)s
    UNION ALL
    SELECT subscriber_id, ts, cell_id FROM before_window
),
pairs AS (
    SELECT events.ts, ci.idx,
           lag(ci.idx) OVER (PARTITION BY events.subscriber_id ORDER BY events.ts, events.cell_id) AS prev_idx
    FROM events LEFT JOIN cell_index AS ci USING (cell_id)
)
SELECT prev_idx * %(n)s + idx AS pos, count(*)::bigint AS n
FROM pairs
WHERE ts >= %(start_ts)s AND prev_idx IS NOT NULL AND idx IS NOT NULL AND prev_idx <> idx
GROUP BY 1
"""

_STATUS_INDEX = " ".join(f"WHEN '{status}' THEN {i}" for i, status in enumerate(CASE_STATUSES))

_CASES = f"""
WITH {_DOMAIN}
SELECT dom.idx * {len(CASE_STATUSES)} + (CASE cases.status {_STATUS_INDEX} END) AS pos, count(*)::bigint AS n
FROM cases
JOIN domain_index AS dom ON dom.district = cases.district
WHERE cases.report_date >= %(start)s AND cases.report_date <= %(end)s
  AND cases.status IN ({", ".join(f"'{status}'" for status in CASE_STATUSES)})
GROUP BY 1
"""

_TRANSPORT_TRIPS = f"""
WITH {_DOMAIN}
SELECT o.idx * %(n)s + d.idx AS pos, count(*)::bigint AS n
FROM tickets
JOIN domain_index AS o ON o.district = tickets.origin
JOIN domain_index AS d ON d.district = tickets.destination
WHERE tickets.departure >= %(start_ts)s AND tickets.departure < %(end_excl_ts)s
  AND (%(mode)s = 'all' OR tickets.mode = %(mode)s)
GROUP BY 1
"""


def _confirmed_daily_sql(date_column: str) -> str:
    return f"""
WITH {_DOMAIN}
SELECT (dom.idx * %(days)s + (cases.{date_column} - %(start)s::date)) * 2
       + CASE WHEN cases.imported THEN 1 ELSE 0 END AS pos,
       count(*)::bigint AS n
FROM cases
JOIN domain_index AS dom ON dom.district = cases.district
WHERE cases.status = 'confirmed'
  AND cases.{date_column} >= %(start)s::date AND cases.{date_column} <= %(end)s::date
GROUP BY 1
"""


_CONFIRMED_DAILY = {"report": _confirmed_daily_sql("report_date"), "onset": _confirmed_daily_sql("onset_date")}

_LAGS = ", ".join(f"({k})" for k in range(CLUSTER_WINDOW_DAYS))
_CLUSTERS = f"""
WITH {_DOMAIN},
lags AS (SELECT * FROM (VALUES {_LAGS}) AS lags(k)),
spread AS (
    SELECT cases.district, cases.cluster_id, cases.report_date + lags.k AS day
    FROM cases CROSS JOIN lags
    WHERE cases.status = 'confirmed' AND cases.cluster_id IS NOT NULL
      AND cases.report_date >= %(start)s::date AND cases.report_date <= %(end)s::date
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
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    return store.counts(_TELECOM_TRIPS, _base(domain, start, end), len(domain) ** 2)


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


def transport_trips(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    values = {**_base(domain, start, end), "mode": params["mode"]}
    return store.counts(_TRANSPORT_TRIPS, values, len(domain) ** 2)


#: Aggregate name -> this dialect's implementation (``adapters.aggregates.IMPLEMENTATIONS`` reads it).
SQL: Mapping[str, Compute] = {
    "telecom.presence": presence,
    "telecom.residents": residents,
    "telecom.trips": telecom_trips,
    "telecom.roamers": roamers,
    "health.cases": cases,
    "health.confirmed_daily": confirmed_daily,
    "health.clusters": clusters,
    "transport.trips": transport_trips,
}
