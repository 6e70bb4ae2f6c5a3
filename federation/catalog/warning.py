"""``warning``: the official county risk tiers of February 2020, EARS aberration alerts and the importation
alert, per district for the 14 days ending ``end`` (docs/protocol.md, "warning").

Seven rounds: ``confirmed`` (health.confirmed_daily by report date over [start, end], start defaulting to the
data's first day), ``clusters`` (health.clusters over the same days), the importation-risk rounds of the 14 days
ending ``end`` (clipped to start): ``trips`` (telecom.trips) and ``residents`` (telecom.residents), and the
totals the last day's tier rests on, each one cell per district: ``new_cases`` (health.cases over those 14 days)
and ``cumulative_cases`` (health.cases over [start, end]), their confirmed column, and ``cluster_cases``
(health.cluster_cases over those 14 days: the cases of the district's clusters). With exact sums they equal the
daily series' sums (cluster cases are positive exactly where the last day's cluster count is); with noise each
has σ of one cell where a sum of the daily series would have σ·√(2·days), and a cluster of m cases shows as m
rather than 1 against the same σ.
Per district d:

- ``new_14d``: confirmed cases reported in the 14 days ending ``end``; ``cumulative``: since ``start``;
  ``clusters_14d``: clusters in those 14 days (a cluster id with at least two confirmed cases reported in d in
  those days, counted by each health network and summed);
- ``tier``: :func:`federation.epi.tiers.risk_tiers` — low (no case in the 14 days), medium (new cases and
  cumulative ≤ 50, or cumulative > 50 with no cluster), high (cumulative > 50 and a cluster);
- ``tier_since``: the first day of the run of the current tier, looking back over [start, end];
- ``c1``, ``c2``, ``c3``: the EARS alarms for ``end`` on d's daily confirmed series (R ``surveillance::earsC``
  1.20: C1 and C2 with α = 0.001, C3 with its own α = 0.025); null where the series is too short (C1 needs 8
  days, C2 10, C3 12) or the bound is undefined;
- ``importation_alert``: I_d ≥ ``threshold``, with I_d = Σ_{o≠d} F(o→d) · C_o / N_o as importation-risk, C_o
  the origin's confirmed cases of the same 14 days (from the ``confirmed`` round: no separate health round).

Rows: every district (within ``--districts`` and the scope), high tier first, then medium, then low; within a
tier by cumulative descending, then code. Columns ``district, name, province, tier, new_14d, cumulative,
clusters_14d, c1, c2, c3, importation_alert, tier_since``.

Disclosure: the counts with 0 < count < cases-k are released as None (counted in ``suppressed``). Tiers and
alerts are released whatever the counts (they are what governments publish; docs/security.md says what a tier
reveals), except the importation alert, which, as importation-risk's index, is released only where the
district's inflow is 0 or at least mobility-k (None otherwise).
"""

from __future__ import annotations

import math
from datetime import date, timedelta

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
from federation.catalog.disclosure import DETECTION_SIGMAS, detected, released_count
from federation.catalog.importation_risk import (
    alerted,
    counted_origins,
    importation_index,
    index_sigma,
    inflow,
    origin_weights,
)
from federation.catalog.result import Cell, QueryResult
from federation.epi.ears import ears_c1, ears_c2, ears_c3
from federation.epi.tiers import TIER_NAMES, TIER_WINDOW_DAYS, risk_tiers, tier_since, trailing_sums
from federation.errors import InvalidQuery
from federation.queries import Query
from federation.registry import Registry
from federation.vocabulary import CASE_ORIGINS, CASE_STATUSES

COLUMNS = (
    "district",
    "name",
    "province",
    "tier",
    "new_14d",
    "cumulative",
    "clusters_14d",
    "c1",
    "c2",
    "c3",
    "importation_alert",
    "tier_since",
)


