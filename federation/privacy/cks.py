"""The Canonne–Kamath–Steinke rejection sampler of N_Z(0, σ²), vectorised with numpy integer ops: the sampler's
path for σ too wide for the inversion tables of ``federation/privacy/sampler.py`` (σ above about 17,600, σ² above
about 3.1·10^8), and the uniform integers it is built on.

The algorithm is Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential Privacy" (NeurIPS 2020),
Algorithms 1–3: Bernoulli(exp(−γ)) by comparing uniform integers with rationals, the discrete Laplace by
rejection, the discrete Gaussian by rejection from the discrete Laplace with scale s = ⌊σ⌋ + 1 and acceptance
probability exp(−(|Y| − σ²/s)² / (2σ²)). σ² is a :class:`fractions.Fraction`, so every acceptance probability is
an exact rational and every decision an exact integer comparison.

Why the vectorised form is still exact. Each candidate (an array slot) runs its own copy of the sequential
algorithm: at every step it uses fresh uniform integers that no other slot uses, and a slot's decisions depend
only on its own draws. Running many slots side by side is therefore the same as running many independent
sequential samplers. Slots that the algorithm tells to restart are dropped and replaced by new slots later; the
accepted slots are kept in index order and the first ``count`` of them returned, a choice that does not depend on
their values. Uniform integers below a bound b come from 64-bit words of ``secrets.token_bytes`` by rejection
(a word w is used only if w < 2^64 − (2^64 mod b), then w mod b), which is exactly uniform. The few slots whose
integers would not fit in 63 bits (astronomically rare for the σ used here) are finished by the same algorithm in
Python integers (:func:`_bernoulli_exp_exact`), so no probability is ever rounded.

It draws 55–84 CSPRNG bytes per sample at σ² = 1 – 30 (``python -m bench sampler``), which is why the narrower σ
that the federation uses go through the inversion sampler instead.
"""

from __future__ import annotations

import math
import secrets
from fractions import Fraction

import numpy as np
import numpy.typing as npt

__all__ = ["discrete_gaussian_cks", "uniform_below"]

Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

# Bounds in the vectorised path stay below this, so products and comparisons never overflow int64/uint64.
_SAFE = 1 << 62


