"""Independent recomputation of every agency aggregate from raw rows, in plain Python.

Each function reads whole tables with ``SELECT * FROM table`` and recomputes docs/protocol.md §6's
definitions with dicts, sets and sorted lists; it shares no code with the SQL path (``adapters.aggregates``), so
agreement between the two is evidence that both are right. Each returns the same ``uint64`` vector layout as the
aggregate it checks. Slow on purpose: for small test stores only. A source is a DuckDB connection or any
backend store (``adapters.backends.Store``): the rows are then read from that very store (PostgreSQL, Spark's
Parquet), so the oracle checks each backend against its own raw tables.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from adapters.backends import Store

__all__ = [
    "oracle_cases",
    "oracle_cluster_cases",
    "oracle_clusters",
    "oracle_confirmed_daily",
    "oracle_presence",
    "oracle_residents",
    "oracle_roamers",
    "oracle_transport_trips",
    "oracle_trips",
    "rows_of",
]

STATUS_ORDER = ("confirmed", "suspected", "close_contact")
MODES = ("rail", "air", "coach")
#: The default contribution bound: trips (tickets) counted per person and day.
MAX_TRIPS_PER_DAY = 4


Source = duckdb.DuckDBPyConnection | Store


def rows_of(con: Source, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table`` as tuples, read from the source itself (any backend)."""
    if isinstance(con, duckdb.DuckDBPyConnection):
        rows: list[tuple[Any, ...]] = con.execute(f"SELECT * FROM {table}").fetchall()
        return rows
    return [tuple(row.values()) for batch in con.read_table(table, 1 << 16) for row in batch.to_pylist()]


def _positions(domain: Iterable[int]) -> dict[int, int]:
    return {int(code): i for i, code in enumerate(domain)}


def _vector(counts: dict[int, int], length: int) -> npt.NDArray[np.uint64]:
    values = [0] * length
    for pos, count in counts.items():
        values[pos] = count
    return np.array(values, dtype=np.uint64)


def _in_window(day: dt.date, start: dt.date, end: dt.date) -> bool:
    return start <= day <= end


def _cell_districts(con: Source) -> dict[int, int]:
    return {cell_id: district for cell_id, district in rows_of(con, "cells")}


def _last_events_of_days(
    con: Source, start: dt.date, end: dt.date, subscribers: set[int] | None
) -> dict[tuple[int, dt.date], tuple[dt.datetime, int]]:
    """(subscriber, day) -> the (ts, cell_id) that is greatest, i.e. the day's last event."""
    last: dict[tuple[int, dt.date], tuple[dt.datetime, int]] = {}
    for subscriber_id, ts, cell_id in rows_of(con, "signalling"):
        if subscribers is not None and subscriber_id not in subscribers:
            continue
        day = ts.date()
        if not _in_window(day, start, end):
            continue
        key = (subscriber_id, day)
        if key not in last or (ts, cell_id) > last[key]:
            last[key] = (ts, cell_id)
    return last


def _district_day_counts(
    con: Source,
    domain: Sequence[int] | npt.NDArray[np.int32],
    start: dt.date,
    end: dt.date,
    subscribers: set[int] | None,
) -> npt.NDArray[np.uint64]:
    position = _positions(domain)
    cells = _cell_districts(con)
    days = (end - start).days + 1
    people: dict[int, set[int]] = defaultdict(set)
    for (subscriber_id, day), (_ts, cell_id) in _last_events_of_days(con, start, end, subscribers).items():
        district = cells.get(cell_id)
        if district not in position:
            continue
        people[position[district] * days + (day - start).days].add(subscriber_id)
    return _vector({pos: len(ids) for pos, ids in people.items()}, len(position) * days)


def oracle_presence(
    con: Source, domain: Sequence[int] | npt.NDArray[np.int32], start: dt.date, end: dt.date
) -> npt.NDArray[np.uint64]:
    """District × day: distinct subscribers whose last event (by (ts, cell_id)) of day t is in district d."""
    return _district_day_counts(con, domain, start, end, subscribers=None)


def oracle_roamers(
    con: Source,
    domain: Sequence[int] | npt.NDArray[np.int32],
    start: dt.date,
    end: dt.date,
    home_prefix: str,
) -> npt.NDArray[np.uint64]:
    """Presence restricted to subscribers whose home_district code starts with home_prefix."""
    roaming = {
        subscriber_id
        for subscriber_id, home, *_ in rows_of(con, "subscribers")
        if home is not None and str(home).startswith(home_prefix)
    }
    return _district_day_counts(con, domain, start, end, subscribers=roaming)


def oracle_residents(con: Source, domain: Sequence[int] | npt.NDArray[np.int32]) -> npt.NDArray[np.uint64]:
    """Per district: distinct subscribers whose home_district is d."""
    position = _positions(domain)
    people: dict[int, set[int]] = defaultdict(set)
    for subscriber_id, home, *_ in rows_of(con, "subscribers"):
        if home in position:
            people[position[home]].add(subscriber_id)
    return _vector({pos: len(ids) for pos, ids in people.items()}, len(position))


