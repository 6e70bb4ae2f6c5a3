"""Bounded resources on real nodes: a cap on live rounds per adapter, a cap on queries per coordinator, and
``Abort``, which the broker sends to every participant the moment a query is cancelled, so abandoned rounds
no longer hold every adapter's vector until the TTL.

telecom-c stalls at masked-input (the fault hook), so a query's round stays open there until cancelled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc
import pytest

from broker.client import sign_query
from fedbroker.harness import LocalFederation
from federation.catalog import new_query
from federation.config import FederationConfig, LimitsConfig, dump_federation, load_federation
from federation.tls import channel_credentials, channel_options
from federation.v1 import adapter_pb2, broker_pb2, broker_pb2_grpc
from tests.federation_fixtures import own_federation
from tests.test_round_refusals import EvilBroker
from tests.waiting import wait_for

pytestmark = pytest.mark.slow
T = TypeVar("T")
TELECOM = ("telecom-a", "telecom-b", "telecom-c")
CAPPED = "telecom-a"
MAX_LIVE = 2
NATIONAL = "nhc-national"


@pytest.fixture(scope="module")
def fed(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    config = load_federation(small_scenario)
    nodes = tuple(
        dataclasses.replace(
            n,
            policy=dataclasses.replace(n.policy, min_contributors=2),
            limits=LimitsConfig(max_live_rounds=MAX_LIVE) if n.id == CAPPED else n.limits,
        )
        for n in config.nodes
    )
    broker = dataclasses.replace(
        config.broker,
        stage_timeout_s=600.0,
        round_timeout_s=900.0,
        limits=LimitsConfig(max_queries_per_coordinator=1),
    )
    run_dir = tmp_path_factory.mktemp("resources-run")
    roster = run_dir / "federation.resources.yaml"
    dump_federation(dataclasses.replace(config, nodes=nodes, broker=broker), roster)
    assert load_federation(roster).node(CAPPED).limits.max_live_rounds == MAX_LIVE  # the roster round-trips
    with own_federation(roster, run_dir, nodes=TELECOM, faults={"telecom-c": "stall-at:masked-input"}) as federation:
        yield federation


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def _audit(config: FederationConfig, node_id: str) -> list[dict[str, object]]:
    path = config.node(node_id).audit_log
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _aborted_rounds(config: FederationConfig, node_id: str) -> dict[str, bool]:
    return {str(r["round"]): bool(r["was_live"]) for r in _audit(config, node_id) if r["event"] == "round.abort"}


async def _expect_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded")


def test_live_round_cap_and_abort(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)

    async def scenario() -> None:
        opened = []
        for _ in range(MAX_LIVE):
            _, signed = evil.query()
            round_id = secrets.token_bytes(16)
            await evil.open_all(round_id, signed, evil.spec(evil.query()[0]), targets=[CAPPED])
            opened.append(round_id)
        query, signed = evil.query()
        third = secrets.token_bytes(16)
        error = await _expect_error(evil.open_all(third, signed, evil.spec(query), targets=[CAPPED]))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"limits.max_live_rounds = {MAX_LIVE}" in (error.details() or "")

        # Only the broker may abort a round.
        outsider = EvilBroker(fed.config, NATIONAL)
        error = await _expect_error(outsider.call(CAPPED, "Abort", adapter_pb2.AbortRequest(round_id=opened[0])))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED

        reply = await evil.call(CAPPED, "Abort", adapter_pb2.AbortRequest(round_id=opened[0]))
        assert reply.aborted
        reply = await evil.call(CAPPED, "Abort", adapter_pb2.AbortRequest(round_id=opened[0]))
        assert not reply.aborted  # already gone: not an error
        # The freed slot takes a new round; the aborted round itself is gone for good.
        query, signed = evil.query()
        await evil.open_all(secrets.token_bytes(16), signed, evil.spec(query), targets=[CAPPED])
        error = await _expect_error(evil.call(CAPPED, "ShareKeys", adapter_pb2.ShareKeysRequest(round_id=opened[0])))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        for round_id in opened[1:]:
            await evil.call(CAPPED, "Abort", adapter_pb2.AbortRequest(round_id=round_id))

    run(scenario())
    aborted = _aborted_rounds(fed.config, CAPPED)
    assert len(aborted) >= 2
    refused = [r for r in _audit(fed.config, CAPPED) if r["event"] == "refused"]
    assert any(r["status"] == "RESOURCE_EXHAUSTED" for r in refused)
    assert any(r["method"] == "Abort" and r["status"] == "PERMISSION_DENIED" for r in refused)


def test_a_cancelled_query_aborts_its_round_everywhere_and_the_coordinator_cap_holds(fed: LocalFederation) -> None:
    config = fed.config
    identity = config.identity(NATIONAL)

    def query() -> broker_pb2.RunQueryRequest:
        q = new_query("population", start=config.data_end, end=config.data_end, params={}, coordinator=NATIONAL)
        return broker_pb2.RunQueryRequest(query=sign_query(identity, q))

    before = {n: set(_aborted_rounds(config, n)) for n in TELECOM}

    async def scenario() -> None:
        async with grpc.aio.secure_channel(
            config.broker.address, channel_credentials(identity), options=channel_options(config.broker.id)
        ) as channel:
            stub = broker_pb2_grpc.BrokerStub(channel)
            call = stub.RunQuery(query(), timeout=600)
            async for event in call:
                if event.HasField("progress") and event.progress.stage == "share-keys":
                    break  # masked-input is next: telecom-c stalls there, the round stays open
            second = stub.RunQuery(query(), timeout=60)
            error = await _expect_error(second.read())
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limits.max_queries_per_coordinator = 1" in (error.details() or "")
            call.cancel()

    run(scenario())

    def every_adapter_aborted() -> dict[str, bool] | None:
        fresh = {n: {r: live for r, live in _aborted_rounds(config, n).items() if r not in before[n]} for n in TELECOM}
        rounds = {r for per_node in fresh.values() for r in per_node}
        if len(rounds) != 1 or not all(fresh.values()):
            return None
        (round_id,) = rounds
        return {n: fresh[n][round_id] for n in TELECOM}

    assert wait_for(every_adapter_aborted) == {n: True for n in TELECOM}
    refused = [json.loads(line) for line in config.broker.audit_log.read_text().splitlines()]
    assert any(r.get("status") == "RESOURCE_EXHAUSTED" for r in refused if r["event"] == "refused")
