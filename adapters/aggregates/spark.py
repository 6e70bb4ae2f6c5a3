"""The aggregates in Spark SQL's dialect: the same definitions as the DuckDB SQL beside it, statement for statement.

The contribution bounds are the DuckDB statements' ``row_number()`` over the same partitions and orders. Spark
has no QUALIFY: the last event of a (subscriber, day) is ``row_number() = 1`` in a subquery, over the same
``(ts DESC, cell_id DESC)`` order. The domain is ``posexplode`` of an array literal. Values are rendered into
the statement by :func:`literal` (integers, dates and timestamps, and strings the request check already
restricted to digits or a fixed mode name), so a statement is also readable in Spark's own logs. The mobility
cohorts (arrivals, exposure) are DuckDB's statements with ``date_sub`` for the day before and the shared stays
relation (:mod:`adapters.aggregates.stays`, standard SQL) as it is; a stay's 4 hours are compared as
``stay_end >= start + INTERVAL 4 HOURS`` (the same test as DuckDB's ``stay_end - start >= INTERVAL``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from adapters.aggregates.mobility import EXPOSURE_STAY_HOURS
from adapters.aggregates.postgresql import BoundedCompute, Compute
from adapters.aggregates.stays import DISTRICT_AREA, stays_sql
from adapters.backends import Store
from adapters.store import od_values
from federation.catalog.aggregates import ODFrame, od_frame
from federation.vocabulary import CASE_ORIGINS, CASE_STATUSES, CLUSTER_WINDOW_DAYS, DEFAULT_MAX_TRIPS_PER_DAY

__all__ = [
    "BOUNDED",
    "SQL",
    "arrivals",
    "cases",
    "exposure",
    "literal",
    "presence",
    "residents",
    "roamers",
    "telecom_trips",
    "transport_trips",
]

_SAFE_TEXT = re.compile(r"[A-Za-z0-9_-]*")


def literal(value: int | str | dt.date | dt.datetime) -> str:
    """A Spark SQL literal; strings must be plain words (a request's checked mode or prefix), never free text."""
    if isinstance(value, bool):
        raise TypeError("booleans are not aggregate parameters")
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP_NTZ '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if _SAFE_TEXT.fullmatch(value) is None:
        raise ValueError("only checked words are rendered into Spark SQL")
    return f"'{value}'"


def _domain_cte(domain: npt.NDArray[np.int32]) -> str:
    codes = ", ".join(str(int(code)) for code in domain)
    return (
        f"domain_index AS (SELECT CAST(idx AS BIGINT) AS idx, CAST(district AS INT) AS district "
        f"FROM (SELECT posexplode(array({codes})) AS (idx, district)))"
    )


def _od_cte(domain: npt.NDArray[np.int32], frame: ODFrame) -> str:
    """``origin_index`` and ``destination_index`` (adapters.store.OD_CTE) as VALUES lists of integer literals."""

    def relation(name: str, positions: npt.NDArray[np.int64]) -> str:
        return (
            f"{name} AS (SELECT CAST(district AS INT) AS district, CAST(idx AS BIGINT) AS idx "
            f"FROM {od_values(domain, positions, 'v')})"
        )

    return f"{relation('origin_index', frame.origin)}, {relation('destination_index', frame.destination)}"


def _window(start: dt.date, end: dt.date) -> tuple[str, str]:
    start_ts = literal(dt.datetime.combine(start, dt.time()))
    end_excl_ts = literal(dt.datetime.combine(end + dt.timedelta(days=1), dt.time()))
    return start_ts, end_excl_ts


def _last_event_counts(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, home_prefix: str | None
) -> npt.NDArray[np.uint64]:
    days = (end - start).days + 1
    start_ts, end_excl_ts = _window(start, end)
    subscriber_filter = ""
    if home_prefix is not None:
        subscriber_filter = (
            "AND subscriber_id IN (SELECT subscriber_id FROM subscribers "
            f"WHERE startswith(CAST(home_district AS STRING), {literal(home_prefix)}))"
        )
    sql = f"""
    WITH {_domain_cte(domain)},
    last_event AS (
        SELECT subscriber_id, day, cell_id FROM (
            SELECT subscriber_id, CAST(ts AS DATE) AS day, cell_id,
                   row_number() OVER (PARTITION BY subscriber_id, CAST(ts AS DATE)
                                      ORDER BY ts DESC, cell_id DESC) AS rank
            FROM signalling
            WHERE ts >= {start_ts} AND ts < {end_excl_ts} {subscriber_filter}
        ) WHERE rank = 1
    )
    SELECT dom.idx * {days} + datediff(last_event.day, {literal(start)}) AS pos, count(*) AS n
    FROM last_event
    JOIN cells ON cells.cell_id = last_event.cell_id
    JOIN domain_index AS dom ON dom.district = cells.district
    GROUP BY 1
    """
    return store.counts(sql, {}, len(domain) * days)


def presence(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    return _last_event_counts(store, domain, start, end, None)


def roamers(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    return _last_event_counts(store, domain, start, end, params["home_prefix"])


def residents(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    sql = f"""
    WITH {_domain_cte(domain)}
    SELECT dom.idx AS pos, count(DISTINCT subscriber_id) AS n
    FROM subscribers
    JOIN domain_index AS dom ON dom.district = subscribers.home_district
    GROUP BY 1
    """
    return store.counts(sql, {}, len(domain))


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
    n = frame.columns
    start_ts, end_excl_ts = _window(start, end)
    before_ts = literal(dt.datetime.combine(start - dt.timedelta(days=1), dt.time()))
    # adapters.aggregates.telecom's trips: the lag() over the window's events and the day before it, a trip only
    # where the predecessor is on the later event's day or the day before.
    sql = f"""
    WITH {_od_cte(domain, frame)},
    pairs AS (
        SELECT signalling.subscriber_id, signalling.ts, signalling.cell_id, cells.district,
               lag(cells.district) OVER earlier AS origin, lag(signalling.ts) OVER earlier AS origin_ts
        FROM signalling LEFT JOIN cells ON cells.cell_id = signalling.cell_id
        WHERE signalling.ts >= {before_ts} AND signalling.ts < {end_excl_ts}
        WINDOW earlier AS (PARTITION BY signalling.subscriber_id ORDER BY signalling.ts, signalling.cell_id)
    ),
    numbered AS (
        SELECT origin, district,
               row_number() OVER (PARTITION BY subscriber_id, CAST(ts AS DATE) ORDER BY ts, cell_id) AS nth
        FROM pairs
        WHERE ts >= {start_ts} AND origin IS NOT NULL AND district IS NOT NULL AND origin <> district
          AND origin_ts >= CAST(date_sub(CAST(ts AS DATE), 1) AS TIMESTAMP)
    )
    SELECT o.idx * {n} + d.idx AS pos, count(*) AS n
    FROM numbered
    JOIN origin_index AS o ON o.district = numbered.origin
    JOIN destination_index AS d ON d.district = numbered.district
    WHERE nth <= {literal(int(max_trips_per_day))} AND o.idx * {n} + d.idx < {frame.cells}
    GROUP BY 1
    """
    return store.counts(sql, {}, frame.cells)


def arrivals(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    """adapters.aggregates.mobility's arrivals: home-region presence days from the day before the window on."""
    before_ts = literal(dt.datetime.combine(start - dt.timedelta(days=1), dt.time()))
    _, end_excl_ts = _window(start, end)
    sql = f"""
    WITH {_domain_cte(domain)},
    home_region AS (
        SELECT subscriber_id FROM subscribers
        WHERE startswith(CAST(home_district AS STRING), {literal(params["home_prefix"])})
    ),
    last_event AS (
        SELECT subscriber_id, day, cell_id FROM (
            SELECT subscriber_id, CAST(ts AS DATE) AS day, cell_id,
                   row_number() OVER (PARTITION BY subscriber_id, CAST(ts AS DATE)
                                      ORDER BY ts DESC, cell_id DESC) AS rank
            FROM signalling
            WHERE ts >= {before_ts} AND ts < {end_excl_ts}
              AND subscriber_id IN (SELECT subscriber_id FROM home_region)
        ) WHERE rank = 1
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
              AND yesterday.day = date_sub(today.day, 1)
        WHERE today.day >= {literal(start)} AND yesterday.subscriber_id IS NULL
    )
    SELECT dom.idx AS pos, count(*) AS n
    FROM arrived JOIN domain_index AS dom ON dom.district = arrived.district
    GROUP BY 1
    """
    return store.counts(sql, {}, len(domain))


def exposure(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    """adapters.aggregates.mobility's exposure: stays over the window's events and each last event of the day
    before it."""
    start_ts, end_excl_ts = _window(start, end)
    last_day_ts = literal(dt.datetime.combine(end, dt.time()))
    before_ts = literal(dt.datetime.combine(start - dt.timedelta(days=1), dt.time()))
    # Checked by the request: ascending distinct six-digit codes, comma-separated.
    risk = ", ".join(str(int(code)) for code in params["risk_districts"].split(","))
    window_events = f"""signalling.ts < {end_excl_ts} AND (
        signalling.ts >= {start_ts}
        OR (signalling.subscriber_id, signalling.ts) IN (
            SELECT subscriber_id, max(ts) FROM signalling
            WHERE ts >= {before_ts} AND ts < {start_ts} GROUP BY subscriber_id
        )
    )"""
    sql = f"""
    WITH {_domain_cte(domain)},
    stays AS ({stays_sql(DISTRICT_AREA, window_events)}),
    exposed AS (
        SELECT DISTINCT subscriber_id
        FROM stays
        WHERE area IN ({risk})
          AND stay_end >= greatest(stay_start, {start_ts}) + INTERVAL {EXPOSURE_STAY_HOURS} HOURS
    ),
    last_event AS (
        SELECT subscriber_id, cell_id FROM (
            SELECT subscriber_id, cell_id,
                   row_number() OVER (PARTITION BY subscriber_id ORDER BY ts DESC, cell_id DESC) AS rank
            FROM signalling
            WHERE ts >= {last_day_ts} AND ts < {end_excl_ts}
        ) WHERE rank = 1
    ),
    counted AS (
        SELECT dom.idx, count(*) AS present, count(exposed.subscriber_id) AS exposed
        FROM last_event
        JOIN cells ON cells.cell_id = last_event.cell_id
        JOIN domain_index AS dom ON dom.district = cells.district
        LEFT JOIN exposed ON exposed.subscriber_id = last_event.subscriber_id
        GROUP BY dom.idx
    )
    SELECT idx * 2 AS pos, exposed AS n FROM counted WHERE exposed > 0
    UNION ALL
    SELECT idx * 2 + 1 AS pos, present AS n FROM counted
    """
    return store.counts(sql, {}, 2 * len(domain))


def cases(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    status_index = " ".join(f"WHEN '{status}' THEN {i}" for i, status in enumerate(CASE_STATUSES))
    statuses = ", ".join(f"'{status}'" for status in CASE_STATUSES)
    sql = f"""
    WITH {_domain_cte(domain)},
    firsts AS (
        SELECT district, status,
               row_number() OVER (PARTITION BY person_id, status, report_date ORDER BY case_id) AS nth
        FROM cases
        WHERE report_date >= {literal(start)} AND report_date <= {literal(end)} AND status IN ({statuses})
    )
    SELECT dom.idx * {len(CASE_STATUSES)} + (CASE firsts.status {status_index} END) AS pos, count(*) AS n
    FROM firsts
    JOIN domain_index AS dom ON dom.district = firsts.district
    WHERE nth = 1
    GROUP BY 1
    """
    return store.counts(sql, {}, len(domain) * len(CASE_STATUSES))


def confirmed_daily(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    days = (end - start).days + 1
    column = {"report": "report_date", "onset": "onset_date"}[params.get("date", "report")]
    sql = f"""
    WITH {_domain_cte(domain)},
    firsts AS (
        SELECT district, {column} AS day, CASE WHEN imported THEN 1 ELSE 0 END AS origin,
               row_number() OVER (PARTITION BY person_id, {column} ORDER BY case_id) AS nth
        FROM cases
        WHERE status = 'confirmed' AND {column} >= {literal(start)} AND {column} <= {literal(end)}
    )
    SELECT (dom.idx * {days} + datediff(firsts.day, {literal(start)})) * 2 + firsts.origin AS pos, count(*) AS n
    FROM firsts
    JOIN domain_index AS dom ON dom.district = firsts.district
    WHERE nth = 1
    GROUP BY 1
    """
    return store.counts(sql, {}, len(domain) * days * len(CASE_ORIGINS))


def clusters(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    days = (end - start).days + 1
    lags = ", ".join(f"({k})" for k in range(CLUSTER_WINDOW_DAYS))
    sql = f"""
    WITH {_domain_cte(domain)},
    lags AS (SELECT * FROM (VALUES {lags}) AS lags(k)),
    firsts AS (
        SELECT district, cluster_id, report_date,
               row_number() OVER (PARTITION BY person_id, report_date ORDER BY case_id) AS nth
        FROM cases
        WHERE status = 'confirmed' AND report_date >= {literal(start)} AND report_date <= {literal(end)}
    ),
    spread AS (
        SELECT firsts.district, firsts.cluster_id, date_add(firsts.report_date, lags.k) AS day
        FROM firsts CROSS JOIN lags
        WHERE firsts.nth = 1 AND firsts.cluster_id IS NOT NULL
    ),
    active AS (
        SELECT district, cluster_id, day FROM spread
        WHERE day <= {literal(end)}
        GROUP BY district, cluster_id, day
        HAVING count(*) >= 2
    )
    SELECT dom.idx * {days} + datediff(active.day, {literal(start)}) AS pos, count(*) AS n
    FROM active
    JOIN domain_index AS dom ON dom.district = active.district
    GROUP BY 1
    """
    return store.counts(sql, {}, len(domain) * days)


def cluster_cases(
    store: Store, domain: npt.NDArray[np.int32], start: dt.date, end: dt.date, params: Mapping[str, str]
) -> npt.NDArray[np.uint64]:
    sql = f"""
    WITH {_domain_cte(domain)},
    firsts AS (
        SELECT district, cluster_id,
               row_number() OVER (PARTITION BY person_id, report_date ORDER BY case_id) AS nth
        FROM cases
        WHERE status = 'confirmed' AND report_date >= {literal(start)} AND report_date <= {literal(end)}
    ),
    clustered AS (
        SELECT district, cluster_id, count(*) AS n FROM firsts
        WHERE nth = 1 AND cluster_id IS NOT NULL
        GROUP BY district, cluster_id
        HAVING count(*) >= 2
    )
    SELECT dom.idx AS pos, sum(clustered.n) AS n
    FROM clustered
    JOIN domain_index AS dom ON dom.district = clustered.district
    GROUP BY 1
    """
    return store.counts(sql, {}, len(domain))


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
    n = frame.columns
    start_ts, end_excl_ts = _window(start, end)
    mode = params["mode"]
    mode_filter = "" if mode == "all" else f"AND numbered.mode = {literal(mode)}"
    sql = f"""
    WITH {_od_cte(domain, frame)},
    numbered AS (
        SELECT origin, destination, mode,
               row_number() OVER (PARTITION BY passenger_id, CAST(departure AS DATE)
                                  ORDER BY departure, ticket_id) AS nth
        FROM tickets
        WHERE departure >= {start_ts} AND departure < {end_excl_ts}
    )
    SELECT o.idx * {n} + d.idx AS pos, count(*) AS n
    FROM numbered
    JOIN origin_index AS o ON o.district = numbered.origin
    JOIN destination_index AS d ON d.district = numbered.destination
    WHERE nth <= {literal(int(max_trips_per_day))} AND o.idx * {n} + d.idx < {frame.cells} {mode_filter}
    GROUP BY 1
    """
    return store.counts(sql, {}, frame.cells)


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

#: The aggregates whose implementation takes the trips bound (as :data:`adapters.aggregates.postgresql.BOUNDED`).
BOUNDED: Mapping[str, BoundedCompute] = {"telecom.trips": telecom_trips, "transport.trips": transport_trips}
