"""In-process secure-aggregation rounds for the benchmarks, with real ECDSA P-256 identities.

The same construction as the test harness (``tests/test_secagg_harness.py``): one :class:`BrokerRound` and one
:class:`AdapterRound` per party, driven stage by stage, masked inputs streamed in 2 MiB chunks.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from federation.chunking import CHUNK_BYTES
from federation.identity import Identity, Roster
from federation.pki import generate_ca, issue_certificate
from federation.secagg import AdapterRound, BrokerRound, EncryptedShare, RevealedShare, Signer, sorted_ids

Vector = npt.NDArray[np.uint64]
QUERY_HASH = hashlib.sha256(b"bench: flows 2020-01-15..2020-01-28").digest()


class Identities:
    """One certificate and ECDSA P-256 key per node from a fresh federation CA: the product's own
    :class:`~federation.identity.Identity` signs and :class:`~federation.identity.Roster` verifies."""

    def __init__(self, node_ids: Collection[str]) -> None:
        ca_pem, ca_key = generate_ca("fedbroker bench CA")
        now = datetime.datetime.now(datetime.UTC)
        self._identities: dict[str, Identity] = {}
        for node_id in node_ids:
            cert, key = issue_certificate(
                ca_pem,
                ca_key,
                node_id,
                not_before=now - datetime.timedelta(minutes=1),
                not_after=now + datetime.timedelta(days=1),
            )
            self._identities[node_id] = Identity.from_pem(node_id, cert, key, ca_pem)
        self.verify = Roster({i: identity.cert_pem for i, identity in self._identities.items()}, ca_pem=ca_pem)

    def signer(self, node_id: str) -> Signer:
        return self._identities[node_id].sign


def node_ids(count: int) -> list[str]:
    return [f"node-{i:02d}" for i in range(1, count + 1)]


def count_vectors(ids: Sequence[str], length: int, seed: int) -> dict[str, Vector]:
    """Seeded count-like vectors (values below 2^20), one per node."""
    rng = np.random.default_rng(seed)
    return {node_id: rng.integers(0, 2**20, size=length, dtype=np.uint64) for node_id in ids}


@dataclass
class PreparedRound:
    """A round driven through ShareKeys: every adapter can now compute its masked input."""

    broker: BrokerRound
    adapters: dict[str, AdapterRound]
    u2: list[str]
    routed: dict[str, list[EncryptedShare]]

    def masked_input(self, node_id: str, out: Vector | None = None) -> Vector:
        return self.adapters[node_id].masked_input(self.u2, self.routed[node_id], out=out)


def prepare_round(vectors: Mapping[str, Vector], threshold: int, identities: Identities) -> PreparedRound:
    round_id = secrets.token_bytes(16)
    participants = sorted_ids(vectors)
    length = len(next(iter(vectors.values())))
    broker = BrokerRound(
        round_id=round_id,
        query_hash=QUERY_HASH,
        participants=participants,
        threshold=threshold,
        length=length,
        verifier=identities.verify,
    )
    adapters = {
        node_id: AdapterRound(
            node_id=node_id,
            round_id=round_id,
            query_hash=QUERY_HASH,
            participants=participants,
            threshold=threshold,
            vector=vectors[node_id],
            signer=identities.signer(node_id),
            verifier=identities.verify,
        )
        for node_id in participants
    }
    u1 = broker.receive_adverts([a.advertise() for a in adapters.values()])
    routed = broker.route_shares({n: adapters[n].share_keys(broker.adverts) for n in u1})
    return PreparedRound(broker, adapters, broker.u2, routed)


def stream_masked(broker: BrokerRound, sender: str, masked: Vector) -> None:
    """Add ``masked`` to the broker's running sum in 2 MiB little-endian chunks, as the gRPC driver does."""
    payload = np.ascontiguousarray(masked, dtype="<u8").data.cast("B")
    for start in range(0, len(payload), CHUNK_BYTES):
        broker.add_masked_chunk(sender, start // 8, payload[start : start + CHUNK_BYTES])
    broker.finish_masked(sender, masked.shape[0])


def round_until_unmask(prepared: PreparedRound, dropped: Collection[str]) -> dict[str, list[RevealedShare]]:
    """Masked inputs of everyone but ``dropped`` summed, U3 signed, shares revealed: returns what
    ``BrokerRound.unmask`` takes (the revealed shares by responder)."""
    broker = prepared.broker
    for sender in prepared.u2:
        if sender not in dropped:
            stream_masked(broker, sender, prepared.masked_input(sender))
    u3 = broker.survivors
    signatures = broker.receive_consistency({n: prepared.adapters[n].sign_survivors(u3) for n in u3})
    return {n: list(prepared.adapters[n].unmask(u3, signatures)) for n in u3}
