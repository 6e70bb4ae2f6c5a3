"""``trend``: the epidemic curve per area, its reproduction number, growth rate, peak and turning point
(docs/protocol.md, "trend").

One round, ``confirmed`` (health.confirmed_daily over [start, end], default start the data's first day, dated
by ``by``: report or onset). Districts (the ``--districts`` filter within the coordinator's scope) are summed
into areas of ``level``: district, prefecture (code // 100), province (code // 10000) or national (one area,
code 0). Then per area, all of it post-processing of the summed series (:mod:`federation.epi`):

- R_t over the ``tau`` days ending each day: Cori et al. 2013 with the imported/local split of Thompson et al.
  2019, exactly as R EpiEstim 2.2-4 ``estimate_R(method = "parametric_si")`` (serial interval mean ``si_mean``,
  sd ``si_sd``; prior mean 5, sd 5); posterior mean and 2.5 % / 97.5 % quantiles;
- growth: OLS of log(confirmed) on the day over the last ``growth_days`` days, zero days dropped (R
  ``incidence::fit``), with its 95 % interval, the doubling time ln 2 / r where r > 0 and the halving time
  ln 0.5 / r where r < 0;
- peak: the first day of the largest trailing 7-day mean of confirmed (days with a full 7-day window);
- turning point: the first day after the peak from which the released upper R_t bound stays below 1 for 7
  consecutive days; ``"not reached"`` otherwise.

Main table, one row per area with any case and per day, in area then date order:
``area, name, date, confirmed, local, imported, r_mean, r_lower, r_upper``. Further table ``areas``, one row per
listed area: ``area, name, cases, growth_rate, growth_lower, growth_upper, doubling_days, halving_days,
peak_date, turning_point``.

Disclosure: a count with 0 < count < cases-k is released as None (counted in ``suppressed``). R_t is released
only where its window holds at least 12 cases (EpiEstim's advice, :data:`federation.epi.rt.MIN_WINDOW_CASES`),
otherwise None (noted); growth, peak and turning point only for areas whose growth window (growth) or whole
series (peak) holds at least 12 cases. Noisy sums: counts and R_t are rounded to what their noise supports, and
R_t's interval is widened by its noise (:func:`noisy_rt`; docs/protocol.md, "Post-processing of noisy sums").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

from federation.catalog.base import (
    DISTRICTS,
    Param,
    QueryKind,
    Release,
    RoundPlan,
    Scope,
    domain_counts,
    plan,
)
from federation.catalog.disclosure import released_count, rounded_to_noise, small_cell_mask
from federation.catalog.result import Cell, QueryResult, Table
from federation.epi.growth import fit_growth
from federation.epi.rt import MIN_WINDOW_CASES, RtEstimate, estimate_rt, noise_sd
from federation.errors import InvalidQuery
from federation.queries import Query
from federation.registry import Registry
from federation.vocabulary import CASE_DATES, CASE_ORIGINS

LEVELS = ("district", "prefecture", "province", "national")
NATIONAL = 0  # the area code of the one national area
PEAK_MEAN_DAYS = 7
TURNING_RUN_DAYS = 7
_Z_975 = NormalDist().inv_cdf(0.975)  # the 95 % interval's half-width in standard deviations
NOT_REACHED = "not reached"
COLUMNS = ("area", "name", "date", "confirmed", "local", "imported", "r_mean", "r_lower", "r_upper")
AREA_COLUMNS = (
    "area",
    "name",
    "cases",
    "growth_rate",
    "growth_lower",
    "growth_upper",
    "doubling_days",
    "halving_days",
    "peak_date",
    "turning_point",
)


@dataclass(frozen=True)
class AreaSeries:
    """Daily confirmed counts summed per area (exact, before suppression).

    ``codes`` int64 (areas,): area codes (6, 4 or 2 digits, or 0 for national); ``local`` and ``imported``
    int64 (areas, days), day 0 = the query's start; ``districts`` int64 (areas,): how many districts' cells
    each area sums (a noisy area-day count has σ·√districts per origin).
    """

    codes: NDArray[np.int64]
    names: tuple[str, ...]
    local: NDArray[np.int64]
    imported: NDArray[np.int64]
    districts: NDArray[np.int64]

    @property
    def confirmed(self) -> NDArray[np.int64]:
        total: NDArray[np.int64] = self.local + self.imported
        return total


def peak_day(confirmed: NDArray[np.integer]) -> NDArray[np.int64]:
    """Per row, the first day (index) of the largest trailing 7-day mean; -1 where no full window has a case."""
    counts = np.asarray(confirmed, dtype=np.float64)
    areas, days = counts.shape
    if days < PEAK_MEAN_DAYS:
        return np.full(areas, -1, dtype=np.int64)
    cumulative = np.cumsum(counts, axis=1)
    totals = cumulative[:, PEAK_MEAN_DAYS - 1 :].copy()
    totals[:, 1:] -= cumulative[:, : days - PEAK_MEAN_DAYS]
    peak = np.argmax(totals, axis=1).astype(np.int64) + PEAK_MEAN_DAYS - 1
    result: NDArray[np.int64] = np.where(totals.max(axis=1) > 0, peak, -1)
    return result


def turning_point(upper: NDArray[np.float64], peak: NDArray[np.int64]) -> NDArray[np.int64]:
    """Per row, the first day t > peak with ``upper[t .. t+6] < 1`` (NaN counts as not below); -1 if none."""
    areas, days = upper.shape
    result = np.full(areas, -1, dtype=np.int64)
    if days < TURNING_RUN_DAYS:
        return result
    below = np.nan_to_num(upper, nan=np.inf) < 1.0
    windows = np.lib.stride_tricks.sliding_window_view(below, TURNING_RUN_DAYS, axis=1).all(axis=2)
    start = np.arange(windows.shape[1])
    candidate = windows & (start[None, :] > peak[:, None]) & (peak[:, None] >= 0)
    found = candidate.any(axis=1)
    result[found] = np.argmax(candidate[found], axis=1)
    return result


class Trend(QueryKind):
    name = "trend"
    summary = "epidemic curve per area with Rt (EpiEstim, imported cases), growth rate, peak and turning point"
    disclosure = "cases"
    params = (
        Param("level", "choice", "areas the districts are summed into", default="district", choices=LEVELS),
        DISTRICTS,
        Param("by", "choice", "date a case is counted on", default="report", choices=CASE_DATES),
        # Default serial interval: Nishiura, Linton and Akhmetzhanov 2020 (28 infector-infectee pairs).
        Param("si_mean", "float", "serial interval mean, days", default="4.7", minimum=1, above=True, maximum=30),
        Param(
            "si_sd",
            "float",
            "serial interval standard deviation, days",
            default="2.9",
            minimum=0,
            above=True,
            maximum=30,
        ),
        Param("tau", "int", "days in each Rt window", default="7", minimum=1, maximum=28),
        Param("growth_days", "int", "last days the growth rate is fitted over", default="14", minimum=3, maximum=92),
    )
    aggregates = ("health.confirmed_daily",)
    start_default = "the data's first day"

    def resolve_window(
        self, start: date | None, end: date, params: dict[str, str], data_start: date | None
    ) -> tuple[date, dict[str, str]]:
        """The window starts on the data's first day unless ``--start`` says otherwise."""
        if start is None:
            if data_start is None:
                raise InvalidQuery(f"{self.name} needs a start date; pass --start YYYY-MM-DD")
            start = data_start
        return start, params

    def rounds(self, query: Query, registry: Registry, scope: Scope) -> tuple[RoundPlan, ...]:
        by = self.values(query)["by"]
        return (plan("confirmed", "health.confirmed_daily", query.start, query.end, registry, scope, date=by),)

    def area_series(self, query: Query, release: Release) -> AreaSeries:
        """The daily series of every area with a case in the window (areas in code order): exact, or noisy district
        cells summed per area and then clipped at 0."""
        registry = release.registry
        (confirmed,) = self.rounds(query, registry, release.scope)
        days = query.window_days
        counts = domain_counts(release, confirmed).reshape(len(registry), days, len(CASE_ORIGINS))
        listed = self.district_mask(query, registry, release.scope)
        level = self.values(query)["level"]
        area_of = _area_codes(registry, level)[listed]
        codes, index = np.unique(area_of, return_inverse=True)
        local = np.zeros((codes.shape[0], days), dtype=np.int64)
        imported = np.zeros((codes.shape[0], days), dtype=np.int64)
        np.add.at(local, index, counts[listed, :, 0])
        np.add.at(imported, index, counts[listed, :, 1])
        # Noisy cells are summed into areas signed, then each area-day is clipped once: Rt needs counts >= 0.
        local, imported = released_count(local), released_count(imported)
        has_cases = (local + imported).sum(axis=1) > 0
        districts = np.bincount(index, minlength=codes.shape[0])[has_cases].astype(np.int64)
        codes, local, imported = codes[has_cases], local[has_cases], imported[has_cases]
        names = tuple(_area_name(registry, level, int(code)) for code in codes.tolist())
        return AreaSeries(
            codes=codes.astype(np.int64), names=names, local=local, imported=imported, districts=districts
        )

    def estimate(self, query: Query, series: AreaSeries) -> RtEstimate:
        values = self.values(query)
        return estimate_rt(
            series.local, series.imported, si_mean=values["si_mean"], si_sd=values["si_sd"], window_days=values["tau"]
        )

    def build(self, query: Query, release: Release) -> QueryResult:
        values = self.values(query)
        k = release.cases_k
        series = self.area_series(query, release)
        estimate = self.estimate(query, series)
        released_rt = (estimate.window_cases >= MIN_WINDOW_CASES) & np.isfinite(estimate.mean)
        # Noisy sums: one origin's area-day count has σ·√districts; counts and R_t are released to what that
        # supports, and R_t's interval widened by its noise (docs/protocol.md, "Post-processing of noisy sums").
        day_sigma = release.sigma_of("confirmed") * np.sqrt(series.districts.astype(np.float64))
        widened = noisy_rt(estimate, day_sigma, values)
        upper = np.where(released_rt, widened.upper, np.nan)
        local = rounded_to_noise(series.local, day_sigma[:, None]).astype(np.int64)
        imported = rounded_to_noise(series.imported, day_sigma[:, None]).astype(np.int64)
        confirmed = local + imported

        days = [query.start + timedelta(days=t) for t in range(query.window_days)]
        rows: list[tuple[Cell, ...]] = []
        suppressed = 0
        for a, (code, name) in enumerate(zip(series.codes.tolist(), series.names, strict=True)):
            counts = np.stack([confirmed[a], local[a], imported[a]], axis=1)
            hidden = small_cell_mask(counts, k)
            suppressed += int(hidden.sum())
            for t, day in enumerate(days):
                shown = [None if h else int(c) for c, h in zip(counts[t].tolist(), hidden[t].tolist(), strict=True)]
                rt: list[Cell] = [None, None, None]
                if released_rt[a, t]:
                    rt = [float(shown_rt[a, t]) for shown_rt in widened.shown]
                rows.append((code, name, day.isoformat(), *shown, *rt))

        areas = self._area_table(series, values["growth_days"], upper, days, k, day_sigma)
        estimable = np.isfinite(estimate.mean)
        withheld = int((estimable & ~released_rt).sum())
        notes: tuple[str, ...] = (
            f"{query.start}..{query.end} by {values['by']} date, level {values['level']}; serial interval "
            f"mean {values['si_mean']:g} sd {values['si_sd']:g} days, Rt windows of {values['tau']} days",
            f"case counts below k={k} (and above 0) suppressed: {suppressed}",
            f"Rt released where its window holds at least {MIN_WINDOW_CASES} cases; withheld: {withheld}; "
            "null before the first window that can be estimated",
            f"turning point: first day after the peak from which the upper Rt bound stays below 1 for "
            f"{TURNING_RUN_DAYS} days ('{NOT_REACHED}' otherwise)",
        )
        if values["by"] == "onset":
            # Cases with a recent onset are not all reported yet: the curve and Rt sag at the end.
            notes += ("by onset date the last days are incomplete (reporting delay): Rt there is biased low",)
        return QueryResult(query=query, columns=COLUMNS, rows=rows, suppressed=suppressed, notes=notes, tables=(areas,))

    def _area_table(
        self,
        series: AreaSeries,
        growth_days: int,
        upper: NDArray[np.float64],
        days: list[date],
        k: int,
        day_sigma: NDArray[np.float64],
    ) -> Table:
        confirmed = series.confirmed
        growth = fit_growth(confirmed, days=growth_days)
        growth_cases = confirmed[:, -growth_days:].sum(axis=1)
        total = confirmed.sum(axis=1)
        # The area's total sums two cells a day over the window.
        shown_total = rounded_to_noise(total, day_sigma * np.sqrt(2.0 * len(days))).astype(np.int64)
        peak = np.where(total >= MIN_WINDOW_CASES, peak_day(confirmed), -1)
        turning = turning_point(upper, peak)
        rows: list[tuple[Cell, ...]] = []
        hidden_totals = 0
        for a, (code, name) in enumerate(zip(series.codes.tolist(), series.names, strict=True)):
            fitted = growth_cases[a] >= MIN_WINDOW_CASES
            cases_shown = None if 0 < shown_total[a] < k else int(shown_total[a])
            hidden_totals += cases_shown is None
            rows.append(
                (
                    code,
                    name,
                    cases_shown,
                    *(_number(v[a]) if fitted else None for v in (growth.rate, growth.lower, growth.upper)),
                    *(_number(v[a]) if fitted else None for v in (growth.doubling_days, growth.halving_days)),
                    days[int(peak[a])].isoformat() if peak[a] >= 0 else None,
                    (days[int(turning[a])].isoformat() if turning[a] >= 0 else NOT_REACHED) if peak[a] >= 0 else None,
                )
            )
        return Table(name="areas", columns=AREA_COLUMNS, rows=rows, suppressed=hidden_totals)


