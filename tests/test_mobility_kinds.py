"""The outflow and exposure kinds on hand-built sums: rounds, areas, disclosure, the fit, provincial scope."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest
from numpy.typing import NDArray

from federation.catalog import NATIONAL, Release, Scope, kind, new_query
from federation.catalog.result import Cell, QueryResult
from federation.errors import InvalidQuery, UnknownDistrict
from federation.queries import Query
from federation.registry import Registry
from tests.layouts import limited_sums

NONCE = "0123456789abcdef0123456789abcdef"
# Wuhan (two districts), Xiaogan (two), Changsha (two), Guangzhou (one).
CODES = [420102, 420103, 420902, 420921, 430102, 430103, 440103]
REGISTRY = Registry.from_columns(
    CODES,
    ["江岸区", "江汉区", "孝南区", "孝昌县", "芙蓉区", "天心区", "荔湾区"],
    ["武汉市", "武汉市", "孝感市", "孝感市", "长沙市", "长沙市", "广州市"],
    ["湖北省", "湖北省", "湖北省", "湖北省", "湖南省", "湖南省", "广东省"],
    [114.3, 114.27, 113.9, 113.8, 112.98, 112.97, 113.24],
    [30.6, 30.6, 30.9, 31.2, 28.2, 28.1, 23.13],
)
END = date(2020, 1, 23)


def query(kind_name: str, **params: str) -> Query:
    return new_query(kind_name, start=None, end=END, params=params, coordinator="nhc-national")


def u64(values: list[int] | NDArray[np.integer]) -> NDArray[np.uint64]:
    return np.asarray(values).reshape(-1).astype(np.uint64)


def release(
    q: Query, sums: dict[str, NDArray[np.uint64]], k: int = 15, cases_k: int = 3, province: int | None = None
) -> QueryResult:
    if province is not None:  # the rounds a provincial coordinator's query runs carry only its cells
        sums = limited_sums(q, sums, REGISTRY, Scope(province))
    return kind(q.kind).release(q, Release(REGISTRY, sums, mobility_k=k, cases_k=cases_k, scope=Scope(province)))


def rows_by(result: QueryResult, key: str) -> dict[Cell, dict[str, Cell]]:
    at = result.columns.index(key)
    return {row[at]: dict(zip(result.columns, row, strict=True)) for row in result.rows}


def confirmed_sums(confirmed: list[int]) -> NDArray[np.uint64]:
    cases = np.zeros((len(CODES), 3), dtype=np.int64)
    cases[:, 0] = confirmed
    cases[:, 1] = 50  # suspected and close contacts never count
    return u64(cases)


# --- outflow ----------------------------------------------------------------------------------------------------

ARRIVALS = [7, 3, 400, 60, 90, 14, 30]  # the first two are inside the home region 4201
CONFIRMED = [500, 80, 40, 2, 6, 9, 0]


def test_outflow_rounds_follow_the_signed_query() -> None:
    q = query("outflow", home="4201", cases_end="2020-02-05")
    arrivals, confirmed = kind("outflow").rounds(q, REGISTRY, NATIONAL)
    assert (arrivals.aggregate, arrivals.start, arrivals.end) == ("telecom.arrivals", date(2020, 1, 10), END)
    assert arrivals.params == {"home_prefix": "4201"} and arrivals.length == len(CODES)
    assert (confirmed.aggregate, confirmed.start, confirmed.end) == (
        "health.cases",
        date(2020, 1, 10),
        date(2020, 2, 5),
    )
    with pytest.raises(InvalidQuery, match="--cases-end"):
        query("outflow", home="4201", cases_end="2020-01-20")
    with pytest.raises(InvalidQuery, match="needs --home"):
        query("outflow")
    with pytest.raises(InvalidQuery, match="--home"):
        query("outflow", home="421")


def test_outflow_by_district_lists_destinations_outside_the_home_region() -> None:
    result = release(query("outflow", home="4201"), {"arrivals": u64(ARRIVALS), "confirmed": confirmed_sums(CONFIRMED)})
    rows = rows_by(result, "area")
    # 420921 (2 cases) shows arrivals but withholds its case count; 430103 (14 arrivals) is dropped.
    assert list(rows) == [420902, 430102, 420921, 440103]
    assert rows[420902]["arrivals"] == 400 and rows[420902]["confirmed"] == 40
    assert rows[420902]["cases_per_10k"] == pytest.approx(1000.0)
    assert rows[420921]["confirmed"] is None and rows[420921]["cases_per_10k"] is None
    assert rows[420921]["expected"] is None and rows[420921]["flag"] is None
    assert rows[440103]["confirmed"] == 0 and rows[440103]["cases_per_10k"] == 0.0
    assert result.suppressed == 2  # one dropped destination, one withheld case count
    # Three points with released cases: the fit is a real OLS over them, identical to a hand computation.
    (fit,) = result.table("fit").rows
    fit_row = dict(zip(result.table("fit").columns, fit, strict=True))
    x = [math.log1p(a) for a in (400, 90, 30)]
    y = [math.log1p(c) for c in (40, 6, 0)]
    mx, my = sum(x) / 3, sum(y) / 3
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sum((a - mx) ** 2 for a in x)
    assert fit_row["n"] == 3 and fit_row["slope"] == pytest.approx(slope, rel=1e-12)
    assert fit_row["intercept"] == pytest.approx(my - slope * mx, rel=1e-12)
    expected = math.expm1(fit_row["intercept"] + slope * math.log1p(400))  # type: ignore[operator]
    assert rows[420902]["expected"] == pytest.approx(expected, rel=1e-12)
    assert {rows[c]["flag"] for c in (420902, 430102, 440103)} <= {"above", "below", "within"}


def test_outflow_by_prefecture_sums_districts_outside_the_home_region() -> None:
    q = query("outflow", home="420102", level="prefecture")
    result = release(q, {"arrivals": u64(ARRIVALS), "confirmed": confirmed_sums(CONFIRMED)}, k=5)
    rows = rows_by(result, "area")
    # Home is one Wuhan district: the other one still counts for Wuhan (4201).
    assert 4201 not in rows  # 3 arrivals < k = 5: dropped
    assert rows[4209] == {
        "area": 4209,
        "name": "孝感市",
        "province": "湖北省",
        "arrivals": 460,
        "confirmed": 42,
        "cases_per_10k": pytest.approx(10_000 * 42 / 460),
        "expected": rows[4209]["expected"],
        "residual": rows[4209]["residual"],
        "flag": rows[4209]["flag"],
    }
    assert rows[4301]["arrivals"] == 104 and rows[4301]["confirmed"] == 15
    assert list(rows) == [4209, 4301, 4401]
    assert result.table("fit").rows[0][3] == 3


def test_outflow_too_few_points_has_no_fit_and_a_province_sees_its_own() -> None:
    sums = {"arrivals": u64(ARRIVALS), "confirmed": confirmed_sums(CONFIRMED)}
    result = release(query("outflow", home="4201"), sums, province=43)
    assert [row[0] for row in result.rows] == [430102]  # 430103 has 14 arrivals
    fit = dict(zip(result.table("fit").columns, result.table("fit").rows[0], strict=True))
    assert fit["n"] == 1 and fit["slope"] is None and fit["intercept"] is None
    assert rows_by(result, "area")[430102]["flag"] is None


# --- exposure ---------------------------------------------------------------------------------------------------

EXPOSED = [300, 40, 20, 3, 15, 0, 0]
PRESENT = [900, 800, 400, 100, 600, 500, 0]


def exposure_sums() -> dict[str, NDArray[np.uint64]]:
    return {"exposure": u64(np.stack([EXPOSED, PRESENT], axis=1))}


def test_exposure_round_carries_the_risk_list_ascending() -> None:
    q = query("exposure", risk_districts="420103, 420102,420103")
    (round_plan,) = kind("exposure").rounds(q, REGISTRY, NATIONAL)
    assert round_plan.aggregate == "telecom.exposure" and round_plan.params == {"risk_districts": "420102,420103"}
    assert (round_plan.start, round_plan.end, round_plan.length) == (date(2020, 1, 10), END, 2 * len(CODES))
    with pytest.raises(UnknownDistrict, match="110101"):
        kind("exposure").rounds(query("exposure", risk_districts="110101"), REGISTRY, NATIONAL)
    with pytest.raises(InvalidQuery, match="needs --risk-districts"):
        query("exposure")


def test_exposure_rows_disclosure_and_order() -> None:
    result = release(query("exposure", risk_districts="420102,420103"), exposure_sums())
    assert [row[0] for row in result.rows] == [420102, 420103, 420902, 430102, 430103, 420921]
    rows = rows_by(result, "district")
    assert rows[420102]["exposed"] == 300 and rows[420102]["exposed_share"] == pytest.approx(300 / 900)
    assert rows[420921]["exposed"] is None and rows[420921]["exposed_share"] is None  # 3 < k
    assert rows[430103]["exposed"] == 0 and rows[430103]["exposed_share"] == 0.0
    assert 440103 not in rows  # nobody present
    assert result.suppressed == 1
    small = release(query("exposure", risk_districts="420102"), exposure_sums(), k=200)
    rows = rows_by(small, "district")
    assert rows[420102]["exposed"] == 300 and rows[420921]["present"] is None
    assert rows[420103]["exposed"] is None and rows[420103]["exposed_share"] is None
    provincial = release(query("exposure", risk_districts="420102"), exposure_sums(), province=43)
    assert [row[0] for row in provincial.rows] == [430102, 430103]


# --- return-to-work ---------------------------------------------------------------------------------------------

BASELINE = np.array(
    [
        [900, 910, 905, 880, 920],
        [800, 790, 805, 810, 795],
        [400, 410, 390, 405, 395],
        [100, 104, 98, 102, 10],  # one small baseline day: its baseline is withheld
        [100, 120, 110, 90, 130],
        [500, 500, 500, 500, 500],
        [0, 0, 0, 0, 0],
    ]
)
WINDOW = np.array([[700] * 7, [600] * 7, [420] * 7, [100] * 7, [80] * 7, [450, 460, 440, 450, 455, 445, 450], [0] * 7])


def rtw_sums() -> dict[str, NDArray[np.uint64]]:
    n = len(CODES)
    trips = np.zeros((n, n), dtype=np.int64)
    trips[0, 4] = 40  # Wuhan A (high) -> Changsha A
    trips[1, 4] = 20  # Wuhan B (medium) -> Changsha A
    trips[2, 4] = 30  # Xiaogan A (medium: 60 cases, no cluster) -> Changsha A
    trips[3, 4] = 16  # Xiaogan B (low: 100 cases, none new) -> Changsha A
    trips[5, 4] = 4  # Changsha B (low) -> Changsha A: with the one above, low inflow 20
    trips[4, 5] = 9  # Changsha A (low) -> Changsha B: below k
    trips[4, 4] = 99  # the diagonal is never inflow
    new = np.zeros((n, 3), dtype=np.int64)
    new[:, 0] = [30, 5, 3, 0, 0, 0, 0]
    new[:, 1] = 40  # suspected rows never count
    cumulative = np.zeros((n, 3), dtype=np.int64)
    cumulative[:, 0] = [60, 10, 60, 100, 0, 0, 0]
    in_clusters = np.zeros(n, dtype=np.int64)
    in_clusters[0] = 2  # one cluster of two cases in the 14 days ending --end: Wuhan A is high
    return {
        "baseline": u64(BASELINE),
        "presence": u64(WINDOW),
        "trips": u64(trips),
        "new_cases": u64(new),
        "cumulative_cases": u64(cumulative),
        "cluster_cases": u64(in_clusters),
    }


def rtw_query(**params: str) -> Query:
    return query(
        "return-to-work", baseline_start="2020-01-01", baseline_end="2020-01-05", cases_start="2020-01-01", **params
    )


def test_return_to_work_rounds_and_checks() -> None:
    plans = {p.name: p for p in kind("return-to-work").rounds(rtw_query(), REGISTRY, NATIONAL)}
    assert [(p.aggregate, p.start, p.end) for p in plans.values()] == [
        ("telecom.presence", date(2020, 1, 1), date(2020, 1, 5)),
        ("telecom.presence", date(2020, 1, 17), END),
        ("telecom.trips", date(2020, 1, 17), END),
        ("health.cases", date(2020, 1, 10), END),
        ("health.cases", date(2020, 1, 1), END),
        ("health.cluster_cases", date(2020, 1, 10), END),
    ]
    signed = new_query(
        "return-to-work",
        start=None,
        end=END,
        params={"baseline_start": "2020-01-01", "baseline_end": "2020-01-05"},
        coordinator="nhc-national",
        data_start=date(2019, 12, 1),
    )
    assert signed.params["cases_start"] == "2019-12-01"  # the data's first day, signed
    with pytest.raises(InvalidQuery, match="needs --cases-start"):
        query("return-to-work", baseline_start="2020-01-01", baseline_end="2020-01-05")
    with pytest.raises(InvalidQuery, match="end before the window"):
        rtw_query(window_days="20")
    with pytest.raises(InvalidQuery, match="needs --baseline-start"):
        query("return-to-work", baseline_end="2020-01-05", cases_start="2020-01-01")


def test_return_to_work_baseline_change_and_inflow_by_tier() -> None:
    result = release(rtw_query(), rtw_sums())
    rows = rows_by(result, "district")
    assert list(rows) == CODES
    assert rows[420102]["baseline"] == 905.0 and rows[420102]["presence"] == 700.0
    assert rows[420102]["change_pct"] == pytest.approx(100 * (700 - 905) / 905)
    assert rows[430102]["baseline"] == 110.0 and rows[430102]["presence"] == 80.0
    assert rows[430102]["change_pct"] == pytest.approx(-100 * 30 / 110)
    assert rows[430103]["presence"] == pytest.approx(450.0)
    # One baseline day of 10 < k withholds 420921's baseline and change, not its presence.
    assert rows[420921]["baseline"] is None and rows[420921]["change_pct"] is None and rows[420921]["presence"] == 100.0
    # Nobody there: zeros are released, the change has no baseline to compare with.
    assert (rows[440103]["baseline"], rows[440103]["presence"], rows[440103]["change_pct"]) == (0.0, 0.0, None)
    inflow = {c: (r["inflow_from_high"], r["inflow_from_medium"], r["inflow_from_low"]) for c, r in rows.items()}
    assert inflow[430102] == (40, 50, 20)
    assert inflow[430103] == (0, 0, None)  # 9 trips from a low-tier origin: below k
    assert result.suppressed == 2
    assert release(rtw_query(), rtw_sums(), province=43).rows == [r for r in result.rows if str(r[0]).startswith("43")]