def oracle_trips(
    con: Source,
    domain: Sequence[int] | npt.NDArray[np.int32],
    start: dt.date,
    end: dt.date,
    max_trips_per_day: int = MAX_TRIPS_PER_DAY,
) -> npt.NDArray[np.uint64]:
    """Origin × destination: consecutive events (whole history, by (ts, cell_id)) in different districts, the
    earlier on the later event's day or the day before, counted when the later event's day is in the window; at
    most ``max_trips_per_day`` per subscriber and day (the first, in event order, among all their trips between
    listed cells)."""
    position = _positions(domain)
    n = len(position)
    cells = _cell_districts(con)
    history: dict[int, list[tuple[dt.datetime, int]]] = defaultdict(list)
    for subscriber_id, ts, cell_id in rows_of(con, "signalling"):
        history[subscriber_id].append((ts, cell_id))
    counts: dict[int, int] = defaultdict(int)
    for events in history.values():
        events.sort()
        per_day: dict[dt.date, int] = defaultdict(int)
        for (earlier_ts, earlier_cell), (later_ts, later_cell) in itertools.pairwise(events):
            origin, destination = cells.get(earlier_cell), cells.get(later_cell)
            if origin is None or destination is None or origin == destination:
                continue
            day = later_ts.date()
            if (day - earlier_ts.date()).days > 1:
                continue  # an origin two or more days back makes no trip
            if not _in_window(day, start, end) or per_day[day] >= max_trips_per_day:
                continue
            per_day[day] += 1  # the bound counts trips outside the domain too
            if origin in position and destination in position:
                counts[position[origin] * n + position[destination]] += 1
    return _vector(counts, n * n)


def oracle_cases(
    con: Source, domain: Sequence[int] | npt.NDArray[np.int32], start: dt.date, end: dt.date
) -> npt.NDArray[np.uint64]:
    """District × status (confirmed, suspected, close_contact): persons with a case row of that status reported
    on a day of the window, once per person, status and day, at that day's row with the lowest case_id (in
    whatever district; counted when that district is in the domain)."""
    position = _positions(domain)
    first: dict[tuple[int, str, dt.date], tuple[int, int]] = {}
    for row in rows_of(con, "cases"):
        case_id, person_id, status, district, _onset, report_date = row[:6]
        if status in STATUS_ORDER and report_date is not None and _in_window(report_date, start, end):
            key = (person_id, status, report_date)
            if key not in first or case_id < first[key][0]:
                first[key] = (case_id, district)
    counts: dict[int, int] = defaultdict(int)
    for (_person, status, _day), (_case, district) in first.items():
        if district in position:
            counts[position[district] * len(STATUS_ORDER) + STATUS_ORDER.index(status)] += 1
    return _vector(counts, len(position) * len(STATUS_ORDER))


def oracle_transport_trips(
    con: Source,
    domain: Sequence[int] | npt.NDArray[np.int32],
    start: dt.date,
    end: dt.date,
    mode: str = "all",
    max_trips_per_day: int = MAX_TRIPS_PER_DAY,
) -> npt.NDArray[np.uint64]:
    """Origin × destination: tickets of that mode (or any, for "all") departing on a day in the window, among
    the passenger's first ``max_trips_per_day`` tickets of that day (by (departure, ticket_id), any mode, any
    district)."""
    position = _positions(domain)
    n = len(position)
    wanted = MODES if mode == "all" else (mode,)
    by_passenger_day: dict[tuple[int, dt.date], list[tuple[dt.datetime, int, str, int, int]]] = defaultdict(list)
    for ticket_id, passenger_id, ticket_mode, origin, destination, departure in rows_of(con, "tickets"):
        if departure is not None and _in_window(departure.date(), start, end):
            by_passenger_day[passenger_id, departure.date()].append(
                (departure, ticket_id, ticket_mode, origin, destination)
            )
    counts: dict[int, int] = defaultdict(int)
    for tickets in by_passenger_day.values():
        for _departure, _ticket, ticket_mode, origin, destination in sorted(tickets)[:max_trips_per_day]:
            if ticket_mode in wanted and origin in position and destination in position:
                counts[position[origin] * n + position[destination]] += 1
    return _vector(counts, n * n)


def oracle_confirmed_daily(
    con: Source,
    domain: Sequence[int] | npt.NDArray[np.int32],
    start: dt.date,
    end: dt.date,
    date: str = "report",
) -> npt.NDArray[np.uint64]:
    """District × day × (local, imported): confirmed persons dated by report_date or onset_date in the window,
    once per person and day (that day's confirmed row with the lowest case_id); a NULL imported counts as local,
    a NULL onset date is not counted by onset."""
    position = _positions(domain)
    days = (end - start).days + 1
    counts: dict[int, int] = defaultdict(int)
    rows = [row[:7] for row in rows_of(con, "cases")]
    first: dict[tuple[int, dt.date], tuple[int, int, bool]] = {}  # (person, day) -> that day's first row
    for case_id, person_id, status, district, onset_date, report_date, imported in rows:
        day = report_date if date == "report" else onset_date
        if status != "confirmed" or day is None or not _in_window(day, start, end):
            continue
        if (person_id, day) not in first or case_id < first[person_id, day][0]:
            first[person_id, day] = (case_id, district, bool(imported))
    for (_person, day), (_case, district, imported) in first.items():
        if district in position:
            counts[(position[district] * days + (day - start).days) * 2 + (1 if imported else 0)] += 1
    return _vector(counts, len(position) * days * 2)


