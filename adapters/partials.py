"""Daily partial aggregates: per-day counts kept in the agency's own store, so a window costs days x districts.

Every windowed aggregate below is a sum of per-day counts: presence counts a subscriber once per day (its last
event of that day), a telecom trip is dated by its later event and needs only that event's predecessor (on
that day or the one before), a case by its report date, a ticket by its departure. ``fedbroker store refresh``
(and every ingest) rebuilds them:

==========================  ======================================================  ===========================
aggregate                   partial table (per day)                                 raw data it covers
==========================  ======================================================  ===========================
``telecom.presence``        ``partial_presence(day, district, n)``                  signalling, cells
``telecom.trips``           ``partial_telecom_trips(day, origin, destination,       signalling, cells
                            nth, n)``
``health.cases``            ``partial_cases(day, district, status, n)``             cases
``transport.trips``         ``partial_transport_trips(day, origin, destination,     tickets
                            mode, nth, n)``
==========================  ======================================================  ===========================

The partials hold the contribution bounds of the raw definitions (docs/protocol.md, "Aggregates"): a case once
per person, status and day; trips and tickets with ``nth``, their rank among the person's trips of that day, so
an answer keeps ``nth <= max_trips_per_day`` whatever bound the agency's policy sets (up to
:data:`federation.vocabulary.MAX_TRIPS_PER_DAY_LIMIT`).

Partials are keyed by district code, not vector position, so one refresh serves every domain and every
jurisdiction; the answer joins them to the request's domain. ``telecom.residents`` has no window and scans the
small ``subscribers`` table. ``telecom.roamers`` (and the window-distinct aggregates: arrivals, stays/exposure)
keep raw scans: a roamer is counted per home region given in the request, and a window-distinct count is not a
sum of days.

Freshness: ``partials_state`` records, per partial table, a digest of the statement that built it and a
fingerprint of the raw tables it was built from
(row count and latest timestamp of the big tables; row count and two sums of the small ``cells`` table, so a
cell moved to another district is seen). A request is answered from partials only when the fingerprint taken
now equals the recorded one, else from the raw tables: an append, a delete, a re-mapped cell, a partial built by
an older definition all fall back to raw.
An edit that keeps a big table's row count and latest time (an UPDATE of old rows by hand) is not seen: refresh
after editing raw tables outside ``fedbroker ingest``.

The SQL here is portable across the three dialects (subquery ``row_number()``, ``CAST``, ``VALUES`` lists, ``GROUP
BY`` ordinals), with the domain and the window rendered as integer and date literals.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from adapters.backends import Store
from adapters.store import od_values
from federation.catalog.aggregates import ODFrame, od_frame
from federation.vocabulary import (
    CASE_STATUSES,
    DEFAULT_MAX_TRIPS_PER_DAY,
    MAX_TRIPS_PER_DAY_LIMIT,
    TRANSPORT_MODES,
)

__all__ = ["PARTIALS", "answer_from_partials", "fresh", "refresh", "state"]

_STATE_TABLE = "partials_state"
_STATE_COLUMNS = (("partial", "VARCHAR"), ("covers", "VARCHAR"), ("refreshed_at", "TIMESTAMP"))


@dataclass(frozen=True)
class _Partial:
    table: str
    sources: tuple[str, ...]  # raw tables whose fingerprint must be unchanged
    build: str  # portable SQL: the per-day rows over the whole raw history


_LAST_EVENT_OF_DAY = """
SELECT last_event.day, cells.district, CAST(count(*) AS BIGINT) AS n
FROM (
    SELECT CAST(ts AS DATE) AS day, cell_id,
           row_number() OVER (PARTITION BY subscriber_id, CAST(ts AS DATE) ORDER BY ts DESC, cell_id DESC) AS rank
    FROM signalling
) AS last_event
JOIN cells ON cells.cell_id = last_event.cell_id
WHERE last_event.rank = 1 AND cells.district IS NOT NULL
GROUP BY 1, 2
"""

# Consecutive events over the whole history; the pair is dated by the later event, and is a trip only when the
# earlier event is on that day or the day before (the raw definition). Cells missing from `cells` give a NULL
# district and so no trip, as in the raw definition; districts outside a request's domain are dropped when the
# partial is joined to that domain. ``nth`` is the trip's rank among the subscriber's trips of that day (the
# contribution bound), kept up to the largest bound a policy may set, so one refresh serves every agency's
# ``max_trips_per_day``.
_TELECOM_TRIPS = f"""
SELECT day, origin, destination, nth, CAST(count(*) AS BIGINT) AS n
FROM (
    SELECT CAST(ts AS DATE) AS day, origin, destination,
           row_number() OVER (PARTITION BY subscriber_id, CAST(ts AS DATE) ORDER BY ts, cell_id) AS nth
    FROM (
        SELECT signalling.subscriber_id, signalling.ts, signalling.cell_id, cells.district AS destination,
               lag(cells.district) OVER (PARTITION BY signalling.subscriber_id
                                         ORDER BY signalling.ts, signalling.cell_id) AS origin,
               lag(signalling.ts) OVER (PARTITION BY signalling.subscriber_id
                                        ORDER BY signalling.ts, signalling.cell_id) AS origin_ts
        FROM signalling LEFT JOIN cells ON cells.cell_id = signalling.cell_id
    ) AS pairs
    WHERE origin IS NOT NULL AND destination IS NOT NULL AND origin <> destination
      AND origin_ts >= CAST(CAST(ts AS DATE) AS TIMESTAMP) - INTERVAL '1' DAY
) AS ranked
WHERE nth <= {MAX_TRIPS_PER_DAY_LIMIT}
GROUP BY 1, 2, 3, 4
"""

# A person once per status and report day, at that day's row with the lowest case_id (the raw definition).
_CASES = """
SELECT day, district, status, CAST(count(*) AS BIGINT) AS n
FROM (
    SELECT report_date AS day, district, status,
           row_number() OVER (PARTITION BY person_id, status, report_date ORDER BY case_id) AS nth
    FROM cases WHERE report_date IS NOT NULL
) AS firsts
WHERE nth = 1 AND district IS NOT NULL
GROUP BY 1, 2, 3
"""

# ``nth`` ranks a passenger's tickets of a day over every mode and district, as the raw definition's bound does.
_TRANSPORT_TRIPS = f"""
SELECT day, origin, destination, mode, nth, CAST(count(*) AS BIGINT) AS n
FROM (
    SELECT CAST(departure AS DATE) AS day, origin, destination, mode,
           row_number() OVER (PARTITION BY passenger_id, CAST(departure AS DATE) ORDER BY departure, ticket_id) AS nth
    FROM tickets WHERE departure IS NOT NULL
) AS ranked
WHERE origin IS NOT NULL AND destination IS NOT NULL AND nth <= {MAX_TRIPS_PER_DAY_LIMIT}
GROUP BY 1, 2, 3, 4, 5
"""

PARTIALS: Mapping[str, _Partial] = {
    "telecom.presence": _Partial("partial_presence", ("signalling", "cells"), _LAST_EVENT_OF_DAY),
    "telecom.trips": _Partial("partial_telecom_trips", ("signalling", "cells"), _TELECOM_TRIPS),
    "health.cases": _Partial("partial_cases", ("cases",), _CASES),
    "transport.trips": _Partial("partial_transport_trips", ("tickets",), _TRANSPORT_TRIPS),
}

# How each raw table is fingerprinted: big tables by row count and latest time (both cheap from column
# statistics), the small cells table by its content as well.
_FINGERPRINTS: Mapping[str, str] = {
    "signalling": "SELECT count(*), max(ts), min(ts) FROM signalling",
    "cells": (
        "SELECT count(*), sum(CAST(district AS BIGINT)), "
        "sum(CAST(cell_id % 1009 AS BIGINT) * CAST(district AS BIGINT)) FROM cells"
    ),
    "cases": "SELECT count(*), max(report_date), min(report_date) FROM cases",
    "tickets": "SELECT count(*), max(departure), min(departure) FROM tickets",
}


def _fingerprint(store: Store, partial: _Partial) -> str:
    # The build statement's digest first: a partial made by an older definition is never fresh.
    parts = [hashlib.sha256(partial.build.encode()).hexdigest()[:16]]
    for table in partial.sources:
        (row,) = store.rows(_FINGERPRINTS[table])
        parts.append(f"{table}:" + ",".join(_text(value) for value in row))
    return ";".join(parts)


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(int(value))


def state(store: Store) -> dict[str, str]:
    """partial table -> the fingerprint it was built from ({} when never refreshed)."""
    if not store.has_table(_STATE_TABLE):
        return {}
    return {str(partial): str(covers) for partial, covers, _ in store.rows(f"SELECT * FROM {_STATE_TABLE}")}


def refresh(store: Store, kind: str, changed: Collection[str] | None = None) -> dict[str, int]:
    """Rebuild the partials of an agency kind from its raw tables; partial table -> rows (district-days).

    ``changed`` (raw table names) limits the rebuild to the partials built from one of them: the others still
    cover exactly the raw data they were built from (an ingest of subscribers leaves trips' partials fresh).
    """
    built: dict[str, int] = {}
    recorded = state(store)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for name, partial in PARTIALS.items():
        if not name.startswith(f"{kind}."):
            continue
        if changed is not None and not set(partial.sources) & set(changed):
            continue
        # Fingerprint first: rows that arrive during the build make the partial look stale, never fresh.
        covers = _fingerprint(store, partial)
        store.materialize(partial.table, partial.build)
        recorded[partial.table] = covers
        (count,) = store.rows(f"SELECT count(*) FROM {partial.table}")
        built[partial.table] = int(count[0])
    names = sorted(recorded)
    batch = pa.record_batch(
        [pa.array(names), pa.array([recorded[n] for n in names]), pa.array([now] * len(names), pa.timestamp("us"))],
        names=[column for column, _ in _STATE_COLUMNS],
    )
    store.write_table(_STATE_TABLE, _STATE_COLUMNS, iter([batch]))
    return built


def fresh(store: Store, aggregate: str) -> bool:
    """True when ``aggregate`` has partials built from exactly the raw data in the store now."""
    partial = PARTIALS.get(aggregate)
    if partial is None:
        return False
    recorded = state(store).get(partial.table)
    return recorded is not None and recorded == _fingerprint(store, partial)


def _values(pairs: list[tuple[str, int]], names: str) -> str:
    return f"(VALUES {', '.join(f'({key}, {index})' for key, index in pairs)}) AS {names}"


def _domain(domain: npt.NDArray[np.int32], alias: str) -> str:
    return _values([(str(int(code)), i) for i, code in enumerate(domain)], f"{alias}(district, idx)")


def _days(start: dt.date, end: dt.date) -> str:
    days = [(f"DATE '{start + dt.timedelta(days=t)}'", t) for t in range((end - start).days + 1)]
    return _values(days, "w(day, t)")


def answer_from_partials(
    store: Store,
    aggregate: str,
    domain: npt.NDArray[np.int32],
    start: dt.date,
    end: dt.date,
    params: Mapping[str, str],
    max_trips_per_day: int = DEFAULT_MAX_TRIPS_PER_DAY,
    frame: ODFrame | None = None,
) -> npt.NDArray[np.uint64]:
    """The aggregate's vector (the layout of ``adapters.aggregates``) summed from its per-day partials; the trips
    aggregates keep each person-day's first ``max_trips_per_day`` (at most MAX_TRIPS_PER_DAY_LIMIT), in the
    provincial layout ``frame`` gives (:func:`federation.catalog.aggregates.od_frame`; None: the domain's)."""
    n = len(domain)
    days = (end - start).days + 1
    window = f"p.day >= DATE '{start}' AND p.day <= DATE '{end}'"
    if aggregate == "telecom.presence":
        sql = f"""
        SELECT CAST(d.idx AS BIGINT) * {days} + w.t AS pos, CAST(sum(p.n) AS BIGINT) AS n
        FROM partial_presence AS p
        JOIN {_domain(domain, "d")} ON d.district = p.district
        JOIN {_days(start, end)} ON w.day = p.day
        GROUP BY 1
        """
        return store.counts(sql, {}, n * days)
    if aggregate == "health.cases":
        status_index = " ".join(f"WHEN '{status}' THEN {i}" for i, status in enumerate(CASE_STATUSES))
        statuses = ", ".join(f"'{status}'" for status in CASE_STATUSES)
        sql = f"""
        SELECT CAST(d.idx AS BIGINT) * {len(CASE_STATUSES)} + (CASE p.status {status_index} END) AS pos,
               CAST(sum(p.n) AS BIGINT) AS n
        FROM partial_cases AS p
        JOIN {_domain(domain, "d")} ON d.district = p.district
        WHERE {window} AND p.status IN ({statuses})
        GROUP BY 1
        """
        return store.counts(sql, {}, n * len(CASE_STATUSES))
    if aggregate in ("telecom.trips", "transport.trips"):
        if not 1 <= max_trips_per_day <= MAX_TRIPS_PER_DAY_LIMIT:
            raise ValueError(f"the partials keep trip ranks 1..{MAX_TRIPS_PER_DAY_LIMIT}, not {max_trips_per_day}")
        table = PARTIALS[aggregate].table
        mode_filter = ""
        if aggregate == "transport.trips" and params.get("mode", "all") != "all":
            mode = params["mode"]
            assert mode in TRANSPORT_MODES  # checked by the request; rendered as a literal
            mode_filter = f"AND p.mode = '{mode}'"
        frame = frame or od_frame(None, np.ones(n, dtype=np.bool_))
        position = f"CAST(o.idx AS BIGINT) * {frame.columns} + d.idx"
        sql = f"""
        SELECT {position} AS pos, CAST(sum(p.n) AS BIGINT) AS n
        FROM {table} AS p
        JOIN {od_values(domain, frame.origin, "o")} ON o.district = p.origin
        JOIN {od_values(domain, frame.destination, "d")} ON d.district = p.destination
        WHERE {window} AND p.nth <= {int(max_trips_per_day)} {mode_filter} AND {position} < {frame.cells}
        GROUP BY 1
        """
        return store.counts(sql, {}, frame.cells)
    raise AssertionError(f"{aggregate} has no partials")
