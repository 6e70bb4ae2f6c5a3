"""``outflow``: where the people of a home region went, and whether their destinations' cases follow them
(docs/protocol.md, "outflow").

Two rounds: ``arrivals`` (telecom.arrivals over the window of ``window_days`` ending at ``end``, home prefix
``home``: distinct subscribers of the home region arriving in each district) and ``confirmed`` (health.cases
from the window's start to ``cases_end``, default ``end``; its confirmed column). Each carrier counts its own
subscribers and a subscriber has one carrier, so the sum of arrivals is exact.

Destinations are the districts outside the home region, or (``level=prefecture``) their prefectures, a
prefecture's arrivals and cases being the sums over its districts outside the home region (a subscriber who
arrives in two districts of a prefecture counts in each). Per destination A (arrivals) and C (confirmed):

- ``cases_per_10k`` = 10 000 · C / A;
- the risk-source model of Jia et al. (Nature 2020, :mod:`federation.risk_source`): OLS of log(1 + C) on
  log(1 + A) over the fitted destinations, each one's ``expected`` cases exp(a + b·log(1 + A)) − 1, its
  standardised ``residual`` and a ``flag``: ``above`` / ``below`` where C lies outside the 90 % prediction
  interval (more transmission than the outflow explains / fewer cases than expected), else ``within``.

Disclosure: a destination is listed only if A ≥ mobility k; one with 0 < A < k is dropped and counted in
``suppressed``. C is a case count: released unless 0 < C < cases k (then None, counted in ``suppressed``).
``cases_per_10k`` needs C released; the fit runs over the listed destinations whose C is released, and only
they get expected, residual and flag (a fit over a withheld C would give it back: its sums are in the fit).
The fit travels as the one-row table ``fit`` (``intercept, slope, r_squared, n, residual_sd, t_quantile,
prediction_level``; numbers are None with fewer than three points). Rows are ordered by arrivals descending,
then area code. A provincial coordinator gets, and the fit runs over, the destinations inside its province;
the home region may lie anywhere. Noisy sums: every per-destination value is rounded to what its noise
supports and the fit runs on the rounded counts (docs/protocol.md, "Post-processing of noisy sums").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
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
from federation.catalog.disclosure import released_count, rounded_to_noise
from federation.catalog.result import Cell, QueryResult, Table
from federation.errors import InvalidQuery
from federation.queries import Query
from federation.registry import Registry
from federation.risk_source import PREDICTION_LEVEL, fit_risk_source
from federation.vocabulary import CASE_STATUSES

MAX_WINDOW_DAYS = 60
MAX_CASES_LAG_DAYS = 60
LEVELS = ("district", "prefecture")
COLUMNS = ("area", "name", "province", "arrivals", "confirmed", "cases_per_10k", "expected", "residual", "flag")
FIT_COLUMNS = ("intercept", "slope", "r_squared", "n", "residual_sd", "t_quantile", "prediction_level")


@dataclass(frozen=True)
class Areas:
    """Destination areas and their exact counts before suppression (one entry per area, ascending code).

    ``codes`` int64 district (6-digit) or prefecture (4-digit) codes; ``names``/``provinces`` their names;
    ``arrivals`` and ``confirmed`` int64 sums over the area's districts outside the home region, ``districts``
    int64 how many districts each sums (a noisy area's count has its round's σ·√districts).
    """

    codes: NDArray[np.int64]
    names: tuple[str, ...]
    provinces: tuple[str, ...]
    arrivals: NDArray[np.int64]
    confirmed: NDArray[np.int64]
    districts: NDArray[np.int64]


def outside_region(registry: Registry, home: str) -> NDArray[np.bool_]:
    """True for districts whose code does not start with the home region's prefix."""
    width = len(home)
    return np.asarray(registry.codes // 10 ** (6 - width) != int(home))


def destination_areas(
    registry: Registry,
    wanted: NDArray[np.bool_],
    arrivals: NDArray[np.int64],
    confirmed: NDArray[np.int64],
    level: str,
) -> Areas:
    """Sum per-district counts over the ``wanted`` districts into areas of ``level`` (module docstring)."""
    if level == "district":
        at = np.flatnonzero(wanted)
        return Areas(
            codes=registry.codes[at].astype(np.int64),
            names=tuple(registry.names[i] for i in at.tolist()),
            provinces=tuple(registry.provinces[i] for i in at.tolist()),
            arrivals=arrivals[at],
            confirmed=confirmed[at],
            districts=np.ones(at.shape[0], dtype=np.int64),
        )
    prefecture = registry.prefecture_codes.astype(np.int64)
    codes, first, inverse = np.unique(prefecture, return_index=True, return_inverse=True)
    listed = np.bincount(inverse, weights=wanted, minlength=codes.shape[0]) > 0
    keep = np.flatnonzero(listed)
    a = np.bincount(inverse, weights=np.where(wanted, arrivals, 0), minlength=codes.shape[0])
    c = np.bincount(inverse, weights=np.where(wanted, confirmed, 0), minlength=codes.shape[0])
    return Areas(
        codes=codes[keep],
        names=tuple(registry.prefectures[i] for i in first[keep].tolist()),
        provinces=tuple(registry.provinces[i] for i in first[keep].tolist()),
        arrivals=np.rint(a[keep]).astype(np.int64),
        confirmed=np.rint(c[keep]).astype(np.int64),
        districts=np.bincount(inverse, weights=wanted, minlength=codes.shape[0])[keep].astype(np.int64),
    )


class Outflow(QueryKind):
    name = "outflow"
    summary = "arrivals from a home region into each destination, its cases per 10k arrivals and risk-source fit"
    disclosure = "mobility"
    params = (
        Param("home", "region", "home region code prefix: 42 a province, 4201 a prefecture", required=True),
        Param(
            "window_days", "int", "days of the window ending at --end", default="14", minimum=1, maximum=MAX_WINDOW_DAYS
        ),
        Param("level", "choice", "destinations as districts or prefectures", default="district", choices=LEVELS),
        Param("cases_end", "date", "last report day of the destinations' confirmed cases (default: --end)"),
        DISTRICTS,
    )
    aggregates = ("telecom.arrivals", "health.cases")
    trailing_window = "window_days"

    def check(self, query: Query, values: Mapping[str, Any]) -> None:
        cases_end: date | None = values["cases_end"]
        if cases_end is not None and not query.end <= cases_end <= query.end + timedelta(days=MAX_CASES_LAG_DAYS):
            raise InvalidQuery(
                f"--cases-end {cases_end} must lie from --end {query.end} to {MAX_CASES_LAG_DAYS} days after it"
            )

    def cases_end(self, query: Query) -> date:
        cases_end: date | None = self.values(query)["cases_end"]
        return query.end if cases_end is None else cases_end

    def rounds(self, query: Query, registry: Registry, scope: Scope) -> tuple[RoundPlan, ...]:
        home: str = self.values(query)["home"]
        return (
            plan("arrivals", "telecom.arrivals", query.start, query.end, registry, scope, "inside", home_prefix=home),
            plan("confirmed", "health.cases", query.start, self.cases_end(query), registry, scope, "inside"),
        )

    def exact_areas(self, query: Query, release: Release) -> Areas:
        """Destination areas with their exact arrivals and confirmed counts, before suppression."""
        registry = release.registry
        values = self.values(query)
        arrivals_plan, confirmed_plan = self.rounds(query, registry, release.scope)
        arrivals = domain_counts(release, arrivals_plan)
        cases = domain_counts(release, confirmed_plan)
        confirmed = cases.reshape(len(registry), len(CASE_STATUSES))[:, CASE_STATUSES.index("confirmed")].copy()
        wanted = self.district_mask(query, registry, release.scope) & outside_region(registry, values["home"])
        return destination_areas(registry, wanted, arrivals, confirmed, values["level"])

    def build(self, query: Query, release: Release) -> QueryResult:
        mobility_k, cases_k = release.mobility_k, release.cases_k
        summed = self.exact_areas(query, release)  # areas summed over signed (noisy) district cells
        # Each released count to the precision its noise supports (exact sums: as computed); the fit runs on the
        # released counts, so that every value below follows from what the table shows.
        districts = np.sqrt(summed.districts.astype(np.float64))
        sigma_a, sigma_c = release.sigma_of("arrivals") * districts, release.sigma_of("confirmed") * districts
        areas = replace(
            summed,
            arrivals=rounded_to_noise(released_count(summed.arrivals), sigma_a).astype(np.int64),
            confirmed=rounded_to_noise(released_count(summed.confirmed), sigma_c).astype(np.int64),
        )
        listed = areas.arrivals >= mobility_k
        dropped = int(((areas.arrivals > 0) & ~listed).sum())
        shown_cases = listed & ~((areas.confirmed > 0) & (areas.confirmed < cases_k))
        hidden_cases = int((listed & ~shown_cases).sum())
        fitted = np.flatnonzero(shown_cases)
        fit = fit_risk_source(areas.arrivals[fitted], areas.confirmed[fitted])
        expected = np.full(areas.codes.shape[0], np.nan)
        residual = np.full(areas.codes.shape[0], np.nan)
        flag: list[str | None] = [None] * areas.codes.shape[0]
        if fit.fitted:
            expected[fitted] = rounded_to_noise(fit.expected, sigma_c[fitted])
            residual[fitted] = rounded_to_noise(
                fit.standardised_residual, residual_sigma(areas, fitted, fit.residual_sd, sigma_c[fitted])
            )
            for at, value in zip(fitted.tolist(), fit.flag, strict=True):
                flag[at] = value
        rate = np.divide(
            10_000.0 * areas.confirmed, areas.arrivals, out=np.zeros(areas.codes.shape[0]), where=areas.arrivals > 0
        )
        safe = np.maximum(areas.arrivals, 1).astype(np.float64)
        rate_sigma = 10_000.0 * np.sqrt(sigma_c**2 + (areas.confirmed / safe) ** 2 * sigma_a**2) / safe
        rate = rounded_to_noise(rate, rate_sigma)
        order = np.flatnonzero(listed)
        order = order[np.lexsort((areas.codes[order], -areas.arrivals[order]))]
        rows: list[tuple[Cell, ...]] = []
        for i in order.tolist():
            a = int(areas.arrivals[i])
            c: int | None = int(areas.confirmed[i]) if shown_cases[i] else None
            rows.append(
                (
                    int(areas.codes[i]),
                    areas.names[i],
                    areas.provinces[i],
                    a,
                    c,
                    None if c is None else float(rate[i]),
                    _number(expected[i]),
                    _number(residual[i]),
                    flag[i],
                )
            )
        fit_row: tuple[Cell, ...] = (
            _number(fit.intercept),
            _number(fit.slope),
            _number(fit.r_squared),
            fit.n,
            _number(fit.residual_sd),
            _number(fit.t_quantile),
            PREDICTION_LEVEL,
        )
        values = self.values(query)
        notes = (
            f"arrivals from home region {values['home']} over {query.start}..{query.end} ({query.window_days} days); "
            f"confirmed cases reported {query.start}..{self.cases_end(query)}; destinations by {values['level']}",
            f"destinations with arrivals below k={mobility_k} (and above 0) dropped: {dropped}",
            f"confirmed counts below k={cases_k} (and above 0) suppressed: {hidden_cases}; "
            "those destinations are left out of the fit",
            f"risk-source fit over {fit.n} destinations: log(1 + confirmed) = a + b log(1 + arrivals); "
            f"flag: outside the {PREDICTION_LEVEL:.0%} prediction interval",
        )
        return QueryResult(
            query=query,
            columns=COLUMNS,
            rows=rows,
            suppressed=dropped + hidden_cases,
            notes=notes,
            tables=(Table("fit", FIT_COLUMNS, [fit_row]),),
        )


def residual_sigma(
    areas: Areas, fitted: NDArray[np.intp], residual_sd: float, sigma_c: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The noise of each fitted destination's standardised residual e/(s·√(1−h)), to first order in its own
    count: log(1 + C) moves by σ_C/(1 + C) (float64, one per fitted destination; 0 with exact sums)."""
    x = np.log1p(areas.arrivals[fitted].astype(np.float64))
    leverage = 1.0 / x.shape[0] + (x - x.mean()) ** 2 / ((x - x.mean()) ** 2).sum()
    scale = residual_sd * np.sqrt(np.maximum(1.0 - leverage, 0.0))
    log_sigma = sigma_c / (1.0 + areas.confirmed[fitted])
    spread: NDArray[np.float64] = np.divide(log_sigma, scale, out=np.zeros_like(log_sigma), where=scale > 0)
    return spread


def _number(value: float) -> float | None:
    """A float for the result, None for NaN (no value)."""
    return None if np.isnan(value) else float(value)


KIND = Outflow()
