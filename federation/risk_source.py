"""The risk-source model of Jia et al. (Nature 582, 2020): cases at each destination against the outflow it got.

Jia et al. found that the cumulative confirmed cases of a destination follow a power law of the number of people
who arrived from the epicentre; a destination far above the fitted line had more transmission than its
arrivals explain, one far below fewer cases than expected (a question for its reporting). Here, over the
destinations given (the kind passes only those whose arrivals are released, A >= k):

    x = log(1 + A),  y = log(1 + C),  y = a + b·x + e       (ordinary least squares)

- expected cases: exp(a + b·x) − 1 (the fit on the count scale);
- standardised residual: e / (s·√(1 − h)), s² = Σe² / (n − 2), leverage h = 1/n + (x − x̄)² / Σ(x − x̄)²
  (R's ``rstandard``);
- flag: ``above`` or ``below`` where y lies outside the 90 % prediction interval
  a + b·x ± t(0.95, n − 2) · s · √(1 + 1/n + (x − x̄)² / Σ(x − x̄)²) (R's ``predict(..., interval =
  "prediction", level = 0.9)``), else ``within``;
- the fit: intercept a, slope b, R² = 1 − Σe² / Σ(y − ȳ)², n.

Checked against R (``tests/fixtures/risk_source.R`` made ``tests/fixtures/risk_source.json``). The Student t
quantile is computed here (no SciPy): the regularised incomplete beta function by its continued fraction
(modified Lentz, as in Numerical Recipes §6.4) gives the t CDF, which is inverted by bisection to the last
bit of a float64; R's ``qt`` agrees to 1e-12 on the fixtures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["PREDICTION_LEVEL", "RiskSourceFit", "fit_risk_source", "student_t_cdf", "student_t_quantile"]

PREDICTION_LEVEL = 0.90
MIN_POINTS = 3  # a line through two points has no residual variance: no interval, no flags

ABOVE, BELOW, WITHIN = "above", "below", "within"


@dataclass(frozen=True)
class RiskSourceFit:
    """The fit and its per-destination values, aligned with the inputs (float64 arrays, flags as str).

    With fewer than MIN_POINTS destinations, or arrivals all equal (no spread in x), there is no fit: ``n`` is
    the number of points, every other number is NaN and every flag is the empty string.
    """

    intercept: float
    slope: float
    r_squared: float
    n: int
    residual_sd: float  # s, on the log scale
    t_quantile: float  # t(0.95, n − 2) used for the 90 % interval
    expected: NDArray[np.float64]  # exp(a + b·x) − 1
    standardised_residual: NDArray[np.float64]
    flag: tuple[str, ...]

    @property
    def fitted(self) -> bool:
        return not math.isnan(self.slope)


def fit_risk_source(arrivals: NDArray[np.integer], confirmed: NDArray[np.integer]) -> RiskSourceFit:
    """OLS of log(1 + confirmed) on log(1 + arrivals) over the given destinations (module docstring)."""
    a_counts = np.asarray(arrivals, dtype=np.float64)
    c_counts = np.asarray(confirmed, dtype=np.float64)
    if a_counts.shape != c_counts.shape or a_counts.ndim != 1:
        raise ValueError(f"arrivals {a_counts.shape} and confirmed {c_counts.shape} must be equal-length vectors")
    n = int(a_counts.shape[0])
    x, y = np.log1p(a_counts), np.log1p(c_counts)
    # Equal arrivals everywhere leave no slope to fit (tested on the counts: their float mean is inexact).
    if n < MIN_POINTS or np.ptp(a_counts) == 0:
        nan = np.full(n, np.nan)
        return RiskSourceFit(math.nan, math.nan, math.nan, n, math.nan, math.nan, nan, nan.copy(), ("",) * n)
    x_mean, y_mean = float(x.mean()), float(y.mean())
    sxx = float(((x - x_mean) ** 2).sum())
    slope = float(((x - x_mean) * (y - y_mean)).sum()) / sxx
    intercept = y_mean - slope * x_mean
    fitted = intercept + slope * x
    residual = y - fitted
    sse = float((residual**2).sum())
    syy = float(((y - y_mean) ** 2).sum())
    s = math.sqrt(sse / (n - 2))
    leverage = 1.0 / n + (x - x_mean) ** 2 / sxx
    # A perfect fit has s = 0: residuals are all 0 and lie inside any interval.
    with np.errstate(divide="ignore", invalid="ignore"):
        standardised = np.where(s > 0, residual / (s * np.sqrt(1.0 - leverage)), 0.0)
    t = student_t_quantile((1.0 + PREDICTION_LEVEL) / 2.0, n - 2)
    half_width = t * s * np.sqrt(1.0 + leverage)
    flag = tuple(
        ABOVE if r > h else BELOW if r < -h else WITHIN
        for r, h in zip(residual.tolist(), half_width.tolist(), strict=True)
    )
    return RiskSourceFit(
        intercept=intercept,
        slope=slope,
        r_squared=1.0 - sse / syy if syy > 0 else math.nan,
        n=n,
        residual_sd=s,
        t_quantile=t,
        expected=np.expm1(fitted),
        standardised_residual=standardised.astype(np.float64),
        flag=flag,
    )


# --- Student t --------------------------------------------------------------------------------------------------


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz); converges fast for x < (a + 1) / (a + b + 2)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-16:
            return result
    raise ArithmeticError(f"incomplete beta continued fraction did not converge for a={a}, b={b}, x={x}")


def _regularised_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    # The symmetry I_x(a, b) = 1 − I_{1−x}(b, a) keeps the fraction in its fast region.
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` > 0 degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    tail = 0.5 * _regularised_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (0 < p < 1), by bisection on :func:`student_t_cdf` to float64 resolution."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability must be strictly between 0 and 1, got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < p:  # the quantile of p = 0.999999 at df = 1 is about 3e5: a few doublings
        low, high = high, high * 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if middle in (low, high):
            break
        if student_t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0
