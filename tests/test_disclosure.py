"""Small-cell suppression: 0 < count < k is hidden, zeros are released, broken sums are refused."""

from __future__ import annotations

import numpy as np
import pytest

from federation.catalog.disclosure import checked_counts, round_counts, small_cell_mask
from federation.errors import IntegrityFault, VectorMismatch


def test_small_cell_mask_hides_small_nonzero_only() -> None:
    counts = np.array([0, 1, 2, 14, 15, 16, 1000], dtype=np.int64)
    assert small_cell_mask(counts, 15).tolist() == [False, True, True, True, False, False, False]
    assert small_cell_mask(counts, 1).sum() == 0  # k = 1 suppresses nothing
    assert small_cell_mask(np.arange(5), 3).tolist() == [False, True, True, False, False]


def test_checked_counts_refuses_wrong_length_and_unmasked_garbage() -> None:
    assert checked_counts(np.array([1, 2], dtype=np.uint64), 2).tolist() == [1, 2]
    with pytest.raises(VectorMismatch, match="3 cells, expected 2"):
        checked_counts(np.array([1, 2, 3], dtype=np.uint64), 2)
    wrapped = np.array([5], dtype=np.uint64) - np.array([6], dtype=np.uint64)
    with pytest.raises(IntegrityFault, match="2\\^63"):
        checked_counts(wrapped)
    with pytest.raises(VectorMismatch, match="no sum for round 'trips'; got rounds presence"):
        round_counts({"presence": np.zeros(1, dtype=np.uint64)}, "trips", 1)
