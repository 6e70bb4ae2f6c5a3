"""Every query kind through a whole federation (real processes, mutual TLS, secure aggregation) against an
oracle computed straight from the raw DuckDB tables.

The federation here runs with k = 1, so nothing but zeros is suppressed and the comparison is exact; the
disclosure rule itself is checked against the oracle with the default k in test_disclosure_federation.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from broker.client import Answer, run_query
from fedbroker.harness import LocalFederation
from federation.catalog import new_query
from federation.config import FederationConfig
from federation.errors import RoundAborted
from federation.registry import load_registry
from tests import oracle
from tests.federation_fixtures import days, oracle_sum, own_federation, restart_and_rejoin, roster_variant

pytestmark = pytest.mark.slow
NATIONAL = "nhc-national"


@pytest.fixture(scope="module")
def fed(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    run_dir = tmp_path_factory.mktemp("run-k1")
    roster = roster_variant(small_scenario, run_dir / "federation.k1.yaml", min_contributors=2, mobility_k=1, cases_k=1)
    with own_federation(roster, run_dir) as federation:
        yield federation


def ask(fed: LocalFederation, kind: str, *, start: dt.date | None, end: dt.date, **params: str) -> Answer:
    query = new_query(kind, start=start, end=end, params=params, coordinator=NATIONAL)
    return asyncio.run(run_query(fed.config, NATIONAL, query))


def window(config: FederationConfig, length: int) -> tuple[dt.date, dt.date]:
    end = config.data_end - dt.timedelta(days=1)
    return end - dt.timedelta(days=length - 1), end


def test_population_matches_oracle(fed: LocalFederation) -> None:
    config = fed.config
    codes = load_registry(config.domain.provinces).codes
    start, end = window(config, 5)
    answer = ask(fed, "population", start=start, end=end)
    expected = oracle_sum(config, "telecom", lambda con: oracle.oracle_presence(con, codes, start, end))
    grid = expected.reshape(len(codes), -1)
    want = {
        (int(code), day.isoformat()): int(grid[i, t])
        for i, code in enumerate(codes)
        for t, day in enumerate(days(start, end))
        if grid[i, t]
    }
    col = {c: i for i, c in enumerate(answer.columns)}
    got = {(r[col["district"]], r[col["date"]]): r[col["count"]] for r in answer.rows if r[col["count"]]}
    assert got == want
    assert sum(want.values()) > 0
    assert answer.contributors["presence"]["contributed"] == ["telecom-a", "telecom-b", "telecom-c"]


@pytest.mark.parametrize(("source", "mode"), [("telecom", None), ("transport", "all"), ("transport", "rail")])
def test_flows_match_oracle(fed: LocalFederation, source: str, mode: str | None) -> None:
    config = fed.config
    codes = load_registry(config.domain.provinces).codes
    start, end = window(config, 7)
    params = {"source": source} | ({"mode": mode} if mode else {})
    answer = ask(fed, "flows", start=start, end=end, **params)
    if source == "telecom":
        expected = oracle_sum(config, "telecom", lambda con: oracle.oracle_trips(con, codes, start, end))
    else:
        expected = oracle_sum(
            config, "transport", lambda con: oracle.oracle_transport_trips(con, codes, start, end, mode or "all")
        )
    n = len(codes)
    want = {(int(codes[i // n]), int(codes[i % n])): int(v) for i, v in enumerate(expected) if v and i // n != i % n}
    col = {c: i for i, c in enumerate(answer.columns)}
    got = {(r[col["origin"]], r[col["destination"]]): r[col["trips"]] for r in answer.rows}
    assert got == want
    assert want, "the scenario should have some travel in a week"


def test_cases_match_oracle(fed: LocalFederation) -> None:
    config = fed.config
    codes = load_registry(config.domain.provinces).codes
    start, end = config.data_start, config.data_end
    answer = ask(fed, "cases", start=start, end=end)
    expected = oracle_sum(config, "health", lambda con: oracle.oracle_cases(con, codes, start, end)).reshape(-1, 3)
    want = {int(codes[i]): tuple(int(x) for x in row) for i, row in enumerate(expected) if row.any()}
    col = {c: i for i, c in enumerate(answer.columns)}
    got = {r[col["district"]]: (r[col["confirmed"]], r[col["suspected"]], r[col["close_contact"]]) for r in answer.rows}
    assert got == want
    assert sum(v[0] for v in want.values()) > 0, "the epidemic should have confirmed cases"


def test_importation_risk_matches_oracle(fed: LocalFederation) -> None:
    config = fed.config
    codes = load_registry(config.domain.provinces).codes
    end = config.data_end
    start = end - dt.timedelta(days=13)
    answer = ask(fed, "importation-risk", start=None, end=end)
    trips = oracle_sum(config, "telecom", lambda con: oracle.oracle_trips(con, codes, start, end))
    residents = oracle_sum(config, "telecom", lambda con: oracle.oracle_residents(con, codes))
    confirmed = oracle_sum(config, "health", lambda con: oracle.oracle_cases(con, codes, start, end))[0::3]
    n = len(codes)
    flows = trips.reshape(n, n)
    # Plain loops on purpose: an independent recomputation of I_d = sum_{o != d} F(o->d) * C_o / N_o.
    index: dict[int, float] = {}
    inflow: dict[int, int] = {}
    for d in range(n):
        total, arriving = 0.0, 0
        for o in range(n):
            if o == d or not flows[o, d]:
                continue
            arriving += int(flows[o, d])
            if residents[o]:
                total += int(flows[o, d]) * int(confirmed[o]) / int(residents[o])
        if arriving:
            index[int(codes[d])], inflow[int(codes[d])] = total, arriving
    col = {c: i for i, c in enumerate(answer.columns)}
    got = {r[col["district"]]: r for r in answer.rows}
    assert set(got) == set(index)
    for code, row in got.items():
        assert row[col["inflow"]] == inflow[code]
        assert math.isclose(row[col["importation_index"]], index[code], rel_tol=1e-12, abs_tol=1e-15)
        assert math.isclose(row[col["probability"]], 1 - math.exp(-index[code]), rel_tol=1e-12, abs_tol=1e-15)
        assert row[col["alert"]] == (index[code] >= 1.0)
    ranked = [r[col["importation_index"]] for r in answer.rows]
    assert ranked == sorted(ranked, reverse=True)
    assert max(index.values()) > 0


def test_query_with_one_carrier_down_names_it(fed: LocalFederation) -> None:
    config = fed.config
    codes = load_registry(config.domain.provinces).codes
    start, end = window(config, 3)
    fed.kill("telecom-c")
    try:
        answer = ask(fed, "population", start=start, end=end)
    finally:
        restart_and_rejoin(fed, ["telecom-c"], NATIONAL)
    coverage = answer.contributors["presence"]
    assert coverage["contributed"] == ["telecom-a", "telecom-b"]
    assert len(coverage["missing"]) == 1 and coverage["missing"][0].startswith("telecom-c")
    expected = oracle_sum(
        config, "telecom", lambda con: oracle.oracle_presence(con, codes, start, end), only=["telecom-a", "telecom-b"]
    )
    col = {c: i for i, c in enumerate(answer.columns)}
    assert sum(r[col["count"]] or 0 for r in answer.rows) == int(expected.sum())
    assert np.count_nonzero(expected) > 0


def test_query_below_threshold_aborts_naming_the_missing(fed: LocalFederation) -> None:
    config = fed.config
    start, end = window(config, 3)
    fed.kill("telecom-b")
    fed.kill("telecom-c")
    try:
        with pytest.raises(RoundAborted) as caught:
            ask(fed, "population", start=start, end=end)
    finally:
        restart_and_rejoin(fed, ["telecom-b", "telecom-c"], NATIONAL)
    message = caught.value.message
    assert "open" in message and "telecom-b" in message and "telecom-c" in message


def test_describe_federation_returns_every_kind_with_its_schema(fed: LocalFederation) -> None:
    """DescribeFederation carries the catalog's parameter schema, so a client in any language can build its
    form or flags from the broker alone."""
    import grpc

    from broker.client import coordinator_identity
    from federation.catalog import KINDS
    from federation.tls import channel_credentials, channel_options
    from federation.v1 import broker_pb2, broker_pb2_grpc

    config = fed.config
    identity = coordinator_identity(config, NATIONAL)

    async def describe() -> broker_pb2.FederationDescription:
        credentials = channel_credentials(identity)
        options = channel_options(config.broker.id)
        async with grpc.aio.secure_channel(config.broker.address, credentials, options=options) as channel:
            stub = broker_pb2_grpc.BrokerStub(channel)
            return await stub.DescribeFederation(broker_pb2.DescribeFederationRequest(), timeout=30)

    description = asyncio.run(describe())
    assert list(description.query_kinds) == list(KINDS)
    schemas = {k.name: k for k in description.kinds}
    assert list(schemas) == list(KINDS)
    risk = schemas["importation-risk"]
    assert risk.trailing_window == "window_days" and risk.disclosure == "mobility"
    window_days = next(p for p in risk.params if p.name == "window_days")
    assert (window_days.flag, window_days.type, window_days.default, window_days.has_default) == (
        "--window-days",
        "int",
        "14",
        True,
    )
    assert (window_days.minimum, window_days.maximum) == (1.0, 60.0)
    source = next(p for p in schemas["flows"].params if p.name == "source")
    assert list(source.choices) == ["telecom", "transport"]
    districts = next(p for p in schemas["cases"].params if p.name == "districts")
    assert not districts.has_default and not districts.HasField("minimum")
