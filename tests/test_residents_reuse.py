"""Window-free releases (residents) are released once per period and reused, against real nodes.

Every importation-risk query needs telecom.residents, which has no window: without reuse each query ran a fresh
round and charged the one ledger key it has, so about twenty queries exhausted it for good. Now the broker keeps
the released (noisy) sum per period (the calendar month of the signed query's end) and reuses it, also after a
restart; every agency still charges its own ledger per period for every round it sends its masked input to, so a
broker that does not reuse pays again and is refused once the period's budget is spent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from broker.client import Answer, run_query, sign_query
from fedbroker.harness import LocalFederation
from federation.catalog import Scope, kind, new_query
from federation.config import PrivacyPolicy
from federation.privacy.ledger import ledger_path
from federation.v1 import common_pb2
from tests.federation_fixtures import private_copy
from tests.test_round_refusals import EvilBroker

pytestmark = pytest.mark.slow
NATIONAL = "nhc-national"
RHO = 0.05
# Room for two residents releases in a period (0.05 + 0.05 <= 0.12), not three.
NOISY = PrivacyPolicy(noise="discrete-gaussian", rho_per_day=0.12)
NODES = ("telecom-a", "telecom-b", "telecom-c", "health-net-1", "health-net-2", "health-net-3")


@pytest.fixture(scope="module")
def federation(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    directory = tmp_path_factory.mktemp("residents-reuse")
    roster = private_copy(small_scenario, directory, privacy=NOISY, rho_per_round=RHO, min_contributors=2)
    with LocalFederation(roster, run_dir=directory / "run", nodes=NODES) as running:
        yield running


def _risk(running: LocalFederation, end: dt.date) -> Answer:
    query = new_query("importation-risk", start=None, end=end, params={"window_days": "7"}, coordinator=NATIONAL)
    return asyncio.run(run_query(running.config, NATIONAL, query))


def _residents(answer: Answer) -> dict[str, float]:
    """The residents round's σ and ρ spent (numbers only)."""
    entry = next(p for p in answer.privacy if p["round"] == "residents")
    return {"sigma": float(entry["sigma"]), "rho_spent": float(entry["rho_spent"])}


def _window_free_charges(running: LocalFederation, node_id: str) -> list[dict[str, object]]:
    lines = ledger_path(running.config.node(node_id)).read_text(encoding="utf-8").splitlines()
    return [e for e in map(json.loads, lines) if any(str(d).startswith("window-free") for d in e["days"])]


def test_residents_are_released_once_per_period_and_reused_across_a_broker_restart(
    federation: LocalFederation,
) -> None:
    end = federation.config.data_end  # 2020-01-21: three disjoint weeks of January
    first = _risk(federation, end)
    second = _risk(federation, end - dt.timedelta(days=7))
    assert _residents(first)["rho_spent"] > 0 and _residents(second)["rho_spent"] == 0.0
    assert _residents(first)["sigma"] == _residents(second)["sigma"]
    period = f"{end:%Y-%m}"
    for node_id in ("telecom-a", "telecom-b", "telecom-c"):
        (charge,) = _window_free_charges(federation, node_id)
        assert charge["days"] == [f"window-free:{period}"]
    federation.restart(federation.config.broker.id)
    third = _risk(federation, end - dt.timedelta(days=14))
    assert _residents(third)["rho_spent"] == 0.0  # the kept release survived the restart
    assert all(len(_window_free_charges(federation, n)) == 1 for n in ("telecom-a", "telecom-b", "telecom-c"))

    # A broker that does not reuse: each agency charges every residents round of the period it contributes to,
    # and refuses the one that would take the period over its budget.
    evil = EvilBroker(federation.config)

    def residents_round() -> tuple[common_pb2.SignedQuery, common_pb2.VectorSpec]:
        query = new_query("importation-risk", start=None, end=end, params={"window_days": "7"}, coordinator=NATIONAL)
        plan = kind("importation-risk").rounds(query, evil.registry, Scope())[1]
        assert plan.aggregate == "telecom.residents"
        spec = common_pb2.VectorSpec(
            aggregate=plan.aggregate, length=plan.length, registry_hash=evil.registry.hash, rho=repr(RHO)
        )
        return sign_query(evil.coordinator, query), spec

    evil.drive_round(*residents_round())
    assert all(len(_window_free_charges(federation, n)) == 2 for n in ("telecom-a", "telecom-b", "telecom-c"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        asyncio.run(evil.open_all(secrets.token_bytes(16), *residents_round()))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"window-free:{period}" in (refused.value.details() or "")
