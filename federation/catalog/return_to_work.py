"""``return-to-work``: how many people are back in each district against a pre-outbreak baseline, and from
where they came (docs/protocol.md, "return-to-work").

Rounds:

- ``baseline``: telecom.presence over ``baseline_start .. baseline_end`` (district × day);
- ``presence``: telecom.presence over the window of ``window_days`` ending at ``end``;
- ``trips``: telecom.trips over the window (origin × destination);
- the origin tiers on ``end`` (the February 2020 county tiers, :mod:`federation.epi.tiers`, the rule the
  ``warning`` kind uses): ``new_cases`` (health.cases over the 14 days ending ``end``, confirmed column),
  ``cumulative_cases`` (health.cases from ``cases_start``, default the federation's first day, to ``end``) and
  ``cluster_cases`` (health.cluster_cases over the 14 days ending ``end``: the cases of each district's
  clusters, positive exactly where it has one).

Per district d: ``baseline`` = the median of the daily presence over the baseline days (as Google's community
mobility reports take the baseline period's median), ``presence`` = the mean daily presence over the window,
``change_pct`` = 100 · (presence − baseline) / baseline, and the window's inflow Σ_{o≠d} F(o→d) split by the
origin's tier on ``end``: ``inflow_from_high, inflow_from_medium, inflow_from_low``.

Disclosure (mobility k): ``baseline`` is released only where no baseline day's count is below k (and above 0),
``presence`` likewise over the window days, ``change_pct`` only where both are released and baseline > 0; each
inflow where it is 0 or at least k. Every withheld value is None and counted in ``suppressed``. Rows: every
listed district (``--districts``, within the coordinator's province), in code order; the origins' tiers are
not shown (a provincial coordinator's inflow counts every origin, inside its province or not). Noisy sums: each
value is rounded to what its noise supports (docs/protocol.md, "Post-processing of noisy sums").
"""

from __future__ import annotations

from collections.abc import Mapping
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
from federation.catalog.disclosure import detected, released_count, rounded_to_noise, small_cell_mask
from federation.catalog.result import Cell, QueryResult
from federation.epi.tiers import HIGH, LOW, MEDIUM, TIER_WINDOW_DAYS, risk_tiers
from federation.errors import InvalidQuery
from federation.queries import Query
from federation.registry import Registry
from federation.vocabulary import CASE_STATUSES

MAX_WINDOW_DAYS = 31
MAX_BASELINE_DAYS = 60
COLUMNS = (
    "district",
    "name",
    "province",
    "baseline",
    "presence",
    "change_pct",
    "inflow_from_high",
    "inflow_from_medium",
    "inflow_from_low",
)


def baseline_median(presence: NDArray[np.integer]) -> NDArray[np.float64]:
    """Median over the last axis (days) of daily presence counts, float64 (the mean of the middle two for an
    even number of days)."""
    median: NDArray[np.float64] = np.median(np.asarray(presence, dtype=np.float64), axis=-1)
    return median


def change_pct(baseline: NDArray[np.float64], presence: NDArray[np.float64]) -> NDArray[np.float64]:
    """100 · (presence − baseline) / baseline, NaN where the baseline is 0."""
    out = np.full(baseline.shape, np.nan)
    np.divide(100.0 * (presence - baseline), baseline, out=out, where=baseline > 0)
    return out


def inflow_by_tier(trips: NDArray[np.integer], tiers: NDArray[np.int8]) -> NDArray[np.int64]:
    """(n, 3) int64: Σ_{o≠d} F(o→d) over origins o of each tier, columns (high, medium, low); F is (n, n) o × d."""
    off_diagonal = np.asarray(trips, dtype=np.int64).copy()
    np.fill_diagonal(off_diagonal, 0)
    by_tier = np.zeros((off_diagonal.shape[1], 3), dtype=np.int64)
    for column, tier in enumerate((HIGH, MEDIUM, LOW)):
        by_tier[:, column] = off_diagonal[tiers == tier].sum(axis=0)
    return by_tier