class EarlyWarning(QueryKind):
    name = "warning"
    summary = "county risk tiers (Feb 2020 rule), EARS C1/C2/C3 alarms and the importation alert for the 14 days"
    disclosure = "cases"
    params = (
        DISTRICTS,
        Param("threshold", "float", "importation alert where I_d is at least this", default="1.0", minimum=0),
    )
    aggregates = (
        "health.confirmed_daily",
        "health.clusters",
        "telecom.trips",
        "telecom.residents",
        "health.cases",
        "health.cluster_cases",
    )
    start_default = "the data's first day"

    def resolve_window(
        self, start: date | None, end: date, params: dict[str, str], data_start: date | None
    ) -> tuple[date, dict[str, str]]:
        """Cumulative counts run from the data's first day unless ``--start`` says otherwise."""
        if start is None:
            if data_start is None:
                raise InvalidQuery(f"{self.name} needs a start date (the first day counted); pass --start")
            start = data_start
        return start, params

    def tier_window(self, query: Query) -> tuple[date, date]:
        """The 14 days ending ``end`` (fewer when the window is shorter)."""
        return max(query.start, query.end - timedelta(days=TIER_WINDOW_DAYS - 1)), query.end

    def rounds(self, query: Query, registry: Registry, scope: Scope) -> tuple[RoundPlan, ...]:
        first, last = self.tier_window(query)
        return (
            # Every origin's confirmed cases and residents weigh its flows in I_d; clusters only tier the inside.
            plan(
                "confirmed", "health.confirmed_daily", query.start, query.end, registry, scope, "domain", date="report"
            ),
            plan("clusters", "health.clusters", query.start, query.end, registry, scope),
            plan("trips", "telecom.trips", first, last, registry, scope, "inflow"),
            plan("residents", "telecom.residents", None, None, registry, scope, "domain"),
            # The last day's totals: new cases weigh every origin in I_d too, the cumulative only tiers the inside.
            plan("new_cases", "health.cases", first, last, registry, scope, "domain"),
            plan("cumulative_cases", "health.cases", query.start, query.end, registry, scope),
            # The last day's cluster, as the cases of the tier window's clusters (one cell per district).
            plan("cluster_cases", "health.cluster_cases", first, last, registry, scope),
        )

    def series(self, query: Query, release: Release) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Daily confirmed (districts, days) and clusters in the 14 days ending each day (districts, days): exact,
        or signed noisy sums."""
        registry = release.registry
        confirmed, clusters, *_ = self.rounds(query, registry, release.scope)
        n, days = len(registry), query.window_days
        daily = domain_counts(release, confirmed).reshape(n, days, len(CASE_ORIGINS))
        return daily.sum(axis=2), domain_counts(release, clusters).reshape(n, days)

    def build(self, query: Query, release: Release) -> QueryResult:
        registry = release.registry
        k, mobility_k = release.cases_k, release.mobility_k
        threshold = self.values(query)["threshold"]
        daily, clusters = self.series(query, release)
        # A district-day's confirmed count is the sum of its local and imported cells, each with the round's σ.
        sigma_day = release.sigma_of("confirmed") * math.sqrt(len(CASE_ORIGINS))
        sigma_clusters = release.sigma_of("clusters")
        history = noisy_tier_history(daily, clusters, sigma_day, sigma_clusters)
        _, _, trips_plan, residents_plan, new_plan, cumulative_plan, cases_plan = self.rounds(
            query, registry, release.scope
        )
        n = len(registry)
        confirmed_column = CASE_STATUSES.index("confirmed")
        trailing = domain_counts(release, new_plan).reshape(n, -1)[:, confirmed_column]
        total = domain_counts(release, cumulative_plan).reshape(n, -1)[:, confirmed_column]
        sigma_new = release.sigma_of(new_plan.name)
        in_clusters = domain_counts(release, cases_plan)
        # The last day's tier from the three totals (one noisy cell each), the run before it from the daily series.
        history[:, -1] = risk_tiers(
            detected(trailing, sigma_new), total, detected(in_clusters, release.sigma_of(cases_plan.name))
        )
        since = tier_since(history)
        tier = history[:, -1]
        # What is released is clipped once, after the sums.
        new_14d = released_count(trailing)
        cumulative = released_count(total)
        clusters_14d = released_count(clusters[:, -1])
        alarms = [method(daily) for method in (ears_c1, ears_c2, ears_c3)]

        trips = domain_counts(release, trips_plan).reshape(n, n)
        residents = domain_counts(release, residents_plan)
        sigma_residents = release.sigma_of("residents")
        weighted, counted = counted_origins(trailing, residents, sigma_new, sigma_residents)
        index = importation_index(trips, weighted, counted)
        spread = index_sigma(
            trips, origin_weights(weighted, counted), counted, release.sigma_of("trips"), sigma_new, sigma_residents
        )
        alert_raised = alerted(index, spread, threshold)
        arrivals = released_count(inflow(trips))

        listed = np.flatnonzero(self.district_mask(query, registry, release.scope))
        order = listed[np.lexsort((listed, -cumulative[listed], -tier[listed]))]
        rows: list[tuple[Cell, ...]] = []
        suppressed = 0
        for d in order.tolist():
            counts: list[Cell] = []
            for value in (int(new_14d[d]), int(cumulative[d]), int(clusters_14d[d])):
                hidden = 0 < value < k
                suppressed += hidden
                counts.append(None if hidden else value)
            ears: list[Cell] = [None if np.isnan(a.upper_bound[d, -1]) else bool(a.alarm[d, -1]) for a in alarms]
            alert: Cell = None if 0 < arrivals[d] < mobility_k else bool(alert_raised[d])
            rows.append(
                (
                    int(registry.codes[d]),
                    registry.names[d],
                    registry.provinces[d],
                    TIER_NAMES[int(tier[d])],
                    *counts,
                    *ears,
                    alert,
                    (query.start + timedelta(days=int(since[d]))).isoformat(),
                )
            )
        first, last = self.tier_window(query)
        tiers = {name: int((tier[listed] == code).sum()) for code, name in enumerate(TIER_NAMES)}
        notes = (
            f"tiers for {first}..{last}; cumulative since {query.start}: "
            + ", ".join(f"{count} {name}" for name, count in reversed(tiers.items())),
            f"case counts below k={k} (and above 0) suppressed: {suppressed}",
            "EARS alarms on each district's daily confirmed series for the last day: C1, C2 (alpha 0.001), "
            "C3 (alpha 0.025); null where the series is too short",
            f"importation alert where I_d >= {threshold:g} over {first}..{last}; null where the inflow is below "
            f"k={mobility_k} (and above 0)",
        )
        return QueryResult(query=query, columns=COLUMNS, rows=rows, suppressed=suppressed, notes=notes)


def noisy_tier_history(
    daily: NDArray[np.int64], clusters: NDArray[np.int64], sigma_day: float, sigma_clusters: float
) -> NDArray[np.int8]:
    """The tier of every district on every day (as federation.epi.tiers.tier_history) from possibly noisy series:
    new cases in the trailing 14 days and a cluster count as present only where they reach their detection
    threshold (disclosure.detected; a trailing sum of w days has σ = ``sigma_day`` · √w), the cumulative count
    is compared with the limit as summed. With σ = 0 this is tier_history exactly."""
    trailing = trailing_sums(daily)
    window = np.minimum(np.arange(1, daily.shape[-1] + 1), TIER_WINDOW_DAYS)
    threshold = np.maximum(1.0, DETECTION_SIGMAS * sigma_day * np.sqrt(window))
    new = np.where(trailing >= threshold[None, :], trailing, 0)
    return risk_tiers(new, np.cumsum(daily, axis=-1), detected(clusters, sigma_clusters))


KIND = EarlyWarning()
