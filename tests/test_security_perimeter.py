"""The security perimeter (docs/security.md, issue 5): every attack on identities, roles, signed queries and policy is
tried against a real federation (broker and adapters as separate processes, mutual TLS on loopback), and each
must be refused with the right status AND leave a record in the refusing node's audit log.

The exception is what the TLS handshake refuses (no client certificate, a foreign CA, an expired certificate,
a server with the wrong name): that happens before any handler runs, so the node cannot audit it in Python.
For those the test shows the call fails UNAVAILABLE and that the node's audit log gets no new line, while the
same request over a valid connection is refused *and* audited (so "no line" means "never reached the service").

The federation is a small two-province scenario (Hubei 42 and Hunan 43), so that the provincial coordinator
``hubei-jpc`` has a neighbouring province to be refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from adapters.service import AdapterService
from broker.client import Answer, answer_from_pb, run_query, sign_query
from broker.service import BrokerService
from fedbroker.cli import main as fedbroker_main
from fedbroker.harness import LocalFederation
from federation.audit import AuditLog
from federation.catalog import NATIONAL as NATIONAL_SCOPE
from federation.catalog import RoundPlan, Scope, kind, new_query
from federation.catalog.base import OUTSIDE, OUTSIDE_NAME
from federation.catalog.jurisdiction import scope_of
from federation.config import FederationConfig, dump_federation, load_federation
from federation.errors import AuthenticationFailed, ConfigError
from federation.identity import Identity, Roster
from federation.pki import generate_ca, issue_certificate
from federation.queries import Query
from federation.registry import load_registry
from federation.signed_query import verify_signed_query
from federation.tls import channel_credentials, channel_options
from federation.v1 import adapter_pb2, adapter_pb2_grpc, broker_pb2, broker_pb2_grpc, common_pb2
from tests import oracle
from tests.federation_fixtures import EXACT, oracle_sum, own_federation, restart_and_rejoin
from tests.layouts import limit_vector
from tests.test_round_refusals import EvilBroker

pytestmark = pytest.mark.slow
T = TypeVar("T")

NATIONAL = "nhc-national"
PROVINCIAL = "hubei-jpc"  # jurisdiction 42 (Hubei)
OTHER_PROVINCE = 43  # Hunan: in the domain, outside hubei-jpc's jurisdiction
TELECOM = ("telecom-a", "telecom-b", "telecom-c")
HEALTH = ("health-net-1", "health-net-2", "health-net-3")
NO_POPULATION = "telecom-c"  # its policy here does not allow population queries
MOBILITY_K = 3
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    from fedbroker.scenario import generate_scenario

    out = tmp_path_factory.mktemp("perimeter") / "two-provinces"
    generate_scenario(out, provinces=[42, OTHER_PROVINCE], subscribers=3000, days=15, seed=5)
    config = load_federation(out / "federation.yaml")
    nodes = tuple(
        dataclasses.replace(
            node,
            policy=dataclasses.replace(
                node.policy,
                min_contributors=2,
                privacy=EXACT,
                allowed_queries=tuple(
                    q for q in node.policy.allowed_queries if node.id != NO_POPULATION or q != "population"
                ),
            ),
        )
        for node in config.nodes
    )
    # cases_k 1: importation risk names an origin only where C_o >= cases_k, and the small scenario's origins
    # outside Hubei have one or two confirmed cases; the outside-origin checks below need them named.
    broker = dataclasses.replace(config.broker, mobility_k=MOBILITY_K, cases_k=1)
    roster = out / "federation.perimeter.yaml"
    dump_federation(dataclasses.replace(config, nodes=nodes, broker=broker), roster)
    with own_federation(roster, out / "run", nodes=TELECOM + HEALTH) as federation:
        yield federation


# -- helpers ------------------------------------------------------------------------------------------------


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def audit_path(config: FederationConfig, member_id: str) -> Path:
    return config.broker.audit_log if member_id == config.broker.id else config.node(member_id).audit_log


def audit_records(config: FederationConfig, member_id: str) -> list[dict[str, Any]]:
    path = audit_path(config, member_id)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def refused_and_audited(
    fed: LocalFederation, member_id: str, action: Callable[[], Awaitable[Any]], code: grpc.StatusCode
) -> tuple[str, dict[str, Any]]:
    """Run ``action``; it must fail with ``code``, and ``member_id`` must have audited the refusal with the
    very message the caller got. Returns (message, audit record)."""
    before = len(audit_records(fed.config, member_id))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        run(action())
    assert caught.value.code() == code, caught.value.details()
    message = caught.value.details() or ""
    assert message and "Traceback" not in message
    fresh = audit_records(fed.config, member_id)[before:]
    matching = [r for r in fresh if r["event"] == "refused" and r["reason"] == message]
    assert len(matching) == 1, fresh
    assert matching[0]["status"] == code.name
    return message, matching[0]


def rejected_in_handshake(fed: LocalFederation, member_id: str, action: Callable[[], Awaitable[Any]]) -> None:
    """The TLS handshake refuses ``action``: UNAVAILABLE, and the node's audit log gets no new line (the
    handler never ran; gRPC's transport log is the only trace of a failed handshake)."""
    path = audit_path(fed.config, member_id)
    before = path.read_bytes() if path.exists() else b""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        run(action())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
    after = path.read_bytes() if path.exists() else b""
    assert after == before, "a handshake failure reached the service"


