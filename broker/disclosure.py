"""Disclosure control applied by the broker before anything is released (DESIGN §5).

The rule is small-cell suppression with a threshold k per kind of count: k = 15 for mobility counts (FlowKit's
redaction of counts < 15) and k = 3 for case counts (DataSHIELD's ``nfilter.tab``); both configurable.

Zeros: a count c is suppressed when ``0 < c < k``. A zero says that no one was counted, which identifies no
person, so it may be released (DataSHIELD's rule is the same: 0 < n < nfilter.tab is invalid). Outputs that
list only non-zero entries (flows, cases, importation-risk) drop zero rows and do not count them as suppressed;
outputs that list every cell (population) show the zeros.

Derived values (the importation index I_d) are released only where the count they rest on (the inflow into d)
is at least k, and a named top origin only where its own flow is at least k: the existence of a small non-zero
flow is itself disclosive, so such flows are dropped, not shown as suppressed.

Known limit: released marginals and released cells of another query over the same window can be differenced
(inflow_d minus the released flows into d gives the total of the suppressed flows into d). There is no
cross-query secondary suppression yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from federation.errors import VectorMismatch

DISCLOSURE_KINDS = ("mobility", "cases")
DEFAULT_K: Mapping[str, int] = {"mobility": 15, "cases": 3}

# Honest counts are far below 2^63 (DESIGN §4); a sum at or above it means the masks did not cancel.
_COUNT_CEILING = np.uint64(1 << 63)


@dataclass(frozen=True)
class DisclosureRule:
    """Suppress counts c with ``0 < c < k``. ``kind`` is "mobility" or "cases"."""

    k: int
    kind: str = "mobility"

    def __post_init__(self) -> None:
        if self.kind not in DISCLOSURE_KINDS:
            raise ValueError(f"disclosure kind {self.kind!r} is unknown; use one of {', '.join(DISCLOSURE_KINDS)}")
        if self.k < 1:
            raise ValueError(f"disclosure threshold k={self.k} must be at least 1")


def default_rules() -> dict[str, DisclosureRule]:
    """The default rule for each disclosure kind (mobility k=15, cases k=3)."""
    return {kind: DisclosureRule(k=k, kind=kind) for kind, k in DEFAULT_K.items()}


def small_cell_mask(counts: NDArray[np.integer], k: int) -> NDArray[np.bool_]:
    """True where a count must be suppressed: ``0 < count < k``."""
    return (counts > 0) & (counts < k)


def suppress_small(counts: NDArray[np.uint64], k: int) -> tuple[np.ma.MaskedArray[Any, np.dtype[np.int64]], int]:
    """Counts as an int64 masked array with every ``0 < count < k`` masked, and how many were masked.

    The masked cells' data are set to 0 as well, so a careless ``.data`` read leaks nothing.
    """
    values = checked_counts(counts)
    mask = small_cell_mask(values, k)
    released = np.where(mask, 0, values)
    return np.ma.MaskedArray(released, mask=mask), int(mask.sum())


def round_counts(sums: Mapping[str, NDArray[np.uint64]], round_name: str, length: int) -> NDArray[np.int64]:
    """The unmasked sum of round ``round_name`` as int64 counts (see :func:`checked_counts`)."""
    if round_name not in sums:
        raise VectorMismatch(f"no sum for round {round_name!r}; got rounds {', '.join(sorted(sums)) or 'none'}")
    return checked_counts(sums[round_name], length, what=f"round {round_name!r}")


def checked_counts(counts: NDArray[np.uint64], length: int | None = None, what: str = "sum") -> NDArray[np.int64]:
    """A released secure-aggregation sum as int64 counts, after checking its length and range.

    Raises :class:`VectorMismatch` if the length differs from ``length`` or a cell is >= 2^63 (a sum whose masks
    did not cancel, or a negative contribution wrapped mod 2^64).
    """
    flat = np.asarray(counts, dtype=np.uint64).reshape(-1)
    if length is not None and flat.shape[0] != length:
        raise VectorMismatch(f"{what} has {flat.shape[0]} cells, expected {length}")
    if flat.shape[0] and bool((flat >= _COUNT_CEILING).any()):
        raise VectorMismatch(f"{what} has cells >= 2^63: the masks did not cancel or a contribution was negative")
    return flat.astype(np.int64)
