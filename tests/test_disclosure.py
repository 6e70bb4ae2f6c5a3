"""Small-cell suppression: 0 < count < k is hidden, zeros are released, broken sums are refused."""

from __future__ import annotations

import numpy as np
import pytest

from broker.disclosure import (
    DisclosureRule,
    checked_counts,
    default_rules,
    round_counts,
    small_cell_mask,
    suppress_small,
)
from federation.errors import VectorMismatch


def test_suppress_small_hides_small_nonzero_only() -> None:
    counts = np.array([0, 1, 2, 14, 15, 16, 1000], dtype=np.uint64)
    released, suppressed = suppress_small(counts, 15)
    assert suppressed == 3
    assert released.dtype == np.int64
    assert released.mask.tolist() == [False, True, True, True, False, False, False]
    assert released.filled(-1).tolist() == [0, -1, -1, -1, 15, 16, 1000]
    assert released.data.tolist() == [0, 0, 0, 0, 15, 16, 1000]  # hidden cells carry no value


def test_k_one_suppresses_nothing() -> None:
    counts = np.arange(5, dtype=np.uint64)
    assert suppress_small(counts, 1)[1] == 0
    assert small_cell_mask(counts.astype(np.int64), 3).tolist() == [False, True, True, False, False]


def test_default_rules() -> None:
    rules = default_rules()
    assert rules["mobility"] == DisclosureRule(k=15, kind="mobility")
    assert rules["cases"] == DisclosureRule(k=3, kind="cases")
    with pytest.raises(ValueError, match="at least 1"):
        DisclosureRule(k=0)
    with pytest.raises(ValueError, match="unknown"):
        DisclosureRule(k=3, kind="money")


def test_checked_counts_refuses_wrong_length_and_unmasked_garbage() -> None:
    assert checked_counts(np.array([1, 2], dtype=np.uint64), 2).tolist() == [1, 2]
    with pytest.raises(VectorMismatch, match="3 cells, expected 2"):
        checked_counts(np.array([1, 2, 3], dtype=np.uint64), 2)
    wrapped = np.array([5], dtype=np.uint64) - np.array([6], dtype=np.uint64)
    with pytest.raises(VectorMismatch, match="2\\^63"):
        checked_counts(wrapped)
    with pytest.raises(VectorMismatch, match="no sum for round 'trips'; got rounds presence"):
        round_counts({"presence": np.zeros(1, dtype=np.uint64)}, "trips", 1)