async def call_broker(
    config: FederationConfig, credentials: grpc.ChannelCredentials, signed: common_pb2.SignedQuery
) -> broker_pb2.QueryResult:
    """RunQuery at the broker with the given credentials; returns the result or raises AioRpcError."""
    async with grpc.aio.secure_channel(
        config.broker.address, credentials, options=channel_options(config.broker.id)
    ) as channel:
        stub = broker_pb2_grpc.BrokerStub(channel)
        result: broker_pb2.QueryResult | None = None
        async for event in stub.RunQuery(broker_pb2.RunQueryRequest(query=signed), timeout=30):
            if event.HasField("result"):
                result = event.result
        assert result is not None
        return result


async def call_adapter(
    config: FederationConfig, credentials: grpc.ChannelCredentials, node_id: str, request: adapter_pb2.OpenRequest
) -> adapter_pb2.OpenResponse:
    async with grpc.aio.secure_channel(
        config.node(node_id).address, credentials, options=channel_options(node_id)
    ) as channel:
        response: adapter_pb2.OpenResponse = await adapter_pb2_grpc.AgencyAdapterStub(channel).Open(request, timeout=30)
        return response


def signed_query(
    config: FederationConfig, kind: str, coordinator: str = NATIONAL, days: int = 3, **params: str
) -> tuple[Query, common_pb2.SignedQuery]:
    end = config.data_end
    start = None if kind == "importation-risk" else end - dt.timedelta(days=days - 1)
    query = new_query(kind, start=start, end=end, params=params, coordinator=coordinator)
    return query, sign_query(config.identity(coordinator), query)


def open_request(
    config: FederationConfig,
    query: Query,
    signed: common_pb2.SignedQuery,
    participants: tuple[str, ...],
    threshold: int = 2,
) -> adapter_pb2.OpenRequest:
    """The Open request a broker would send for the query's first round."""
    registry = load_registry(config.domain.provinces)
    signer = next(c for c in config.coordinators if c.id == query.coordinator)
    plan = kind(query.kind).rounds(query, registry, scope_of(signer))[0]
    spec = common_pb2.VectorSpec(
        aggregate=plan.aggregate,
        length=plan.length,
        registry_hash=registry.hash,
        start=plan.start.isoformat() if plan.start else "",
        end=plan.end.isoformat() if plan.end else "",
        params=dict(plan.params),
    )
    return adapter_pb2.OpenRequest(
        round_id=secrets.token_bytes(16), query=signed, spec=spec, participants=list(participants), threshold=threshold
    )


def pki_dir(config: FederationConfig) -> Path:
    return config.ca.parent


def stolen_identity(node_id: str, cert_key: tuple[bytes, bytes], ca_pem: bytes) -> Identity:
    """An identity that skips Identity.load's checks, as an attacker holding a bad certificate would."""
    return Identity(node_id=node_id, cert_pem=cert_key[0], key_pem=cert_key[1], ca_pem=ca_pem)


def forged_credentials(config: FederationConfig, attack: str, claimed_id: str) -> grpc.ChannelCredentials:
    """Client credentials for one handshake attack, each claiming to be ``claimed_id``; every one trusts the
    real federation CA, so only the server's check of the client stops it."""
    ca_pem = config.ca.read_bytes()
    if attack == "no client certificate":
        return grpc.ssl_channel_credentials(root_certificates=ca_pem)
    if attack == "certificate from another CA":
        foreign_ca = generate_ca("attacker CA")
        cert_key = issue_certificate(*foreign_ca, claimed_id, not_before=NOW, not_after=NOW + dt.timedelta(days=1))
        return channel_credentials(stolen_identity(claimed_id, cert_key, ca_pem))
    if attack == "expired certificate":
        ca_key = (pki_dir(config) / "ca.key").read_bytes()
        cert_key = issue_certificate(
            ca_pem,
            ca_key,
            claimed_id,
            not_before=NOW - dt.timedelta(days=30),
            not_after=NOW - dt.timedelta(days=1),
        )
        return channel_credentials(stolen_identity(claimed_id, cert_key, ca_pem))
    raise AssertionError(attack)


def column(answer: Answer, name: str) -> list[Any]:
    at = answer.columns.index(name)
    return [row[at] for row in answer.rows]


# -- 1. identity: the TLS handshake ----------------------------------------------------------------------------

HANDSHAKE_ATTACKS = ("no client certificate", "certificate from another CA", "expired certificate")


