"""Disclosure control, applied by the broker before anything is released (docs/security.md, "Disclosure").

The rule is small-cell suppression with a threshold k per kind of count: k = 15 for mobility counts (FlowKit's
redaction of counts < 15) and k = 3 for case counts (DataSHIELD's ``nfilter.tab``); both configurable in the
roster's ``broker.disclosure``.

Zeros: a count c is suppressed when ``0 < c < k``. A zero says that no one was counted, which identifies no
person, so it may be released (DataSHIELD's rule is the same). Outputs that list only non-zero entries (flows,
cases, importation-risk) drop zero rows and do not count them as suppressed; outputs that list every cell
(population) show the zeros.

Derived values (the importation index I_d) are released only where the count they rest on is at least k.

Noisy rounds (docs/protocol.md, "Post-processing of noisy sums"): a round whose agencies added discrete Gaussian
noise reaches the kinds as signed int64 cells, unclipped, so that sums over cells stay unbiased. A kind sums over
the signed cells first and clips once, at the end (:func:`released_count`); a decision that a count is present
(an origin's cases, a cluster, new cases) uses :func:`detected` against the round's σ, so that noise in many
empty cells does not add up to a signal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from federation.errors import IntegrityFault, VectorMismatch

# Honest counts are far below 2^63 (docs/protocol.md, "Arithmetic"); a sum at or above it means the masks did
# not cancel.
_COUNT_CEILING = np.uint64(1 << 63)
# A noisy sum is a count plus noise of a few σ: either sign, but nowhere near 2^62 in magnitude unless the masks
# did not cancel (a uniformly random 64-bit cell lands there with probability 1/2 per cell).
_NOISY_MAGNITUDE = 1 << 62
#: How many σ a noisy count must reach to count as present: an empty cell passes with probability
#: P(Z ≥ 2) ≈ 2.3 % (one-sided normal tail; the discrete Gaussian's tail is no heavier).
DETECTION_SIGMAS = 2.0


def small_cell_mask(counts: NDArray[np.integer], k: int) -> NDArray[np.bool_]:
    """True where a count must be suppressed: ``0 < count < k``."""
    return (counts > 0) & (counts < k)


def round_counts(
    sums: Mapping[str, NDArray[np.uint64]], round_name: str, length: int, *, noisy: bool = False
) -> NDArray[np.int64]:
    """The unmasked sum of round ``round_name`` as int64 counts (see :func:`checked_counts`); signed when
    ``noisy``."""
    if round_name not in sums:
        raise VectorMismatch(f"no sum for round {round_name!r}; got rounds {', '.join(sorted(sums)) or 'none'}")
    return checked_counts(sums[round_name], length, what=f"round {round_name!r}", noisy=noisy)


def checked_counts(
    counts: NDArray[np.uint64], length: int | None = None, what: str = "sum", *, noisy: bool = False
) -> NDArray[np.int64]:
    """A released secure-aggregation sum (uint64 mod 2^64) as int64 counts, after checking its length and range.

    Exact (``noisy`` False): every cell must be < 2^63. Noisy: the cells are read as two's complement signed
    int64 (noise may take a small count below zero) and every magnitude must be < 2^62. Raises
    :class:`VectorMismatch` if the length differs from ``length``, :class:`IntegrityFault` if a cell is out of
    range (a sum whose masks did not cancel, or a negative contribution to an exact round).
    """
    flat = np.asarray(counts, dtype=np.uint64).reshape(-1)
    if length is not None and flat.shape[0] != length:
        raise VectorMismatch(f"{what} has {flat.shape[0]} cells, expected {length}")
    if noisy:
        signed = flat.view(np.int64)
        if signed.shape[0] and bool(((signed >= _NOISY_MAGNITUDE) | (signed <= -_NOISY_MAGNITUDE)).any()):
            raise IntegrityFault(
                f"{what} is a noisy sum with cells of magnitude >= 2^62: the masks did not cancel; nothing is "
                "released: the operators of the round's nodes must check their logs"
            )
        return signed.copy()
    if flat.shape[0] and bool((flat >= _COUNT_CEILING).any()):
        # Not the caller's fault: some node computed or sent something wrong, so nothing may be released.
        raise IntegrityFault(
            f"{what} has cells >= 2^63: the masks did not cancel or a contribution was negative; nothing is "
            "released: the operators of the round's nodes must check their logs"
        )
    return flat.astype(np.int64)


def released_count(values: NDArray[np.integer] | NDArray[np.floating]) -> NDArray[np.int64]:
    """What a count is released as: max(0, round(x)), int64 (the one clip, after every sum over signed cells).
    Exact counts pass unchanged."""
    return np.maximum(np.rint(np.asarray(values, dtype=np.float64)), 0).astype(np.int64)


def detection_threshold(sigma: float) -> float:
    """The least value a count with noise σ must reach to count as present: 1 for exact counts, else
    max(1, :data:`DETECTION_SIGMAS` · σ)."""
    return max(1.0, DETECTION_SIGMAS * sigma)


def detected(values: NDArray[np.integer], sigma: float) -> NDArray[np.int64]:
    """``values`` where they reach :func:`detection_threshold` (σ), 0 elsewhere (int64). For exact counts (σ = 0)
    this is the identity on non-negative counts."""
    counts = np.asarray(values, dtype=np.int64)
    return np.where(counts >= detection_threshold(sigma), counts, 0)


def supported_decimals(sigma: float) -> int | None:
    """The decimal places a value with noise σ is released with: those of the power of ten at or below σ
    (σ 0.23 → 1, σ 3 → 0, σ 40 → −1, i.e. tens); None for an exact value (σ = 0), released as computed."""
    if not (sigma > 0 and math.isfinite(sigma)):
        return None
    return -math.floor(math.log10(sigma))


def round_supported(value: float, sigma: float) -> float:
    """``value`` rounded to :func:`supported_decimals` (σ): digits below its noise are not released."""
    decimals = supported_decimals(sigma)
    return value if decimals is None else float(round(value, decimals))


def rounded_to_noise(
    values: NDArray[np.integer] | NDArray[np.floating], sigmas: NDArray[np.floating] | float
) -> NDArray[np.float64]:
    """Elementwise :func:`round_supported`: each value rounded to the decimals its own σ supports (``sigmas``
    broadcast against ``values``; σ = 0 or NaN leaves a value as computed), float64. A count with σ < 1 keeps its
    units (it has no decimals to drop); with σ 3 units, with σ 40 tens."""
    out = np.array(values, dtype=np.float64)
    spread = np.broadcast_to(np.asarray(sigmas, dtype=np.float64), out.shape)
    noisy = (spread > 0) & np.isfinite(spread) & np.isfinite(out)
    # One rounding per distinct number of decimals, through the scalar rule, so both read the same power of ten.
    places = np.zeros(out.shape, dtype=np.int64)
    distinct, which = np.unique(spread[noisy], return_inverse=True)
    places[noisy] = np.array([supported_decimals(s) for s in distinct.tolist()], dtype=np.int64)[which]
    for decimals in np.unique(places[noisy]).tolist():
        at = noisy & (places == decimals)
        out[at] = np.round(out[at], decimals)
    return out
