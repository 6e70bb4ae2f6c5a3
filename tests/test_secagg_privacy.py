"""The broker's view: masked vectors look uniform, and no single agency's vector can be rebuilt from
everything the broker receives, relays and learns in Unmask."""

from __future__ import annotations

import numpy as np
import pytest

from federation.secagg import SecretKind, apply_masks
from federation.secagg.keys import SHARE_CIPHERTEXT_BYTES, combine_secret, pair_mask_seed
from tests.test_secagg_harness import BrokerView, Drops, Identities, make_rounds, run_round, stream

PARTIES = ["health-1", "telecom-a", "telecom-b", "telecom-c", "transport-rail"]
THRESHOLD = 3
LENGTH = 4096
DROPPED = "telecom-b"  # sends shares, then never its masked input: the broker learns its mask key


def realistic_vectors(seed: int) -> dict[str, np.ndarray]:
    """District counts: small, skewed, mostly zero in the high bytes (as far from uniform as data gets)."""
    rng = np.random.default_rng(seed)
    return {p: rng.poisson(rng.gamma(0.5, 40.0, size=LENGTH)).astype(np.uint64) for p in PARTIES}


@pytest.fixture(scope="module")
def round_seen() -> tuple[dict[str, np.ndarray], np.ndarray, BrokerView]:
    vectors = realistic_vectors(5)
    released, view = run_round(vectors, THRESHOLD, Drops(after_share_keys=[DROPPED]), chunk_cells=1000)
    return vectors, released, view


def byte_chi_square(vector: np.ndarray) -> float:
    counts = np.bincount(np.frombuffer(vector.astype("<u8").tobytes(), dtype=np.uint8), minlength=256)
    expected = vector.size * 8 / 256
    return float(((counts - expected) ** 2 / expected).sum())


def bit_frequencies(vector: np.ndarray) -> np.ndarray:
    bits = (vector[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    frequencies: np.ndarray = bits.mean(axis=0)
    return frequencies


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1])


