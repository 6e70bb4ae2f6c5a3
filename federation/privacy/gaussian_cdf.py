"""Proven integer bounds on the discrete Gaussian's cumulative distribution, for the exact inversion sampler.

Everything here is integer arithmetic on fixed-point numbers: a real r is bracketed by integers lo, hi with
lo ≤ r·2^bits ≤ hi, every product and quotient rounded down for a lower bound and up for an upper one, so each
bracket is a proof, whatever its width. The width only decides how often the sampler must draw more bits
(``federation/privacy/sampler.py``); it never changes what it returns. Floats appear once, to choose a table's
reach (how many support points it lists), which is a size, not a probability.

For σ² = p/q the unnormalised weight of y is w(y) = exp(−y²/(2σ²)) = E^(y²) with E = exp(−q/(2p)); the
normaliser is Z = Σ_y w(y) = w(0) + 2·Σ_{z≥1} w(z); F(y) = Σ_{x≤y} w(x) / Z.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

__all__ = ["CdfTable", "cdf_table", "exp_neg_bounds", "reach_for"]


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def exp_neg_bounds(num: int, den: int, bits: int) -> tuple[int, int]:
    """Integers (lo, hi) with lo ≤ exp(−num/den)·2^bits ≤ hi, for num ≥ 0, den ≥ 1, bits ≥ 1.

    exp(−x) = exp(−x/2^r)^(2^r) with r chosen so that y = x/2^r ≤ 1/2; exp(−y) = Σ (−y)^k/k! is an alternating
    series whose terms decrease (y < 1), so stopping after a term of at most one unit leaves an error of at most
    one unit. Terms are bracketed by floor/ceil, the partial sum by adding the odd terms' upper bounds to the
    lower sum and their lower bounds to the upper sum; squaring a bracket of positive numbers squares its ends.
    Guard bits (r + 24) absorb the growth of the bracket under squaring, so hi − lo is a few units.
    """
    if num < 0 or den < 1 or bits < 1:
        raise ValueError(f"exp_neg_bounds needs num >= 0, den >= 1, bits >= 1; got {num}, {den}, {bits}")
    if num == 0:
        return 1 << bits, 1 << bits
    r = 0
    while num * 2 > den << r:  # until num / (den·2^r) ≤ 1/2
        r += 1
    guard = r + 24
    work = bits + guard
    one = 1 << work
    divisor = den << r
    term_lo = term_hi = one
    sum_lo = sum_hi = one
    k = 0
    while term_hi > 1:
        k += 1
        term_lo = term_lo * num // (divisor * k)
        term_hi = _ceil_div(term_hi * num, divisor * k)
        if k % 2:
            sum_lo, sum_hi = sum_lo - term_hi, sum_hi - term_lo
        else:
            sum_lo, sum_hi = sum_lo + term_lo, sum_hi + term_hi
    # The rest of the series is at most the last term, which is at most one unit.
    lo, hi = sum_lo - 1, sum_hi + 1
    for _ in range(r):
        lo, hi = lo * lo >> work, _ceil_div(hi * hi, one)
    return lo >> guard, _ceil_div(hi, 1 << guard)


def reach_for(sigma2_p: int, sigma2_q: int, tail_bits: int) -> int:
    """A reach M whose two tails beyond ±M weigh about 2^−tail_bits or less of the mass: M ≈ σ·√(2·ln2·tail_bits).

    Only a size: a short reach makes the sampler draw more bits more often, never sample wrongly.
    """
    if sigma2_p // sigma2_q > 1 << 512:  # far beyond any table; keeps the float below from overflowing
        return 1 << 300
    sigma = math.isqrt((sigma2_p << 64) // sigma2_q) / 2**32
    return int(sigma * math.sqrt(2 * math.log(2) * tail_bits)) + 2


@dataclass(frozen=True)
class CdfTable:
    """Bounds on F at the 2M + 2 boundaries b_i = F(i − M − 1), i = 0 .. 2M + 1, scaled by 2^precision.

    ``lower[i] ≤ b_i·2^precision ≤ upper[i]``; ``lower`` is non-decreasing. Sampled value y_i = i − M lies in
    [b_i, b_{i+1}), so a uniform real V ∈ [b_i, b_{i+1}) means Y = i − M.
    """

    reach: int
    precision: int
    lower: tuple[int, ...]
    upper: tuple[int, ...]


@functools.lru_cache(maxsize=16)
def cdf_table(sigma2_p: int, sigma2_q: int, precision: int, reach: int) -> CdfTable:
    """The bounds of :class:`CdfTable` for N_Z(0, p/q) (p, q ≥ 1) at ``precision`` bits and reach M ≥ 0.

    Weights: w(0) = 1, w(z + 1) = w(z)·g_z with g_z = E^(2z+1), g_{z+1} = g_z·E², bracketed at a working
    precision with guard bits. The tail beyond M on each side is T = Σ_{z>M} w(z) ≤ w(M+1)/(1 − E^(2M+3)),
    because each further ratio w(z+1)/w(z) = E^(2z+1) is at most E^(2M+3). With S_i the listed weight below
    boundary i and S the listed total, b_i = (t + S_i)/(2t + S) for the true tail t ∈ [0, T]; this is monotone
    in t, so the bounds are the worse of t = 0 and t = T, with S_i and S each at its own worse end.
    """
    if sigma2_p < 1 or sigma2_q < 1 or reach < 0 or precision < 1:
        raise ValueError(f"cdf_table needs p, q >= 1, reach >= 0, precision >= 1; got {sigma2_p}, {sigma2_q}, …")
    work = precision + 2 * reach.bit_length() + 32
    one = 1 << work
    e_lo, e_hi = exp_neg_bounds(sigma2_q, 2 * sigma2_p, work)
    e2_lo, e2_hi = e_lo * e_lo >> work, _ceil_div(e_hi * e_hi, one)
    weight_lo, weight_hi = [one], [one]  # w(0) .. w(M + 1)
    ratio_lo, ratio_hi = e_lo, e_hi  # g_0 = E
    for _ in range(reach + 1):
        weight_lo.append(weight_lo[-1] * ratio_lo >> work)
        weight_hi.append(_ceil_div(weight_hi[-1] * ratio_hi, one))
        ratio_lo, ratio_hi = ratio_lo * e2_lo >> work, _ceil_div(ratio_hi * e2_hi, one)
    # ratio now brackets g_{M+1} = E^(2M+3).
    if ratio_hi >= one:
        raise ArithmeticError(f"σ² = {sigma2_p}/{sigma2_q} is too wide for {work} working bits")
    tail_hi = _ceil_div(weight_hi[reach + 1] * one, one - ratio_hi)
    # Cumulative listed weight below each boundary, over y = −M .. M.
    below_lo, below_hi = [0], [0]
    for y in range(-reach, reach + 1):
        below_lo.append(below_lo[-1] + weight_lo[abs(y)])
        below_hi.append(below_hi[-1] + weight_hi[abs(y)])
    total_lo, total_hi = below_lo[-1], below_hi[-1]
    scale = 1 << precision
    lower = tuple(min(s * scale // total_hi, (tail_hi + s) * scale // (2 * tail_hi + total_hi)) for s in below_lo)
    upper = tuple(
        max(_ceil_div(s * scale, total_lo), _ceil_div((tail_hi + s) * scale, 2 * tail_hi + total_lo)) for s in below_hi
    )
    return CdfTable(reach, precision, lower, upper)
