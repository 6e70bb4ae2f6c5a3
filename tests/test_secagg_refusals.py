"""Every refusal of §4, tried: each asserts the exception type and that its message says what went wrong."""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field

import numpy as np
import pytest

from federation.errors import (
    AuthenticationFailed,
    IntegrityFault,
    RoundAborted,
    RoundError,
    RoundReplayed,
    VectorMismatch,
)
from federation.secagg import AdapterRound, BrokerRound, EncryptedShare, RevealedShare, SecretKind
from tests.test_secagg_harness import QUERY_HASH, Identities, make_rounds, random_vectors, stream

PARTIES = ["health-1", "telecom-a", "telecom-b", "transport-rail"]
THRESHOLD = 3
LENGTH = 50
IDENTITIES = Identities([*PARTIES, "intruder"])


@dataclass
class Flow:
    """A round driven up to some stage, everyone answering."""

    broker: BrokerRound
    adapters: dict[str, AdapterRound]
    vectors: dict[str, np.ndarray]
    routed: dict[str, list[EncryptedShare]] = field(default_factory=dict)
    masked: dict[str, np.ndarray] = field(default_factory=dict)
    signatures: dict[str, bytes] = field(default_factory=dict)

    @property
    def u3(self) -> list[str]:
        return self.broker.survivors


def flow_until(stage: str, *, skip_masked: tuple[str, ...] = ()) -> Flow:
    vectors = random_vectors(PARTIES, LENGTH, np.random.default_rng(11))
    broker, adapters = make_rounds(vectors, THRESHOLD, IDENTITIES)
    flow = Flow(broker, adapters, vectors)
    order = ["created", "Open", "ShareKeys", "MaskedInput", "Consistency"]
    if order.index(stage) >= 1:
        broker.receive_adverts([a.advertise() for a in adapters.values()])
    if order.index(stage) >= 2:
        flow.routed = broker.route_shares({n: adapters[n].share_keys(broker.adverts) for n in PARTIES})
    if order.index(stage) >= 3:
        for n in PARTIES:
            if n not in skip_masked:
                flow.masked[n] = adapters[n].masked_input(PARTIES, flow.routed[n])
                stream(broker, n, flow.masked[n], 16)
    if order.index(stage) >= 4:
        flow.signatures = broker.receive_consistency({n: adapters[n].sign_survivors(flow.u3) for n in flow.u3})
    return flow


# -- construction -------------------------------------------------------------------------------------------


