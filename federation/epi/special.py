"""Special functions the statistics need, in numpy and the standard library only (no scipy).

- :func:`gamma_cdf` / :func:`gamma_quantile`: the regularised lower incomplete gamma P(a, x) and its inverse,
  as R ``pgamma`` / ``qgamma`` with a shape and a scale (Rt intervals);
- :func:`t_quantile`: Student's t quantile for whole degrees of freedom, as R ``qt`` (growth-rate intervals);
- :func:`normal_quantile`: as R ``qnorm`` (the EARS thresholds).

P(a, x) is the series of Numerical Recipes §6.2 below x < a + 1 and the modified-Lentz continued fraction of
Q = 1 − P above it, both in float64 with a relative tolerance of 1e-16; the quantiles are safeguarded Newton
iterations (bisection whenever a step leaves the bracket) to a relative step below 1e-14. Checked against R to
1e-10 in ``tests/test_epi_special.py``. scipy would do this in one call, but it is not a dependency of the
project, and these three functions are the whole need.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["gamma_cdf", "gamma_quantile", "normal_quantile", "t_cdf", "t_quantile"]

_EPS = 1e-16
_TINY = 1e-300
_MAX_TERMS = 100_000
_NEWTON_STEPS = 200
_lgamma = np.frompyfunc(math.lgamma, 1, 1)


def _log_gamma(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(_lgamma(a), dtype=np.float64)


def _lower_regularised(a: npt.NDArray[np.float64], x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """P(a, x) for a > 0, x >= 0 (arrays of one shape), float64."""
    result = np.zeros_like(x)
    positive = x > 0
    log_prefactor = np.zeros_like(x)
    log_prefactor[positive] = a[positive] * np.log(x[positive]) - x[positive] - _log_gamma(a[positive])

    series = positive & (x < a + 1)
    if series.any():
        aa, xx = a[series], x[series]
        term = 1.0 / aa
        total = term.copy()
        denominator = aa.copy()
        active = np.ones(aa.shape[0], dtype=np.bool_)
        for _ in range(_MAX_TERMS):
            denominator = denominator + 1.0
            term = np.where(active, term * xx / denominator, 0.0)
            total += term
            active &= np.abs(term) >= np.abs(total) * _EPS
            if not active.any():
                break
        result[series] = total * np.exp(log_prefactor[series])

    fraction = positive & ~series
    if fraction.any():
        aa, xx = a[fraction], x[fraction]
        b = xx + 1.0 - aa
        c = np.full_like(xx, 1.0 / _TINY)
        d = 1.0 / b
        h = d.copy()
        active = np.ones(aa.shape[0], dtype=np.bool_)
        for i in range(1, _MAX_TERMS):
            an = -i * (i - aa)
            b = b + 2.0
            d_new = an * d + b
            d_new = np.where(np.abs(d_new) < _TINY, _TINY, d_new)
            c_new = b + an / c
            c_new = np.where(np.abs(c_new) < _TINY, _TINY, c_new)
            d_new = 1.0 / d_new
            delta = d_new * c_new
            d = np.where(active, d_new, d)
            c = np.where(active, c_new, c)
            h = np.where(active, h * delta, h)
            active &= np.abs(delta - 1.0) >= _EPS
            if not active.any():
                break
        result[fraction] = 1.0 - np.exp(log_prefactor[fraction]) * h
    return result


def gamma_cdf(x: npt.ArrayLike, shape: npt.ArrayLike, scale: npt.ArrayLike = 1.0) -> npt.NDArray[np.float64]:
    """R ``pgamma(x, shape, scale = scale)`` elementwise (broadcasting); shape > 0, scale > 0."""
    xs, a, s = np.broadcast_arrays(
        np.asarray(x, dtype=np.float64), np.asarray(shape, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    )
    z = np.maximum(xs / s, 0.0)
    return _lower_regularised(a.ravel().copy(), z.ravel().copy()).reshape(z.shape)


def gamma_quantile(p: float, shape: npt.ArrayLike, scale: npt.ArrayLike = 1.0) -> npt.NDArray[np.float64]:
    """R ``qgamma(p, shape, scale = scale)`` elementwise over shape and scale (0 < p < 1); NaN where shape is NaN."""
    a, s = np.broadcast_arrays(np.asarray(shape, dtype=np.float64), np.asarray(scale, dtype=np.float64))
    out = np.full(a.shape, np.nan)
    known = np.isfinite(a) & np.isfinite(s) & (a > 0)
    if not known.any():
        return out
    aa = a[known]
    log_gamma = _log_gamma(aa)

    def density(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        values: npt.NDArray[np.float64] = np.exp((aa - 1.0) * np.log(x) - x - log_gamma)
        return values

    # Wilson–Hilferty start, clamped into the bracket; small shapes start from the exponential-like tail.
    z = float(normal_quantile(p))
    guess = aa * (1.0 - 1.0 / (9.0 * aa) + z * np.sqrt(1.0 / (9.0 * aa))) ** 3
    small = np.exp((np.log(p) + np.log(aa) + log_gamma) / aa)  # P(a, x) ≈ x^a / Γ(a + 1) near 0
    x = np.where(guess > 0, guess, small)
    lo = np.zeros_like(aa)
    hi = np.full_like(aa, np.inf)
    for _ in range(_NEWTON_STEPS):
        f = _lower_regularised(aa, x) - p
        lo = np.where(f < 0, x, lo)
        hi = np.where(f > 0, x, hi)
        step = f / np.maximum(density(x), _TINY)
        proposal = x - step
        outside = ~((proposal > lo) & (proposal < hi))
        midpoint = np.where(np.isfinite(hi), (lo + hi) / 2.0, 2.0 * x)
        new = np.where(outside, midpoint, proposal)
        done = np.abs(new - x) <= 1e-14 * np.abs(x)
        x = new
        if done.all():
            break
    out[known] = x * s[known]
    return out


def normal_quantile(p: float) -> float:
    """R ``qnorm(p)`` for 0 < p < 1: Acklam's rational start, refined by Newton steps on ``math.erfc``."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"normal_quantile needs 0 < p < 1, got {p}")
    # Newton on Φ(x) - p from a bracket-safe start; Φ via erfc keeps the tails accurate.
    x = _acklam(p)
    for _ in range(50):
        cdf = 0.5 * math.erfc(-x / math.sqrt(2.0))
        pdf = math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        step = (cdf - p) / pdf
        x -= step
        if abs(step) <= 1e-15 * max(1.0, abs(x)):
            break
    return x


