"""Disclosure control, applied by the broker before anything is released (docs/security.md, "Disclosure").

The rule is small-cell suppression with a threshold k per kind of count: k = 15 for mobility counts (FlowKit's
redaction of counts < 15) and k = 3 for case counts (DataSHIELD's ``nfilter.tab``); both configurable in the
roster's ``broker.disclosure``.

Zeros: a count c is suppressed when ``0 < c < k``. A zero says that no one was counted, which identifies no
person, so it may be released (DataSHIELD's rule is the same). Outputs that list only non-zero entries (flows,
cases, importation-risk) drop zero rows and do not count them as suppressed; outputs that list every cell
(population) show the zeros.

Derived values (the importation index I_d) are released only where the count they rest on is at least k.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from federation.errors import IntegrityFault, VectorMismatch

# Honest counts are far below 2^63 (docs/protocol.md, "Arithmetic"); a sum at or above it means the masks did
# not cancel.
_COUNT_CEILING = np.uint64(1 << 63)


def small_cell_mask(counts: NDArray[np.integer], k: int) -> NDArray[np.bool_]:
    """True where a count must be suppressed: ``0 < count < k``."""
    return (counts > 0) & (counts < k)


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
        # Not the caller's fault: some node computed or sent something wrong, so nothing may be released.
        raise IntegrityFault(
            f"{what} has cells >= 2^63: the masks did not cancel or a contribution was negative; nothing is "
            "released: the operators of the round's nodes must check their logs"
        )
    return flat.astype(np.int64)