def equal_fraction(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


# chi-square with 255 degrees of freedom: mean 255, sd 22.6; 413 is about 6 sd out (p < 1e-8)
CHI_SQUARE_LIMIT = 413.0
# a bit's frequency over 4096 values has sd 0.5/64; allow 6 sd
BIT_LIMIT = 6 * 0.5 / np.sqrt(LENGTH)
CORRELATION_LIMIT = 6 / np.sqrt(LENGTH)


def test_masked_vectors_look_uniform(round_seen: tuple[dict[str, np.ndarray], np.ndarray, BrokerView]) -> None:
    vectors, _, view = round_seen
    assert sorted(view.masked) == [p for p in PARTIES if p != DROPPED]
    for node_id, masked in view.masked.items():
        x = vectors[node_id]
        assert byte_chi_square(x) > 50 * CHI_SQUARE_LIMIT  # the control: the data itself is far from uniform
        assert byte_chi_square(masked) < CHI_SQUARE_LIMIT, node_id
        assert np.all(np.abs(bit_frequencies(masked) - 0.5) < BIT_LIMIT), node_id
        assert abs(correlation(masked, x)) < CORRELATION_LIMIT, node_id
        assert equal_fraction(masked, x) < 0.01


def test_relayed_shares_are_opaque_and_never_cover_both_secrets_of_a_party(
    round_seen: tuple[dict[str, np.ndarray], np.ndarray, BrokerView],
) -> None:
    _, _, view = round_seen
    assert all(len(c.ciphertext) == SHARE_CIPHERTEXT_BYTES for c in view.ciphertexts)
    assert len({c.nonce for c in view.ciphertexts}) == len(view.ciphertexts)
    revealed = [share for shares in view.revealed.values() for share in shares]
    everything_relayed = b"".join(c.ciphertext for c in view.ciphertexts)
    for share in revealed:
        assert share.share[:16] not in everything_relayed  # shares travel encrypted
    kinds = {(share.owner, share.secret) for share in revealed}
    assert {owner for owner, kind in kinds if kind is SecretKind.MASK_KEY} == {DROPPED}
    assert {owner for owner, kind in kinds if kind is SecretKind.SELF_MASK_SEED} == set(view.u3)


def broker_secrets(view: BrokerView) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """What Unmask lets the broker rebuild: b_u for U3 and the mask keys of U2 \\ U3."""
    grouped: dict[tuple[str, SecretKind], list[tuple[int, bytes]]] = {}
    for shares in view.revealed.values():
        for share in shares:
            grouped.setdefault((share.owner, share.secret), []).append((share.index, share.share))
    rebuilt = {key: combine_secret(sorted(value), THRESHOLD) for key, value in grouped.items()}
    seeds = {owner: secret for (owner, kind), secret in rebuilt.items() if kind is SecretKind.SELF_MASK_SEED}
    mask_keys = {owner: secret for (owner, kind), secret in rebuilt.items() if kind is SecretKind.MASK_KEY}
    return seeds, mask_keys


def strip_known_masks(view: BrokerView, node_id: str, masked: np.ndarray, round_id: bytes) -> np.ndarray:
    """The broker's best effort on one party's y: remove its self mask and its pairwise masks with every
    dropped party (the only masks whose secrets it learnt)."""
    seeds, mask_keys = broker_secrets(view)
    public = {a.node_id: a.s_public for a in view.adverts}
    attempt = masked.copy()
    masks = [(seeds[node_id], -1)] if node_id in seeds else []
    for dropped, key in mask_keys.items():
        if dropped != node_id:
            sign = -1 if dropped.encode() > node_id.encode() else 1
            masks.append((pair_mask_seed(key, public[node_id], round_id), sign))
    apply_masks(attempt, masks)
    return attempt


def test_the_view_does_not_give_any_single_vector(
    round_seen: tuple[dict[str, np.ndarray], np.ndarray, BrokerView],
) -> None:
    vectors, released, view = round_seen
    round_id = view.round_id
    stripped = {}
    for node_id in view.u3:
        x = vectors[node_id]
        others = sum((view.masked[v] for v in view.u3 if v != node_id), np.zeros(LENGTH, dtype=np.uint64))
        # released − Σ others' masked inputs, and the same with every mask the broker can strip
        assert equal_fraction(released - others, x) < 0.01
        stripped[node_id] = strip_known_masks(view, node_id, view.masked[node_id], round_id)
        assert equal_fraction(stripped[node_id], x) < 0.01
        assert byte_chi_square(stripped[node_id]) < CHI_SQUARE_LIMIT
        assert abs(correlation(stripped[node_id], x)) < CORRELATION_LIMIT
    # Control: the stripping is right; what remains is only the survivors' pairwise masks, which cancel.
    total = sum(stripped.values(), np.zeros(LENGTH, dtype=np.uint64))
    np.testing.assert_array_equal(total, released)


def test_a_broker_faking_a_broken_stream_still_learns_nothing() -> None:
    """The broker keeps telecom-a's whole y, claims its stream broke, and so learns telecom-a's mask key in
    Unmask: removing every pairwise mask still leaves telecom-a's self mask, which is never revealed."""
    vectors = realistic_vectors(9)
    target = "telecom-a"
    broker, adapters = make_rounds(vectors, THRESHOLD, Identities(PARTIES))
    view = BrokerView(round_id=b"")
    view.adverts = [a.advertise() for a in adapters.values()]
    u1 = broker.receive_adverts(view.adverts)
    routed = broker.route_shares({n: adapters[n].share_keys(broker.adverts) for n in u1})
    kept = adapters[target].masked_input(broker.u2, routed[target])
    stream(broker, target, kept, 512)
    broker.discard_masked()
    for node_id in broker.u2:
        if node_id != target:
            stream(broker, node_id, adapters[node_id].masked_input(broker.u2, routed[node_id]), 512)
    u3 = broker.survivors
    signatures = broker.receive_consistency({n: adapters[n].sign_survivors(u3) for n in u3})
    view.revealed = {n: adapters[n].unmask(u3, signatures) for n in u3}
    view.round_id = broker.round_id
    np.testing.assert_array_equal(
        broker.unmask(view.revealed), sum((vectors[n] for n in u3), np.zeros(LENGTH, dtype=np.uint64))
    )
    seeds, mask_keys = broker_secrets(view)
    assert target in mask_keys and target not in seeds
    public = {a.node_id: a.s_public for a in view.adverts}
    attempt = kept.copy()
    masks = []
    for other in broker.u2:
        if other != target:
            seed = pair_mask_seed(mask_keys[target], public[other], broker.round_id)
            masks.append((seed, -1 if other.encode() > target.encode() else 1))
    apply_masks(attempt, masks)
    x = vectors[target]
    assert equal_fraction(attempt, x) < 0.01
    assert byte_chi_square(attempt) < CHI_SQUARE_LIMIT
    assert abs(correlation(attempt, x)) < CORRELATION_LIMIT
