"""The trend and warning catalog entries on crafted round sums: plans, disclosure, the release rules for Rt and
alerts, provincial scope (no federation needed; the federation test is test_trend_warning.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest

from federation.catalog import NATIONAL, kind, new_query
from federation.catalog.base import Release, Scope
from federation.catalog.trend import peak_day, turning_point
from federation.errors import InvalidQuery
from federation.registry import load_registry
from tests.layouts import limited_sums

REGISTRY = load_registry([42, 43])
START = dt.date(2020, 1, 1)
DAYS = 40
END = START + dt.timedelta(days=DAYS - 1)
WUHAN_A, WUHAN_B = 420102, 420106
CHANGSHA = 430102


def position(code: int) -> int:
    return int(REGISTRY.index_of([code])[0])


def confirmed_sum(series: dict[int, tuple[list[int], list[int]]]) -> np.ndarray:
    """health.confirmed_daily sum: district -> (local per day, imported per day)."""
    grid = np.zeros((len(REGISTRY), DAYS, 2), dtype=np.uint64)
    for code, (local, imported) in series.items():
        grid[position(code), :, 0] = local
        grid[position(code), :, 1] = imported
    return grid.reshape(-1)


def epidemic(scale: int) -> list[int]:
    rise = [scale * x for x in (1, 1, 2, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 18, 20, 21, 22)]
    fall = [max(0, int(22 * scale * 0.85**i)) for i in range(1, DAYS - len(rise) + 1)]
    return rise + fall


def trend_query(**params: str) -> object:
    return new_query("trend", start=None, end=END, params=params, coordinator="nhc-national", data_start=START)


def test_trend_plans_one_round_from_the_data_start() -> None:
    query = new_query("trend", start=None, end=END, params={"by": "onset"}, coordinator="x", data_start=START)
    (confirmed,) = kind("trend").rounds(query, REGISTRY, NATIONAL)
    assert (confirmed.aggregate, confirmed.start, confirmed.end, dict(confirmed.params)) == (
        "health.confirmed_daily",
        START,
        END,
        {"date": "onset"},
    )
    assert confirmed.length == len(REGISTRY) * DAYS * 2
    with pytest.raises(InvalidQuery, match="--si-mean"):
        new_query("trend", start=START, end=END, params={"si_mean": "1"}, coordinator="x")
    with pytest.raises(InvalidQuery, match="--level 'county' is not one of"):
        new_query("trend", start=START, end=END, params={"level": "county"}, coordinator="x")


def test_trend_suppresses_small_counts_and_withholds_rt_below_12_cases() -> None:
    small = [0] * DAYS
    small[20] = 2
    sums = {
        "confirmed": confirmed_sum(
            {
                WUHAN_A: (epidemic(3), [1] * 5 + [0] * (DAYS - 5)),
                WUHAN_B: (epidemic(1), [0] * DAYS),
                CHANGSHA: (small, [0] * DAYS),
            }
        )
    }
    query = new_query("trend", start=None, end=END, params={}, coordinator="x", data_start=START)
    result = kind("trend").release(query, Release(REGISTRY, sums, mobility_k=15, cases_k=3))
    rows: list[dict[str, Any]] = [dict(zip(result.columns, r, strict=True)) for r in result.rows]
    assert {r["area"] for r in rows} == {WUHAN_A, WUHAN_B, CHANGSHA}
    changsha = [r for r in rows if r["area"] == CHANGSHA]
    assert changsha[20]["confirmed"] is None and changsha[20]["local"] is None and changsha[19]["confirmed"] == 0
    assert all(r["r_mean"] is None for r in changsha)  # never 12 cases in a window
    wuhan = [r for r in rows if r["area"] == WUHAN_A]
    assert wuhan[0]["imported"] is None  # 1 < k
    assert wuhan[0]["local"] == 3 and wuhan[0]["confirmed"] == 4  # first-day cases stay local in the table
    assert all(r["r_mean"] is None for r in wuhan[:7]) and wuhan[20]["r_mean"] is not None
    assert wuhan[20]["r_lower"] < wuhan[20]["r_mean"] < wuhan[20]["r_upper"]
    assert result.suppressed == sum(r[c] is None for r in rows for c in ("confirmed", "local", "imported"))
    areas: dict[Any, dict[str, Any]] = {
        r[0]: dict(zip(result.tables[0].columns, r, strict=True)) for r in result.tables[0].rows
    }
    assert areas[CHANGSHA]["cases"] is None and areas[CHANGSHA]["peak_date"] is None
    assert areas[WUHAN_A]["growth_rate"] < 0 and areas[WUHAN_A]["halving_days"] > 0
    assert areas[WUHAN_A]["doubling_days"] is None
    assert areas[WUHAN_A]["peak_date"] is not None and areas[WUHAN_A]["turning_point"] is not None


def test_trend_levels_and_provincial_scope() -> None:
    sums = {"confirmed": confirmed_sum({WUHAN_A: (epidemic(2), [0] * DAYS), CHANGSHA: (epidemic(1), [0] * DAYS)})}
    query = new_query("trend", start=None, end=END, params={"level": "province"}, coordinator="x", data_start=START)
    everyone = kind("trend").release(query, Release(REGISTRY, sums, 15, 3))
    assert sorted({int(str(r[0])) for r in everyone.rows}) == [42, 43]
    hubei_sums = limited_sums(query, sums, REGISTRY, Scope(42))
    hubei = kind("trend").release(query, Release(REGISTRY, hubei_sums, 15, 3, Scope(province=42)))
    assert {r[0] for r in hubei.rows} == {42} and {r[0] for r in hubei.tables[0].rows} == {42}
    national = new_query("trend", start=None, end=END, params={"level": "national"}, coordinator="x", data_start=START)
    (row,) = kind("trend").release(national, Release(REGISTRY, sums, 15, 3)).tables[0].rows
    assert row[0] == 0 and row[2] == sum(epidemic(2)) + sum(epidemic(1))


def test_peak_and_turning_point_rules() -> None:
    counts = np.array([[0, 1, 2, 9, 9, 9, 9, 9, 9, 9, 5, 3, 1, 0, 0, 0]])
    assert peak_day(counts).tolist() == [9]  # days 3..9 hold 63, days 4..10 hold 59
    # Equal trailing means: the first day wins.
    assert peak_day(np.array([[9] * 7 + [0] * 7 + [9] * 7])).tolist() == [6]
    assert peak_day(np.zeros((1, 10), dtype=np.int64)).tolist() == [-1]
    upper = np.full((1, 16), 1.2)
    upper[0, 10:] = 0.8
    assert turning_point(upper, np.array([9])).tolist() == [-1]  # days 10..16 needed, the series ends on 15
    upper[0, 9:] = 0.8
    assert turning_point(upper, np.array([8])).tolist() == [9]
    upper[0, 12] = np.nan  # a withheld Rt breaks the run
    assert turning_point(upper, np.array([8])).tolist() == [-1]


def warning_sums(
    daily: dict[int, list[int]], clusters: dict[int, list[int]], trips: dict[tuple[int, int], int]
) -> dict[str, np.ndarray]:
    n = len(REGISTRY)
    grid = np.zeros((n, DAYS, 2), dtype=np.uint64)
    for code, series in daily.items():
        grid[position(code), :, 0] = series
    cluster_grid = np.zeros((n, DAYS), dtype=np.uint64)
    for code, series in clusters.items():
        cluster_grid[position(code)] = series
    flows = np.zeros((n, n), dtype=np.uint64)
    for (origin, destination), count in trips.items():
        flows[position(origin), position(destination)] = count
    residents = np.full(n, 100, dtype=np.uint64)
    # The two totals the last day's tier rests on (health.cases, confirmed column): the daily series' sums.
    new_cases = np.zeros((n, 3), dtype=np.uint64)
    new_cases[:, 0] = grid[:, -14:, :].sum(axis=(1, 2))
    cumulative = np.zeros((n, 3), dtype=np.uint64)
    cumulative[:, 0] = grid.sum(axis=(1, 2))
    return {
        "confirmed": grid.reshape(-1),
        "clusters": cluster_grid.reshape(-1),
        "trips": flows.reshape(-1),
        "residents": residents,
        "new_cases": new_cases.reshape(-1),
        "cumulative_cases": cumulative.reshape(-1),
        # Every cluster of these sums has two cases.
        "cluster_cases": 2 * cluster_grid[:, -1],
    }


def test_warning_plans_tiers_alerts_and_disclosure() -> None:
    query = new_query("warning", start=None, end=END, params={}, coordinator="x", data_start=START)
    plans = kind("warning").rounds(query, REGISTRY, NATIONAL)
    assert [(p.name, p.aggregate, p.start, p.end) for p in plans] == [
        ("confirmed", "health.confirmed_daily", START, END),
        ("clusters", "health.clusters", START, END),
        ("trips", "telecom.trips", END - dt.timedelta(days=13), END),
        ("residents", "telecom.residents", None, None),
        ("new_cases", "health.cases", END - dt.timedelta(days=13), END),
        ("cumulative_cases", "health.cases", START, END),
        ("cluster_cases", "health.cluster_cases", END - dt.timedelta(days=13), END),
    ]
    wuhan = [3] * DAYS  # 120 cumulative, cases every day
    wuhan_clusters = [0] * DAYS
    wuhan_clusters[-1] = 1
    changsha = [0] * DAYS
    changsha[-20] = 2  # day 20 of 0..39: medium on days 20..33, low from day 34
    sums = warning_sums(
        {WUHAN_A: wuhan, CHANGSHA: changsha, WUHAN_B: [0] * (DAYS - 1) + [1]},
        {WUHAN_A: wuhan_clusters},
        {(WUHAN_A, CHANGSHA): 40, (WUHAN_A, WUHAN_B): 5},
    )
    result = kind("warning").release(query, Release(REGISTRY, sums, mobility_k=15, cases_k=3))
    rows = {r[0]: dict(zip(result.columns, r, strict=True)) for r in result.rows}
    assert len(rows) == len(REGISTRY)
    assert rows[WUHAN_A]["tier"] == "high" and rows[WUHAN_A]["tier_since"] == END.isoformat()
    assert rows[WUHAN_A]["cumulative"] == 3 * DAYS and rows[WUHAN_A]["clusters_14d"] is None  # 1 < k
    assert rows[WUHAN_B]["tier"] == "medium" and rows[WUHAN_B]["new_14d"] is None
    assert rows[CHANGSHA]["tier"] == "low" and rows[CHANGSHA]["cumulative"] is None
    assert rows[CHANGSHA]["tier_since"] == (END - dt.timedelta(days=5)).isoformat()
    # I(Changsha) = 40 trips * 42 new cases / 100 residents: alert; Wuhan B's inflow 5 < k: withheld.
    assert rows[CHANGSHA]["importation_alert"] is True and rows[WUHAN_B]["importation_alert"] is None
    assert rows[WUHAN_A]["c1"] is False  # a flat series is no aberration
    assert rows[WUHAN_B]["c1"] is True  # first case after days of zeros (sd 0)
    rank = {"high": 0, "medium": 1, "low": 2}
    assert [rank[str(r[3])] for r in result.rows] == sorted(rank[str(r[3])] for r in result.rows)
    assert [r[0] for r in result.rows[:2]] == [WUHAN_A, WUHAN_B]
    hubei_sums = limited_sums(query, sums, REGISTRY, Scope(42))
    hubei = kind("warning").release(query, Release(REGISTRY, hubei_sums, 15, 3, Scope(province=42)))
    assert all(int(str(r[0])) // 10_000 == 42 for r in hubei.rows)
