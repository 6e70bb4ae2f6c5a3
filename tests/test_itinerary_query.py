"""One subscriber's cities in the store, on every engine, against a plain-Python recomputation over the raw
signalling rows of that same store (DuckDB, and its copies in PostgreSQL and Spark's Parquet)."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from adapters.backends import Store
from adapters.itinerary.query import is_subscriber, itinerary_of
from adapters.store import create_tables, open_store
from tests.backends import ENGINES, as_backend
from tests.oracle import oracle_itinerary

# Prefectures: 4201 (districts 420102, 420106), 4202 (420202), 4205 (420502); cell 99 is never listed.
CELLS = [(1, 420102), (2, 420106), (3, 420202), (4, 420502), (5, 420502)]
LAST_DAY = dt.date(2020, 1, 28)
WINDOW_DAYS = 14
FIRST_DAY = LAST_DAY - dt.timedelta(days=WINDOW_DAYS - 1)  # 2020-01-15
MIN_STAY = dt.timedelta(hours=4)


def at(day: dt.date, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hh, mm))


def number(subscriber_id: int) -> str:
    return f"+86138{subscriber_id:08d}"


def make_store(
    path: Path, signalling: list[tuple[int, dt.datetime, int]], subscribers: int
) -> duckdb.DuckDBPyConnection:
    con = open_store(path, read_only=False)
    create_tables(con, "telecom")
    con.executemany("INSERT INTO cells VALUES (?, ?)", [list(c) for c in CELLS])
    con.executemany(
        "INSERT INTO subscribers VALUES (?, ?, ?)", [[s, 420102, number(s)] for s in range(1, subscribers + 1)]
    )
    con.executemany("INSERT INTO signalling VALUES (?, ?, ?)", [list(e) for e in signalling])
    return con


def cities(store: Store, msisdn: str, window_days: int = WINDOW_DAYS, min_stay: dt.timedelta = MIN_STAY) -> list[int]:
    return [c.prefecture for c in itinerary_of(store, msisdn, window_days=window_days, min_stay=min_stay).cities]


# Each subscriber is one case of the list; subscriber 9 marks the store's last data day.
CASES: dict[str, tuple[int, list[tuple[dt.datetime, int]], list[int]]] = {
    "3 h 59 min is too short, 4 h 00 min is enough": (
        1,
        [(at(LAST_DAY, 8), 3), (at(LAST_DAY, 11, 59), 4), (at(LAST_DAY, 12), 1), (at(LAST_DAY, 16), 3)],
        [4201],
    ),
    "a stay crossing midnight": (
        2,
        [(at(FIRST_DAY + dt.timedelta(days=3), 22), 4), (at(FIRST_DAY + dt.timedelta(days=4), 3), 1)],
        [4205],
    ),
    "a stay starting before the window counts with its whole length": (
        3,
        [(at(FIRST_DAY - dt.timedelta(days=1), 23), 3), (at(FIRST_DAY, 1), 3), (at(FIRST_DAY, 4), 1)],
        [4202],
    ),
    "a stay ending before the window does not count": (
        4,
        [(at(FIRST_DAY - dt.timedelta(days=2), 6), 3), (at(FIRST_DAY - dt.timedelta(days=2), 12), 1)],
        [],
    ),
    "two cities in one day, latest visit first": (
        5,
        [
            (at(LAST_DAY - dt.timedelta(days=5), 0), 1),
            (at(LAST_DAY - dt.timedelta(days=5), 6), 3),
            (at(LAST_DAY - dt.timedelta(days=5), 12), 2),
            (at(LAST_DAY - dt.timedelta(days=5), 13), 4),
        ],
        [4202, 4201],
    ),
    "boundary oscillation A B A B within minutes makes no stay": (
        6,
        [(at(FIRST_DAY + dt.timedelta(days=2), 9, m), 1 if m % 2 else 3) for m in range(0, 50, 7)]
        + [(at(FIRST_DAY + dt.timedelta(days=2), 9, 59), 99)],
        [],
    ),
    "a long stay in two districts of one city is one stay": (
        7,
        [
            (at(LAST_DAY - dt.timedelta(days=1), 8), 1),
            (at(LAST_DAY - dt.timedelta(days=1), 10), 2),
            (at(LAST_DAY - dt.timedelta(days=1), 12), 5),
        ],
        [4201],
    ),
    "a subscriber with no events": (8, [], []),
}


@pytest.fixture(scope="module", params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The edge cases' store on one engine (built once per engine: Spark's jobs are slow to start)."""
    folder = tmp_path_factory.mktemp("itinerary")
    events = [(subscriber, ts, cell) for subscriber, rows, _ in CASES.values() for ts, cell in rows]
    events.append((9, at(LAST_DAY, 23, 30), 5))
    con = make_store(folder / "t.duckdb", events, subscribers=9)
    backend = as_backend(con, "telecom", request.param, folder)
    yield backend
    backend.close()
    con.close()