# Acklam's rational approximation of the normal quantile (relative error below 1.2e-9), refined by Newton.
_ACKLAM_A = (
    -39.69683028665376,
    220.9460984245205,
    -275.9285104469687,
    138.3577518672690,
    -30.66479806614716,
    2.506628277459239,
)
_ACKLAM_B = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572, 1.0)
_ACKLAM_C = (
    -7.784894002430293e-03,
    -0.3223964580411365,
    -2.400758277161838,
    -2.549732539343734,
    4.374664141464968,
    2.938163982698783,
)
_ACKLAM_D = (7.784695709041462e-03, 0.3224671290700398, 2.445134137142996, 3.754408661907416, 1.0)
_ACKLAM_LOW = 0.02425


def _polynomial(coefficients: tuple[float, ...], x: float) -> float:
    value = 0.0
    for coefficient in coefficients:
        value = value * x + coefficient
    return value


def _acklam(p: float) -> float:
    if p < _ACKLAM_LOW or p > 1 - _ACKLAM_LOW:
        q = math.sqrt(-2 * math.log(p if p < _ACKLAM_LOW else 1 - p))
        x = _polynomial(_ACKLAM_C, q) / _polynomial(_ACKLAM_D, q)
        return x if p < _ACKLAM_LOW else -x
    q = p - 0.5
    r = q * q
    return _polynomial(_ACKLAM_A, r) * q / _polynomial(_ACKLAM_B, r)


def t_cdf(t: float, df: int) -> float:
    """R ``pt(t, df)`` for a whole df >= 1: the finite series of Abramowitz & Stegun 26.7.3-4."""
    if df < 1 or int(df) != df:
        raise ValueError(f"t_cdf needs whole degrees of freedom >= 1, got {df}")
    theta = math.atan(abs(t) / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2 == 1:
        # A(t|ν) = (2/π)[θ + sin θ (cos θ + (2/3) cos³θ + ... + (2·4···(ν−3))/(1·3···(ν−2)) cos^(ν−2) θ)]
        total, term = 0.0, math.cos(theta)
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= cos2 * (2 * k) / (2 * k + 1)
        inside = (2.0 / math.pi) * (theta + math.sin(theta) * total) if df > 1 else (2.0 / math.pi) * theta
    else:
        # A(t|ν) = sin θ [1 + (1/2) cos²θ + (1·3)/(2·4) cos⁴θ + ... + (1·3···(ν−3))/(2·4···(ν−2)) cos^(ν−2) θ]
        total, term = 0.0, 1.0
        for k in range(1, df // 2 + 1):
            total += term
            term *= cos2 * (2 * k - 1) / (2 * k)
        inside = math.sin(theta) * total
    return 0.5 + 0.5 * inside if t >= 0 else 0.5 - 0.5 * inside


def t_quantile(p: float, df: int) -> float:
    """R ``qt(p, df)`` for 0 < p < 1 and a whole df >= 1 (safeguarded Newton on :func:`t_cdf`)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile needs 0 < p < 1, got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    x, lo, hi = max(normal_quantile(p), 1e-3), 0.0, math.inf
    for _ in range(_NEWTON_STEPS):
        f = t_cdf(x, df) - p
        if f < 0:
            lo = x
        else:
            hi = x
        pdf = math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))
        proposal = x - f / pdf
        new = proposal if lo < proposal < hi else ((lo + hi) / 2 if math.isfinite(hi) else 2 * x)
        if abs(new - x) <= 1e-15 * abs(x):
            return new
        x = new
    return x
