"""The mask PRG (AES-128-CTR keystream as little-endian uint64) and mask cancellation.

The product computes the keystream with OpenSSL (through ``cryptography``); the reference here is a second
library, pycryptodome, so both are held to the same pinned bytes and the known answer.
"""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from Crypto.Cipher import AES

from federation.errors import VectorMismatch
from federation.secagg import apply_masks, prg
from federation.secagg.prg import BLOCK_CELLS
from tests.test_secagg_harness import expected_sum, random_vectors, run_round

KNOWN_ANSWER = [0x825B8F87373BA1C6, 0x79D8C8A162814F6F, 0x1EB4C09595134673, 0x0A2DF465E3BD7B49]


def reference_prg(seed: bytes, length: int) -> np.ndarray:
    """The pinned PRG spelled out with pycryptodome: encrypt 8·m zero bytes, counter block 0 as a 128-bit
    big-endian integer."""
    cipher = AES.new(seed, AES.MODE_CTR, nonce=b"", initial_value=0)
    return np.frombuffer(cipher.encrypt(bytes(8 * length)), dtype="<u8").astype(np.uint64)


def test_known_answer() -> None:
    assert prg(bytes(range(16)), 4).tolist() == KNOWN_ANSWER


def test_known_answer_of_the_reference_library() -> None:
    assert reference_prg(bytes(range(16)), 4).tolist() == KNOWN_ANSWER


@pytest.mark.parametrize(
    "seed",
    [bytes(16), b"\xff" * 16, bytes(range(16)), bytes(range(16, 0, -1)), *(bytes([i]) * 16 for i in (1, 0x80))],
)
@pytest.mark.parametrize(
    "length", [1, 2, 3, 5, 17, 1023, BLOCK_CELLS - 3, BLOCK_CELLS + 1, 3 * BLOCK_CELLS + 7, 9 * BLOCK_CELLS + 1]
)
def test_openssl_keystream_equals_pycryptodome(seed: bytes, length: int) -> None:
    # Odd lengths end mid-AES-block (8 of 16 bytes) and most cross the 256 KiB blocks of prg/apply_masks.
    expected = reference_prg(seed, length)
    np.testing.assert_array_equal(prg(seed, length), expected)
    vector = np.zeros(length, dtype=np.uint64)
    apply_masks(vector, [(seed, 1)])
    np.testing.assert_array_equal(vector, expected)
    apply_masks(vector, [(seed, -1), (seed, -1)])
    np.testing.assert_array_equal(vector, -expected)


def test_known_answer_into_preallocated_buffer() -> None:
    out = np.full(4, 7, dtype=np.uint64)
    result = prg(bytes(range(16)), 4, out=out)
    assert result is out
    assert out.tolist() == KNOWN_ANSWER


@pytest.mark.parametrize(
    "length", [0, 1, 3, BLOCK_CELLS - 1, BLOCK_CELLS, BLOCK_CELLS + 1, 2 * BLOCK_CELLS + 5, 4 * BLOCK_CELLS + 5]
)
def test_prg_matches_reference_across_block_boundaries(length: int) -> None:
    seed = secrets.token_bytes(16)
    expected = reference_prg(seed, length)
    np.testing.assert_array_equal(prg(seed, length), expected)
    np.testing.assert_array_equal(prg(seed, length, out=np.empty(length, dtype=np.uint64)), expected)


def test_prg_is_a_prefix_of_longer_output() -> None:
    seed = secrets.token_bytes(16)
    np.testing.assert_array_equal(prg(seed, 1000)[:10], prg(seed, 10))


def test_prg_refuses_bad_seed_and_buffer() -> None:
    with pytest.raises(ValueError, match="16 bytes, got 15"):
        prg(bytes(15), 4)
    with pytest.raises(VectorMismatch, match="has 5 cells, expected 4"):
        prg(bytes(16), 4, out=np.empty(5, dtype=np.uint64))
    with pytest.raises(VectorMismatch, match="uint64"):
        prg(bytes(16), 4, out=np.empty(4, dtype=np.int64))


@pytest.mark.parametrize("length", [1, 7, BLOCK_CELLS + 3, 3 * BLOCK_CELLS])
def test_apply_masks_equals_adding_and_subtracting_whole_masks(length: int) -> None:
    rng = np.random.default_rng(length)
    vector = rng.integers(0, 2**64, size=length, dtype=np.uint64)
    masks = [(secrets.token_bytes(16), sign) for sign in (1, -1, 1, 1, -1)]
    expected = vector.copy()
    for seed, sign in masks:
        if sign == 1:
            expected += prg(seed, length)
        else:
            expected -= prg(seed, length)
    apply_masks(vector, masks)
    np.testing.assert_array_equal(vector, expected)


def test_opposite_masks_cancel_exactly_near_the_top_of_the_range() -> None:
    vector = np.array([0, 1, 2**63, 2**64 - 2, 2**64 - 1] * 9, dtype=np.uint64)
    first, second = secrets.token_bytes(16), secrets.token_bytes(16)
    result = vector.copy()
    apply_masks(result, [(first, 1), (second, 1)])
    assert not np.array_equal(result, vector)
    apply_masks(result, [(second, -1), (first, -1)])
    np.testing.assert_array_equal(result, vector)


@pytest.mark.parametrize("parties", range(2, 17))
def test_masks_cancel_in_full_rounds(parties: int) -> None:
    rng = np.random.default_rng(parties)
    vectors = random_vectors([f"agency-{i:02d}" for i in range(parties)], 97, rng)
    threshold = max(2, parties // 2 + 1)
    released, view = run_round(vectors, threshold, chunk_cells=40)
    assert len(view.u3) == parties
    np.testing.assert_array_equal(released, expected_sum(vectors, vectors))