def test_edge_cases_match_the_oracle(store: Store) -> None:
    for case, (subscriber, _, expected) in CASES.items():
        found = itinerary_of(store, number(subscriber), window_days=WINDOW_DAYS, min_stay=MIN_STAY)
        assert (found.start, found.end) == (FIRST_DAY, LAST_DAY), case
        assert found.updated == at(LAST_DAY, 23, 30), case
        assert [c.prefecture for c in found.cities] == expected, case
        assert expected == oracle_itinerary(store, number(subscriber), WINDOW_DAYS, MIN_STAY), case
    # The last visit is the end of the latest qualifying stay: subscriber 5 left 4202 for 4201 at 12:00 and
    # 4201 for 4205 at 13:00.
    visits = itinerary_of(store, number(5), window_days=WINDOW_DAYS, min_stay=dt.timedelta(minutes=30)).cities
    day = LAST_DAY - dt.timedelta(days=5)
    assert [(c.prefecture, c.last_visit) for c in visits] == [(4201, at(day, 13)), (4202, at(day, 12))]


def test_an_unknown_number_has_the_same_shape_and_no_city(store: Store) -> None:
    found = itinerary_of(store, "+8613999999999", window_days=WINDOW_DAYS, min_stay=MIN_STAY)
    assert found.cities == () and (found.start, found.end) == (FIRST_DAY, LAST_DAY)
    assert not is_subscriber(store, "+8613999999999")
    assert is_subscriber(store, number(8))  # a subscriber without events is still a subscriber


def test_window_and_minimum_stay_are_the_callers(store: Store) -> None:
    # Subscriber 2's midnight stay is 5 h: gone with a 6 h minimum, and outside a 7-day window.
    assert cities(store, number(2), min_stay=dt.timedelta(hours=6)) == []
    assert cities(store, number(2), window_days=7) == []
    assert cities(store, number(1), window_days=7) == [4201]


def test_a_number_is_data_not_sql(store: Store) -> None:
    assert cities(store, "' OR 1=1 --") == []
    assert not is_subscriber(store, "' OR 1=1 --")


# Spark runs the same statement as the edge cases above; a random store there would add a minute of jobs.
@pytest.mark.parametrize(("engine", "seed"), [("duckdb", 11), ("duckdb", 12), ("postgresql", 11), ("postgresql", 12)])
def test_random_store_matches_the_oracle(tmp_path: Path, engine: str, seed: int) -> None:
    rng = random.Random(seed)
    base = dt.datetime.combine(FIRST_DAY - dt.timedelta(days=3), dt.time())
    events = [
        (
            rng.randrange(1, 13),
            base + dt.timedelta(minutes=rng.randrange(0, 17 * 24 * 60)),
            rng.choice([1, 2, 3, 4, 5, 99]),
        )
        for _ in range(500)
    ]
    con = make_store(tmp_path / "t.duckdb", events, subscribers=12)
    store = as_backend(con, "telecom", engine, tmp_path)
    try:
        for subscriber in range(1, 14):
            expected = oracle_itinerary(store, number(subscriber), WINDOW_DAYS, dt.timedelta(hours=3))
            assert cities(store, number(subscriber), min_stay=dt.timedelta(hours=3)) == expected, subscriber
    finally:
        store.close()
        con.close()