def make_adapter(**overrides: object) -> AdapterRound:
    arguments: dict[str, object] = {
        "node_id": "health-1",
        "round_id": bytes(16),
        "query_hash": QUERY_HASH,
        "participants": PARTIES,
        "threshold": 3,
        "vector": np.zeros(LENGTH, dtype=np.uint64),
        "signer": IDENTITIES.signer("health-1"),
        "verifier": IDENTITIES.verify,
    }
    arguments.update(overrides)
    return AdapterRound(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"threshold": 1}, RoundError, "threshold 1 must be between 2 and the 4 participants"),
        ({"threshold": 5}, RoundError, "threshold 5 must be between 2"),
        ({"node_id": "intruder"}, RoundError, "intruder is not among the round's participants"),
        ({"participants": [*PARTIES, "telecom-a"]}, RoundError, "names telecom-a more than once"),
        ({"round_id": bytes(15)}, RoundError, "a round id is 16 bytes, got 15"),
        ({"query_hash": b"q"}, RoundError, "32-byte sha256"),
        ({"participants": ["health-1", "ab", "abab"]}, RoundError, "'ab' and 'abab' are ambiguous"),
        ({"vector": np.zeros(LENGTH, dtype=np.int64)}, VectorMismatch, "1-D uint64"),
    ],
)
def test_adapter_refuses_bad_round_parameters(overrides: dict[str, object], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        make_adapter(**overrides)


def test_broker_refuses_bad_round_parameters() -> None:
    with pytest.raises(RoundError, match="names health-1 more than once"):
        BrokerRound(
            round_id=bytes(16),
            query_hash=QUERY_HASH,
            participants=["health-1", "health-1", "telecom-a"],
            threshold=2,
            length=4,
            verifier=IDENTITIES.verify,
        )
    with pytest.raises(VectorMismatch, match="at least 1 cell"):
        BrokerRound(
            round_id=bytes(16),
            query_hash=QUERY_HASH,
            participants=PARTIES,
            threshold=2,
            length=0,
            verifier=IDENTITIES.verify,
        )


# -- stage order --------------------------------------------------------------------------------------------


def test_adapter_stages_refuse_out_of_order() -> None:
    flow = flow_until("created")
    adapter = flow.adapters["telecom-a"]
    with pytest.raises(RoundError, match="share_keys is out of order at stage created"):
        adapter.share_keys([])
    with pytest.raises(RoundError, match="masked_input is out of order"):
        adapter.masked_input(PARTIES, [])
    with pytest.raises(RoundError, match="sign_survivors is out of order"):
        adapter.sign_survivors(PARTIES)
    with pytest.raises(RoundError, match="unmask is out of order"):
        adapter.unmask(PARTIES, {})
    assert adapter.advertise() == adapter.advertise()  # idempotent
    flow = flow_until("ShareKeys")
    with pytest.raises(RoundError, match="advertise is out of order at stage ShareKeys"):
        flow.adapters["telecom-a"].advertise()
    with pytest.raises(RoundError, match="unmask is out of order at stage ShareKeys"):
        flow.adapters["telecom-a"].unmask(PARTIES, {})


def test_broker_stages_refuse_out_of_order() -> None:
    flow = flow_until("created")
    with pytest.raises(RoundError, match="route_shares is out of order at stage created"):
        flow.broker.route_shares({})
    with pytest.raises(RoundError, match="add_masked_chunk is out of order"):
        flow.broker.add_masked_chunk("health-1", 0, bytes(8))
    with pytest.raises(RoundError, match="receive_consistency is out of order"):
        flow.broker.receive_consistency({})
    with pytest.raises(RoundError, match="unmask is out of order"):
        flow.broker.unmask({})
    flow = flow_until("Consistency")
    with pytest.raises(RoundError, match="add_masked_chunk is out of order at stage Consistency"):
        flow.broker.add_masked_chunk("health-1", 0, bytes(8))
    with pytest.raises(RoundError, match="discard_masked is out of order"):
        flow.broker.discard_masked()


# -- adverts ------------------------------------------------------------------------------------------------


def test_bad_advert_signature_is_refused_by_both_roles_naming_the_node() -> None:
    flow = flow_until("created")
    adverts = [a.advertise() for a in flow.adapters.values()]
    forged = [
        dataclasses.replace(a, s_public=secrets.token_bytes(32)) if a.node_id == "telecom-b" else a for a in adverts
    ]
    with pytest.raises(AuthenticationFailed, match="advert of telecom-b has a bad signature"):
        flow.broker.receive_adverts(forged)
    with pytest.raises(AuthenticationFailed, match="advert of telecom-b has a bad signature"):
        flow.adapters["health-1"].share_keys(forged)
    # Signed by someone else's key
    stolen = dataclasses.replace(adverts[2], signature=adverts[1].signature)
    with pytest.raises(AuthenticationFailed, match=f"advert of {stolen.node_id}"):
        flow.broker.receive_adverts([adverts[0], adverts[1], stolen])
    # Nothing changed: the driver may retry without the bad advert.
    assert flow.broker.receive_adverts([a for a in adverts if a.node_id != "telecom-b"]) == [
        "health-1",
        "telecom-a",
        "transport-rail",
    ]


def test_own_advert_altered_unknown_and_duplicate_participants() -> None:
    flow = flow_until("created")
    adverts = [a.advertise() for a in flow.adapters.values()]
    me = flow.adapters["health-1"]
    altered = [dataclasses.replace(a, c_public=adverts[1].c_public) if a.node_id == "health-1" else a for a in adverts]
    with pytest.raises(RoundError, match="health-1's own advert is missing or altered"):
        me.share_keys(altered)
    with pytest.raises(RoundError, match="health-1's own advert is missing or altered"):
        me.share_keys(adverts[1:])
    intruder = dataclasses.replace(adverts[1], node_id="intruder")
    with pytest.raises(RoundError, match="names intruder, not in the round's U"):
        me.share_keys([*adverts, intruder])
    with pytest.raises(RoundError, match="names intruder, not in the round's U"):
        flow.broker.receive_adverts([*adverts, intruder])
    with pytest.raises(RoundError, match="advert list names telecom-a more than once"):
        me.share_keys([*adverts, adverts[1]])
    with pytest.raises(RoundError, match="advert list names telecom-a more than once"):
        flow.broker.receive_adverts([*adverts, adverts[1]])
    with pytest.raises(RoundAborted, match=r"aborted at Open: 2 of 4 sent adverts.*missing: telecom-b, transport-rail"):
        me.share_keys(adverts[:2])


def test_repeated_share_keys_same_adverts_same_answer_other_adverts_refused() -> None:
    flow = flow_until("Open")
    adapter = flow.adapters["telecom-a"]
    first = adapter.share_keys(flow.broker.adverts)
    assert adapter.share_keys(flow.broker.adverts) == first
    with pytest.raises(RoundReplayed, match="already shared keys"):
        adapter.share_keys(flow.broker.adverts[:3])


# -- shares -------------------------------------------------------------------------------------------------


def test_broker_refuses_misattributed_or_incomplete_shares() -> None:
    flow = flow_until("Open")
    outgoing = {n: flow.adapters[n].share_keys(flow.broker.adverts) for n in PARTIES}
    with pytest.raises(RoundError, match="telecom-a relayed a share that claims to come from health-1"):
        flow.broker.route_shares({**outgoing, "telecom-a": outgoing["health-1"]})
    with pytest.raises(RoundError, match="telecom-a sent no share for transport-rail"):
        flow.broker.route_shares({**outgoing, "telecom-a": outgoing["telecom-a"][:2]})
    with pytest.raises(RoundError, match="share senders names intruder, not in U1"):
        flow.broker.route_shares({**outgoing, "intruder": []})
    with pytest.raises(RoundAborted, match="aborted at ShareKeys: 2 of 4 sent shares"):
        flow.broker.route_shares({n: outgoing[n] for n in PARTIES[:2]})


def test_adapter_refuses_tampered_missing_or_foreign_shares() -> None:
    flow = flow_until("ShareKeys")
    me = flow.adapters["telecom-a"]
    mine = flow.routed["telecom-a"]
    flipped = bytes([mine[0].ciphertext[0] ^ 1]) + mine[0].ciphertext[1:]
    with pytest.raises(AuthenticationFailed, match=f"share from {mine[0].sender} to telecom-a does not authenticate"):
        me.masked_input(PARTIES, [dataclasses.replace(mine[0], ciphertext=flipped), *mine[1:]])
    # A share for someone else, relabelled as if it were for telecom-a, fails authentication (the AD binds it).
    other = next(s for s in flow.routed["telecom-b"] if s.sender == "health-1")
    relabelled = dataclasses.replace(other, recipient="telecom-a")
    rest = [s for s in mine if s.sender != "health-1"]
    with pytest.raises(AuthenticationFailed, match="share from health-1 to telecom-a does not authenticate"):
        me.masked_input(PARTIES, [relabelled, *rest])
    with pytest.raises(RoundError, match="addressed to telecom-b, not telecom-a"):
        me.masked_input(PARTIES, [other, *rest])
    with pytest.raises(RoundError, match="no share received from health-1, who are in U2"):
        me.masked_input(PARTIES, rest)
    with pytest.raises(RoundError, match="U2 names intruder, not in U1"):
        me.masked_input([*PARTIES, "intruder"], mine)
    with pytest.raises(RoundError, match="leaves out telecom-a itself"):
        me.masked_input([p for p in PARTIES if p != "telecom-a"], [s for s in mine if s.sender != "health-1"])
    with pytest.raises(RoundAborted, match="aborted at ShareKeys: 2 of 4 sent shares"):
        me.masked_input(["health-1", "telecom-a"], [s for s in mine if s.sender == "health-1"])
    assert me.stage == "ShareKeys"  # none of the refusals consumed the stage


def test_masked_input_repeats_only_with_the_same_u2() -> None:
    flow = flow_until("ShareKeys")
    me = flow.adapters["telecom-a"]
    first = me.masked_input(PARTIES, flow.routed["telecom-a"])
    np.testing.assert_array_equal(me.masked_input(PARTIES, flow.routed["telecom-a"]), first)
    fewer = [s for s in flow.routed["telecom-a"] if s.sender != "transport-rail"]
    with pytest.raises(RoundReplayed, match="refusing U2 = \\['health-1', 'telecom-a', 'telecom-b'\\]"):
        me.masked_input(PARTIES[:3], fewer)
    with pytest.raises(RoundReplayed, match="against a different set of shares"):
        me.masked_input(PARTIES, list(reversed(flow.routed["telecom-b"])))
    with pytest.raises(VectorMismatch, match="must be a separate uint64 array shaped like x_u"):
        me.masked_input(PARTIES, flow.routed["telecom-a"], out=np.empty(LENGTH + 1, dtype=np.uint64))
    with pytest.raises(VectorMismatch, match="must be a separate uint64 array"):
        me.masked_input(PARTIES, flow.routed["telecom-a"], out=flow.vectors["telecom-a"])


# -- masked input streams -----------------------------------------------------------------------------------


def test_stream_refusals() -> None:
    flow = flow_until("ShareKeys")
    broker = flow.broker
    y = flow.adapters["health-1"].masked_input(PARTIES, flow.routed["health-1"])
    payload = y.astype("<u8").tobytes()
    with pytest.raises(VectorMismatch, match="13 bytes, not a whole number of uint64 cells"):
        broker.add_masked_chunk("health-1", 0, payload[:13])
    with pytest.raises(VectorMismatch, match="starts at cell 3, expected cell 0"):
        broker.add_masked_chunk("health-1", 3, payload[:8])
    with pytest.raises(VectorMismatch, match=f"ends at cell {LENGTH + 1}, past the vector length {LENGTH}"):
        broker.add_masked_chunk("health-1", 0, payload + bytes(8))
    with pytest.raises(RoundError, match="masked input from intruder, who is not in U2"):
        broker.add_masked_chunk("intruder", 0, payload)
    with pytest.raises(VectorMismatch, match=f"announces {LENGTH + 1} cells, the round's vector has {LENGTH}"):
        broker.finish_masked("health-1", LENGTH + 1)
    broker.add_masked_chunk("health-1", 0, payload[:80])
    with pytest.raises(VectorMismatch, match=f"health-1 sent 10 cells of the {LENGTH} announced"):
        broker.finish_masked("health-1", LENGTH)
    with pytest.raises(RoundError, match=r"failed its checks.*call discard_masked"):
        broker.add_masked_chunk("health-1", 10, payload[80:])
    broker.discard_masked()
    broker.add_masked_chunk("health-1", 0, payload[:80])
    # Complete by its length, but the stream is left open: the sum cannot be used until it is finished.
    broker.add_masked_chunk("health-1", 10, payload[80:])
    with pytest.raises(RoundError, match="unfinished masked input from health-1; call discard_masked"):
        broker.receive_consistency({})
    broker.discard_masked()
    broker.add_masked_chunk("health-1", 0, payload)
    broker.finish_masked("health-1", LENGTH)
    assert broker.survivors == ["health-1"]
    with pytest.raises(RoundError, match="masked input from health-1 is already complete"):
        broker.add_masked_chunk("health-1", 0, payload)


# -- consistency --------------------------------------------------------------------------------------------


def test_survivor_set_refusals() -> None:
    flow = flow_until("MaskedInput", skip_masked=("transport-rail",))
    me = flow.adapters["telecom-a"]
    with pytest.raises(RoundError, match="U3 names intruder, not in U2"):
        me.sign_survivors([*flow.u3, "intruder"])
    with pytest.raises(RoundAborted, match=r"aborted at MaskedInput: 2 of 4 sent masked input.*missing: health-1"):
        me.sign_survivors(["telecom-a", "telecom-b"])
    with pytest.raises(RoundError, match="leaves out telecom-a"):
        me.sign_survivors(["health-1", "telecom-b", "transport-rail"])
    signature = me.sign_survivors(flow.u3)
    assert me.sign_survivors(flow.u3) == signature
    with pytest.raises(RoundReplayed, match="already signed U3"):
        me.sign_survivors(PARTIES)


def test_bad_survivor_signatures_are_refused_naming_the_node() -> None:
    flow = flow_until("MaskedInput")
    signatures = {n: flow.adapters[n].sign_survivors(flow.u3) for n in flow.u3}
    bad = {**signatures, "telecom-b": signatures["health-1"]}
    with pytest.raises(AuthenticationFailed, match="consistency signature of telecom-b over U3 does not verify"):
        flow.broker.receive_consistency(bad)
    with pytest.raises(RoundError, match="consistency signatures names intruder, not in U3"):
        flow.broker.receive_consistency({**signatures, "intruder": b"x"})
    with pytest.raises(AuthenticationFailed, match="consistency signature of telecom-b over U3 does not verify"):
        flow.adapters["health-1"].unmask(flow.u3, bad)
    with pytest.raises(RoundAborted, match="aborted at Consistency: 2 of 4 signed U3"):
        flow.adapters["health-1"].unmask(flow.u3, {n: signatures[n] for n in PARTIES[:2]})


# -- unmask -------------------------------------------------------------------------------------------------


def test_second_unmask_is_refused_by_both_roles() -> None:
    flow = flow_until("Consistency")
    revealed = {n: flow.adapters[n].unmask(flow.u3, flow.signatures) for n in flow.u3}
    with pytest.raises(RoundReplayed, match="health-1 already answered Unmask"):
        flow.adapters["health-1"].unmask(flow.u3, flow.signatures)
    flow.broker.unmask(revealed)
    with pytest.raises(RoundReplayed, match="already unmasked"):
        flow.broker.unmask(revealed)


def test_no_party_ever_gets_both_a_seed_share_and_a_key_share_revealed() -> None:
    """The broker would need b_u and u's mask key to strip u's y. Every way of asking fails."""
    flow = flow_until("MaskedInput", skip_masked=("transport-rail",))
    u3 = flow.u3  # transport-rail is in U2 \ U3
    signatures = flow.broker.receive_consistency({n: flow.adapters[n].sign_survivors(u3) for n in u3})
    # 1. One answer never names a party twice, b-shares only for U3 and key shares only for U2 \ U3.
    answer = flow.adapters["health-1"].unmask(u3, signatures)
    assert {(s.owner, s.secret) for s in answer} == {
        *((n, SecretKind.SELF_MASK_SEED) for n in u3),
        ("transport-rail", SecretKind.MASK_KEY),
    }
    # 2. A second request with another U3 (to get telecom-b's key) is refused: once per round.
    with pytest.raises(RoundReplayed):
        flow.adapters["health-1"].unmask(["health-1", "telecom-a"], signatures)
    # 3. Showing one adapter a smaller U3 fails: it signed the real U3 and the others' signatures are over it.
    smaller = ["health-1", "telecom-a", "transport-rail"]
    with pytest.raises(RoundError, match="signed U3"):
        flow.adapters["telecom-a"].unmask(smaller, signatures)
    # 4. The broker itself refuses a share that U3 does not call for (a key share of a survivor).
    key_share = RevealedShare("telecom-b", SecretKind.MASK_KEY, 2, bytes(32))
    revealed = {n: flow.adapters[n].unmask(u3, signatures) for n in ("telecom-a", "telecom-b")}
    revealed["health-1"] = answer
    forged = {**revealed, "telecom-a": [*(s for s in revealed["telecom-a"] if s.owner != "telecom-b"), key_share]}
    with pytest.raises(RoundError, match=r"MASK_KEY share of telecom-b .* which U3 = .* does not call for"):
        flow.broker.unmask(forged)


def test_broker_unmask_checks_responders_and_shares() -> None:
    flow = flow_until("Consistency")
    revealed = {n: flow.adapters[n].unmask(flow.u3, flow.signatures) for n in flow.u3}
    with pytest.raises(RoundAborted, match="aborted at Unmask: 2 of 4 answered Unmask"):
        flow.broker.unmask({n: revealed[n] for n in PARTIES[:2]})
    with pytest.raises(RoundError, match="Unmask responders names intruder, not in U3"):
        flow.broker.unmask({**revealed, "intruder": []})
    wrong_index = [dataclasses.replace(revealed["telecom-a"][0], index=1), *revealed["telecom-a"][1:]]
    with pytest.raises(RoundError, match="telecom-a revealed a share with index 1, its index is 2"):
        flow.broker.unmask({**revealed, "telecom-a": wrong_index})
    twice = [*revealed["telecom-a"], revealed["telecom-a"][0]]
    with pytest.raises(RoundError, match="telecom-a revealed two shares of health-1"):
        flow.broker.unmask({**revealed, "telecom-a": twice})
    short = {n: revealed[n][1:] if n != "transport-rail" else revealed[n] for n in revealed}
    with pytest.raises(RoundAborted, match="1 shares of health-1's SELF_MASK_SEED, threshold is 3"):
        flow.broker.unmask(short)
    total = flow.broker.unmask(revealed)
    np.testing.assert_array_equal(total, sum(flow.vectors.values(), np.zeros(LENGTH, dtype=np.uint64)))


def test_broker_detects_a_corrupted_mask_key_share() -> None:
    flow = flow_until("MaskedInput", skip_masked=("transport-rail",))
    u3 = flow.u3
    signatures = flow.broker.receive_consistency({n: flow.adapters[n].sign_survivors(u3) for n in u3})
    revealed = {n: flow.adapters[n].unmask(u3, signatures) for n in u3}
    corrupted = [
        dataclasses.replace(s, share=bytes(32)) if s.secret is SecretKind.MASK_KEY else s for s in revealed["telecom-a"]
    ]
    with pytest.raises(IntegrityFault, match="rebuilt mask key of transport-rail does not match its advert"):
        flow.broker.unmask({**revealed, "telecom-a": corrupted})
