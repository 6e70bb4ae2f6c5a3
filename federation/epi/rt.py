"""The instantaneous reproduction number R_t (Cori et al. 2013) with imported cases (Thompson et al. 2019).

This reproduces R EpiEstim 2.2-4 ``estimate_R(incid, method = "parametric_si", config = make_config(
mean_si, std_si))`` with its defaults: weekly sliding windows, a Gamma prior of mean 5 and sd 5, and these
conventions, followed exactly:

- every case of the series' first day counts as imported (EpiEstim moves first-day local cases there);
- the serial interval is ``discr_si(0:(T-1), mean, sd)``: the shifted-Gamma discretisation of Cori et al.'s
  web appendix 11, w_0 = 0, truncated at T − 1 days (T = length of the series);
- the total infectiousness Λ_t = Σ_{s=1}^{t−1} w_s (local + imported)_{t−s} over the days of the series;
- windows of τ days end on days τ .. T − 1 (0-based; EpiEstim's t_start = 2 .. T − τ + 1, 1-based), and a
  window is estimated only if its 1-based end exceeds the mean of the discretised serial interval;
- posterior Gamma(shape a₀ + Σ local, scale 1 / (1/b₀ + Σ Λ)) over the window, a₀ = (mean/sd)² and
  b₀ = sd²/mean of the prior; the estimate is its mean a·b and its 2.5 % / 97.5 % quantiles.

Arrays are (areas, days) float64, indexed by the window's last day; NaN where a window is not estimated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from federation.epi.special import gamma_cdf, gamma_quantile

__all__ = [
    "MIN_WINDOW_CASES",
    "PRIOR_MEAN",
    "PRIOR_SD",
    "RtEstimate",
    "discretised_serial_interval",
    "estimate_rt",
    "noise_sd",
    "total_infectiousness",
]

PRIOR_MEAN = 5.0
PRIOR_SD = 5.0
MIN_WINDOW_CASES = 12
"""Cori et al.'s advice: estimate R_t over windows holding at least 12 cases (for a posterior CV below 0.3)."""


def discretised_serial_interval(mean: float, sd: float, days: int) -> npt.NDArray[np.float64]:
    """EpiEstim ``discr_si(0:(days-1), mean, sd)``: w_k for k = 0 .. days-1 (float64; w_0 = 0).

    The serial interval minus one day is Gamma with shape ((mean-1)/sd)² and scale sd²/(mean-1); w_k is
    the probability mass the linear interpolation of its CDF puts on k (negative values clipped to 0).
    Needs mean > 1 and sd > 0.
    """
    if not mean > 1.0:
        raise ValueError(f"the serial interval's mean must exceed 1 day, got {mean}")
    if not sd > 0.0:
        raise ValueError(f"the serial interval's sd must be positive, got {sd}")
    shape = ((mean - 1.0) / sd) ** 2
    scale = sd**2 / (mean - 1.0)
    k = np.arange(days, dtype=np.float64)

    def cdf(x: npt.NDArray[np.float64], a: float) -> npt.NDArray[np.float64]:
        return np.where(x > 0, gamma_cdf(np.maximum(x, 0.0), a, scale), 0.0)

    mass = k * cdf(k, shape) + (k - 2) * cdf(k - 2, shape) - 2 * (k - 1) * cdf(k - 1, shape)
    mass += shape * scale * (2 * cdf(k - 1, shape + 1) - cdf(k - 2, shape + 1) - cdf(k, shape + 1))
    result: npt.NDArray[np.float64] = np.maximum(mass, 0.0)
    return result


