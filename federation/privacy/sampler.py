"""Exact sampling of the discrete Gaussian N_Z(0, σ²) from the OS CSPRNG: inversion of a lazily drawn uniform real.

The sampler. Let V = 0.v₁v₂v₃… in binary, every bit v_j an independent fair bit from ``secrets.token_bytes``, so V
is uniform on [0, 1). Return the Y with F(Y − 1) ≤ V < F(Y), F the discrete Gaussian's distribution function;
then P(Y = y) = F(y) − F(y − 1), which is exactly the pmf exp(−y²/2σ²) / Σ_z exp(−z²/2σ²). The bits of V are
drawn only as far as needed: after b bits, with prefix W, V lies in [W/2^b, (W + 1)/2^b); the sampler returns y
only when it has *proven* that this interval lies inside [F(y − 1), F(y)), using integer bounds
lo ≤ F·2^P ≤ hi from ``federation/privacy/gaussian_cdf.py`` (fixed-point interval arithmetic, every rounding
outward, the tails beyond the table bounded by a geometric series). Otherwise it draws more bits and tries again
with bounds of more precision and reach. So every decision is an integer comparison of V's prefix with a proven
bound on an exact real; no probability is rounded, and no float is compared (floats only size the tables).

Why it stops. A prefix is undecided only if its interval meets a boundary's bracket (a few units of 2^−P wide,
P = b + 32) or one of the tails beyond the table (mass about 2^−(b + 8)); with about 15σ boundaries listed, after
b bits that has probability about 15σ·2^−b. At σ² = 30, one 32-bit word decides a sample except with
probability 2·10^−8 (about one cell in six national 8.1 M-cell vectors, which then draws another 4 bytes).

Vectorised, still exact. All slots draw their first 32-bit word at once (one ``token_bytes`` call of 4 bytes a
cell; the word, read as a little-endian uint32, is the integer of V's first 32 bits: any fixed reading of
uniform bytes gives uniform bits). The test above at b = 32 becomes ``searchsorted`` over the lower bounds and
one comparison with an upper bound, on the same integers (proof at :class:`_WordTable`), and most words skip
even that: a lookup of the word's top 16 bits in a table of 65,536 blocks gives the sample wherever every word
of the block decides the same one. Each slot uses only its own bits, so the slots are independent samples; the
few undecided slots are finished one by one in Python integers by the same rule (:func:`_refine`), with further
words of their own.

Cost (``python -m bench sampler``, BENCHMARKS.md §9): 4 CSPRNG bytes per sample against the rejection sampler's
55–84, and one table lookup instead of dozens of passes of rejection and ``%``. The tables grow with σ (about 15σ
entries, built once per σ² and cached); σ beyond ``MAX_TABLE_REACH``'s reach (σ above about 17,600, σ² above about
3.1·10^8, wider than any round asks: σ²/t = Δ₂²/(2ρt) ≤ 306/(2·10^−6) ≈ 1.5·10^8) goes to Canonne–Kamath–Steinke's
exact rejection sampler (``federation/privacy/cks.py``), whose cost does not depend on σ. The widest table takes
about 1.5 s of CPU to build, once per σ².
"""

from __future__ import annotations

import bisect
import functools
import math
import secrets
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from federation.privacy.cks import discrete_gaussian_cks, uniform_below
from federation.privacy.gaussian_cdf import CdfTable, cdf_table, reach_for

__all__ = ["MAX_TABLE_REACH", "discrete_gaussian", "discrete_gaussian_pmf", "uniform_below"]

Int64s = npt.NDArray[np.int64]

#: Bits of V every slot draws at once (one little-endian uint32 per cell).
WORD_BITS = 32
#: Bits of V an undecided slot draws per further step.
EXTENSION_BITS = 32
#: The widest table (support points each side) the inversion sampler builds; wider σ go to the CKS sampler.
MAX_TABLE_REACH = 1 << 17
#: Precision of the bounds beyond the bits of V known, and of the tails' mass beyond them: only how often a
#: slot needs more bits depends on these.
_GUARD_BITS = 32
_TAIL_BITS = 8
#: Cells per pass of the vectorised step, so its temporaries (about 20 bytes a cell) stay in cache.
_CHUNK_CELLS = 1 << 16
_WORD_DTYPES = {8: "<u1", 16: "<u2", 32: "<u4"}


def _level(p: int, q: int, known_bits: int) -> CdfTable:
    """The bounds used once ``known_bits`` bits of V are known."""
    return cdf_table(p, q, known_bits + _GUARD_BITS, reach_for(p, q, known_bits + _TAIL_BITS))


def _decide(table: CdfTable, prefix: int, known_bits: int) -> int | None:
    """The sample, if V ∈ [prefix/2^b, (prefix + 1)/2^b) (b = ``known_bits``) proves it; else None.

    With low = prefix·2^(P−b), high = (prefix + 1)·2^(P−b), V's interval lies in [b_i, b_{i+1}) if
    upper[i] ≤ low and high ≤ lower[i+1]. k = the first index with lower[k] ≥ high is the only candidate
    i + 1: any i that qualifies has lower[i] ≤ upper[i] ≤ low < high ≤ lower[i + 1].
    """
    shift = table.precision - known_bits
    low, high = prefix << shift, (prefix + 1) << shift
    k = bisect.bisect_left(table.lower, high)
    if 1 <= k < len(table.lower) and table.upper[k - 1] <= low:
        return k - 1 - table.reach
    return None


