"""Rounds limited to a provincial jurisdiction (docs/protocol.md, "Vector layouts"), on every store engine: each
aggregate in each of its provincial layouts, from the raw tables and from the daily partials, equals the oracle's
whole-domain vector limited the obvious way in numpy (``tests/layouts.py``), exactly.

The domain is the randomised stores' (``tests/test_aggregates.py``): province 42 has two of its four districts,
and the stores also hold a district of province 42 outside the domain and one outside every province, so an
"outside" total counts only the domain's other districts, as the whole-domain vector does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from adapters import partials
from adapters.aggregates import AggregateRequest, compute_aggregate, vector_length
from adapters.backends import Store
from federation.catalog.aggregates import AGGREGATES, LAYOUTS
from federation.errors import InvalidQuery, UnknownDistrict
from tests import oracle, oracle_mobility
from tests.backends import ENGINES, as_backend
from tests.layouts import limit_vector
from tests.test_aggregates import DAY0, DOMAIN, build_random_stores

PROVINCE = 42
INSIDE = DOMAIN // 10_000 == PROVINCE
START, END = DAY0 + dt.timedelta(days=2), DAY0 + dt.timedelta(days=6)  # trips reach back before the window
Oracle = Callable[[Store], npt.NDArray[np.uint64]]


@pytest.fixture(scope="module", params=ENGINES)
def stores(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Store]]:
    path = tmp_path_factory.mktemp("limited")
    telecom, health, transport = build_random_stores(path)
    backends = {
        kind: as_backend(con, kind, request.param, path)
        for con, kind in ((telecom, "telecom"), (health, "health"), (transport, "transport"))
    }
    yield backends
    for store in backends.values():
        store.close()


# aggregate -> (params, the oracle's whole-domain vector)
CASES: dict[str, tuple[dict[str, str], Oracle]] = {
    "telecom.presence": ({}, lambda s: oracle.oracle_presence(s, DOMAIN, START, END)),
    "telecom.residents": ({}, lambda s: oracle.oracle_residents(s, DOMAIN)),
    "telecom.trips": ({}, lambda s: oracle.oracle_trips(s, DOMAIN, START, END)),
    "telecom.roamers": ({"home_prefix": "11"}, lambda s: oracle.oracle_roamers(s, DOMAIN, START, END, "11")),
    "telecom.arrivals": (
        {"home_prefix": "42"},
        lambda s: oracle_mobility.oracle_arrivals(s, DOMAIN, START, END, "42"),
    ),
    "telecom.exposure": (
        {"risk_districts": "110101,420102"},
        lambda s: oracle_mobility.oracle_exposure(s, DOMAIN, START, END, (110101, 420102)),
    ),
    "health.cases": ({}, lambda s: oracle.oracle_cases(s, DOMAIN, START, END)),
    "health.confirmed_daily": ({"date": "report"}, lambda s: oracle.oracle_confirmed_daily(s, DOMAIN, START, END)),
    "health.clusters": ({}, lambda s: oracle.oracle_clusters(s, DOMAIN, START, END)),
    "health.cluster_cases": ({}, lambda s: oracle.oracle_cluster_cases(s, DOMAIN, START, END)),
    "transport.trips": ({"mode": "all"}, lambda s: oracle.oracle_transport_trips(s, DOMAIN, START, END, "all")),
}


def test_every_aggregate_and_layout_is_checked() -> None:
    assert set(CASES) == set(AGGREGATES)
    assert {layout for spec in AGGREGATES.values() for layout in spec.limited} == set(LAYOUTS)


def _request(name: str, layout: str) -> AggregateRequest:
    params, _ = CASES[name]
    window = (START, END) if AGGREGATES[name].windowed else (None, None)
    return AggregateRequest(name, DOMAIN, window[0], window[1], {**params, "layout": layout, "province": str(PROVINCE)})


def test_limited_vectors_from_raw_tables_match_the_oracle(stores: dict[str, Store]) -> None:
    for name, spec in AGGREGATES.items():
        store = stores[spec.agency_kind]
        whole = CASES[name][1](store)
        for layout in spec.limited:
            request = _request(name, layout)
            got = compute_aggregate(store, request, use_partials=False)
            expected = limit_vector(whole, layout, INSIDE)
            assert got.shape == (vector_length(request),), (name, layout)
            assert np.array_equal(got, expected), (name, layout, got.tolist(), expected.tolist())
    # The fixture must make the border and inflow cells matter: trips across the province's border.
    border = compute_aggregate(stores["telecom"], _request("telecom.trips", "border"), use_partials=False)
    m = int(INSIDE.sum())
    assert border.shape == ((m + 1) ** 2 - 1,) and border[m :: m + 1].sum() > 0 and border[m * (m + 1) :].sum() > 0


def test_limited_vectors_from_partials_match_the_oracle(stores: dict[str, Store]) -> None:
    for kind in ("telecom", "health", "transport"):
        partials.refresh(stores[kind], kind)
    for name in partials.PARTIALS:
        spec = AGGREGATES[name]
        store = stores[spec.agency_kind]
        assert partials.fresh(store, name)
        whole = CASES[name][1](store)
        for layout in spec.limited:
            got = compute_aggregate(store, _request(name, layout), use_partials=True)
            assert np.array_equal(got, limit_vector(whole, layout, INSIDE)), (name, layout)


def test_a_limited_round_names_a_known_layout_and_a_province_of_the_domain(tmp_path: Path) -> None:
    telecom, _, _ = build_random_stores(tmp_path)
    bad = [
        ({"layout": "inside"}, InvalidQuery, "names both layout and province"),
        ({"layout": "inside", "province": "4"}, InvalidQuery, "2-digit province code"),
        ({"layout": "everything", "province": "42"}, InvalidQuery, "may be limited to: inside"),
        ({"layout": "inside", "province": "42", "home_prefix": "42"}, InvalidQuery, "no parameter 'home_prefix'"),
        ({"layout": "inside", "province": "43"}, UnknownDistrict, "province 43 has no district"),
    ]
    for params, error, message in bad:
        with pytest.raises(error, match=message):
            compute_aggregate(telecom, AggregateRequest("telecom.presence", DOMAIN, START, END, params))
    with pytest.raises(InvalidQuery, match=r"may be limited to: inside$"):
        request = AggregateRequest("telecom.presence", DOMAIN, START, END, {"layout": "border", "province": "42"})
        compute_aggregate(telecom, request)
