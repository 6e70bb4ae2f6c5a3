"""The trend and warning health aggregates (daily confirmed by origin, clusters in 14 days) against the oracle
and at the boundaries of the February 2020 tier rule."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from adapters.aggregates import AggregateRequest, compute_aggregate, vector_length
from adapters.backends import Store
from adapters.store import create_tables, open_store
from federation.epi.tiers import HIGH, LOW, MEDIUM, tier_history, tier_since
from federation.errors import InvalidQuery
from tests.backends import ENGINES, as_backend
from tests.oracle import oracle_cluster_cases, oracle_clusters, oracle_confirmed_daily

A, B, C = 420102, 420106, 421002
OUTSIDE = 990101
DOMAIN = np.array([A, B, C], dtype=np.int32)
DAY0 = dt.date(2020, 1, 1)


def day(k: int) -> dt.date:
    return DAY0 + dt.timedelta(days=k)


def store(path: Path, rows: list[tuple[Any, ...]]) -> duckdb.DuckDBPyConnection:
    """A health store with the given (case_id, status, district, onset, report, imported, cluster_id) rows."""
    con = open_store(path, read_only=False)
    create_tables(con, "health")
    con.executemany(
        "INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [[case_id, case_id + 1000, *rest] for case_id, *rest in rows],
    )
    return con


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    engine: str = request.param
    return engine


def compute(
    con: duckdb.DuckDBPyConnection | Store, name: str, start: dt.date, end: dt.date, **params: str
) -> np.ndarray:
    return compute_aggregate(con, AggregateRequest(name=name, domain=DOMAIN, start=start, end=end, params=params))


def test_daily_confirmed_splits_local_and_imported_by_report_or_onset(tmp_path: Path, engine: str) -> None:
    con = as_backend(
        store(
            tmp_path / "h.duckdb",
            [
                (1, "confirmed", A, day(0), day(2), False, None),
                (2, "confirmed", A, day(1), day(2), True, None),
                (3, "confirmed", A, None, day(3), None, None),  # NULL imported counts as local; no onset date
                (4, "suspected", A, day(1), day(2), True, None),  # not confirmed
                (5, "confirmed", OUTSIDE, day(1), day(2), False, None),  # outside the domain
                (6, "confirmed", C, day(4), day(9), True, 7),  # reported after the window
            ],
        ),
        "health",
        engine,
        tmp_path,
    )
    start, end = day(0), day(4)
    by_report = compute(con, "health.confirmed_daily", start, end).reshape(3, 5, 2)
    assert by_report[0].tolist() == [[0, 0], [0, 0], [1, 1], [1, 0], [0, 0]]
    assert by_report[1:].sum() == 0
    by_onset = compute(con, "health.confirmed_daily", start, end, date="onset").reshape(3, 5, 2)
    assert by_onset[0].tolist() == [[1, 0], [0, 1], [0, 0], [0, 0], [0, 0]]
    assert by_onset[2, 4].tolist() == [0, 1]
    for date in ("report", "onset"):
        assert (
            compute(con, "health.confirmed_daily", start, end, date=date)
            == oracle_confirmed_daily(con, DOMAIN, start, end, date)
        ).all()
    assert vector_length(AggregateRequest("health.confirmed_daily", DOMAIN, start, end, {})) == 30
    with pytest.raises(InvalidQuery, match="date 'symptoms' is not one of report, onset"):
        compute(con, "health.confirmed_daily", start, end, date="symptoms")


def test_cluster_boundaries(tmp_path: Path, engine: str) -> None:
    con = as_backend(
        store(
            tmp_path / "h.duckdb",
            [
                # Cluster 1 in A: cases on days 0 and 13 -> both in the 14 days ending day 13 only.
                (1, "confirmed", A, None, day(0), False, 1),
                (2, "confirmed", A, None, day(13), False, 1),
                # Cluster 2 in A: cases on days 0 and 14 -> never two in one 14-day window.
                (3, "confirmed", A, None, day(0), False, 2),
                (4, "confirmed", A, None, day(14), False, 2),
                # Cluster 3 in B: one case only in the window (the other before it): straddles the window's start.
                (5, "confirmed", B, None, day(-1), False, 3),
                (6, "confirmed", B, None, day(2), False, 3),
                # Cluster 4 in C: two cases on day 20 (one is suspected: not counted), then days 21 and 22.
                (7, "confirmed", C, None, day(20), True, 4),
                (8, "suspected", C, None, day(20), False, 4),
                (9, "confirmed", C, None, day(21), False, 4),
                (14, "confirmed", C, None, day(22), False, 4),
                # Cluster 5: its two cases are in different districts: a cluster of neither.
                (10, "confirmed", A, None, day(5), False, 5),
                (11, "confirmed", B, None, day(5), False, 5),
                # Cluster 6 straddles the window's end: one case inside, one after.
                (12, "confirmed", C, None, day(29), False, 6),
                (13, "confirmed", C, None, day(31), False, 6),
            ],
        ),
        "health",
        engine,
        tmp_path,
    )
    start, end = day(0), day(29)
    clusters = compute(con, "health.clusters", start, end).reshape(3, 30)
    assert (clusters.reshape(-1) == oracle_clusters(con, DOMAIN, start, end)).all()
    assert np.flatnonzero(clusters[0]).tolist() == [13]
    assert clusters[1].sum() == 0
    assert np.flatnonzero(clusters[2]).tolist() == list(range(21, 30))
    # The same cluster on the window starting a day earlier: cluster 3's two cases are both inside.
    earlier = compute(con, "health.clusters", day(-1), day(28)).reshape(3, 30)
    assert np.flatnonzero(earlier[1]).tolist() == list(range(3, 14))  # days 2 .. 12, index = day + 1
    # Cluster cases over one window: each cluster by its cases; over at most 14 days positive exactly where
    # clusters' last day is (over 30 days, A's clusters 1 and 2 count, though neither is in the last 14 days).
    for first, last in ((day(0), day(13)), (day(16), day(29)), (day(-1), day(12)), (day(0), day(29))):
        in_clusters = compute(con, "health.cluster_cases", first, last)
        assert (in_clusters == oracle_cluster_cases(con, DOMAIN, first, last)).all()
        on_last_day = compute(con, "health.clusters", first, last).reshape(3, -1)[:, -1] > 0
        assert ((in_clusters > 0) == on_last_day).all() or (last - first).days >= 14
    assert compute(con, "health.cluster_cases", day(0), day(29)).tolist() == [4, 0, 3]
    assert compute(con, "health.cluster_cases", day(0), day(13)).tolist() == [2, 0, 0]  # cluster 1
    assert compute(con, "health.cluster_cases", day(16), day(29)).tolist() == [0, 0, 3]  # cluster 4: 3 confirmed
    assert compute(con, "health.cluster_cases", day(-1), day(12)).tolist() == [0, 2, 0]  # cluster 3, both inside


def test_tiers_from_the_aggregates_at_the_rule_boundaries(tmp_path: Path) -> None:
    rows: list[tuple[Any, ...]] = []
    case_id = 0

    def add(district: int, report: int, count: int, cluster: int | None = None) -> None:
        nonlocal case_id
        for _ in range(count):
            case_id += 1
            rows.append((case_id, "confirmed", district, None, day(report), False, cluster))

    add(A, 0, 48)  # A: 50 cumulative with a cluster -> medium (not > 50)
    add(A, 20, 2, cluster=1)
    add(B, 0, 49)  # B: 51 cumulative with a cluster -> high
    add(B, 20, 2, cluster=2)
    add(C, 0, 51)  # C: 52 cumulative without cluster -> medium while new cases, then low
    add(C, 5, 1)
    con = store(tmp_path / "h.duckdb", rows)
    start, end = day(0), day(33)
    daily = compute(con, "health.confirmed_daily", start, end).reshape(3, 34, 2).sum(axis=2)
    clusters = compute(con, "health.clusters", start, end).reshape(3, 34)
    history = tier_history(daily, clusters)
    assert history[0, 33] == MEDIUM and history[1, 33] == HIGH
    assert history[1, 19] == LOW and history[1, 20] == HIGH  # day 0 cases left the 14 days on day 14
    # C's last case is on day 5: in the 14 days ending day 18, not in those ending day 19.
    assert history[2, 18] == MEDIUM and history[2, 19] == LOW and history[2, 33] == LOW
    assert tier_since(history).tolist() == [20, 20, 19]


def test_generated_stores_match_the_oracle(small_scenario: Path) -> None:
    from federation.config import load_federation
    from federation.registry import load_registry

    config = load_federation(small_scenario)
    domain = load_registry(config.domain.provinces).codes
    start, end = config.data_start, config.data_end
    clusters_seen = imported_seen = 0
    for node in config.nodes_of_kind("health"):
        con = open_store(node.store)
        try:
            for date in ("report", "onset"):
                request = AggregateRequest("health.confirmed_daily", domain, start, end, {"date": date})
                ours = compute_aggregate(con, request)
                assert (ours == oracle_confirmed_daily(con, domain, start, end, date)).all(), (node.id, date)
                imported_seen += int(ours[1::2].sum())
            ours = compute_aggregate(con, AggregateRequest("health.clusters", domain, start, end, {}))
            assert (ours == oracle_clusters(con, domain, start, end)).all(), node.id
            clusters_seen += int(ours.sum())
            last_14 = end - dt.timedelta(days=13)
            ours = compute_aggregate(con, AggregateRequest("health.cluster_cases", domain, last_14, end, {}))
            assert (ours == oracle_cluster_cases(con, domain, last_14, end)).all(), node.id
        finally:
            con.close()
    assert clusters_seen > 0 and imported_seen > 0