def _words(count: int, bits: int) -> npt.NDArray[np.uint64]:
    """``count`` uniform ``bits``-bit words (32 or 64) from the OS CSPRNG, as uint64."""
    dtype = "<u4" if bits == 32 else "<u8"
    return np.frombuffer(secrets.token_bytes(bits // 8 * count), dtype=dtype).astype(np.uint64)


def _bits(count: int) -> Bools:
    """``count`` uniform random bits from the OS CSPRNG."""
    packed = np.frombuffer(secrets.token_bytes((count + 7) // 8), dtype=np.uint8)
    return np.unpackbits(packed)[:count].astype(np.bool_)


def uniform_below(count: int, bound: int) -> Int64s:
    """``count`` independent, exactly uniform integers in [0, bound) (1 <= bound).

    Rejection from w-bit words (w = 32 when bound < 2^31, else 64): a word is used only below 2^w − (2^w mod
    bound), the largest multiple of bound that fits, and then reduced mod bound. Bounds of 2^62 or more are the
    callers' to handle in Python integers.
    """
    if bound < 1:
        raise ValueError(f"a uniform bound is at least 1, got {bound}")
    if bound >= _SAFE:
        raise ValueError(f"a vectorised uniform bound stays below 2^62, got {bound}")
    bits = 32 if bound < (1 << 31) else 64
    limit = (1 << bits) - (1 << bits) % bound
    out = np.empty(count, dtype=np.int64)
    pending = np.arange(count)
    while pending.size:
        words = _words(pending.size, bits)
        ok = words < np.uint64(limit) if limit < (1 << 64) else np.ones(words.size, dtype=np.bool_)
        out[pending[ok]] = (words[ok] % np.uint64(bound)).astype(np.int64)
        pending = pending[~ok]
    return out


def _bernoulli_exp_unit(num: Int64s, den: int) -> Bools:
    """Bernoulli(exp(−num[i]/den)) per slot for 0 <= num[i] <= den (CKS Algorithm 1, first part).

    K = 1; while Bernoulli(γ/K): K += 1; the result is "K is odd". Every live slot has the same K at each
    pass, so Bernoulli(num/(den·K)) is one vector of uniform integers below the scalar den·K.
    """
    result = np.zeros(num.size, dtype=np.bool_)
    live = np.arange(num.size)
    live_num = num
    k = 1
    while live.size:
        if den * k >= _SAFE:  # only for huge σ: finish these slots in Python integers, same algorithm
            for slot, n in zip(live.tolist(), live_num.tolist(), strict=True):
                kk = k
                while secrets.randbelow(den * kk) < n:
                    kk += 1
                result[slot] = kk % 2 == 1
            break
        go_on = uniform_below(live.size, den * k) < live_num
        result[live[~go_on]] = k % 2 == 1
        live, live_num = live[go_on], live_num[go_on]
        k += 1
    return result


def _bernoulli_exp(num: Int64s, den: int) -> Bools:
    """Bernoulli(exp(−num[i]/den)) per slot for any num[i] >= 0 (CKS Algorithm 1, both parts).

    exp(−γ) = exp(−1)^⌊γ⌋ · exp(−(γ − ⌊γ⌋)): ⌊γ⌋ Bernoulli(exp(−1)) trials that must all succeed, then one
    Bernoulli(exp(−fraction)).
    """
    whole = num // den
    alive = np.ones(num.size, dtype=np.bool_)
    trial = 0
    while True:
        needing = np.flatnonzero(alive & (whole > trial))
        if not needing.size:
            break
        alive[needing] = _bernoulli_exp_unit(np.ones(needing.size, dtype=np.int64), 1)
        trial += 1
    survivors = np.flatnonzero(alive)
    alive[survivors] = _bernoulli_exp_unit(num[survivors] - whole[survivors] * den, den)
    return alive


def _bernoulli_exp_exact(num: int, den: int) -> bool:
    """Bernoulli(exp(−num/den)) for one rational num/den >= 0 in Python integers (CKS Algorithm 1)."""

    def unit(n: int, d: int) -> bool:
        k = 1
        while secrets.randbelow(d * k) < n:
            k += 1
        return k % 2 == 1

    whole, rest = divmod(num, den)
    return all(unit(1, 1) for _ in range(whole)) and unit(rest, den)


def _discrete_laplace(count: int, scale: int) -> Int64s:
    """Up to ``count`` samples of the discrete Laplace, P(y) ∝ exp(−|y|/scale) (CKS Algorithm 2, s = 1).

    Returns fewer than ``count`` when slots restart; the caller draws again.
    """
    u = uniform_below(count, scale)
    u = u[_bernoulli_exp(u, scale)]  # D ← Bernoulli(exp(−U/t)); restart where 0
    # V: successes of Bernoulli(exp(−1)) before the first failure.
    v = np.zeros(u.size, dtype=np.int64)
    live = np.arange(u.size)
    while live.size:
        live = live[_bernoulli_exp_unit(np.ones(live.size, dtype=np.int64), 1)]
        v[live] += 1
    x = u + scale * v
    negative = _bits(x.size)
    valid = ~(negative & (x == 0))  # B = 1 and X = 0: restart (so that 0 is not counted twice)
    signed: Int64s = np.where(negative, -x, x)[valid]
    return signed


def discrete_gaussian_cks(count: int, sigma2: Fraction) -> Int64s:
    """``count`` independent exact samples of N_Z(0, σ²) as int64 (CKS Algorithm 3).

    ``sigma2`` > 0 (checked by the caller) is the variance parameter σ² as an exact fraction. P(y) ∝ exp(−y²/(2σ²))
    for integer y.
    """
    p, q = sigma2.numerator, sigma2.denominator
    scale = math.isqrt(p // q) + 1  # ⌊σ⌋ + 1
    # Acceptance exp(−(|y| − σ²/s)²/(2σ²)) = exp(−(|y|·q·s − p)² / (2·p·q·s²)).
    den = 2 * p * q * scale * scale
    # |y| up to this keeps (|y|·q·s − p)² below 2^62 in int64; a larger |y| is decided in Python integers.
    largest = (math.isqrt(_SAFE - 1) + p) // (q * scale)
    out = np.empty(count, dtype=np.int64)
    filled = 0
    while filled < count:
        need = count - filled
        y = _discrete_laplace(max(2 * need, 64), scale)
        magnitude = np.abs(y)
        small = magnitude <= largest
        accept = np.zeros(y.size, dtype=np.bool_)
        diff = magnitude[small] * (q * scale) - p
        accept[small] = _bernoulli_exp(diff * diff, den)
        for slot in np.flatnonzero(~small):
            accept[slot] = _bernoulli_exp_exact((int(magnitude[slot]) * q * scale - p) ** 2, den)
        taken = y[accept][:need]
        out[filled : filled + taken.size] = taken
        filled += taken.size
    return out