@pytest.mark.parametrize("attack", HANDSHAKE_ATTACKS)
def test_handshake_attack_on_the_broker_never_reaches_the_service(fed: LocalFederation, attack: str) -> None:
    config = fed.config
    _, signed = signed_query(config, "cases")
    rejected_in_handshake(
        fed, config.broker.id, lambda: call_broker(config, forged_credentials(config, attack, NATIONAL), signed)
    )
    # Control: the same bytes over a valid connection reach the service, which refuses and audits them
    # (a node's certificate is not a coordinator's), so an unchanged log above means "never reached it".
    message, _ = refused_and_audited(
        fed,
        config.broker.id,
        lambda: call_broker(config, channel_credentials(config.identity("telecom-a")), signed),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "telecom-a" in message and "only coordinators" in message


@pytest.mark.parametrize("attack", HANDSHAKE_ATTACKS)
def test_handshake_attack_on_an_adapter_never_reaches_the_service(fed: LocalFederation, attack: str) -> None:
    config = fed.config
    query, signed = signed_query(config, "cases")
    request = open_request(config, query, signed, HEALTH)
    # The attacker claims the broker's id, the only caller an adapter obeys.
    credentials = forged_credentials(config, attack, config.broker.id)
    rejected_in_handshake(fed, "health-net-1", lambda: call_adapter(config, credentials, "health-net-1", request))
    message, _ = refused_and_audited(
        fed,
        "health-net-1",
        lambda: call_adapter(config, channel_credentials(config.identity(NATIONAL)), "health-net-1", request),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "only the broker" in message


def test_roster_certificates_must_name_their_ids_and_be_valid(fed: LocalFederation, tmp_path: Path) -> None:
    config = fed.config
    pki = pki_dir(config)
    with pytest.raises(ConfigError, match="roster certificate of telecom-a names 'telecom-b'"):
        Roster.from_files({"telecom-a": pki / "telecom-b.pem"}, ca=config.ca)
    # Both services build their roster at start-up, so a swapped certificate stops the node from starting.
    swapped = dataclasses.replace(
        config,
        nodes=tuple(
            dataclasses.replace(n, cert=pki / "telecom-b.pem") if n.id == "telecom-a" else n for n in config.nodes
        ),
    )
    registry = load_registry(config.domain.provinces)
    with AuditLog(tmp_path / "broker.jsonl", "broker") as log, pytest.raises(ConfigError, match="telecom-a"):
        BrokerService(swapped, registry, log, {})
    node = swapped.node("health-net-1")
    with AuditLog(tmp_path / "adapter.jsonl", node.id) as log, pytest.raises(ConfigError, match="telecom-a"):
        AdapterService(swapped, node, config.identity(node.id), registry, log)
    # A certificate of the right id from another CA, or an expired one from ours, is refused as well.
    foreign = issue_certificate(
        *generate_ca("attacker CA"), "telecom-a", not_before=NOW, not_after=NOW + dt.timedelta(1)
    )
    (tmp_path / "foreign.pem").write_bytes(foreign[0])
    with pytest.raises(ConfigError, match="not issued by the federation CA"):
        Roster.from_files({"telecom-a": tmp_path / "foreign.pem"}, ca=config.ca)
    expired = issue_certificate(
        config.ca.read_bytes(),
        (pki / "ca.key").read_bytes(),
        "telecom-a",
        not_before=NOW - dt.timedelta(days=30),
        not_after=NOW - dt.timedelta(days=1),
    )
    (tmp_path / "expired.pem").write_bytes(expired[0])
    with pytest.raises(ConfigError, match="expired"):
        Roster.from_files({"telecom-a": tmp_path / "expired.pem"}, ca=config.ca)


def test_query_signed_by_a_coordinator_whose_certificate_expired_is_refused(
    fed: LocalFederation, tmp_path: Path
) -> None:
    config = fed.config
    expired = issue_certificate(
        config.ca.read_bytes(),
        (pki_dir(config) / "ca.key").read_bytes(),
        NATIONAL,
        not_before=NOW - dt.timedelta(days=30),
        not_after=NOW - dt.timedelta(days=1),
    )
    (tmp_path / "expired.pem").write_bytes(expired[0])
    stale = dataclasses.replace(
        config,
        coordinators=tuple(
            dataclasses.replace(c, cert=tmp_path / "expired.pem") if c.id == NATIONAL else c
            for c in config.coordinators
        ),
    )
    query = new_query("cases", start=config.data_end, end=config.data_end, params={}, coordinator=NATIONAL)
    canonical = query.canonical()
    signature = stolen_identity(NATIONAL, expired, config.ca.read_bytes()).sign(canonical)
    with pytest.raises(AuthenticationFailed, match="expired"):
        # The roster as a running node holds it: loaded while the certificate was valid, checked again per query.
        verify_signed_query(stale, Roster({NATIONAL: expired[0]}), canonical, NATIONAL, signature)


# -- 1b. roles: who may call what --------------------------------------------------------------------------------


@pytest.mark.parametrize("impostor", [NATIONAL, "telecom-b"])
def test_only_the_broker_may_drive_an_adapter(fed: LocalFederation, impostor: str) -> None:
    config = fed.config
    query, signed = signed_query(config, "population")
    request = open_request(config, query, signed, TELECOM)
    message, record = refused_and_audited(
        fed,
        "telecom-a",
        lambda: call_adapter(config, channel_credentials(config.identity(impostor)), "telecom-a", request),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "only the broker" in message and impostor in message
    assert record["peer"] == impostor  # identity from the verified certificate


def test_adapter_certificate_cannot_act_as_a_coordinator(fed: LocalFederation) -> None:
    config = fed.config
    _, signed = signed_query(config, "cases")
    message, record = refused_and_audited(
        fed,
        config.broker.id,
        lambda: call_broker(config, channel_credentials(config.identity("health-net-2")), signed),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "only coordinators may query" in message and record["peer"] == "health-net-2"


def test_coordinator_cannot_submit_another_coordinators_query(fed: LocalFederation) -> None:
    config = fed.config
    _, signed = signed_query(config, "cases", coordinator=NATIONAL)
    message, record = refused_and_audited(
        fed,
        config.broker.id,
        lambda: call_broker(config, channel_credentials(config.identity(PROVINCIAL)), signed),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert f"{PROVINCIAL} submitted a query signed by {NATIONAL}" in message and record["peer"] == PROVINCIAL


@pytest.mark.parametrize(
    ("claimed_id", "expected"),
    [(NATIONAL, "not the one in the roster"), ("mallory", "'mallory' is not in the federation roster")],
)
def test_certificate_from_our_ca_but_not_in_the_roster_is_refused(
    fed: LocalFederation, claimed_id: str, expected: str
) -> None:
    """A certificate the federation CA issued (valid, unexpired) that the roster does not list: an old one
    replaced by a reissue, or a stray one. The broker accepts only the roster's own certificate for an id."""
    config = fed.config
    cert_key = issue_certificate(
        config.ca.read_bytes(),
        (pki_dir(config) / "ca.key").read_bytes(),
        claimed_id,
        not_before=NOW - dt.timedelta(minutes=5),
        not_after=NOW + dt.timedelta(days=1),
    )
    stray = stolen_identity(claimed_id, cert_key, config.ca.read_bytes())
    _, signed = signed_query(config, "cases")
    message, record = refused_and_audited(
        fed,
        config.broker.id,
        lambda: call_broker(config, channel_credentials(stray), signed),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert expected in message and record["peer"] == claimed_id


# -- 2. jurisdictions --------------------------------------------------------------------------------------------


def test_provincial_coordinator_asking_for_another_province_is_refused(fed: LocalFederation) -> None:
    config = fed.config
    registry = load_registry(config.domain.provinces)
    hunan = int(registry.codes[registry.province_codes == OTHER_PROVINCE][0])
    hubei = int(registry.codes[registry.province_codes == 42][0])
    query, signed = signed_query(config, "cases", coordinator=PROVINCIAL, districts=f"{hubei},{hunan}")
    adapters_before = {n: len(audit_records(config, n)) for n in HEALTH}
    message, record = refused_and_audited(
        fed,
        config.broker.id,
        lambda: call_broker(config, channel_credentials(config.identity(PROVINCIAL)), signed),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert str(hunan) in message and "province 42" in message and str(hubei) not in message
    assert record["peer"] == PROVINCIAL
    # No round was opened for it: no adapter heard of the query.
    assert all(len(audit_records(config, n)) == adapters_before[n] for n in HEALTH)
    # A broker that skipped the check would still get nothing: each adapter refuses the query itself.
    request = open_request(config, query, signed, HEALTH)
    message, _ = refused_and_audited(
        fed,
        "health-net-1",
        lambda: call_adapter(config, channel_credentials(config.identity(config.broker.id)), "health-net-1", request),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert str(hunan) in message and "province 42" in message


def test_provincial_results_hold_only_its_own_districts(fed: LocalFederation) -> None:
    config = fed.config
    registry = load_registry(config.domain.provinces)
    inside = {int(c) for c in registry.codes[registry.province_codes == 42]}

    def ask(coordinator: str, kind: str, **params: str) -> Answer:
        end = config.data_end
        start = None if kind == "importation-risk" else end - dt.timedelta(days=6)
        query = new_query(kind, start=start, end=end, params=params, coordinator=coordinator)
        return run(run_query(config, coordinator, query))

    population = ask(PROVINCIAL, "population")
    assert set(column(population, "district")) == inside  # every inside district, nothing else
    cases = ask(PROVINCIAL, "cases")
    assert cases.rows and set(column(cases, "district")) <= inside
    risk = ask(PROVINCIAL, "importation-risk", top="20")
    assert risk.rows and set(column(risk, "district")) <= inside
    # Every origin still counts in I_d: the inside rows are the national ones, and each named origin is the
    # national one, shown as "outside the province" (its share kept) when it lies outside. Whether this small
    # world has such an origin is luck of its random stream; test_catalog checks the hiding on sums that do.
    national_risk = ask(NATIONAL, "importation-risk", top="20")
    national_rows = {row[0]: row for row in national_risk.rows}
    at = risk.columns.index("top_origins")
    for row in risk.rows:
        same = national_rows[row[0]]
        assert row[:at] == same[:at] and row[at + 1 :] == same[at + 1 :]
        named = [e for e in str(same[at]).split("; ") if e]
        shown = [e if int(e.split(" ", 1)[0]) in inside else f"{OUTSIDE_NAME} {e[e.rindex(' (') + 1 :]}" for e in named]
        assert row[at] == "; ".join(shown)

    provincial = ask(PROVINCIAL, "flows", source="telecom")
    national = ask(NATIONAL, "flows", source="telecom")
    visible = inside | {OUTSIDE}
    pairs = list(zip(column(provincial, "origin"), column(provincial, "destination"), strict=True))
    assert all(o in visible and d in visible and (o, d) != (OUTSIDE, OUTSIDE) for o, d in pairs)
    for o, o_name, d, d_name in zip(*(column(provincial, c) for c in provincial.columns[:4]), strict=True):
        assert (o == OUTSIDE) == (o_name == OUTSIDE_NAME) and (d == OUTSIDE) == (d_name == OUTSIDE_NAME)
    assert any(
        o not in inside or d not in inside
        for o, d in zip(*(column(national, c) for c in ("origin", "destination")), strict=True)
    ), "the national view should see flows outside Hubei"

    # Against an oracle from the raw tables: inside pairs as released to everyone, border flows summed exactly.
    codes = registry.codes
    start, end = config.data_end - dt.timedelta(days=6), config.data_end
    trips = oracle_sum(config, "telecom", lambda con: oracle.oracle_trips(con, codes, start, end)).astype(np.int64)
    n = len(codes)
    od = trips.reshape(n, n)
    is_inside = np.isin(codes, sorted(inside))
    want: dict[tuple[int, int], int] = {}
    small = 0
    for o in range(n):
        for d in range(n):
            if o != d and is_inside[o] and is_inside[d] and od[o, d]:
                if od[o, d] >= MOBILITY_K:
                    want[int(codes[o]), int(codes[d])] = int(od[o, d])
                else:
                    small += 1
    for i in np.flatnonzero(is_inside):
        for key, total in (
            ((int(codes[i]), OUTSIDE), int(od[i, ~is_inside].sum())),
            ((OUTSIDE, int(codes[i])), int(od[~is_inside, i].sum())),
        ):
            if total >= MOBILITY_K:
                want[key] = total
            elif total:
                small += 1
    got = {
        (o, d): t for o, d, t in zip(*(column(provincial, c) for c in ("origin", "destination", "trips")), strict=True)
    }
    assert got == want
    assert any(OUTSIDE in key for key in want), "the scenario should have travel across Hubei's border"
    assert provincial.suppressed == small

    # With a district filter, only pairs touching those districts, and only their own border rows.
    busiest = max(inside, key=lambda code: want.get((OUTSIDE, code), 0))
    filtered = ask(PROVINCIAL, "flows", source="telecom", districts=str(busiest))
    got_filtered = {
        (o, d): t for o, d, t in zip(*(column(filtered, c) for c in ("origin", "destination", "trips")), strict=True)
    }
    assert got_filtered == {key: t for key, t in want.items() if busiest in key}


def round_vector(
    config: FederationConfig, query: Query, spec: common_pb2.VectorSpec, claim_dropped: str | None = None
) -> npt.NDArray[np.uint64]:
    """One round of ``query``, signed by its coordinator, driven through the telecom adapters
    (:meth:`EvilBroker.drive_round`): the unmasked sum, exactly as the broker would hold it."""
    signed = sign_query(config.identity(query.coordinator), query)
    return EvilBroker(config).drive_round(signed, spec, claim_dropped=claim_dropped)


def vector_spec(plan: RoundPlan, registry_hash: str) -> common_pb2.VectorSpec:
    return common_pb2.VectorSpec(
        aggregate=plan.aggregate,
        length=plan.length,
        registry_hash=registry_hash,
        start=plan.start.isoformat() if plan.start else "",
        end=plan.end.isoformat() if plan.end else "",
        params=dict(plan.params),
    )


def test_provincial_round_vectors_carry_no_outside_cell(fed: LocalFederation) -> None:
    """A provincial query's rounds are computed limited to the province at every adapter (docs/protocol.md,
    "Vector layouts"), and its released answer is the one the whole-domain rounds gave (noise off)."""
    config = fed.config
    registry = load_registry(config.domain.provinces)
    inside = registry.province_codes == 42
    n, m = len(registry), int(inside.sum())
    end = config.data_end
    start = end - dt.timedelta(days=6)
    hubei = scope_of(next(c for c in config.coordinators if c.id == PROVINCIAL))

    # What the adapters computed, by their own audit: each round's layout and the cells of its vector.
    for name, params, layouts in (
        ("flows", {"source": "telecom"}, {"trips": ("border", (m + 1) ** 2 - 1)}),
        ("population", {}, {"presence": ("inside", m * 7)}),
        (
            "importation-risk",
            {},
            {"trips": ("inflow", n * m), "residents": ("domain", n), "confirmed": ("domain", n * 3)},
        ),
    ):
        query = new_query(
            name, start=None if name == "importation-risk" else start, end=end, params=params, coordinator=PROVINCIAL
        )
        provincial = run(run_query(config, PROVINCIAL, query))
        national = run(
            run_query(config, NATIONAL, dataclasses.replace(query, coordinator=NATIONAL, nonce=secrets.token_hex(16)))
        )
        if name != "flows":  # flows' border rows exist only for a provincial coordinator (checked by the oracle above)
            at = national.columns.index("district")
            assert provincial.rows == [r for r in national.rows if int(r[at]) in set(registry.codes[inside].tolist())]
        plans = {p.aggregate: p for p in kind(name).rounds(query, registry, hubei)}
        assert {p.name: (p.layout or "domain", p.length) for p in plans.values()} == layouts
        # A window-free round (residents) released earlier in its period is reused by the broker, not opened.
        broker_records = audit_records(config, config.broker.id)
        reused = {r["round"] for r in broker_records if r["event"] == "round.reused" and r["nonce"] == query.nonce}
        for node in TELECOM + HEALTH:
            records = audit_records(config, node)
            opened = {r["round"]: r for r in records if r["event"] == "round.open" and r["nonce"] == query.nonce}
            cells = {r["round"]: r["cells"] for r in records if r["event"] == "round.masked-input"}
            for round_id, record in opened.items():
                plan = plans[record["aggregate"]]
                assert record["layout"] == (plan.layout or "domain"), (node, record)
                assert cells[round_id] == plan.length, (node, plan.name)
            serves = not (name == "population" and node == NO_POPULATION)
            expected = sum(p.agency_kind == config.node(node).kind and p.name not in reused for p in plans.values())
            assert len(opened) == serves * expected, node

    # The border round's sum, as the broker holds it: inside x inside, one outside row and column, no
    # outside x outside cell, each the oracle's exact count.
    query = new_query("flows", start=start, end=end, params={"source": "telecom"}, coordinator=PROVINCIAL)
    (trips,) = kind("flows").rounds(query, registry, hubei)
    got = round_vector(config, query, vector_spec(trips, registry.hash))
    whole = oracle_sum(config, "telecom", lambda con: oracle.oracle_trips(con, registry.codes, start, end))
    assert got.shape == ((m + 1) ** 2 - 1,)
    assert np.array_equal(got, limit_vector(whole, "border", inside))
    assert got[m :: m + 1].sum() > 0 and got[m * (m + 1) :].sum() > 0, "the scenario should cross the border"


def test_a_whole_domain_or_foreign_round_for_a_provincial_signer_is_refused_by_every_adapter(
    fed: LocalFederation,
) -> None:
    """A broker asking the adapters, for a provincial coordinator's signed query, for the whole-domain vector
    (or another province's) is refused by each of them, which recomputes the plan for the signer's jurisdiction."""
    config = fed.config
    registry = load_registry(config.domain.provinces)
    query, signed = signed_query(config, "flows", coordinator=PROVINCIAL, source="telecom")
    (whole,) = kind("flows").rounds(query, registry, NATIONAL_SCOPE)
    (hunan,) = kind("flows").rounds(query, registry, Scope(OTHER_PROVINCE))
    (own,) = kind("flows").rounds(query, registry, scope_of(next(c for c in config.coordinators if c.id == PROVINCIAL)))
    assert whole.layout is None and hunan.province == OTHER_PROVINCE and own.province == 42
    for plan, asked in ((whole, "over the whole domain"), (hunan, f"limited to province '{OTHER_PROVINCE}'")):
        request = adapter_pb2.OpenRequest(
            round_id=secrets.token_bytes(16),
            query=signed,
            spec=vector_spec(plan, registry.hash),
            participants=list(TELECOM),
            threshold=2,
        )
        for node in TELECOM:
            opened_before = sum(r["event"] == "round.open" for r in audit_records(config, node))
            message, _ = refused_and_audited(
                fed,
                node,
                lambda node=node, request=request: call_adapter(  # type: ignore[misc]
                    config, channel_credentials(config.identity(config.broker.id)), node, request
                ),
                grpc.StatusCode.PERMISSION_DENIED,
            )
            assert f"{PROVINCIAL} (provincial, province 42)" in message and asked in message, message
            assert "limited to province '42' in layout 'border'" in message and len(message) < 400
            assert sum(r["event"] == "round.open" for r in audit_records(config, node)) == opened_before


# -- 3. signed queries -------------------------------------------------------------------------------------------


def test_tampered_query_signature_is_refused_by_the_broker(fed: LocalFederation) -> None:
    config = fed.config
    query, signed = signed_query(config, "cases")
    document = json.loads(signed.canonical)
    document["start"] = config.data_start.isoformat()  # someone on the way widens the window
    tampered = common_pb2.SignedQuery(
        canonical=json.dumps(document, sort_keys=True, separators=(",", ":")).encode(),
        coordinator_id=NATIONAL,
        signature=signed.signature,
    )
    message, _ = refused_and_audited(
        fed,
        config.broker.id,
        lambda: call_broker(config, channel_credentials(config.identity(NATIONAL)), tampered),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert "does not verify" in message and NATIONAL in message
    # An adapter handed the tampered query directly refuses it the same way.
    message, _ = refused_and_audited(
        fed,
        "health-net-2",
        lambda: call_adapter(
            config,
            channel_credentials(config.identity(config.broker.id)),
            "health-net-2",
            open_request(config, query, tampered, HEALTH),
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert "does not verify" in message


def test_replayed_signed_query_is_refused_by_the_broker_and_the_adapters(fed: LocalFederation) -> None:
    config = fed.config
    query, signed = signed_query(config, "cases")
    coordinator = channel_credentials(config.identity(NATIONAL))
    first = answer_from_pb(run(call_broker(config, coordinator, signed)))
    assert first.contributors["cases"]["contributed"] == list(HEALTH)
    # The adapters saw the coordinator's query unchanged: its nonce is in their approval records.
    for node in HEALTH:
        opened = [r for r in audit_records(config, node) if r["event"] == "round.open" and r["nonce"] == query.nonce]
        assert len(opened) == 1 and opened[0]["decision"] == "approved" and opened[0]["coordinator"] == NATIONAL
    message, _ = refused_and_audited(
        fed, config.broker.id, lambda: call_broker(config, coordinator, signed), grpc.StatusCode.ALREADY_EXISTS
    )
    assert query.nonce in message and "sign a new one" in message
    # The broker (or whoever holds its certificate) replaying the query to an adapter in a new round fails too.
    message, _ = refused_and_audited(
        fed,
        "health-net-1",
        lambda: call_adapter(
            config,
            channel_credentials(config.identity(config.broker.id)),
            "health-net-1",
            open_request(config, query, signed, HEALTH),
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert "replayed query" in message


# -- 4. the adapters' own policy ---------------------------------------------------------------------------------


def test_query_kind_forbidden_by_an_adapter_policy_is_refused_there(fed: LocalFederation) -> None:
    config = fed.config
    before = len(audit_records(config, NO_POPULATION))
    query = new_query(
        "population",
        start=config.data_end - dt.timedelta(days=2),
        end=config.data_end,
        params={},
        coordinator=NATIONAL,
    )
    answer = run(run_query(config, NATIONAL, query))
    coverage = answer.contributors["presence"]
    assert coverage["contributed"] == ["telecom-a", "telecom-b"]
    (missing,) = coverage["missing"]
    assert missing.startswith(f"{NO_POPULATION}: open: ")
    assert f"{NO_POPULATION} refused: its policy allows" in missing and "not 'population'" in missing
    fresh = audit_records(config, NO_POPULATION)[before:]
    refusals = [r for r in fresh if r["event"] == "refused"]
    assert len(refusals) == 1 and refusals[0]["status"] == "PERMISSION_DENIED"
    assert refusals[0]["peer"] == config.broker.id and refusals[0]["reason"] in missing
    assert not [r for r in fresh if r["event"].startswith("round.")], "it must not have computed anything"
    broker_records = audit_records(config, config.broker.id)
    summed = [r for r in broker_records if r["event"] == "round.summed"][-1]
    assert summed["missing"] == [NO_POPULATION] and summed["missing_reasons"] == [missing]
    released = [r for r in broker_records if r["event"] == "query.released"][-1]
    assert released["nonce"] == query.nonce and released["missing"] == [NO_POPULATION]


def test_round_naming_an_unknown_participant_is_refused(fed: LocalFederation) -> None:
    config = fed.config
    query, signed = signed_query(config, "population")
    request = open_request(config, query, signed, ("telecom-a", "telecom-b", "telecom-z"))
    message, record = refused_and_audited(
        fed,
        "telecom-a",
        lambda: call_adapter(config, channel_credentials(config.identity(config.broker.id)), "telecom-a", request),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "unknown node(s) telecom-z" in message and record["method"] == "Open"


# -- 4b. a server impersonating an adapter ----------------------------------------------------------------------


class _RecordingAdapter(adapter_pb2_grpc.AgencyAdapterServicer):
    """A server that answers adapter RPCs; it records every call that got past the TLS handshake."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def Open(self, request: Any, context: Any) -> adapter_pb2.OpenResponse:
        self.calls.append("Open")
        return adapter_pb2.OpenResponse()

    async def Budget(self, request: Any, context: Any) -> common_pb2.BudgetReport:
        return common_pb2.BudgetReport()

    async def Describe(self, request: Any, context: Any) -> adapter_pb2.NodeDescription:
        self.calls.append("Describe")
        return adapter_pb2.NodeDescription(node_id="telecom-b")

    async def ShareKeys(self, request: Any, context: Any) -> adapter_pb2.ShareKeysResponse:
        self.calls.append("ShareKeys")
        return adapter_pb2.ShareKeysResponse()

    async def MaskedInput(self, request: Any, context: Any) -> AsyncIterator[adapter_pb2.MaskedInputChunk]:
        self.calls.append("MaskedInput")
        yield adapter_pb2.MaskedInputChunk()

    async def Consistency(self, request: Any, context: Any) -> adapter_pb2.ConsistencyResponse:
        self.calls.append("Consistency")
        return adapter_pb2.ConsistencyResponse()

    async def Unmask(self, request: Any, context: Any) -> adapter_pb2.UnmaskResponse:
        self.calls.append("Unmask")
        return adapter_pb2.UnmaskResponse()

    async def Abort(self, request: Any, context: Any) -> adapter_pb2.AbortResponse:
        self.calls.append("Abort")
        return adapter_pb2.AbortResponse()

    async def Status(self, request: Any, context: Any) -> Any:
        self.calls.append("Status")
        raise NotImplementedError


@pytest.fixture()
def impostor_at_telecom_b(fed: LocalFederation) -> Iterator[tuple[int, Identity]]:
    """telecom-b is killed; its port is free for a server with another member's certificate."""
    port = fed.processes["telecom-b"].port
    fed.kill("telecom-b")
    try:
        yield port, fed.config.identity(NATIONAL)
    finally:
        # The broker's channel to telecom-b backs off after the impostor: wait until it reaches the real one.
        restart_and_rejoin(fed, ["telecom-b"], NATIONAL)


def test_server_with_a_coordinator_certificate_at_an_adapter_address_is_rejected(
    fed: LocalFederation, impostor_at_telecom_b: tuple[int, Identity]
) -> None:
    from federation.tls import server_credentials, server_options

    port, coordinator = impostor_at_telecom_b
    config = fed.config
    rogue = _RecordingAdapter()

    async def scenario() -> tuple[Answer, grpc.aio.AioRpcError | None]:
        server = grpc.aio.server(options=server_options())
        adapter_pb2_grpc.add_AgencyAdapterServicer_to_server(rogue, server)
        assert server.add_secure_port(f"127.0.0.1:{port}", server_credentials(coordinator)) == port
        await server.start()
        try:
            # The broker's own dialling: its certificate, the name it expects there.
            async with grpc.aio.secure_channel(
                f"127.0.0.1:{port}",
                channel_credentials(config.identity(config.broker.id)),
                channel_options("telecom-b"),
            ) as channel:
                try:
                    await adapter_pb2_grpc.AgencyAdapterStub(channel).Describe(
                        adapter_pb2.DescribeRequest(), timeout=10
                    )
                    direct = None
                except grpc.aio.AioRpcError as error:
                    direct = error
            # The real broker process, whose channel to telecom-b now finds the impostor.
            query = new_query(
                "flows", start=config.data_end, end=config.data_end, params={"source": "telecom"}, coordinator=NATIONAL
            )
            answer = await run_query(config, NATIONAL, query)
        finally:
            await server.stop(None)
        return answer, direct

    answer, direct = run(scenario())
    assert direct is not None and direct.code() == grpc.StatusCode.UNAVAILABLE
    assert rogue.calls == [], "a server presenting another member's certificate was trusted"
    coverage = answer.contributors["trips"]
    assert coverage["contributed"] == ["telecom-a", "telecom-c"]
    (missing,) = coverage["missing"]
    assert missing.startswith("telecom-b: open: telecom-b unavailable") and "Hostname Verification" in missing
    summed = [r for r in audit_records(config, config.broker.id) if r["event"] == "round.summed"][-1]
    assert summed["missing_reasons"] == [missing]


# -- 5. the audit trail itself -----------------------------------------------------------------------------------


def test_every_node_audit_log_verifies_after_refusals(fed: LocalFederation, capsys: pytest.CaptureFixture[str]) -> None:
    """Each member refuses one request here (whatever other tests ran before), and then every log still
    verifies and every refusal record names method, peer, status and reason."""
    config = fed.config
    query, signed = signed_query(config, "cases")
    request = open_request(config, query, signed, HEALTH)
    coordinator = channel_credentials(config.identity(NATIONAL))
    for member in TELECOM + HEALTH:
        action = functools.partial(call_adapter, config, coordinator, member, request)
        refused_and_audited(fed, member, action, grpc.StatusCode.PERMISSION_DENIED)
    refused_and_audited(
        fed,
        config.broker.id,
        lambda: call_broker(config, channel_credentials(config.identity("health-net-1")), signed),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    paths = [config.broker.audit_log, *(config.node(n).audit_log for n in TELECOM + HEALTH)]
    capsys.readouterr()
    assert fedbroker_main(["audit", "verify", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok, ") == len(paths) and f"{len(paths)} of {len(paths)} audit logs intact" in out
    for member in (config.broker.id, *TELECOM, *HEALTH):
        records = audit_records(config, member)
        assert records and all(r["node"] == member for r in records)
        refusals = [r for r in records if r["event"] == "refused"]
        assert refusals and all({"method", "peer", "status", "reason"} <= set(r) for r in refusals)