def total_infectiousness(
    cases: npt.NDArray[np.floating], serial_interval: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Λ_t = Σ_{s=0}^{t} w_s · cases_{t−s} along the last axis (w_0 = 0); Λ_0 is NaN as in EpiEstim."""
    days = cases.shape[-1]
    lag = np.arange(days)[:, None] - np.arange(days)[None, :]  # lag[t, u] = t - u
    weights = np.where(lag >= 0, serial_interval[np.clip(lag, 0, days - 1)], 0.0)
    infectiousness: npt.NDArray[np.float64] = np.asarray(cases, dtype=np.float64) @ weights.T
    infectiousness[..., 0] = np.nan
    return infectiousness


@dataclass(frozen=True)
class RtEstimate:
    """Posterior of R_t over the window ending each day; (areas, days) float64, NaN where not estimated.

    ``window_cases`` holds the cases (local + imported) in each window, for the release rule.
    """

    mean: npt.NDArray[np.float64]
    lower: npt.NDArray[np.float64]  # 2.5 % quantile
    upper: npt.NDArray[np.float64]  # 97.5 % quantile
    shape: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    window_cases: npt.NDArray[np.int64]


def estimate_rt(
    local: npt.NDArray[np.integer],
    imported: npt.NDArray[np.integer],
    *,
    si_mean: float,
    si_sd: float,
    window_days: int = 7,
    prior_mean: float = PRIOR_MEAN,
    prior_sd: float = PRIOR_SD,
) -> RtEstimate:
    """R_t per area (row) over sliding windows of ``window_days``, as EpiEstim (module docstring).

    ``local`` and ``imported`` are (areas, days) non-negative counts of one time axis.
    """
    local_cases = np.array(local, dtype=np.float64, ndmin=2)
    imported_cases = np.array(imported, dtype=np.float64, ndmin=2)
    if local_cases.shape != imported_cases.shape:
        raise ValueError(f"local {local_cases.shape} and imported {imported_cases.shape} must have one shape")
    if window_days < 1:
        raise ValueError(f"the window must be at least 1 day, got {window_days}")
    areas, days = local_cases.shape
    # EpiEstim's process_I: all cases of the first day are imported.
    imported_cases[:, 0] += local_cases[:, 0]
    local_cases[:, 0] = 0.0
    total = local_cases + imported_cases

    serial_interval = discretised_serial_interval(si_mean, si_sd, days)
    si_mean_discrete = float(np.sum(serial_interval * np.arange(days)))
    infectiousness = total_infectiousness(total, serial_interval)

    nan = np.full((areas, days), np.nan)
    shape, scale = nan.copy(), nan.copy()
    window_cases = np.zeros((areas, days), dtype=np.int64)
    end = np.arange(window_days, days)  # 0-based last day of each window (first window starts on day 1)
    if end.size:
        local_sum = _window_sums(local_cases, window_days)[:, end]
        lambda_sum = _window_sums(np.nan_to_num(infectiousness, nan=0.0), window_days)[:, end]
        window_cases[:, end] = np.rint(_window_sums(total, window_days)[:, end]).astype(np.int64)
        prior_shape = (prior_mean / prior_sd) ** 2
        prior_scale = prior_sd**2 / prior_mean
        estimable = end + 1 > si_mean_discrete
        columns = end[estimable]
        shape[:, columns] = prior_shape + local_sum[:, estimable]
        scale[:, columns] = 1.0 / (1.0 / prior_scale + lambda_sum[:, estimable])
    return RtEstimate(
        mean=shape * scale,
        lower=gamma_quantile(0.025, shape, scale),
        upper=gamma_quantile(0.975, shape, scale),
        shape=shape,
        scale=scale,
        window_cases=window_cases,
    )


def _window_sums(values: npt.NDArray[np.float64], window_days: int) -> npt.NDArray[np.float64]:
    """Sum over the ``window_days`` days ending each day along the last axis (partial near the start)."""
    cumulative = np.cumsum(values, axis=-1)
    shifted = np.zeros_like(cumulative)
    shifted[..., window_days:] = cumulative[..., :-window_days]
    result: npt.NDArray[np.float64] = cumulative - shifted
    return result


def noise_sd(
    estimate: RtEstimate,
    local_variance: npt.NDArray[np.float64],
    total_variance: npt.NDArray[np.float64],
    *,
    si_mean: float,
    si_sd: float,
    window_days: int = 7,
) -> npt.NDArray[np.float64]:
    """The standard deviation that additive noise in the daily counts gives the posterior mean R_t, to first order
    (areas, days) float64, NaN where R_t is not estimated.

    ``local_variance`` and ``total_variance`` (areas,) are the noise variances of one day's local count and of
    its local + imported count, independent across days. R_t = (a₀ + A)/B with A = Σ local over the window and
    B = 1/b₀ + Σ Λ over it, both linear in the counts, so Var R_t ≈ (Var A − 2 R_t Cov(A, B) + R_t² Var B)/B²
    (the delta method; the Poisson uncertainty of the posterior itself is not in it).
    """
    days = estimate.mean.shape[-1]
    serial_interval = discretised_serial_interval(si_mean, si_sd, days)
    lag = np.arange(days)[:, None] - np.arange(days)[None, :]
    weights = np.where(lag >= 0, serial_interval[np.clip(lag, 0, days - 1)], 0.0)
    weights[0] = 0.0  # Λ_0 is not part of any window
    ends, day = np.arange(days)[:, None], np.arange(days)[None, :]
    window = ((day <= ends) & (day > ends - window_days)).astype(np.float64)
    counted = window * (day >= 1)  # the first day's cases are all imported: no local count, no noise in A
    spread = window @ weights  # spread[e, u]: how much day u's count weighs in Σ Λ over the window ending e
    local_weight = counted.sum(axis=1)
    cross_weight = (spread * counted).sum(axis=1)
    total_weight = (spread**2).sum(axis=1)
    r, b = estimate.mean, 1.0 / estimate.scale
    variance = (
        local_variance[:, None] * (local_weight - 2 * r * cross_weight) + r**2 * total_variance[:, None] * total_weight
    ) / b**2
    result: npt.NDArray[np.float64] = np.sqrt(np.maximum(variance, 0.0))
    return result