def _cluster_reports(
    con: Source, position: dict[int, int], start: dt.date, end: dt.date
) -> dict[tuple[int, int], list[dt.date]]:
    """(district, cluster id) -> the report days of its counted confirmed rows in [start, end], a person's rows
    once per report day (that day's row with the lowest case_id), districts of the domain only."""
    reported: dict[tuple[int, int], list[dt.date]] = defaultdict(list)
    rows = [(row[0], row[1], row[2], row[3], row[5], row[7]) for row in rows_of(con, "cases")]
    first_row: dict[tuple[int, dt.date], tuple[int, int, int | None]] = {}  # (person, day) -> that day's first
    for case_id, person_id, status, district, report_date, cluster_id in rows:
        counted = status == "confirmed" and report_date is not None and _in_window(report_date, start, end)
        if counted and ((person_id, report_date) not in first_row or case_id < first_row[person_id, report_date][0]):
            first_row[person_id, report_date] = (case_id, district, cluster_id)
    for (_person, report_date), (_case, district, cluster_id) in first_row.items():
        if cluster_id is not None and district in position:
            reported[(district, cluster_id)].append(report_date)
    return reported


def oracle_clusters(
    con: Source, domain: Sequence[int] | npt.NDArray[np.int32], start: dt.date, end: dt.date
) -> npt.NDArray[np.uint64]:
    """District × day t: cluster ids with >= 2 confirmed rows of that district reported in [t - 13, t] and in
    the window [start, end], a person's rows once per report day (that day's row with the lowest case_id)."""
    position = _positions(domain)
    days = (end - start).days + 1
    reported = _cluster_reports(con, position, start, end)
    counts: dict[int, int] = defaultdict(int)
    for offset in range(days):
        day = start + dt.timedelta(days=offset)
        first = day - dt.timedelta(days=13)
        for (district, _cluster), dates in reported.items():
            if sum(1 for d in dates if first <= d <= day) >= 2:
                counts[position[district] * days + offset] += 1
    return _vector(counts, len(position) * days)


def oracle_cluster_cases(
    con: Source, domain: Sequence[int] | npt.NDArray[np.int32], start: dt.date, end: dt.date
) -> npt.NDArray[np.uint64]:
    """District: the counted confirmed rows in [start, end] of the cluster ids with >= 2 of them in the district
    (as oracle_clusters counts rows)."""
    position = _positions(domain)
    counts: dict[int, int] = defaultdict(int)
    for (district, _cluster), dates in _cluster_reports(con, position, start, end).items():
        if len(dates) >= 2:
            counts[position[district]] += len(dates)
    return _vector(counts, len(position))


def oracle_itinerary(
    con: Source,
    msisdn: str,
    window_days: int,
    min_stay: dt.timedelta,
    *,
    last_day: dt.date | None = None,
) -> list[int]:
    """One subscriber's prefectures (code // 100) by last visit, latest first, ties by code.

    A stay is a maximal run of the subscriber's events (sorted by (ts, cell_id)) in one prefecture, from its
    first event to the first event after the run (its own last event if none); an unknown cell is an area of
    its own that never counts. A prefecture counts when one of its stays lasts at least ``min_stay`` and overlaps
    the ``window_days`` whole days ending on ``last_day`` (default: the latest signalling day); its last visit
    is the latest end of such a stay.
    """
    cells = {cell_id: district for cell_id, district in rows_of(con, "cells")}
    subscriber = next((s for s, _home, number in rows_of(con, "subscribers") if number == msisdn), None)
    if last_day is None:
        last_day = max(ts for _, ts, _ in rows_of(con, "signalling")).date()
    start = dt.datetime.combine(last_day - dt.timedelta(days=window_days - 1), dt.time())
    end_excl = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time())
    events = sorted((ts, cell_id) for who, ts, cell_id in rows_of(con, "signalling") if who == subscriber)
    areas = [None if cells.get(cell) is None else cells[cell] // 100 for _, cell in events]
    last_visit: dict[int, dt.datetime] = {}
    i = 0
    while i < len(events):
        j = i
        while j + 1 < len(events) and areas[j + 1] == areas[i]:
            j += 1
        area, stay_start = areas[i], events[i][0]
        stay_end = events[j + 1][0] if j + 1 < len(events) else events[j][0]
        if area is not None and stay_end - stay_start >= min_stay and stay_end > start and stay_start < end_excl:
            last_visit[area] = max(last_visit.get(area, stay_end), stay_end)
        i = j + 1
    return [area for area, _ in sorted(last_visit.items(), key=lambda item: (-item[1].timestamp(), item[0]))]
