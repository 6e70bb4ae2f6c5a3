"""Exponential growth rate of a daily series by log-linear least squares, as R ``incidence::fit`` (1.7).

Over the last ``days`` days of each series, days with no case are dropped (``fit`` ignores zero counts) and
log(count) is regressed on the day by ordinary least squares. The growth rate r is the slope (per day), its
95 % interval r ± t_{0.975, n−2} · se(r) (R ``confint`` on the ``lm``), the doubling time ln 2 / r where
r > 0 and the halving time ln 0.5 / r where r < 0, with intervals from the ends of r's (as ``fit``: the
doubling interval reversed, the halving interval in the order of r's). Fewer than two non-zero days: nothing
is estimated; exactly two: r only (no residual degrees of freedom, so no interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from federation.epi.special import t_quantile

__all__ = ["GrowthFit", "fit_growth"]


@dataclass(frozen=True)
class GrowthFit:
    """Per area (length-areas float64 arrays, NaN where not estimated); ``points`` int64: non-zero days used."""

    rate: npt.NDArray[np.float64]
    lower: npt.NDArray[np.float64]
    upper: npt.NDArray[np.float64]
    doubling_days: npt.NDArray[np.float64]
    doubling_lower: npt.NDArray[np.float64]
    doubling_upper: npt.NDArray[np.float64]
    halving_days: npt.NDArray[np.float64]
    halving_lower: npt.NDArray[np.float64]
    halving_upper: npt.NDArray[np.float64]
    points: npt.NDArray[np.int64]


def fit_growth(confirmed: npt.NDArray[np.integer], days: int = 14, level: float = 0.95) -> GrowthFit:
    """Fit each row of ``confirmed`` (areas, series days) over its last ``days`` days (module docstring)."""
    counts = np.array(confirmed, dtype=np.float64, ndmin=2)[:, -days:]
    areas, span = counts.shape
    used = counts > 0
    n = used.sum(axis=1)
    x = np.broadcast_to(np.arange(span, dtype=np.float64), counts.shape)
    y = np.log(np.where(used, counts, 1.0))
    safe_n = np.maximum(n, 1)
    x_mean = np.where(used, x, 0.0).sum(axis=1) / safe_n
    y_mean = np.where(used, y, 0.0).sum(axis=1) / safe_n
    dx = np.where(used, x - x_mean[:, None], 0.0)
    dy = np.where(used, y - y_mean[:, None], 0.0)
    sxx = (dx * dx).sum(axis=1)
    estimable = (n >= 2) & (sxx > 0)
    rate = np.full(areas, np.nan)
    rate[estimable] = (dx * dy).sum(axis=1)[estimable] / sxx[estimable]
    residual = np.where(used, dy - np.nan_to_num(rate)[:, None] * dx, 0.0)
    rss = (residual * residual).sum(axis=1)

    lower, upper = np.full(areas, np.nan), np.full(areas, np.nan)
    with_interval = estimable & (n >= 3)
    for df in np.unique(n[with_interval] - 2).tolist():
        rows = with_interval & (n - 2 == df)
        se = np.sqrt(rss[rows] / df / sxx[rows])
        quantile = t_quantile(1.0 - (1.0 - level) / 2.0, int(df))
        lower[rows] = rate[rows] - quantile * se
        upper[rows] = rate[rows] + quantile * se

    growing, shrinking = rate > 0, rate < 0
    doubling = np.where(growing, math.log(2.0) / np.where(growing, rate, 1.0), np.nan)
    halving = np.where(shrinking, math.log(0.5) / np.where(shrinking, rate, 1.0), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return GrowthFit(
            rate=rate,
            lower=lower,
            upper=upper,
            doubling_days=doubling,
            doubling_lower=np.where(growing, math.log(2.0) / upper, np.nan),
            doubling_upper=np.where(growing, math.log(2.0) / lower, np.nan),
            halving_days=halving,
            halving_lower=np.where(shrinking, math.log(0.5) / lower, np.nan),
            halving_upper=np.where(shrinking, math.log(0.5) / upper, np.nan),
            points=n.astype(np.int64),
        )