@dataclass(frozen=True)
class ReleasedRt:
    """R_t as released: ``shown`` (mean, lower, upper) rounded to what their noise supports, the interval widened
    by the noise; ``upper`` the widened upper bound before rounding (what the turning point reads). (areas, days)
    float64; with exact sums the estimate's own values."""

    upper: NDArray[np.float64]
    shown: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]


def noisy_rt(estimate: RtEstimate, day_sigma: NDArray[np.float64], values: Mapping[str, Any]) -> ReleasedRt:
    """R_t with the noise of the counts it is fitted on (``day_sigma`` (areas,): σ of one area-day count per
    origin, local or imported): σ_R from :func:`federation.epi.rt.noise_sd`; each half of the 95 % interval
    widened to √(half² + (1.96 σ_R)²) (the posterior's and the noise's spread added in quadrature, lower bound
    at least 0); mean and bounds rounded to the decimals σ_R supports."""
    mean, lower, upper = estimate.mean, estimate.lower, estimate.upper
    if not bool((day_sigma > 0).any()):
        return ReleasedRt(upper=upper, shown=(mean, lower, upper))
    variance = day_sigma.astype(np.float64) ** 2
    sigma = noise_sd(
        estimate, variance, 2 * variance, si_mean=values["si_mean"], si_sd=values["si_sd"], window_days=values["tau"]
    )
    noisy = np.nan_to_num(sigma) > 0
    spread = (_Z_975 * np.nan_to_num(sigma)) ** 2
    wide_lower = np.where(noisy, np.maximum(mean - np.sqrt((mean - lower) ** 2 + spread), 0.0), lower)
    wide_upper = np.where(noisy, mean + np.sqrt((upper - mean) ** 2 + spread), upper)
    shown = (
        rounded_to_noise(mean, np.nan_to_num(sigma)),
        rounded_to_noise(wide_lower, np.nan_to_num(sigma)),
        rounded_to_noise(wide_upper, np.nan_to_num(sigma)),
    )
    return ReleasedRt(upper=wide_upper, shown=shown)


def _number(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None


def _area_codes(registry: Registry, level: str) -> NDArray[np.int64]:
    codes = registry.codes.astype(np.int64)
    if level == "district":
        return codes
    if level == "prefecture":
        return codes // 100
    if level == "province":
        return codes // 10_000
    return np.full(codes.shape[0], NATIONAL, dtype=np.int64)


def _area_name(registry: Registry, level: str, code: int) -> str:
    if level == "national":
        return "all listed districts"
    codes = _area_codes(registry, level)
    first = int(np.flatnonzero(codes == code)[0])
    if level == "district":
        return registry.names[first]
    return registry.prefectures[first] if level == "prefecture" else registry.provinces[first]


KIND = Trend()