def _refine(p: int, q: int, prefix: int, known_bits: int, extension_bits: int) -> tuple[int, int]:
    """Finish one undecided slot: draw ``extension_bits`` more bits of V until its interval decides Y.

    Returns (the sample, the number of extensions drawn)."""
    extensions = 0
    while True:
        fresh = int.from_bytes(secrets.token_bytes(extension_bits // 8), "big")
        prefix, known_bits = (prefix << extension_bits) | fresh, known_bits + extension_bits
        extensions += 1
        sample = _decide(_level(p, q, known_bits), prefix, known_bits)
        if sample is not None:
            return sample, extensions


#: Marks a block of words in the lookup table whose words do not all decide the same sample.
_MIXED = np.iinfo(np.int32).min


@dataclass(frozen=True)
class _WordTable:
    """The test of :func:`_decide` at b = w (the first word's bits) as arrays, for one σ² and w.

    ``first[i]`` = ⌊lower[i]/2^s⌋ (s = P − w) in the words' dtype, non-decreasing; ``check[k]`` =
    ⌈upper[k−1]/2^s⌉ for 1 ≤ k ≤ 2M + 1, and 2^w (above every word: never decided) at k = 0 and k = 2M + 2.
    For a word W, k = searchsorted(first, W, "right") is the first index with ⌊lower[k]/2^s⌋ ≥ W + 1, i.e.
    lower[k] ≥ (W + 1)·2^s = high, and W ≥ check[k] iff W·2^s = low ≥ upper[k−1]: the same test on the same
    integers, deciding Y = k − M − 1.

    ``blocks[h]`` is that sample for every word whose top w/2 bits are h, where all of them decide the same
    one: where k is the same at the block's first and last word (k is monotone in W) and check[k] is at most
    the first word. Otherwise it is ``_MIXED`` and each word of the block takes the test above.
    """

    first: npt.NDArray[np.unsignedinteger]
    check: Int64s
    blocks: npt.NDArray[np.int32]
    block_shift: int
    reach: int


@functools.lru_cache(maxsize=8)
def _word_table(p: int, q: int, word_bits: int) -> _WordTable:
    table = _level(p, q, word_bits)
    shift = table.precision - word_bits
    dtype = _WORD_DTYPES[word_bits]
    first = np.array([lower >> shift for lower in table.lower], dtype=dtype)
    never = 1 << word_bits
    check = np.full(len(table.lower) + 1, never, dtype=np.int64)
    check[1 : len(table.lower)] = [min(-(-upper >> shift), never) for upper in table.upper[:-1]]
    block_shift = word_bits - word_bits // 2
    block_first = np.arange(1 << (word_bits // 2), dtype=np.int64) << block_shift
    k_first = np.searchsorted(first, block_first.astype(dtype), side="right")
    k_last = np.searchsorted(first, (block_first + (1 << block_shift) - 1).astype(dtype), side="right")
    uniform = (k_first == k_last) & (check[k_first] <= block_first)
    blocks = np.where(uniform, k_first - (table.reach + 1), _MIXED).astype(np.int32)
    for array in (first, check, blocks):
        array.setflags(write=False)
    return _WordTable(first, check, blocks, block_shift, table.reach)


def _sample_by_inversion(
    count: int, p: int, q: int, word_bits: int = WORD_BITS, extension_bits: int = EXTENSION_BITS
) -> tuple[Int64s, int, int]:
    """``count`` exact samples of N_Z(0, p/q); how many slots took the per-word test; how many needed more bits.

    ``word_bits`` and ``extension_bits`` (8, 16 or 32) change only how many bits are drawn at a time; tests use
    8 to make the per-word and the undecided paths common."""
    table = _word_table(p, q, word_bits)
    out = np.empty(count, dtype=np.int64)
    mixed_total = undecided_total = 0
    for start in range(0, count, _CHUNK_CELLS):
        stop = min(start + _CHUNK_CELLS, count)
        words = np.frombuffer(secrets.token_bytes((stop - start) * word_bits // 8), dtype=_WORD_DTYPES[word_bits])
        samples = table.blocks[words >> table.block_shift]
        mixed = np.flatnonzero(samples == _MIXED)
        if mixed.size:
            mixed_words = words[mixed]
            k = np.searchsorted(table.first, mixed_words, side="right")
            samples[mixed] = k - (table.reach + 1)
            for slot in mixed[mixed_words < table.check[k]].tolist():
                samples[slot], _ = _refine(p, q, int(words[slot]), word_bits, extension_bits)
                undecided_total += 1
            mixed_total += mixed.size
        out[start:stop] = samples
    return out, mixed_total, undecided_total


def discrete_gaussian(count: int, sigma2: Fraction) -> Int64s:
    """``count`` independent exact samples of N_Z(0, σ²) as int64.

    ``sigma2`` > 0 is the variance parameter σ² as an exact fraction. P(y) ∝ exp(−y²/(2σ²)) for integer y.
    """
    if count < 0:
        raise ValueError(f"sample count must be non-negative, got {count}")
    if sigma2 <= 0:
        raise ValueError(f"σ² must be positive, got {sigma2}")
    p, q = sigma2.numerator, sigma2.denominator
    if reach_for(p, q, WORD_BITS + _TAIL_BITS) > MAX_TABLE_REACH:
        return discrete_gaussian_cks(count, sigma2)
    samples, _, _ = _sample_by_inversion(count, p, q)
    return samples


def discrete_gaussian_pmf(sigma2: Fraction, support: int) -> dict[int, float]:
    """The normalised pmf of N_Z(0, σ²) on [−support, support] (for tests): exp(−y²/2σ²) / Σ_z exp(−z²/2σ²).

    The normaliser sums |z| up to support + 40σ, beyond which the terms are below double precision.
    """
    s2 = float(sigma2)
    reach = support + int(40 * math.sqrt(s2)) + 40
    weights = {y: math.exp(-(y * y) / (2 * s2)) for y in range(-reach, reach + 1)}
    total = math.fsum(weights.values())
    return {y: weights[y] / total for y in range(-support, support + 1)}
