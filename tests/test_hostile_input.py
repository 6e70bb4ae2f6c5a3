"""Hostile input against real nodes: whatever a caller sends, a node answers with a bounded INVALID_ARGUMENT
(or the refusal its checks give), audits a bounded record, prints no traceback and keeps serving.

Cases: malformed bytes to every RPC of every service (adapter, broker, health), repeated fields far over the
roster's size, a 3 MB coordinator id, signed queries nested 100k and 30k levels deep, and a signed query whose
refusal reason would be tens of kilobytes.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2

from fedbroker.harness import LocalFederation
from federation.audit import MAX_FIELD_BYTES
from federation.bounds import (
    MAX_REASON_BYTES,
    MAX_TEXT_BYTES,
    Bounds,
    bounded_reason,
    bounds_problem,
    json_depth,
)
from federation.catalog import new_query
from federation.config import FederationConfig
from federation.identity import Identity
from federation.tls import channel_credentials, channel_options
from federation.v1 import adapter_pb2, adapter_pb2_grpc, broker_pb2, broker_pb2_grpc, common_pb2
from tests.federation_fixtures import own_federation, roster_variant

T = TypeVar("T")
ADAPTERS = ("telecom-a", "telecom-b")
TARGET = "telecom-a"
NATIONAL = "nhc-national"
#: A record is a handful of fields of at most MAX_FIELD_BYTES each; nothing a caller sends makes one longer.
AUDIT_LINE_CAP = 8 * MAX_FIELD_BYTES
MALFORMED = (b"\x0a\x05ab", b"\xff\xff\xff\xff", b"\x12\xff\xff\xff\xff\x0f" + b"x" * 64)


# -- pure parts -------------------------------------------------------------------------------------------------


def test_bounds_name_the_field_and_its_size_never_the_value() -> None:
    request = adapter_pb2.OpenRequest(participants=["a"] * 9)
    assert bounds_problem(request, Bounds(max_members=8)) == (
        "OpenRequest.participants has 9 entries; at most 8 are accepted"
    )
    request = adapter_pb2.OpenRequest(query=common_pb2.SignedQuery(coordinator_id="x" * 300))
    problem = bounds_problem(request, Bounds(max_members=8))
    assert problem == f"OpenRequest.query.coordinator_id is 300 bytes; at most {MAX_TEXT_BYTES} are accepted"
    spec = common_pb2.VectorSpec(params={f"k{i}": "v" for i in range(17)})
    assert "VectorSpec.params has 17 entries" in (bounds_problem(spec, Bounds(max_members=8)) or "")
    spec = common_pb2.VectorSpec(params={"mode": "r" * 300})
    assert "VectorSpec.params is 300 bytes" in (bounds_problem(spec, Bounds(max_members=8)) or "")
    assert bounds_problem(adapter_pb2.OpenRequest(participants=["a", "b"]), Bounds(max_members=2)) is None


def test_json_depth_ignores_brackets_in_strings() -> None:
    assert json_depth(b'"x"') == 0
    assert json_depth(b'{"a":{"b":"[[[{{{"}}') == 2
    assert json_depth(b'{"a":"\\"[["}') == 1
    assert json_depth(b"[" * 100_000) == 100_000


def test_bounded_reason_cuts_utf8_safely() -> None:
    text = "区" * 1000  # 3 bytes each
    cut = bounded_reason(text)
    assert len(cut.encode("utf-8")) <= MAX_REASON_BYTES
    assert cut.endswith("[truncated]")
    assert bounded_reason("short") == "short"


def test_a_key_pair_repr_shows_no_private_key() -> None:
    from federation.secagg.keys import KeyPair

    pair = KeyPair.generate()
    assert pair.private.hex() not in repr(pair) and str(list(pair.private)) not in repr(pair)
    assert repr(pair.private) not in repr(pair)


# -- against a running federation ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fed(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    # Two of the three carriers run; a threshold of 2 lets the closing query complete without telecom-c.
    run_dir = tmp_path_factory.mktemp("hostile-run")
    roster = roster_variant(small_scenario, run_dir / "hostile.yaml", min_contributors=2)
    with own_federation(roster, run_dir, nodes=list(ADAPTERS)) as federation:
        yield federation


def _run(coroutine: Awaitable[T]) -> T:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


async def _call_raw(
    config: FederationConfig, caller: str, target: str, method: str, payload: bytes, *, streaming: bool
) -> grpc.aio.AioRpcError:
    """Send ``payload`` as the request body of ``method`` (a full /package.Service/Method path)."""
    identity = config.identity(caller)
    address = config.broker.address if target == config.broker.id else config.node(target).address
    async with grpc.aio.secure_channel(address, channel_credentials(identity), options=channel_options(target)) as ch:
        try:
            if streaming:
                stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = ch.unary_stream(
                    method, request_serializer=None, response_deserializer=None
                )
                async for _ in stream(payload, timeout=60):
                    pass
            else:
                unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = ch.unary_unary(
                    method, request_serializer=None, response_deserializer=None
                )
                await unary(payload, timeout=60)
        except grpc.aio.AioRpcError as error:
            return error
    raise AssertionError(f"{method} accepted {payload!r}")


def _methods(service: Any) -> list[tuple[str, bool]]:
    return [(f"/{service.full_name}/{m.name}", m.server_streaming) for m in service.methods]


def _audit_lines(config: FederationConfig) -> dict[str, list[bytes]]:
    logs = {config.broker.id: config.broker.audit_log, **{n: config.node(n).audit_log for n in ADAPTERS}}
    return {node: path.read_bytes().splitlines() if path.exists() else [] for node, path in logs.items()}


def _assert_every_node_serves_cleanly(fed: LocalFederation) -> None:
    config = fed.config

    async def health(target: str, caller: str) -> int:
        address = config.broker.address if target == config.broker.id else config.node(target).address
        identity = config.identity(caller)
        async with grpc.aio.secure_channel(
            address, channel_credentials(identity), options=channel_options(target)
        ) as channel:
            check = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            reply = await check(health_pb2.HealthCheckRequest(), timeout=60)
            return int(reply.status)

    for target in (config.broker.id, *ADAPTERS):
        assert _run(health(target, NATIONAL)) == health_pb2.HealthCheckResponse.SERVING
    for node_id, text in fed.logs():
        assert "Traceback" not in text, f"{node_id} printed a traceback"
        assert "Unexpected <class" not in text
    for node_id, lines in _audit_lines(config).items():
        for line in lines:
            assert len(line) <= AUDIT_LINE_CAP, f"{node_id}: an audit record of {len(line)} bytes"


def test_malformed_bytes_to_every_rpc_are_invalid_argument(fed: LocalFederation) -> None:
    config = fed.config
    services = [
        (config.broker.id, config.broker.id, adapter_pb2.DESCRIPTOR.services_by_name["AgencyAdapter"], TARGET),
        (NATIONAL, config.broker.id, broker_pb2.DESCRIPTOR.services_by_name["Broker"], config.broker.id),
        (NATIONAL, config.broker.id, health_pb2.DESCRIPTOR.services_by_name["Health"], TARGET),
    ]
    before = _audit_lines(config)
    for caller, _, service, target in services:
        for method, streaming in _methods(service):
            for payload in MALFORMED:
                error = _run(_call_raw(config, caller, target, method, payload, streaming=streaming))
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, error)
                assert "malformed protobuf" in (error.details() or ""), (method, error.details())
    after = _audit_lines(config)
    for node in (TARGET, config.broker.id):
        refused = [json.loads(line) for line in after[node][len(before[node]) :]]
        assert refused, f"{node} audited no refusal"
        assert {r["event"] for r in refused} == {"refused"}
        assert {r["status"] for r in refused} == {"INVALID_ARGUMENT"}
    _assert_every_node_serves_cleanly(fed)


def test_huge_repeated_fields_and_ids_are_refused_by_size(fed: LocalFederation) -> None:
    config = fed.config
    broker = config.broker.id
    many = [f"telecom-{i}" for i in range(100_000)]
    requests: list[tuple[str, Callable[[adapter_pb2_grpc.AgencyAdapterAsyncStub], Awaitable[Any]], str]] = [
        (
            "Open",
            lambda s: s.Open(adapter_pb2.OpenRequest(round_id=b"r" * 16, participants=many), timeout=60),
            "OpenRequest.participants",
        ),
        (
            "ShareKeys",
            lambda s: s.ShareKeys(
                adapter_pb2.ShareKeysRequest(adverts=[adapter_pb2.KeyAdvert(node_id="x")] * 50_000), timeout=60
            ),
            "ShareKeysRequest.adverts",
        ),
        (
            "Unmask",
            lambda s: s.Unmask(
                adapter_pb2.UnmaskRequest(signatures=[adapter_pb2.SurvivorSignature(node_id="x")] * 50_000),
                timeout=60,
            ),
            "UnmaskRequest.signatures",
        ),
        (
            "Open",
            lambda s: s.Open(
                adapter_pb2.OpenRequest(query=common_pb2.SignedQuery(coordinator_id="c" * 3_000_000)), timeout=60
            ),
            "OpenRequest.query.coordinator_id is 3000000 bytes",
        ),
    ]

    async def attack(call: Callable[[adapter_pb2_grpc.AgencyAdapterAsyncStub], Awaitable[Any]]) -> grpc.aio.AioRpcError:
        identity = config.identity(broker)
        address = config.node(TARGET).address
        async with grpc.aio.secure_channel(
            address, channel_credentials(identity), options=channel_options(TARGET)
        ) as channel:
            try:
                await call(adapter_pb2_grpc.AgencyAdapterStub(channel))
            except grpc.aio.AioRpcError as error:
                return error
        raise AssertionError("accepted")

    for name, call, expected in requests:
        error = _run(attack(call))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert expected in (error.details() or ""), (name, error.details())

    async def huge_coordinator_id() -> grpc.aio.AioRpcError:
        identity = config.identity(NATIONAL)
        async with grpc.aio.secure_channel(
            config.broker.address, channel_credentials(identity), options=channel_options(broker)
        ) as channel:
            request = broker_pb2.RunQueryRequest(query=common_pb2.SignedQuery(coordinator_id="c" * 3_000_000))
            try:
                async for _ in broker_pb2_grpc.BrokerStub(channel).RunQuery(request, timeout=60):
                    pass
            except grpc.aio.AioRpcError as error:
                return error
        raise AssertionError("accepted")

    error = _run(huge_coordinator_id())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "RunQueryRequest.query.coordinator_id is 3000000 bytes" in (error.details() or "")
    _assert_every_node_serves_cleanly(fed)


def _signed_run(fed: LocalFederation, canonical: bytes) -> grpc.aio.AioRpcError:
    config = fed.config
    identity: Identity = config.identity(NATIONAL)
    signed = common_pb2.SignedQuery(canonical=canonical, coordinator_id=NATIONAL, signature=identity.sign(canonical))

    async def run() -> grpc.aio.AioRpcError:
        async with grpc.aio.secure_channel(
            config.broker.address, channel_credentials(identity), options=channel_options(config.broker.id)
        ) as channel:
            try:
                async for _ in broker_pb2_grpc.BrokerStub(channel).RunQuery(
                    broker_pb2.RunQueryRequest(query=signed), timeout=60
                ):
                    pass
            except grpc.aio.AioRpcError as error:
                return error
        raise AssertionError("accepted")

    return _run(run())


def test_deep_json_is_refused_without_recursion(fed: LocalFederation) -> None:
    error = _signed_run(fed, b"[" * 100_000 + b"]" * 100_000)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "RunQueryRequest.query.canonical is 200000 bytes" in (error.details() or "")
    error = _signed_run(fed, b"[" * 30_000 + b"]" * 30_000)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "nests 30000 levels deep" in (error.details() or "")
    _assert_every_node_serves_cleanly(fed)


def test_long_refusal_reasons_are_cut_in_status_and_audit(fed: LocalFederation) -> None:
    config = fed.config
    query = new_query("cases", start=config.data_start, end=config.data_end, params={}, coordinator=NATIONAL)
    document = json.loads(query.canonical())
    document["params"] = {f"unknown-param-{i:05d}-{secrets.token_hex(4)}": "x" for i in range(1500)}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    assert len(canonical) < 64 * 1024
    error = _signed_run(fed, canonical)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error.details() or ""
    assert details.startswith("unknown params for cases")
    assert len(details.encode("utf-8")) <= MAX_REASON_BYTES
    assert "and 1495 more; allowed: districts" in details  # the catalog bounds its own list of names
    last = json.loads(_audit_lines(config)[config.broker.id][-1])
    assert last["event"] == "refused"
    assert last["reason"] == details
    _assert_every_node_serves_cleanly(fed)


def test_a_normal_query_still_runs_after_the_attacks(fed: LocalFederation) -> None:
    from broker.client import run_query

    config = fed.config
    query = new_query("population", start=config.data_end, end=config.data_end, params={}, coordinator=NATIONAL)
    answer = _run(run_query(config, NATIONAL, query))
    assert answer.rows
    _assert_every_node_serves_cleanly(fed)
