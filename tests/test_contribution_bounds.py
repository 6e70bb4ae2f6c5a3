"""Contribution bounding in each aggregate's SQL (the privacy unit is a person-day), against the oracle."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np

from adapters.aggregates import compute_aggregate
from tests.oracle import oracle_cases, oracle_transport_trips, oracle_trips
from tests.test_aggregates import CELLS, DAY0, DAY1, DOMAIN, A, B, C, at, make_store, od, req


def test_telecom_trips_keep_the_first_k_of_each_person_day(tmp_path: Path) -> None:
    # Subscriber 1 bounces A<->B eight times on day 0 and twice on day 1; subscriber 2 makes one trip.
    bounces = [(1, at(DAY0, 8 + hour), 1 if hour % 2 == 0 else 3) for hour in range(9)]
    signalling = [*bounces, (1, at(DAY1, 9), 1), (1, at(DAY1, 10), 3), (2, at(DAY0, 9), 5), (2, at(DAY0, 10), 1)]
    con = make_store(tmp_path / "t.duckdb", "telecom", cells=CELLS, subscribers=[], signalling=signalling)
    for k in (1, 2, 4, 10):
        vector = compute_aggregate(con, dataclasses.replace(req("telecom.trips", DAY0, DAY1), max_trips_per_day=k))
        assert np.array_equal(vector, oracle_trips(con, DOMAIN, DAY0, DAY1, max_trips_per_day=k))
        # Day 0 alternates A→B, B→A, ... eight times and keeps the first k; day 1 adds one A→B (A at 16:00 to A
        # at 09:00 is no trip).
        kept = min(k, 8)
        assert od(vector, A, B) == (kept + 1) // 2 + 1 and od(vector, B, A) == kept // 2
        assert od(vector, C, A) == 1
    con.close()


def test_transport_tickets_keep_the_first_k_of_each_passenger_day(tmp_path: Path) -> None:
    tickets = [(i, 7, "rail", A, B, at(DAY0, 6 + i)) for i in range(6)]
    tickets += [(10, 7, "air", B, C, at(DAY1, 8)), (11, 8, "rail", A, B, at(DAY0, 12))]
    con = make_store(tmp_path / "r.duckdb", "transport", tickets=tickets)
    for k in (1, 4, 6):
        vector = compute_aggregate(
            con, dataclasses.replace(req("transport.trips", DAY0, DAY1, mode="all"), max_trips_per_day=k)
        )
        assert np.array_equal(vector, oracle_transport_trips(con, DOMAIN, DAY0, DAY1, "all", max_trips_per_day=k))
        assert od(vector, A, B) == k + 1 and od(vector, B, C) == 1
    con.close()


def test_cases_count_a_person_once_per_status(tmp_path: Path) -> None:
    day = DAY0
    cases = [
        (1, 100, "confirmed", A, day, day),
        (2, 100, "confirmed", B, day, DAY1),  # the same person confirmed again, elsewhere: counted once, in A
        (3, 100, "suspected", B, day, day),  # another status of the same person: its own cell
        (4, 101, "confirmed", B, day, DAY1),
        (5, 102, "close_contact", C, day, day + dt.timedelta(days=1)),
    ]
    con = make_store(tmp_path / "h.duckdb", "health", cases=cases)
    vector = compute_aggregate(con, req("health.cases", DAY0, DAY1))
    assert np.array_equal(vector, oracle_cases(con, DOMAIN, DAY0, DAY1))
    assert int(vector.sum()) == 4
    assert int(vector[list(DOMAIN).index(A) * 3]) == 1 and int(vector[list(DOMAIN).index(B) * 3]) == 1
    con.close()
