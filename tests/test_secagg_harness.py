"""An in-process secure-aggregation federation for the secagg tests, plus its own sanity tests.

:class:`Identities` holds real ECDSA P-256 identity keys (``cryptography``) and gives each node a
:data:`Signer` and everyone a :data:`Verifier`. :func:`run_round` drives one :class:`BrokerRound` and one
:class:`AdapterRound` per party through every stage, dropping parties where told, streaming masked inputs in
chunks exactly as the gRPC layer will, and records everything the broker sees in a :class:`BrokerView`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from federation.secagg import (
    AdapterRound,
    Advert,
    BrokerRound,
    EncryptedShare,
    RevealedShare,
    Signer,
    sorted_ids,
)

Vector = npt.NDArray[np.uint64]
QUERY_HASH = hashlib.sha256(b"population 2020-01-20..2020-02-02").digest()


class Identities:
    """One ECDSA P-256 identity key per node, as the federation CA would issue them."""

    def __init__(self, node_ids: Collection[str]) -> None:
        self._keys = {node_id: ec.generate_private_key(ec.SECP256R1()) for node_id in node_ids}

    def signer(self, node_id: str) -> Signer:
        key = self._keys[node_id]

        def sign(message: bytes) -> bytes:
            return key.sign(message, ec.ECDSA(hashes.SHA256()))

        return sign

    def verify(self, node_id: str, message: bytes, signature: bytes) -> bool:
        key = self._keys.get(node_id)
        if key is None:
            return False
        try:
            key.public_key().verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


@dataclass
class BrokerView:
    """Everything the broker received or relayed in one round."""

    round_id: bytes = b""
    adverts: list[Advert] = field(default_factory=list)
    ciphertexts: list[EncryptedShare] = field(default_factory=list)
    masked: dict[str, Vector] = field(default_factory=dict)
    signatures: dict[str, bytes] = field(default_factory=dict)
    revealed: dict[str, list[RevealedShare]] = field(default_factory=dict)
    u1: list[str] = field(default_factory=list)
    u2: list[str] = field(default_factory=list)
    u3: list[str] = field(default_factory=list)


@dataclass
class Drops:
    """Who leaves the round where. A party in ``broken_stream`` starts sending its masked input and breaks
    off half-way: the broker discards the running sum and fetches the others again."""

    silent_at_open: Collection[str] = ()
    after_open: Collection[str] = ()
    after_share_keys: Collection[str] = ()
    broken_stream: Collection[str] = ()
    after_masked_input: Collection[str] = ()
    during_unmask: Collection[str] = ()


def random_vectors(node_ids: Sequence[str], length: int, rng: np.random.Generator) -> dict[str, Vector]:
    """Vectors with values across the whole uint64 range, many of them near 2^64 so that sums wrap."""
    vectors = {}
    for node_id in node_ids:
        vector = rng.integers(0, 2**64, size=length, dtype=np.uint64, endpoint=False)
        near_top = rng.integers(0, 1000, size=length, dtype=np.uint64)
        vector[::3] = np.uint64(2**64 - 1) - near_top[::3]
        vectors[node_id] = vector
    return vectors


def stream(
    broker: BrokerRound, sender: str, masked: Vector, chunk_cells: int, *, stop_after: int | None = None
) -> bytes:
    """Send ``masked`` as little-endian chunks like the gRPC layer; ``stop_after`` chunks, then break off."""
    payload = masked.astype("<u8").tobytes()
    chunk_bytes = chunk_cells * 8
    for number, start in enumerate(range(0, len(payload), chunk_bytes)):
        if stop_after is not None and number >= stop_after:
            return payload
        broker.add_masked_chunk(sender, start // 8, payload[start : start + chunk_bytes])
    broker.finish_masked(sender, len(masked))
    return payload


def make_rounds(
    vectors: Mapping[str, Vector], threshold: int, identities: Identities, round_id: bytes | None = None
) -> tuple[BrokerRound, dict[str, AdapterRound]]:
    round_id = round_id if round_id is not None else secrets.token_bytes(16)
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
    return broker, adapters


def run_round(
    vectors: Mapping[str, Vector],
    threshold: int,
    drops: Drops | None = None,
    *,
    identities: Identities | None = None,
    chunk_cells: int = 100,
) -> tuple[Vector, BrokerView]:
    """Drive one whole round; return the released sum and the broker's view."""
    drops = drops or Drops()
    identities = identities or Identities(vectors)
    broker, adapters = make_rounds(vectors, threshold, identities)
    view = BrokerView(round_id=broker.round_id)

    view.adverts = [a.advertise() for n, a in adapters.items() if n not in drops.silent_at_open]
    view.u1 = broker.receive_adverts(view.adverts)

    outgoing = {n: adapters[n].share_keys(broker.adverts) for n in view.u1 if n not in drops.after_open}
    view.ciphertexts = [share for shares in outgoing.values() for share in shares]
    routed = broker.route_shares(outgoing)
    view.u2 = broker.u2

    masked = {n: adapters[n].masked_input(view.u2, routed[n]) for n in view.u2 if n not in drops.after_share_keys}
    for sender in drops.broken_stream:
        stream(broker, sender, masked[sender], chunk_cells, stop_after=1)
    if drops.broken_stream:
        broker.discard_masked()
        # Fetch the others again: the same U2 gives the same y.
        masked = {n: adapters[n].masked_input(view.u2, routed[n]) for n in masked if n not in drops.broken_stream}
    for sender, y in masked.items():
        payload = stream(broker, sender, y, chunk_cells)
        view.masked[sender] = np.frombuffer(payload, dtype="<u8").astype(np.uint64)
    view.u3 = broker.survivors

    signers = [n for n in view.u3 if n not in drops.after_masked_input]
    view.signatures = broker.receive_consistency({n: adapters[n].sign_survivors(view.u3) for n in signers})
    responders = [n for n in signers if n not in drops.during_unmask]
    view.revealed = {n: adapters[n].unmask(view.u3, view.signatures) for n in responders}
    return broker.unmask(view.revealed), view


def expected_sum(vectors: Mapping[str, Vector], members: Collection[str]) -> Vector:
    """Σ x_u over ``members``, mod 2^64."""
    total = np.zeros(len(next(iter(vectors.values()))), dtype=np.uint64)
    for node_id in members:
        total += vectors[node_id]
    return total


def test_round_without_drops_releases_the_exact_sum() -> None:
    rng = np.random.default_rng(1)
    vectors = random_vectors(["telecom-a", "telecom-b", "telecom-c", "health-1"], 1001, rng)
    released, view = run_round(vectors, threshold=3)
    assert view.u3 == sorted_ids(vectors)
    np.testing.assert_array_equal(released, expected_sum(vectors, vectors))


def test_unicode_ids_are_ordered_by_utf8_bytes() -> None:
    rng = np.random.default_rng(2)
    vectors = random_vectors(["卫健委-湖北", "telecom-z", "Ärzte", "a"], 64, rng)
    released, view = run_round(vectors, threshold=2, drops=Drops(after_share_keys=["telecom-z"]))
    assert view.u1 == sorted(vectors, key=lambda s: s.encode("utf-8"))
    np.testing.assert_array_equal(released, expected_sum(vectors, ["卫健委-湖北", "Ärzte", "a"]))
