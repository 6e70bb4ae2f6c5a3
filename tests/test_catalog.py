"""The query catalog on small hand-built sums: joins, disclosure control, ordering, and the importation index
against a hand computation."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date

import numpy as np
import pytest
from numpy.typing import NDArray

from federation.catalog import KINDS, NATIONAL, Release, Scope, kind
from federation.catalog.importation_risk import importation_index, importation_probability
from federation.catalog.result import Cell, QueryResult
from federation.errors import InvalidQuery, UnknownDistrict, VectorMismatch
from federation.queries import Query
from federation.registry import Registry, load_registry
from tests.layouts import limited_sums

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


def build(
    q: Query,
    sums: Mapping[str, NDArray[np.uint64]],
    k: int,
    registry: Registry = REGISTRY,
    province: int | None = None,
    cases_k: int | None = None,
) -> QueryResult:
    """The kind's release of ``q`` with both thresholds at ``k`` (or cases at ``cases_k``), for the whole domain
    or one province."""
    cases = k if cases_k is None else cases_k
    if province is not None:  # the rounds a provincial coordinator's query runs carry only its cells
        sums = limited_sums(q, sums, registry, Scope(province))
    release = Release(registry=registry, sums=sums, mobility_k=k, cases_k=cases, scope=Scope(province))
    return kind(q.kind).release(q, release)


def column(result: QueryResult, name: str) -> list[Cell]:
    i = result.columns.index(name)
    return [row[i] for row in result.rows]


# --- catalog -------------------------------------------------------------------------------------------------


def test_catalog_covers_every_kind() -> None:
    assert kind("importation-risk") is KINDS["importation-risk"]
    assert {name: entry.disclosure for name, entry in KINDS.items() if name in ("population", "cases")} == {
        "population": "mobility",
        "cases": "cases",
    }
    with pytest.raises(InvalidQuery, match="known kinds: population, flows, cases, importation-risk"):
        kind("rt")


def test_round_names_match_plans() -> None:
    plans = kind("importation-risk").rounds(query("importation-risk", window_days="14"), REGISTRY, NATIONAL)
    assert [p.name for p in plans] == list(risk_sums())
    assert [p.length for p in plans] == [36, 6, 18]


def test_missing_or_wrong_length_sum_refused() -> None:
    with pytest.raises(VectorMismatch, match="no sum for round 'residents'"):
        build(query("importation-risk"), {"trips": u64(F)}, 15)
    with pytest.raises(VectorMismatch, match="35 cells, expected 36"):
        build(query("flows"), {"trips": u64(F)[:-1]}, 15)


# --- population ------------------------------------------------------------------------------------------------


def test_population_rows_and_suppression() -> None:
    presence = np.array([[0, 15], [14, 300], [1, 2], [16, 16], [15, 0], [500, 501]])
    result = build(query("population", "2020-01-19", "2020-01-20"), {"presence": u64(presence)}, 15)
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
    restricted = build(
        query("population", "2020-01-19", "2020-01-20", districts="440104,420104"),
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
        build(
            query("population", "2020-01-20", "2020-01-20", districts="110101"),
            {"presence": np.zeros(6, dtype=np.uint64)},
            15,
        )


# --- cases -----------------------------------------------------------------------------------------------------


def test_cases_rows_only_districts_with_cases_small_cells_hidden() -> None:
    counts = np.array([[12, 2, 40], [0, 0, 0], [1, 0, 0], [3, 3, 0], [0, 0, 0], [0, 5, 1]])
    result = build(query("cases"), {"cases": u64(counts)}, 3)
    assert result.columns == ("district", "name", "confirmed", "suspected", "close_contact")
    assert result.rows == [
        (420102, "江岸区", 12, None, 40),
        (420104, "硚口区", None, 0, 0),
        (430102, "芙蓉区", 3, 3, 0),
        (440104, "越秀区", 0, 5, None),
    ]
    assert result.suppressed == 3
    only = build(query("cases", districts="430102,420103"), {"cases": u64(counts)}, 3)
    assert only.rows == [(430102, "芙蓉区", 3, 3, 0)]
    assert only.suppressed == 0


# --- flows -----------------------------------------------------------------------------------------------------


def test_flows_sorted_small_pairs_dropped_and_counted() -> None:
    result = build(query("flows"), {"trips": u64(F)}, 15)
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
    result = build(query("flows", districts="430102", source="transport", mode="rail"), {"trips": u64(F)}, 15)
    assert [(r[0], r[2], r[4]) for r in result.rows] == [
        (430102, 440103, 200),
        (420102, 430102, 40),
        (420104, 430102, 40),
        (420103, 430102, 20),
    ]
    assert result.suppressed == 0
    assert "source: transport, mode: rail" in result.notes
    assert build(query("flows", districts="440104"), {"trips": u64(F)}, 15).rows == []


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
    release = Release(registry=REGISTRY, sums=risk_sums(), mobility_k=15, cases_k=15)
    exact = KINDS["importation-risk"].exact_values(query("importation-risk"), release)  # type: ignore[attr-defined]
    assert np.array_equal(exact.index, index)
    assert exact.confirmed.tolist() == CONFIRMED.tolist()
    assert exact.inflow.tolist() == [55, 100, 4, 100, 213, 0]


def test_importation_rows_alerts_top_origins_suppression() -> None:
    result = build(query("importation-risk"), risk_sums(), 15, cases_k=3)
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
    result = build(
        query("importation-risk", threshold="1.1", top="1", districts="430102,420102,420104"),
        risk_sums(),
        15,
        cases_k=3,
    )
    assert column(result, "district") == [430102, 420102]
    assert column(result, "alert") == [True, False]
    assert column(result, "top_origins") == ["420102 江岸区 (66.7%)", "420103 江汉区 (95.2%)"]
    assert result.suppressed == 1
    low_k = build(query("importation-risk"), risk_sums(), 1)
    assert low_k.suppressed == 0
    assert column(low_k, "district") == [420103, 430102, 420102, 440103, 420104]
    assert column(low_k, "top_origins")[2] == "420103 江汉区 (95.2%); 440103 荔湾区 (4.8%)"


def test_an_origin_with_suppressed_cases_is_never_named() -> None:
    """share · I_d / F(o→d) = C_o/N_o: naming an origin with its share would give away a case count that
    ``cases`` suppresses (the red-team recovered three such C_o). 440103 (C = 1 < 3) sends 50 to 420102."""
    sums = risk_sums()
    trips = F.copy()
    trips[4, 0] = 50
    sums["trips"] = u64(trips)
    result = build(query("importation-risk"), sums, 15, cases_k=3)
    named = dict(zip(column(result, "district"), column(result, "top_origins"), strict=True))
    assert "440103" not in str(named[420102])
    assert all(row[2] != 440103 for table in result.tables for row in table.rows)
    # Its contribution still counts in I_d: 50 · 1/100 on top of 420103's 50 · 10/500.
    index = dict(zip(column(result, "district"), column(result, "importation_index"), strict=True))
    assert index[420102] == pytest.approx(50 * 10 / 500 + 50 * 1 / 100 + 0)
    with_small_k = build(query("importation-risk"), sums, 15, cases_k=1)
    assert "440103" in str(
        dict(zip(column(with_small_k, "district"), column(with_small_k, "top_origins"), strict=True))[420102]
    )


def test_result_json_shape() -> None:
    result = build(query("importation-risk"), risk_sums(), 15)
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


def test_national_scale_importation_risk_matches_plain_python() -> None:
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
    result = build(query("importation-risk"), sums, 15, registry)
    # Spot-check one destination against a plain-Python sum.
    top = result.rows[0]
    d = int(registry.index_of(np.array([top[0]]))[0])
    plain = sum(trips[o, d] * confirmed[o] / residents[o] for o in range(n) if o != d and residents[o] > 0)
    assert top[3] == pytest.approx(plain, rel=1e-9)


# --- the unit itself: parameters as data, registry, derivations -------------------------------------------------


def test_params_validate_with_the_flag_and_the_fix() -> None:
    risk = kind("importation-risk")
    with pytest.raises(InvalidQuery, match=r"--window-days '0' must be a whole number from 1 to 60"):
        risk.validate(query("importation-risk", "2020-01-20", "2020-01-20", window_days="0"))
    with pytest.raises(InvalidQuery, match=r"--threshold 'x' must be a number above 0"):
        risk.validate(query("importation-risk", threshold="x"))
    with pytest.raises(InvalidQuery, match=r"window 2020-01-07\.\.2020-01-20 is 14 days but --window-days is 7"):
        risk.validate(query("importation-risk", window_days="7"))
    with pytest.raises(InvalidQuery, match="--mode rail applies only to --source transport"):
        kind("flows").validate(query("flows", mode="rail"))
    with pytest.raises(InvalidQuery, match="--source 'taxi' is not one of telecom, transport"):
        kind("flows").validate(query("flows", source="taxi"))
    with pytest.raises(InvalidQuery, match="unknown params for cases: mode; allowed: districts"):
        kind("cases").validate(query("cases", mode="rail"))
    with pytest.raises(InvalidQuery, match="--districts takes comma-separated six-digit"):
        kind("cases").validate(query("cases", districts="4201"))
    assert risk.values(query("importation-risk")) == {
        "window_days": 14,
        "threshold": 1.0,
        "top": 3,
        "districts": None,
    }


def test_registry_refuses_a_duplicate_or_a_non_kind() -> None:
    from federation.catalog import _registry

    with pytest.raises(TypeError, match="registered twice"):
        _registry(KINDS["cases"], KINDS["cases"])
    with pytest.raises(TypeError, match="is not a QueryKind"):
        _registry(object())  # type: ignore[arg-type]


def test_every_plan_uses_only_declared_aggregates_with_catalog_lengths() -> None:
    from federation.catalog.aggregates import AGGREGATES, vector_length

    for q in (
        query("population"),
        query("flows"),
        query("flows", source="transport", mode="air"),
        query("cases"),
        query("importation-risk"),
    ):
        entry = kind(q.kind)
        for plan in entry.rounds(q, REGISTRY, NATIONAL):
            assert plan.aggregate in entry.aggregates
            assert plan.agency_kind == AGGREGATES[plan.aggregate].agency_kind
            assert plan.length == vector_length(plan.aggregate, len(REGISTRY), plan.start, plan.end)


def test_agency_allowed_kinds_derive_from_round_plans() -> None:
    from federation.catalog import agency_query_kinds

    assert agency_query_kinds("telecom") == (
        "population",
        "flows",
        "importation-risk",
        "warning",
        "outflow",
        "return-to-work",
        "exposure",
    )
    assert agency_query_kinds("health") == (
        "cases",
        "importation-risk",
        "trend",
        "warning",
        "outflow",
        "return-to-work",
    )
    assert agency_query_kinds("transport") == ("flows",)


def test_provincial_flows_list_inside_pairs_and_border_totals() -> None:
    result = build(query("flows"), {"trips": u64(F)}, 15, province=42)
    assert [(r[0], r[2], r[4]) for r in result.rows] == [
        (420102, 420103, 100),
        (420102, 0, 50),  # 40 to Hunan + 10 to Guangdong, summed at the border
        (420103, 420102, 50),
        (420104, 0, 43),
        (420103, 0, 20),
    ]
    # no inside pair below k; two border totals below k: 5 into 420102 and 4 into 420104 from Guangdong
    assert result.suppressed == 2
    assert "restricted to province 42" in result.notes


def test_provincial_importation_risk_hides_outside_origins_as_values() -> None:
    result = build(query("importation-risk"), risk_sums(), 1, province=44)
    assert column(result, "district") == [440103]  # 440104 has no inflow
    origins = result.table("top_origins")
    assert origins.columns == ("district", "rank", "origin", "origin_name", "share")
    assert origins.rows == [(440103, 1, 0, "outside the province", 1.0)]  # Hunan's 430102 is not named
    assert column(result, "top_origins") == ["outside the province (100.0%)"]