class ReturnToWork(QueryKind):
    name = "return-to-work"
    summary = "presence against a pre-outbreak baseline per district, and the window's inflow by origin tier"
    disclosure = "mobility"
    params = (
        Param("baseline_start", "date", "first day of the baseline period", required=True),
        Param("baseline_end", "date", "last day of the baseline period (before the window)", required=True),
        Param(
            "window_days", "int", "days of the window ending at --end", default="7", minimum=1, maximum=MAX_WINDOW_DAYS
        ),
        Param("cases_start", "date", "first report day of the cumulative cases behind the origin tiers"),
        DISTRICTS,
    )
    aggregates = ("telecom.presence", "telecom.trips", "health.cases", "health.cluster_cases")
    trailing_window = "window_days"

    def resolve_window(
        self, start: date | None, end: date, params: dict[str, str], data_start: date | None
    ) -> tuple[date, dict[str, str]]:
        # The tiers count cases since the data's first day: sign that day so every adapter plans the same round.
        first, params = super().resolve_window(start, end, params, data_start)
        if "cases_start" not in params and data_start is not None:
            params = {**params, "cases_start": data_start.isoformat()}
        return first, params

    def check(self, query: Query, values: Mapping[str, Any]) -> None:
        first: date = values["baseline_start"]
        last: date = values["baseline_end"]
        if not first <= last < query.start:
            raise InvalidQuery(
                f"the baseline {first}..{last} must run forwards and end before the window starts on {query.start}"
            )
        if (last - first).days + 1 > MAX_BASELINE_DAYS:
            raise InvalidQuery(f"the baseline {first}..{last} is longer than {MAX_BASELINE_DAYS} days; shorten it")
        cases_start: date | None = values["cases_start"]
        if cases_start is None:
            raise InvalidQuery("return-to-work needs --cases-start (the data's first day) for the origin tiers")
        if cases_start > query.end - timedelta(days=TIER_WINDOW_DAYS - 1):
            raise InvalidQuery(
                f"--cases-start {cases_start} must be at least {TIER_WINDOW_DAYS} days before --end {query.end}"
            )

    def rounds(self, query: Query, registry: Registry, scope: Scope) -> tuple[RoundPlan, ...]:
        values = self.values(query)
        tier_start = query.end - timedelta(days=TIER_WINDOW_DAYS - 1)
        return (
            plan("baseline", "telecom.presence", values["baseline_start"], values["baseline_end"], registry, scope),
            plan("presence", "telecom.presence", query.start, query.end, registry, scope),
            plan("trips", "telecom.trips", query.start, query.end, registry, scope, "inflow"),
            # The origins' tiers: every origin's cases and clusters.
            plan("new_cases", "health.cases", tier_start, query.end, registry, scope, "domain"),
            plan("cumulative_cases", "health.cases", values["cases_start"], query.end, registry, scope, "domain"),
            plan("cluster_cases", "health.cluster_cases", tier_start, query.end, registry, scope, "domain"),
        )

    def origin_tiers(self, query: Query, release: Release) -> NDArray[np.int8]:
        """The tier of every district on ``end`` (int8, federation.epi.tiers codes), from the case counts: a noisy
        count of new cases or of cases in clusters counts as present only where it reaches its detection threshold
        (disclosure.detected); the cumulative count is compared with the limit as it is (unbiased)."""
        n = len(release.registry)
        plans = {p.name: p for p in self.rounds(query, release.registry, release.scope)}
        confirmed = CASE_STATUSES.index("confirmed")
        new = domain_counts(release, plans["new_cases"]).reshape(n, -1)[:, confirmed]
        total = domain_counts(release, plans["cumulative_cases"])
        in_clusters = domain_counts(release, plans["cluster_cases"])
        return risk_tiers(
            detected(new, release.sigma_of("new_cases")),
            total.reshape(n, -1)[:, confirmed],
            detected(in_clusters, release.sigma_of("cluster_cases")),
        )

    def build(self, query: Query, release: Release) -> QueryResult:
        registry, k = release.registry, release.mobility_k
        n = len(registry)
        plans = {p.name: p for p in self.rounds(query, registry, release.scope)}
        baseline_days = domain_counts(release, plans["baseline"]).reshape(n, -1)
        window_days = domain_counts(release, plans["presence"]).reshape(n, -1)
        trips = domain_counts(release, plans["trips"]).reshape(n, n)
        # Sums and medians over the signed noisy cells first, one clip at the end (docs/protocol.md), then each
        # value rounded to what its noise supports: a median at most one day's σ, a mean of w days σ/√w, an
        # inflow over the origins of a tier σ_F·√origins (exact sums: as computed).
        tiers = self.origin_tiers(query, release)
        sigma_day, sigma_trip = release.sigma_of("presence"), release.sigma_of("trips")
        origins = np.array([(tiers == tier).sum() for tier in (HIGH, MEDIUM, LOW)], dtype=np.float64)
        inflow = rounded_to_noise(
            released_count(inflow_by_tier(trips, tiers)), sigma_trip * np.sqrt(origins)[None, :]
        ).astype(np.int64)
        baseline = np.maximum(baseline_median(baseline_days), 0.0)
        presence = np.maximum(window_days.mean(axis=1), 0.0)
        baseline_days, window_days = released_count(baseline_days), released_count(window_days)
        change = change_pct(baseline, presence)
        sigma_baseline, sigma_presence = release.sigma_of("baseline"), sigma_day / np.sqrt(window_days.shape[1])
        safe = np.where(baseline > 0, baseline, 1.0)
        change_sigma = 100.0 * np.sqrt(sigma_presence**2 + (presence / safe) ** 2 * sigma_baseline**2) / safe
        change = rounded_to_noise(change, change_sigma)
        baseline = rounded_to_noise(baseline, sigma_baseline)
        presence = rounded_to_noise(presence, sigma_presence)
        listed = np.flatnonzero(self.district_mask(query, registry, release.scope))
        show_baseline: NDArray[np.bool_] = ~np.asarray(small_cell_mask(baseline_days, k).any(axis=1))
        show_presence: NDArray[np.bool_] = ~np.asarray(small_cell_mask(window_days, k).any(axis=1))
        show_change = show_baseline & show_presence & ~np.isnan(change)
        hide_inflow = small_cell_mask(inflow, k)
        rows: list[tuple[Cell, ...]] = []
        suppressed = 0
        for i in listed.tolist():
            cells: list[Cell] = [
                float(baseline[i]) if show_baseline[i] else None,
                float(presence[i]) if show_presence[i] else None,
                float(change[i]) if show_change[i] else None,
                *(None if hide else int(value) for value, hide in zip(inflow[i], hide_inflow[i], strict=True)),
            ]
            suppressed += int(not show_baseline[i]) + int(not show_presence[i]) + int(hide_inflow[i].sum())
            rows.append((int(registry.codes[i]), registry.names[i], registry.provinces[i], *cells))
        values = self.values(query)
        notes = (
            f"baseline: median daily presence {values['baseline_start']}..{values['baseline_end']}; presence: mean "
            f"over {query.start}..{query.end} ({query.window_days} days)",
            f"inflow over the window by the origin's tier on {query.end} (cases since {values['cases_start']})",
            f"values resting on a count below k={k} (and above 0) withheld: {suppressed}",
        )
        return QueryResult(query=query, columns=COLUMNS, rows=rows, suppressed=suppressed, notes=notes)


KIND = ReturnToWork()
