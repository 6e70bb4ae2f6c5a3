"""The query catalog on small hand-built sums: joins, disclosure control, ordering, and the importation index
against a hand computation."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from datetime import date

import numpy as np
import pytest
from numpy.typing import NDArray

from broker.catalog import CATALOG, build_result, cases, flows, importation_risk, population, query_kind
from broker.catalog.importation_risk import exact_values, importation_index, importation_probability
from broker.result import Cell, QueryResult
from federation.errors import InvalidQuery, UnknownDistrict, VectorMismatch
from federation.queries import QUERY_KINDS, Query, plan_rounds
from federation.registry import Registry, load_registry

NONCE = "0123456789abcdef0123456789abcdef"
REGISTRY = Registry.from_columns(
    [420102, 420103, 420104, 430102, 440103, 440104],
    ["江岸区", "江汉区", "硚口区", "芙蓉区", "荔湾区", "越秀区"],
    ["武汉市", "武汉市", "武汉市", "长沙市", "广州市", "广州市"],
    ["湖北省", "湖北省", "湖北省", "湖南省", "广东省", "广东省"],
    [114.3, 114.27, 114.26, 112.98, 113.24, 113.27],
    [30.6, 30.6, 30.57, 28.2, 23.13, 23.13],
)

# Trips origin × destination over the window (o → d); the diagonal (4, 4) is never a trip between districts.
F = np.zeros((6, 6), dtype=np.int64)
for (o, d), trips in {
    (0, 1): 100,
    (0, 3): 40,
    (0, 4): 10,
    (1, 0): 50,
    (1, 3): 20,
    (2, 3): 40,
    (2, 4): 3,
    (3, 4): 200,
    (4, 0): 5,
    (4, 2): 4,
    (4, 4): 7,
}.items():
    F[o, d] = trips
CONFIRMED = np.array([20, 10, 0, 2, 1, 0])
RESIDENTS = np.array([1000, 500, 400, 0, 100, 50])  # 430102: cases but no residents counted


def query(kind: str, start: str = "2020-01-07", end: str = "2020-01-20", **params: str) -> Query:
    return Query(
        kind, date.fromisoformat(start), date.fromisoformat(end), params, "ncov-national", NONCE, "2026-11-29T05:00:00Z"
    )


def u64(values: NDArray[np.integer]) -> NDArray[np.uint64]:
    return np.asarray(values).reshape(-1).astype(np.uint64)


def risk_sums() -> dict[str, NDArray[np.uint64]]:
    health = np.zeros((6, 3), dtype=np.int64)
    health[:, 0] = CONFIRMED
    health[:, 1] = 99  # suspected and close contacts never enter the index
    health[:, 2] = 77
    return {"trips": u64(F), "residents": u64(RESIDENTS), "confirmed": u64(health)}


def column(result: QueryResult, name: str) -> list[Cell]:
    i = result.columns.index(name)
    return [row[i] for row in result.rows]


# --- catalog -------------------------------------------------------------------------------------------------


def test_catalog_covers_every_kind() -> None:
    assert tuple(CATALOG) == QUERY_KINDS
    assert query_kind("importation-risk") is importation_risk
    assert {kind: CATALOG[kind].disclosure_kind for kind in QUERY_KINDS} == {
        "population": "mobility",
        "flows": "mobility",
        "cases": "cases",
        "importation-risk": "mobility",
    }
    with pytest.raises(InvalidQuery, match="known kinds: population, flows, cases, importation-risk"):
        query_kind("rt")


def test_round_names_match_plans() -> None:
    assert [p.name for p in plan_rounds(query("importation-risk", window_days="14"))] == list(risk_sums())


def test_missing_or_wrong_length_sum_refused() -> None:
    with pytest.raises(VectorMismatch, match="no sum for round 'residents'"):
        build_result(query("importation-risk"), REGISTRY, {"trips": u64(F)}, 15)
    with pytest.raises(VectorMismatch, match="35 cells, expected 36"):
        build_result(query("flows"), REGISTRY, {"trips": u64(F)[:-1]}, 15)


# --- population ------------------------------------------------------------------------------------------------


def test_population_rows_and_suppression() -> None:
    presence = np.array([[0, 15], [14, 300], [1, 2], [16, 16], [15, 0], [500, 501]])
    result = population.build_result(
        query("population", "2020-01-19", "2020-01-20"), REGISTRY, {"presence": u64(presence)}, 15
    )
    assert result.columns == ("district", "name", "date", "count")
    assert result.rows[:4] == [
        (420102, "江岸区", "2020-01-19", 0),
        (420102, "江岸区", "2020-01-20", 15),
        (420103, "江汉区", "2020-01-19", None),
        (420103, "江汉区", "2020-01-20", 300),
    ]
    assert len(result.rows) == 12
    assert result.suppressed == 3
    assert column(result, "count").count(None) == 3
    restricted = population.build_result(
        query("population", "2020-01-19", "2020-01-20", districts="440104,420104"),
        REGISTRY,
        {"presence": u64(presence)},
        15,
    )
    assert restricted.rows == [
        (420104, "硚口区", "2020-01-19", None),
        (420104, "硚口区", "2020-01-20", None),
        (440104, "越秀区", "2020-01-19", 500),
        (440104, "越秀区", "2020-01-20", 501),
    ]
    assert restricted.suppressed == 2


def test_unknown_district_in_filter() -> None:
    with pytest.raises(UnknownDistrict, match="110101"):
        population.build_result(
            query("population", "2020-01-20", "2020-01-20", districts="110101"),
            REGISTRY,
            {"presence": np.zeros(6, dtype=np.uint64)},
            15,
        )


# --- cases -----------------------------------------------------------------------------------------------------


def test_cases_rows_only_districts_with_cases_small_cells_hidden() -> None:
    counts = np.array([[12, 2, 40], [0, 0, 0], [1, 0, 0], [3, 3, 0], [0, 0, 0], [0, 5, 1]])
    result = cases.build_result(query("cases"), REGISTRY, {"cases": u64(counts)}, 3)
    assert result.columns == ("district", "name", "confirmed", "suspected", "close_contact")
    assert result.rows == [
        (420102, "江岸区", 12, None, 40),
        (420104, "硚口区", None, 0, 0),
        (430102, "芙蓉区", 3, 3, 0),
        (440104, "越秀区", 0, 5, None),
    ]
    assert result.suppressed == 3
    only = cases.build_result(query("cases", districts="430102,420103"), REGISTRY, {"cases": u64(counts)}, 3)
    assert only.rows == [(430102, "芙蓉区", 3, 3, 0)]
    assert only.suppressed == 0


# --- flows -----------------------------------------------------------------------------------------------------


def test_flows_sorted_small_pairs_dropped_and_counted() -> None:
    result = flows.build_result(query("flows"), REGISTRY, {"trips": u64(F)}, 15)
    assert result.columns == ("origin", "origin_name", "destination", "destination_name", "trips")
    assert [(r[0], r[2], r[4]) for r in result.rows] == [
        (430102, 440103, 200),
        (420102, 420103, 100),
        (420103, 420102, 50),
        (420102, 430102, 40),  # tie with 420104 → 430102, broken by origin code
        (420104, 430102, 40),
        (420103, 430102, 20),
    ]
    assert result.rows[0][1] == "芙蓉区" and result.rows[0][3] == "荔湾区"
    assert result.suppressed == 4  # 10, 3, 5 and 4 trips; the 7 on the diagonal is not a pair
    assert all(row[4] is not None for row in result.rows)
    assert "source: telecom" in result.notes


def test_flows_transport_and_district_filter() -> None:
    result = flows.build_result(
        query("flows", districts="430102", source="transport", mode="rail"), REGISTRY, {"trips": u64(F)}, 15
    )
    assert [(r[0], r[2], r[4]) for r in result.rows] == [
        (430102, 440103, 200),
        (420102, 430102, 40),
        (420104, 430102, 40),
        (420103, 430102, 20),
    ]
    assert result.suppressed == 0
    assert "source: transport, mode: rail" in result.notes
    assert flows.build_result(query("flows", districts="440104"), REGISTRY, {"trips": u64(F)}, 15).rows == []


# --- importation risk ------------------------------------------------------------------------------------------


def test_importation_index_matches_hand_computation() -> None:
    index = importation_index(F, CONFIRMED, RESIDENTS)
    weights = [0.02, 0.02, 0.0, 0.0, 0.01, 0.0]  # C/N, 0 where N = 0
    hand = [
        50 * weights[1] + 5 * weights[4],  # 1.05
        100 * weights[0],  # 2.0
        4 * weights[4],  # 0.04
        40 * weights[0] + 20 * weights[1] + 40 * weights[2],  # 1.2
        10 * weights[0] + 3 * weights[2] + 200 * weights[3],  # 0.2, the diagonal 7 excluded
        0.0,
    ]
    assert index.tolist() == pytest.approx(hand, rel=1e-12, abs=0)
    probability = importation_probability(index)
    assert probability.tolist() == pytest.approx([1 - math.exp(-i) for i in hand], rel=1e-12)
    exact = exact_values(query("importation-risk"), REGISTRY, risk_sums())
    assert np.array_equal(exact.index, index)
    assert exact.confirmed.tolist() == CONFIRMED.tolist()
    assert exact.inflow.tolist() == [55, 100, 4, 100, 213, 0]


def test_importation_rows_alerts_top_origins_suppression() -> None:
    result = importation_risk.build_result(query("importation-risk"), REGISTRY, risk_sums(), 15)
    assert result.columns == (
        "district",
        "name",
        "province",
        "importation_index",
        "probability",
        "inflow",
        "top_origins",
        "alert",
    )
    assert column(result, "district") == [420103, 430102, 420102, 440103]
    assert column(result, "importation_index") == pytest.approx([2.0, 1.2, 1.05, 0.2], rel=1e-12)
    assert column(result, "probability") == pytest.approx([1 - math.exp(-i) for i in (2.0, 1.2, 1.05, 0.2)])
    assert column(result, "inflow") == [100, 100, 55, 213]
    assert column(result, "province") == ["湖北省", "湖南省", "湖北省", "广东省"]
    assert column(result, "alert") == [True, True, True, False]
    assert column(result, "top_origins") == [
        "420102 江岸区 (100.0%)",
        "420102 江岸区 (66.7%); 420103 江汉区 (33.3%)",
        "420103 江汉区 (95.2%)",  # 440103 sends only 5 (< k): counted in I_d, never named
        "",  # its whole index comes from a flow of 10 (< k)
    ]
    assert result.suppressed == 1  # 420104: inflow 4
    assert "destinations with no inflow not listed (I_d = 0): 1" in result.notes
    assert "origins with confirmed cases but no residents counted, contributing 0: 1" in result.notes


def test_importation_threshold_top_and_districts() -> None:
    result = importation_risk.build_result(
        query("importation-risk", threshold="1.1", top="1", districts="430102,420102,420104"),
        REGISTRY,
        risk_sums(),
        15,
    )
    assert column(result, "district") == [430102, 420102]
    assert column(result, "alert") == [True, False]
    assert column(result, "top_origins") == ["420102 江岸区 (66.7%)", "420103 江汉区 (95.2%)"]
    assert result.suppressed == 1
    low_k = importation_risk.build_result(query("importation-risk"), REGISTRY, risk_sums(), 1)
    assert low_k.suppressed == 0
    assert column(low_k, "district") == [420103, 430102, 420102, 440103, 420104]
    assert column(low_k, "top_origins")[2] == "420103 江汉区 (95.2%); 440103 荔湾区 (4.8%)"


def test_result_json_shape() -> None:
    result = build_result(query("importation-risk"), REGISTRY, risk_sums(), 15)
    contributors: Mapping[str, Mapping[str, list[str]]] = {
        "trips": {"contributed": ["telecom-a", "telecom-b"], "missing": []}
    }
    encoded = json.loads(json.dumps(result.to_json_dict(contributors), ensure_ascii=False))
    assert encoded["query"]["kind"] == "importation-risk"
    assert encoded["query"]["start"] == "2020-01-07"
    assert encoded["columns"] == list(result.columns)
    assert encoded["rows"][0][:3] == [420103, "江汉区", "湖北省"]
    assert encoded["suppressed"] == 1
    assert encoded["contributors"] == contributors


def test_national_scale_is_vectorised() -> None:
    registry = load_registry()
    n = len(registry)
    rng = np.random.default_rng(7)
    trips = np.zeros((n, n), dtype=np.int64)
    origin, destination = rng.integers(0, n, size=(2, 200_000))
    np.add.at(trips, (origin, destination), rng.integers(1, 60, size=origin.shape[0]))
    confirmed = rng.poisson(0.5, size=n)
    residents = rng.integers(0, 100_000, size=n)
    health = np.zeros((n, 3), dtype=np.int64)
    health[:, 0] = confirmed
    sums = {"trips": u64(trips), "residents": u64(residents), "confirmed": u64(health)}
    began = time.perf_counter()
    result = importation_risk.build_result(query("importation-risk"), registry, sums, 15)
    assert time.perf_counter() - began < 10
    # Spot-check one destination against a plain-Python sum.
    top = result.rows[0]
    d = int(registry.index_of(np.array([top[0]]))[0])
    plain = sum(trips[o, d] * confirmed[o] / residents[o] for o in range(n) if o != d and residents[o] > 0)
    assert top[3] == pytest.approx(plain, rel=1e-9)
