"""Every adapter refusal (docs/protocol.md §8) over gRPC against real adapter processes, by a broker that misbehaves.

The "evil broker" here holds the broker's real certificate (the strongest insider position) and sends crafted
stage requests; each adapter must refuse with the right status and a message that says what is wrong, and record
the refusal in its audit log. Nothing here mocks our own components: the adapters are real processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from broker.client import sign_query
from fedbroker.harness import LocalFederation
from federation.catalog import NATIONAL, kind, new_query
from federation.config import FederationConfig
from federation.identity import Roster
from federation.queries import Query, query_hash
from federation.registry import load_registry
from federation.secagg import BrokerRound
from federation.tls import channel_credentials, channel_options
from federation.v1 import adapter_pb2, adapter_pb2_grpc, common_pb2
from federation.wire import advert_from_pb, revealed_from_pb, shares_from_pb, shares_to_pb
from tests.federation_fixtures import own_federation, roster_variant

pytestmark = pytest.mark.slow
TELECOM = ("telecom-a", "telecom-b", "telecom-c")
T = TypeVar("T")


@pytest.fixture(scope="module")
def fed(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    run_dir = tmp_path_factory.mktemp("run-refusals")
    roster = roster_variant(small_scenario, run_dir / "federation.refusals.yaml", min_contributors=2)
    with own_federation(roster, run_dir, nodes=TELECOM) as federation:
        yield federation


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


class EvilBroker:
    """Speaks the adapter protocol directly, with the given identity (the broker's by default)."""

    def __init__(self, config: FederationConfig, member_id: str | None = None) -> None:
        self.config = config
        self.identity = config.identity(member_id or config.broker.id)
        self.registry = load_registry(config.domain.provinces)
        self.coordinator = config.identity("nhc-national")

    def query(self, **changes: Any) -> tuple[Query, common_pb2.SignedQuery]:
        end = self.config.data_end
        query = new_query("population", start=end, end=end, params={}, coordinator="nhc-national")
        query = dataclasses.replace(query, **changes)
        return query, sign_query(self.coordinator, query)

    def spec(self, query: Query, **changes: Any) -> common_pb2.VectorSpec:
        plan = kind(query.kind).rounds(query, self.registry, NATIONAL)[0]
        fields: dict[str, Any] = {
            "aggregate": plan.aggregate,
            "length": plan.length,
            "registry_hash": self.registry.hash,
            "start": plan.start.isoformat() if plan.start else "",
            "end": plan.end.isoformat() if plan.end else "",
            "params": dict(plan.params),
        }
        fields.update(changes)
        return common_pb2.VectorSpec(**fields)

    async def call(self, node_id: str, method: str, request: Any) -> Any:
        address = self.config.node(node_id).address
        async with grpc.aio.secure_channel(
            address, channel_credentials(self.identity), options=channel_options(node_id)
        ) as channel:
            stub = adapter_pb2_grpc.AgencyAdapterStub(channel)
            rpc = getattr(stub, method)
            if method == "MaskedInput":
                return [m async for m in rpc(request, timeout=30)]
            return await rpc(request, timeout=30)

    def drive_round(
        self, signed: common_pb2.SignedQuery, spec: common_pb2.VectorSpec, *, claim_dropped: str | None = None
    ) -> npt.NDArray[np.uint64]:
        """One round of ``signed`` driven straight through the telecom adapters with the broker's own
        secure-aggregation library (t = 2): the unmasked sum, exactly as the broker would hold it.
        ``claim_dropped`` sends its masked input but is left out of U3, so the broker asks the others for its
        mask-key shares (the differencing attack)."""
        round_id = secrets.token_bytes(16)
        state = BrokerRound(
            round_id=round_id,
            query_hash=query_hash(signed.canonical),
            participants=list(TELECOM),
            threshold=2,
            length=int(spec.length),
            verifier=Roster.from_files(self.config.certificates(), ca=self.config.ca),
        )
        adverts = run(self.open_all(round_id, signed, spec))
        u1 = state.receive_adverts([advert_from_pb(a) for a in adverts.values()])
        request = adapter_pb2.ShareKeysRequest(round_id=round_id, adverts=[adverts[n] for n in u1])
        shared = {n: run(self.call(n, "ShareKeys", request)) for n in TELECOM}
        routed = state.route_shares({n: shares_from_pb(r.shares) for n, r in shared.items()})
        for node in TELECOM:
            masked = adapter_pb2.MaskedInputRequest(
                round_id=round_id, survivors=state.u2, shares=shares_to_pb(routed[node])
            )
            chunks = run(self.call(node, "MaskedInput", masked))
            if node == claim_dropped:
                continue  # received in full, and claimed lost
            offset = 0
            for chunk in chunks[1:]:
                state.add_masked_chunk(node, offset, chunk.data)
                offset += len(chunk.data) // 8
            state.finish_masked(node, int(chunks[0].header.length))
        signatures = run(self.signatures(round_id, state.survivors))
        state.receive_consistency({s.node_id: s.signature for s in signatures})
        unmask = adapter_pb2.UnmaskRequest(round_id=round_id, survivors=state.survivors, signatures=signatures)
        revealed = {n: revealed_from_pb(run(self.call(n, "Unmask", unmask)).shares) for n in state.survivors}
        return state.unmask(revealed)

    async def open_all(
        self,
        round_id: bytes,
        query: common_pb2.SignedQuery,
        spec: common_pb2.VectorSpec,
        participants: Sequence[str] = TELECOM,
        threshold: int = 2,
        targets: Sequence[str] | None = None,
    ) -> dict[str, adapter_pb2.KeyAdvert]:
        request = adapter_pb2.OpenRequest(
            round_id=round_id, query=query, spec=spec, participants=list(participants), threshold=threshold
        )
        called = list(targets or participants)
        answers = await asyncio.gather(*(self.call(n, "Open", request) for n in called))
        return {n: a.advert for n, a in zip(called, answers, strict=True)}

    async def through_share_keys(
        self, round_id: bytes, participants: Sequence[str] = TELECOM
    ) -> tuple[dict[str, adapter_pb2.KeyAdvert], dict[str, list[adapter_pb2.EncryptedShare]]]:
        query, signed = self.query()
        adverts = await self.open_all(round_id, signed, self.spec(query), participants)
        request = adapter_pb2.ShareKeysRequest(round_id=round_id, adverts=list(adverts.values()))
        answers = await asyncio.gather(*(self.call(n, "ShareKeys", request) for n in participants))
        inbox: dict[str, list[adapter_pb2.EncryptedShare]] = {n: [] for n in participants}
        for answer in answers:
            for share in answer.shares:
                inbox[share.recipient].append(share)
        return adverts, inbox

    async def through_masked_input(self, round_id: bytes) -> None:
        _, inbox = await self.through_share_keys(round_id)
        for node in TELECOM:
            request = adapter_pb2.MaskedInputRequest(round_id=round_id, survivors=list(TELECOM), shares=inbox[node])
            await self.call(node, "MaskedInput", request)

    async def signatures(self, round_id: bytes, u3: Sequence[str]) -> list[adapter_pb2.SurvivorSignature]:
        request = adapter_pb2.ConsistencyRequest(round_id=round_id, survivors=list(u3))
        answers = await asyncio.gather(*(self.call(n, "Consistency", request) for n in u3))
        return [
            adapter_pb2.SurvivorSignature(node_id=n, signature=a.signature) for n, a in zip(u3, answers, strict=True)
        ]


def refused(fed: LocalFederation, node_id: str, action: Callable[[], Awaitable[Any]], code: grpc.StatusCode) -> str:
    """Run ``action``; assert it fails with ``code`` and that ``node_id`` audited the refusal. Returns the message."""
    audit_path = fed.config.node(node_id).audit_log
    before = audit_path.read_text().count("\n") if audit_path.exists() else 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        run(action())
    assert caught.value.code() == code, caught.value.details()
    message = caught.value.details() or ""
    assert message and "Traceback" not in message
    lines = audit_path.read_text().splitlines()[before:]
    records = [json.loads(line) for line in lines]
    assert any(r["event"] == "refused" and r.get("reason") == message for r in records), records
    return message


def test_unknown_participant_refused(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    query, signed = evil.query()
    message = refused(
        fed,
        "telecom-a",
        lambda: evil.open_all(
            secrets.token_bytes(16), signed, evil.spec(query), ["telecom-a", "telecom-z"], targets=["telecom-a"]
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "telecom-z" in message


def test_duplicate_participant_refused(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    query, signed = evil.query()
    request = adapter_pb2.OpenRequest(
        round_id=secrets.token_bytes(16),
        query=signed,
        spec=evil.spec(query),
        participants=["telecom-a", "telecom-b", "telecom-b"],
        threshold=2,
    )
    message = refused(
        fed, "telecom-a", lambda: evil.call("telecom-a", "Open", request), grpc.StatusCode.PERMISSION_DENIED
    )
    assert "repeats" in message


def test_wrong_vector_length_refused(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    query, signed = evil.query()
    spec = evil.spec(query, length=12345)
    message = refused(
        fed,
        "telecom-b",
        lambda: evil.open_all(secrets.token_bytes(16), signed, spec, targets=["telecom-b"]),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "12345" in message


def test_wrong_registry_hash_refused(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    query, signed = evil.query()
    spec = evil.spec(query, registry_hash="0" * 64)
    message = refused(
        fed,
        "telecom-c",
        lambda: evil.open_all(secrets.token_bytes(16), signed, spec, targets=["telecom-c"]),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "registry" in message


def test_round_not_needed_by_the_signed_query_refused(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    query, signed = evil.query()
    n = len(evil.registry)
    spec = evil.spec(query, aggregate="telecom.trips", length=n * n)  # the broker invents an OD round
    message = refused(
        fed,
        "telecom-a",
        lambda: evil.open_all(secrets.token_bytes(16), signed, spec, targets=["telecom-a"]),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "does not need" in message


def test_threshold_below_policy_refused(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    query, signed = evil.query()
    message = refused(
        fed,
        "telecom-a",
        lambda: evil.open_all(secrets.token_bytes(16), signed, evil.spec(query), threshold=1, targets=["telecom-a"]),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "threshold 1" in message


def test_tampered_query_signature_refused(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    query, signed = evil.query()
    altered = json.loads(signed.canonical)
    altered["start"] = (query.start.replace(day=1)).isoformat()  # the broker widens the window
    forged = common_pb2.SignedQuery(
        canonical=json.dumps(altered, sort_keys=True, separators=(",", ":")).encode(),
        coordinator_id=signed.coordinator_id,
        signature=signed.signature,
    )
    message = refused(
        fed,
        "telecom-a",
        lambda: evil.open_all(secrets.token_bytes(16), forged, evil.spec(query), targets=["telecom-a"]),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert "does not verify" in message


def test_stale_query_refused(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    query, signed = evil.query(issued_at="2020-01-01T00:00:00Z")
    message = refused(
        fed,
        "telecom-a",
        lambda: evil.open_all(secrets.token_bytes(16), signed, evil.spec(query), targets=["telecom-a"]),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert "sign it again" in message


def test_replayed_round_id_and_replayed_query_refused(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    query, signed = evil.query()
    round_id = secrets.token_bytes(16)
    run(evil.open_all(round_id, signed, evil.spec(query)))
    message = refused(
        fed,
        "telecom-a",
        lambda: evil.open_all(round_id, signed, evil.spec(query), targets=["telecom-a"]),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert "already opened" in message
    # The same signed query under a fresh round id: a replay of the coordinator's approval.
    message = refused(
        fed,
        "telecom-a",
        lambda: evil.open_all(secrets.token_bytes(16), signed, evil.spec(query), targets=["telecom-a"]),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert "replayed query" in message


def test_bad_advert_signature_refused(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    query, signed = evil.query()
    round_id = secrets.token_bytes(16)
    adverts = run(evil.open_all(round_id, signed, evil.spec(query)))
    forged = adapter_pb2.KeyAdvert()
    forged.CopyFrom(adverts["telecom-b"])
    forged.s_public = secrets.token_bytes(32)  # the broker swaps in a mask key it controls
    request = adapter_pb2.ShareKeysRequest(
        round_id=round_id, adverts=[adverts["telecom-a"], forged, adverts["telecom-c"]]
    )
    message = refused(
        fed, "telecom-a", lambda: evil.call("telecom-a", "ShareKeys", request), grpc.StatusCode.UNAUTHENTICATED
    )
    assert "telecom-b" in message


def test_own_advert_altered_refused(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    query, signed = evil.query()
    round_id = secrets.token_bytes(16)
    adverts = run(evil.open_all(round_id, signed, evil.spec(query)))
    # Replay telecom-a's advert from another round: validly signed, but not the one it made for this round.
    other_query, other_signed = evil.query()
    other = run(evil.open_all(secrets.token_bytes(16), other_signed, evil.spec(other_query)))
    request = adapter_pb2.ShareKeysRequest(
        round_id=round_id, adverts=[other["telecom-a"], adverts["telecom-b"], adverts["telecom-c"]]
    )
    code_message = None
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        run(evil.call("telecom-a", "ShareKeys", request))
    code_message = (caught.value.code(), caught.value.details() or "")
    assert code_message[0] in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAUTHENTICATED)
    assert "telecom-a" in code_message[1]


def test_fewer_than_threshold_adverts_refused(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    query, signed = evil.query()
    round_id = secrets.token_bytes(16)
    adverts = run(evil.open_all(round_id, signed, evil.spec(query), threshold=3))
    request = adapter_pb2.ShareKeysRequest(round_id=round_id, adverts=[adverts["telecom-a"], adverts["telecom-b"]])
    message = refused(fed, "telecom-a", lambda: evil.call("telecom-a", "ShareKeys", request), grpc.StatusCode.ABORTED)
    assert "3" in message


def test_u3_not_subset_of_u2_refused_and_second_unmask_refused(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    round_id = secrets.token_bytes(16)
    _, inbox = run(evil.through_share_keys(round_id))
    u2 = ["telecom-a", "telecom-b"]  # telecom-c's shares are withheld: it is not in U2
    for node in u2:
        shares = [s for s in inbox[node] if s.sender in u2]
        run(
            evil.call(
                node, "MaskedInput", adapter_pb2.MaskedInputRequest(round_id=round_id, survivors=u2, shares=shares)
            )
        )
    request = adapter_pb2.ConsistencyRequest(round_id=round_id, survivors=list(TELECOM))
    message = refused(
        fed, "telecom-a", lambda: evil.call("telecom-a", "Consistency", request), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert "telecom-c" in message
    signatures = run(evil.signatures(round_id, u2))
    unmask = adapter_pb2.UnmaskRequest(round_id=round_id, survivors=u2, signatures=signatures)
    first = run(evil.call("telecom-a", "Unmask", unmask))
    assert {s.owner for s in first.shares} == set(u2)
    message = refused(fed, "telecom-a", lambda: evil.call("telecom-a", "Unmask", unmask), grpc.StatusCode.NOT_FOUND)
    assert "round" in message


def test_unmask_with_a_forged_consistency_signature_refused(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    round_id = secrets.token_bytes(16)
    run(evil.through_masked_input(round_id))
    signatures = run(evil.signatures(round_id, ["telecom-a", "telecom-b"]))
    forged = [
        signatures[0],
        adapter_pb2.SurvivorSignature(node_id="telecom-b", signature=b"\x30\x06\x02\x01\x01\x02\x01\x01"),
    ]
    request = adapter_pb2.UnmaskRequest(round_id=round_id, survivors=["telecom-a", "telecom-b"], signatures=forged)
    message = refused(
        fed, "telecom-a", lambda: evil.call("telecom-a", "Unmask", request), grpc.StatusCode.UNAUTHENTICATED
    )
    assert "telecom-b" in message


def test_coordinator_certificate_cannot_drive_a_round(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config, member_id="nhc-national")
    query, signed = evil.query()
    message = refused(
        fed,
        "telecom-a",
        lambda: evil.open_all(secrets.token_bytes(16), signed, evil.spec(query), targets=["telecom-a"]),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "only the broker" in message


def test_stage_for_an_unknown_round_refused(fed: LocalFederation) -> None:
    evil = EvilBroker(fed.config)
    request = adapter_pb2.ShareKeysRequest(round_id=secrets.token_bytes(16), adverts=[])
    message = refused(fed, "telecom-b", lambda: evil.call("telecom-b", "ShareKeys", request), grpc.StatusCode.NOT_FOUND)
    assert "never opened" in message


def test_refused_interference_loses_nothing(fed: LocalFederation) -> None:
    """Refusals in the middle of a round leave that round, and every store, untouched: after a replayed Open,
    a forged advert set and a premature Unmask are refused, the same round still completes and releases exactly
    the oracle's sum; no store file changed."""
    import hashlib

    from federation.identity import Roster
    from federation.queries import query_hash
    from federation.secagg import BrokerRound
    from federation.wire import advert_from_pb, revealed_from_pb, shares_from_pb, shares_to_pb
    from tests import oracle
    from tests.federation_fixtures import oracle_sum

    config = fed.config
    stores = {n: hashlib.sha256(config.node(n).store.read_bytes()).hexdigest() for n in TELECOM}
    evil = EvilBroker(config)
    query, signed = evil.query()
    spec = evil.spec(query)
    round_id = secrets.token_bytes(16)
    verifier = Roster.from_files(config.certificates(), ca=config.ca)
    state = BrokerRound(
        round_id=round_id,
        query_hash=query_hash(signed.canonical),
        participants=list(TELECOM),
        threshold=2,
        length=int(spec.length),
        verifier=verifier,
    )
    adverts = run(evil.open_all(round_id, signed, spec))
    u1 = state.receive_adverts([advert_from_pb(a) for a in adverts.values()])

    # Interference, each refused.
    refused(
        fed,
        "telecom-a",
        lambda: evil.open_all(round_id, signed, spec, targets=["telecom-a"]),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    forged = adapter_pb2.KeyAdvert()
    forged.CopyFrom(adverts["telecom-c"])
    forged.c_public = secrets.token_bytes(32)
    bad = adapter_pb2.ShareKeysRequest(round_id=round_id, adverts=[adverts["telecom-a"], adverts["telecom-b"], forged])
    refused(fed, "telecom-a", lambda: evil.call("telecom-a", "ShareKeys", bad), grpc.StatusCode.UNAUTHENTICATED)
    early = adapter_pb2.UnmaskRequest(round_id=round_id, survivors=list(TELECOM))
    refused(fed, "telecom-b", lambda: evil.call("telecom-b", "Unmask", early), grpc.StatusCode.FAILED_PRECONDITION)

    # The honest round goes on to the end.
    good = adapter_pb2.ShareKeysRequest(round_id=round_id, adverts=[adverts[n] for n in u1])
    shared = {n: run(evil.call(n, "ShareKeys", good)) for n in TELECOM}
    routed = state.route_shares({n: shares_from_pb(r.shares) for n, r in shared.items()})
    for node in TELECOM:
        request = adapter_pb2.MaskedInputRequest(
            round_id=round_id, survivors=state.u2, shares=shares_to_pb(routed[node])
        )
        chunks = run(evil.call(node, "MaskedInput", request))
        offset = 0
        for chunk in chunks[1:]:
            state.add_masked_chunk(node, offset, chunk.data)
            offset += len(chunk.data) // 8
        state.finish_masked(node, int(chunks[0].header.length))
    signatures = run(evil.signatures(round_id, state.survivors))
    state.receive_consistency({s.node_id: s.signature for s in signatures})
    unmask = adapter_pb2.UnmaskRequest(round_id=round_id, survivors=state.survivors, signatures=signatures)
    revealed = {n: revealed_from_pb(run(evil.call(n, "Unmask", unmask)).shares) for n in TELECOM}
    total = state.unmask(revealed)

    codes = evil.registry.codes
    expected = oracle_sum(config, "telecom", lambda con: oracle.oracle_presence(con, codes, query.start, query.end))
    assert (total == expected).all()
    assert stores == {n: hashlib.sha256(config.node(n).store.read_bytes()).hexdigest() for n in TELECOM}
