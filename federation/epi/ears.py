"""EARS C1, C2 and C3 aberration detection on daily counts, as R ``surveillance::earsC`` 1.20 computes them.

For day t (0-based along the last axis), with ``baseline`` = 7 and the sample sd (n − 1):

- **C1**: reference days t−7 .. t−1; upper bound = mean + z(1−α) · sd, α = 0.001; from t = 7.
- **C2**: reference days t−9 .. t−3 (a two-day guard band); same bound, α = 0.001; from t = 9.
- **C3**: with C2(u) = (x_u − mean_u) / sd_u the C2 statistic on C2's reference days of u, upper bound =
  max(0, x_t + sd_t · (z(1−α) − max(0, C2(t−2) − 1) − max(0, C2(t−1) − 1))), α = 0.025 (earsC's default
  for C3); from t = 11. This is ``earsC``'s C3 exactly, including that the bound is built on today's count.

An alarm is x_t > upper bound. Days before a method's first day are NaN (no bound) and no alarm. Where a
reference sd is 0, the division in C2's statistic gives ±inf or NaN exactly as R does, and a NaN bound gives
no alarm (R's alarm is NA there); ``minSigma`` = 0 as earsC's default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from federation.epi.special import normal_quantile

__all__ = ["BASELINE_DAYS", "C1_C2_ALPHA", "C3_ALPHA", "EarsResult", "ears_c1", "ears_c2", "ears_c3"]

BASELINE_DAYS = 7
C1_C2_ALPHA = 0.001
C3_ALPHA = 0.025


@dataclass(frozen=True)
class EarsResult:
    """Per series and day: the upper bound (float64, NaN where none) and the alarm (bool)."""

    upper_bound: npt.NDArray[np.float64]
    alarm: npt.NDArray[np.bool_]


def _reference(
    observed: npt.NDArray[np.float64], first_lag: int, last_lag: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Mean and sd (n − 1) over days t − first_lag .. t − last_lag for every t >= first_lag; NaN before."""
    days = observed.shape[-1]
    width = first_lag - last_lag + 1
    mean = np.full(observed.shape, np.nan)
    sd = np.full(observed.shape, np.nan)
    if days > first_lag:
        windows = sliding_window_view(observed, width, axis=-1)[..., : days - first_lag, :]
        mean[..., first_lag:] = windows.mean(axis=-1)
        sd[..., first_lag:] = windows.std(axis=-1, ddof=1)
    return mean, sd


def _result(observed: npt.NDArray[np.float64], bound: npt.NDArray[np.float64]) -> EarsResult:
    with np.errstate(invalid="ignore"):
        alarm = np.where(np.isnan(bound), False, observed > bound)
    return EarsResult(upper_bound=bound, alarm=alarm.astype(np.bool_))


def ears_c1(observed: npt.ArrayLike, alpha: float = C1_C2_ALPHA) -> EarsResult:
    """C1 over the last axis of ``observed`` (counts)."""
    x = np.asarray(observed, dtype=np.float64)
    mean, sd = _reference(x, BASELINE_DAYS, 1)
    return _result(x, mean + normal_quantile(1.0 - alpha) * sd)


def ears_c2(observed: npt.ArrayLike, alpha: float = C1_C2_ALPHA) -> EarsResult:
    """C2 over the last axis of ``observed`` (counts)."""
    x = np.asarray(observed, dtype=np.float64)
    mean, sd = _reference(x, BASELINE_DAYS + 2, 3)
    return _result(x, mean + normal_quantile(1.0 - alpha) * sd)


def ears_c3(observed: npt.ArrayLike, alpha: float = C3_ALPHA) -> EarsResult:
    """C3 over the last axis of ``observed`` (counts)."""
    x = np.asarray(observed, dtype=np.float64)
    mean, sd = _reference(x, BASELINE_DAYS + 2, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        c2 = (x - mean) / sd
        lag1 = np.full(x.shape, np.nan)
        lag2 = np.full(x.shape, np.nan)
        lag1[..., 1:] = np.maximum(0.0, c2[..., :-1] - 1.0)
        lag2[..., 2:] = np.maximum(0.0, c2[..., :-2] - 1.0)
        bound = np.maximum(0.0, x + sd * (normal_quantile(1.0 - alpha) - (lag2 + lag1)))
    bound[..., : BASELINE_DAYS + 4] = np.nan
    return _result(x, bound)
