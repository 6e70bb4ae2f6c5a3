"""Contribution bounding in each aggregate's SQL (the privacy unit is a person-day), against the oracle, on every
store engine, from the raw tables and from the daily partials."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from adapters import partials
from adapters.aggregates import AggregateRequest, compute_aggregate
from adapters.backends import Store
from tests.backends import ENGINES, as_backend
from tests.oracle import oracle_cases, oracle_confirmed_daily, oracle_transport_trips, oracle_trips
from tests.test_aggregates import (
    CELLS,
    DAY0,
    DAY1,
    DAY2,
    DAY3,
    DOMAIN,
    OUTSIDE,
    A,
    B,
    C,
    at,
    make_store,
    od,
    req,
)
from tests.test_aggregates import UNLISTED_CELL as UNLISTED


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    engine: str = request.param
    return engine


def _both_ways(store: Store, kind: str, request: AggregateRequest) -> npt.NDArray[np.uint64]:
    """The raw-table vector, after checking that the daily partials (where the aggregate has them) give it too.

    Spark's partials are checked by tests/test_partials.py on the random stores (whose persons and passengers
    repeat, so the bounds bite there too): a refresh costs Spark half a minute of jobs on these tiny tables."""
    raw = compute_aggregate(store, request, use_partials=False)
    if request.name in partials.PARTIALS and store.dialect != "spark":
        if not partials.fresh(store, request.name):
            partials.refresh(store, kind)
        assert partials.fresh(store, request.name)
        assert np.array_equal(compute_aggregate(store, request), raw), (request.name, request.max_trips_per_day)
    return raw


def test_telecom_trips_keep_the_first_k_of_each_person_day(tmp_path: Path, engine: str) -> None:
    # Subscriber 1 bounces A<->B eight times on day 0 and twice on day 1; subscriber 2 makes one trip. Subscriber
    # 3 goes A -> outside -> A -> B on day 0: the two trips outside the domain count towards the bound, so with
    # k = 2 the A -> B trip is not among the first k.
    bounces = [(1, at(DAY0, 8 + hour), 1 if hour % 2 == 0 else 3) for hour in range(9)]
    signalling = [*bounces, (1, at(DAY1, 9), 1), (1, at(DAY1, 10), 3), (2, at(DAY0, 9), 5), (2, at(DAY0, 10), 1)]
    signalling += [(3, at(DAY0, 6), 1), (3, at(DAY0, 7), 9), (3, at(DAY0, 8), 2), (3, at(DAY0, 9), 3)]
    con = make_store(tmp_path / "t.duckdb", "telecom", cells=CELLS, subscribers=[], signalling=signalling)
    store = as_backend(con, "telecom", engine, tmp_path)
    for k in (2,) if engine == "spark" else (1, 2, 3, 4, 10):
        request = dataclasses.replace(req("telecom.trips", DAY0, DAY1), max_trips_per_day=k)
        vector = _both_ways(store, "telecom", request)
        assert np.array_equal(vector, oracle_trips(store, DOMAIN, DAY0, DAY1, max_trips_per_day=k))
        # Day 0 alternates A→B, B→A, ... eight times and keeps the first k; day 1 adds one A→B (A at 16:00 to A
        # at 09:00 is no trip); subscriber 3's A→B is their third trip of day 0.
        kept = min(k, 8)
        assert od(vector, A, B) == (kept + 1) // 2 + 1 + (1 if k >= 3 else 0)
        assert od(vector, B, A) == kept // 2
        assert od(vector, C, A) == 1
    store.close()


def test_transport_tickets_keep_the_first_k_of_each_passenger_day(tmp_path: Path, engine: str) -> None:
    # Passenger 7: six rail tickets A→B on day 0 after an air ticket B→C at 05:00 (which counts towards the bound
    # of a rail-only vector too) and one on day 1; passenger 8 one ticket; passenger 9 first leaves the domain.
    tickets = [(i, 7, "rail", A, B, at(DAY0, 6 + i)) for i in range(6)]
    tickets += [
        (10, 7, "air", B, C, at(DAY0, 5)),
        (11, 7, "air", B, C, at(DAY1, 8)),
        (12, 8, "rail", A, B, at(DAY0, 12)),
    ]
    tickets += [(13, 9, "coach", A, OUTSIDE, at(DAY0, 7)), (14, 9, "coach", OUTSIDE, C, at(DAY0, 9))]
    tickets += [(15, 9, "rail", C, A, at(DAY0, 11))]
    con = make_store(tmp_path / "r.duckdb", "transport", tickets=tickets)
    store = as_backend(con, "transport", engine, tmp_path)
    cases = [(4, "rail")] if engine == "spark" else [(k, mode) for k in (1, 2, 4, 7) for mode in ("all", "rail")]
    for k, mode in cases:
        request = dataclasses.replace(req("transport.trips", DAY0, DAY1, mode=mode), max_trips_per_day=k)
        vector = _both_ways(store, "transport", request)
        expected = oracle_transport_trips(store, DOMAIN, DAY0, DAY1, mode, max_trips_per_day=k)
        assert np.array_equal(vector, expected), (k, mode)
        assert od(vector, A, B) == min(k - 1, 6) + 1
        assert od(vector, C, A) == (1 if k >= 3 else 0)
        assert od(vector, B, C) == (0 if mode == "rail" else 2)
    store.close()


def test_cases_count_a_person_once_per_status_and_day(tmp_path: Path, engine: str) -> None:
    cases = [
        (1, 100, "confirmed", A, DAY0, DAY0),
        (2, 100, "confirmed", B, DAY0, DAY0),  # the same person confirmed again that day, elsewhere: not counted
        (6, 100, "confirmed", C, DAY0, DAY1),  # ... and on the next day: that day's own count
        (3, 100, "suspected", B, DAY0, DAY0),  # another status of the same person: its own cell
        (4, 101, "confirmed", B, DAY0, DAY1),
        (5, 102, "close_contact", C, DAY0, DAY1),
        (7, 103, "confirmed", OUTSIDE, DAY0, DAY0),  # the day's first row is outside the domain: counted nowhere
        (8, 103, "confirmed", A, DAY0, DAY0),
    ]
    con = make_store(tmp_path / "h.duckdb", "health", cases=cases)
    store = as_backend(con, "health", engine, tmp_path)
    vector = _both_ways(store, "health", req("health.cases", DAY0, DAY1))
    assert np.array_equal(vector, oracle_cases(store, DOMAIN, DAY0, DAY1))
    confirmed = {code: int(vector[list(DOMAIN).index(code) * 3]) for code in (A, B, C)}
    assert confirmed == {A: 1, B: 1, C: 1} and int(vector.sum()) == 5
    daily = _both_ways(store, "health", req("health.confirmed_daily", DAY0, DAY1))
    assert np.array_equal(daily, oracle_confirmed_daily(store, DOMAIN, DAY0, DAY1))
    assert int(daily.sum()) == 3
    store.close()


def test_one_person_day_moves_telecom_trips_by_at_most_the_sensitivity(tmp_path: Path) -> None:
    """Remove each person-day in turn: the trips vector of a window changes by Δ₂² ≤ (k+1)² + 1
    (federation/privacy/accounting.py), and not at all for a day before the day before the window or after it,
    which is why a trips release charges exactly the window and the day before it."""
    k = 2
    rng = np.random.default_rng(12)
    cells = [1, 3, 5, 9, UNLISTED]  # A, B, C, outside the domain, unlisted: pairs with the last two are no trips
    signalling = [
        (person, at(DAY0 + dt.timedelta(days=int(day)), int(hour), int(minute)), int(rng.choice(cells)))
        for person in range(1, 6)
        for day, hour, minute in zip(
            rng.integers(0, 8, 60), rng.integers(0, 24, 60), rng.integers(0, 60, 60), strict=True
        )
    ]
    # The worst case: k trips A -> B on day 1 with unlisted cells between, the day's last event in A, then
    # A -> B first on day 2 and k more trips after it; and a subscriber seen on day 0 and day 3 only.
    signalling += [(6, at(DAY1, 1 + 3 * i), 1) for i in range(k + 1)]
    signalling += [(6, at(DAY1, 2 + 3 * i), 3) for i in range(k)] + [
        (6, at(DAY1, 3 + 3 * i), UNLISTED) for i in range(k)
    ]
    signalling += [(6, at(DAY2, 1), 3), (6, at(DAY2, 2), 5), (6, at(DAY2, 3), 3), (6, at(DAY2, 4), 1)]
    signalling += [(7, at(DAY0, 12), 1), (7, at(DAY3, 12), 3)]
    con = make_store(tmp_path / "s.duckdb", "telecom", cells=CELLS, subscribers=[], signalling=signalling)
    con.execute("CREATE TABLE every_event AS SELECT * FROM signalling")
    bound = (k + 1) ** 2 + 1
    for start, end in ((DAY1, DAY3), (DAY2, DAY2), (DAY3, DAY0 + dt.timedelta(days=5))):
        request = dataclasses.replace(req("telecom.trips", start, end), max_trips_per_day=k)
        whole = compute_aggregate(con, request).astype(np.int64)
        largest = 0
        for person in range(1, 8):
            for day in range(8):
                removed = DAY0 + dt.timedelta(days=day)
                con.execute(
                    "CREATE OR REPLACE TABLE signalling AS SELECT * FROM every_event "
                    "WHERE NOT (subscriber_id = ? AND CAST(ts AS DATE) = ?)",
                    [person, removed],
                )
                change = int(np.sum((compute_aggregate(con, request).astype(np.int64) - whole) ** 2))
                assert change <= bound, (start, end, person, removed, change)
                if not start - dt.timedelta(days=1) <= removed <= end:
                    assert change == 0, (start, end, person, removed)
                largest = max(largest, change)
        if start == DAY1:
            assert largest == bound  # subscriber 6's day 1 reaches it
    con.close()
