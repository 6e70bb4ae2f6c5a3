"""``importation-risk``: expected infections imported into each district (docs/protocol.md, "importation-risk").

Three rounds over the window of ``window_days`` ending at ``end``: ``trips`` (telecom.trips, F), ``residents``
(telecom.residents, N) and ``confirmed`` (health.cases, C = its confirmed column). For each destination d:

    I_d = Σ_{o≠d} F(o→d) · C_o / N_o        (an origin with N_o = 0 contributes 0)
    P_d = 1 − exp(−I_d)                     (probability of at least one importation, Poisson)
    inflow_d = Σ_{o≠d} F(o→d)

Rows, by I_d descending then code: ``district, name, province, importation_index, probability, inflow,
top_origins, alert`` for destinations with ``inflow_d ≥ k``; those with ``0 < inflow_d < k`` are not listed and
are counted in ``suppressed``, those with no inflow are not listed (I_d = 0) and only noted. ``top_origins``
names up to ``top`` origins by contribution ``F(o→d)·C_o/N_o > 0`` as ``"code name (share%)"`` joined by
``"; "``, share = contribution / I_d; an origin is named only if its own flow ``F(o→d) ≥ k`` and its
confirmed count ``C_o ≥ cases_k`` (share · I_d / F(o→d) = C_o/N_o would otherwise reveal a count that ``cases``
suppresses), but every origin counts in I_d. ``alert`` is ``I_d ≥ threshold``. The same origins travel as
values in the further table ``top_origins`` (``district, rank, origin, origin_name, share``). For a provincial
coordinator an origin outside the province is shown as "outside the province" (code 0), its share kept; its
``trips`` round is in the ``inflow`` layout (every origin × the inside destinations), while ``residents`` and
``confirmed`` stay over the whole domain: every origin's C_o/N_o weighs its flow (docs/protocol.md, "Vector
layouts"; docs/security.md says what that leaves a colluding broker).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from federation.catalog.base import (
    DISTRICTS,
    OUTSIDE,
    OUTSIDE_NAME,
    Param,
    QueryKind,
    Release,
    RoundPlan,
    Scope,
    domain_counts,
    plan,
)
from federation.catalog.disclosure import (
    DETECTION_SIGMAS,
    detected,
    released_count,
    round_supported,
    supported_decimals,
)
from federation.catalog.result import Cell, QueryResult, Table
from federation.queries import Query
from federation.registry import Registry
from federation.vocabulary import CASE_STATUSES

MAX_WINDOW_DAYS = 60
MAX_TOP_ORIGINS = 20
COLUMNS = (
    "district",
    "name",
    "province",
    "importation_index",
    "probability",
    "inflow",
    "top_origins",
    "alert",
)
ORIGIN_COLUMNS = ("district", "rank", "origin", "origin_name", "share")


@dataclass(frozen=True)
class ImportationRisk:
    """Values before suppression, all aligned with the registry's codes (length n): exact, or from noisy sums
    (F, C, N signed as summed; the derived values post-processed as docs/protocol.md says)."""

    trips: NDArray[np.int64]  # F, (n, n) origin × destination
    confirmed: NDArray[np.int64]  # C, (n,)
    residents: NDArray[np.int64]  # N, (n,)
    weights: NDArray[np.float64]  # w = C/N over the detected origins, 0 elsewhere, (n,)
    index: NDArray[np.float64]  # I >= 0, (n,)
    index_sigma: NDArray[np.float64]  # the standard deviation of I from the noise (0 for exact sums), (n,)
    probability: NDArray[np.float64]  # P, (n,)
    inflow: NDArray[np.int64]  # Σ_{o≠d} F(o→d), summed signed then clipped at 0, (n,)


#: The expected number of empty cells, over the whole domain, that the noise lets pass as detected: origins
#: counted in I_d, destinations put on alert.
FALSE_ORIGINS = 1.0
#: P(Z ≥ DETECTION_SIGMAS), the share of empty cells the presence rule lets through.
_DETECTION_TAIL = 1.0 - statistics.NormalDist().cdf(DETECTION_SIGMAS)


def origin_sigmas(candidates: int) -> float:
    """How many σ a noisy value must reach to be told apart from 0 among ``candidates`` (an origin's confirmed
    count to count in I_d, a destination's I_d to raise the alert): at least :data:`DETECTION_SIGMAS`, and
    enough that among ``candidates`` empty ones the expected number passing is :data:`FALSE_ORIGINS`
    (one-sided normal tail; the discrete Gaussian's is no heavier): 2.3 for the 103 districts of Hubei, 3.2
    for 730, 3.6 for the 2,849 of the national registry. At 2σ one empty cell in 44 passes, and one origin
    counted by chance adds its noisy flows times a weight of about 2σ_C/N_o to every destination's I_d."""
    tail = FALSE_ORIGINS / max(candidates, 1)
    if tail >= _DETECTION_TAIL:
        return DETECTION_SIGMAS
    return max(DETECTION_SIGMAS, statistics.NormalDist().inv_cdf(1.0 - tail))


def counted_origins(
    confirmed: NDArray[np.integer], residents: NDArray[np.integer], sigma_c: float, sigma_n: float
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The confirmed cases and residents that weigh each origin in I_d: C_o where it reaches
    :func:`origin_sigmas` (number of origins) · σ_C (and 1), N_o where it reaches disclosure.detected's 2σ_N;
    0 elsewhere. Exact sums (σ 0) pass unchanged."""
    c = np.asarray(confirmed, dtype=np.int64)
    threshold = max(1.0, origin_sigmas(c.shape[0]) * sigma_c)
    return np.where(c >= threshold, c, 0), detected(residents, sigma_n)


def origin_weights(confirmed: NDArray[np.integer], residents: NDArray[np.integer]) -> NDArray[np.float64]:
    """C_o / N_o per origin (float64), 0 where N_o = 0."""
    c = confirmed.astype(np.float64)
    n = residents.astype(np.float64)
    return np.divide(c, n, out=np.zeros_like(c), where=n > 0)


def importation_index(
    trips: NDArray[np.integer], confirmed: NDArray[np.integer], residents: NDArray[np.integer]
) -> NDArray[np.float64]:
    """I_d = Σ_{o≠d} F(o→d) · C_o / N_o for every destination d (float64, length n); F is (n, n) o × d."""
    weights = origin_weights(confirmed, residents)
    off_diagonal = trips.astype(np.float64)
    np.fill_diagonal(off_diagonal, 0.0)
    index: NDArray[np.float64] = weights @ off_diagonal
    return index


def index_sigma(
    trips: NDArray[np.integer],
    weights: NDArray[np.float64],
    residents: NDArray[np.integer],
    sigma_f: float,
    sigma_c: float,
    sigma_n: float,
) -> NDArray[np.float64]:
    """The standard deviation of each I_d from the noise (float64, length n; 0 for exact sums), to first order:
    Var I_d = σ_F² Σ_{o≠d} w_o² from the flows plus Σ_{o≠d} F(o→d)² (σ_C² + w_o² σ_N²)/N_o² from the rates,
    over the counted origins (w_o > 0), with plug-in values: F (n, n) o × d as summed, ``residents`` the counted
    N_o, σ_F, σ_C, σ_N each round's σ per cell."""
    off_diagonal = trips.astype(np.float64)
    np.fill_diagonal(off_diagonal, 0.0)
    squared = weights**2
    rate_variance = np.where(
        weights > 0, (sigma_c**2 + squared * sigma_n**2) / np.maximum(residents, 1).astype(np.float64) ** 2, 0.0
    )
    flows_variance = sigma_f**2 * (squared.sum() - squared)  # o = d does not count
    variance: NDArray[np.float64] = flows_variance + rate_variance @ off_diagonal**2
    return np.sqrt(variance)


def alerted(index: NDArray[np.float64], sigma: NDArray[np.float64], threshold: float) -> NDArray[np.bool_]:
    """Where the importation alert is raised: I_d ≥ ``threshold`` and I_d ≥ :func:`origin_sigmas` (n) · σ_I,
    so that a destination whose I_d is its noise alone passes with the expected count FALSE_ORIGINS over the
    n destinations (σ_I = 0, exact sums: I_d ≥ threshold). Without the second condition, every destination
    whose σ_I is larger than the threshold would be on alert about half of the time."""
    floor = origin_sigmas(index.shape[0]) * sigma
    return np.asarray((index >= threshold) & (index >= floor), dtype=np.bool_)


def importation_probability(index: NDArray[np.float64]) -> NDArray[np.float64]:
    """P_d = 1 − exp(−I_d), computed as −expm1(−I_d) so small I_d keep their precision."""
    return -np.expm1(-index)


def inflow(trips: NDArray[np.integer]) -> NDArray[np.int64]:
    """Σ_{o≠d} F(o→d) per destination (int64)."""
    total: NDArray[np.int64] = trips.astype(np.int64).sum(axis=0)
    return total - np.diagonal(trips).astype(np.int64)


def top_origins(
    risk: ImportationRisk, destinations: NDArray[np.intp], top: int, k: int, cases_k: int = 1
) -> list[list[tuple[int, float]]]:
    """For each destination, up to ``top`` (origin position, share of I_d) by contribution descending, then
    origin position ascending; only origins with contribution > 0, flow F(o→d) ≥ k and confirmed C_o ≥
    ``cases_k``: a named origin's share · I_d / F(o→d) is C_o/N_o, so an origin whose case count ``cases``
    would suppress is never named."""
    weights = risk.weights
    flows = risk.trips[:, destinations]
    nameable = (flows >= k) & (weights[:, None] > 0) & (risk.confirmed[:, None] >= cases_k)
    nameable[destinations, np.arange(destinations.shape[0])] = False  # o = d never counts
    # A noisy I_d clipped to 0 has no share to give: its positive contributions were outweighed by noise.
    nameable &= (risk.index[destinations] > 0)[None, :]
    origin, column = np.nonzero(nameable)
    contribution = flows[origin, column] * weights[origin]
    # Group by destination column, largest contribution first, ties by origin position; rank within group.
    order = np.lexsort((origin, -contribution, column))
    origin, column, contribution = origin[order], column[order], contribution[order]
    group_start = np.searchsorted(column, np.arange(destinations.shape[0]))
    rank = np.arange(column.shape[0]) - group_start[column]
    keep = rank < top
    share = contribution[keep] / risk.index[destinations][column[keep]]
    result: list[list[tuple[int, float]]] = [[] for _ in range(destinations.shape[0])]
    for o, c, s in zip(origin[keep].tolist(), column[keep].tolist(), share.tolist(), strict=True):
        result[c].append((o, s))
    return result


class ImportationRiskKind(QueryKind):
    name = "importation-risk"
    summary = "expected infections imported into each district over the window: I_d = Σ F(o→d)·C_o/N_o"
    disclosure = "mobility"
    params = (
        Param(
            "window_days",
            "int",
            "days of the window ending at --end",
            default="14",
            minimum=1,
            maximum=MAX_WINDOW_DAYS,
        ),
        Param("threshold", "float", "alert where I_d reaches this", default="1.0", minimum=0, above=True),
        Param("top", "int", "top origins listed per district", default="3", minimum=1, maximum=MAX_TOP_ORIGINS),
        DISTRICTS,
    )
    aggregates = ("telecom.trips", "telecom.residents", "health.cases")
    trailing_window = "window_days"

    def rounds(self, query: Query, registry: Registry, scope: Scope) -> tuple[RoundPlan, ...]:
        return (
            # Every origin × the inside destinations; every origin's residents and cases (its weight C_o/N_o).
            plan("trips", "telecom.trips", query.start, query.end, registry, scope, "inflow"),
            plan("residents", "telecom.residents", None, None, registry, scope, "domain"),
            plan("confirmed", "health.cases", query.start, query.end, registry, scope, "domain"),
        )

    def exact_values(self, query: Query, release: Release) -> ImportationRisk:
        """F, C, N from the round sums and the derived w, I, P and inflow, before any suppression.

        Noisy sums: w_o = C_o/N_o only for origins whose C_o and N_o reach their detection thresholds
        (disclosure.detected: max(1, 2σ)), so that the noise of hundreds of empty origins does not add up in
        I_d; I_d = Σ_{o≠d} F(o→d)·w_o over the signed F, clipped at 0; inflow summed signed, clipped at 0.
        """
        n = len(release.registry)
        trips_plan, residents_plan, confirmed_plan = self.rounds(query, release.registry, release.scope)
        trips = domain_counts(release, trips_plan).reshape(n, n)
        residents = domain_counts(release, residents_plan)
        cases = domain_counts(release, confirmed_plan)
        confirmed = cases.reshape(n, len(CASE_STATUSES))[:, CASE_STATUSES.index("confirmed")].copy()
        sigma_f, sigma_c, sigma_n = (release.sigma_of(p.name) for p in (trips_plan, confirmed_plan, residents_plan))
        weighted, counted = counted_origins(confirmed, residents, sigma_c, sigma_n)
        weights = origin_weights(weighted, counted)
        off_diagonal = trips.astype(np.float64)
        np.fill_diagonal(off_diagonal, 0.0)
        index = np.maximum(weights @ off_diagonal, 0.0)
        return ImportationRisk(
            trips=trips,
            confirmed=confirmed,
            residents=residents,
            weights=weights,
            index=index,
            index_sigma=index_sigma(trips, weights, counted, sigma_f, sigma_c, sigma_n),
            probability=importation_probability(index),
            inflow=released_count(inflow(trips)),
        )

    def build(self, query: Query, release: Release) -> QueryResult:
        registry, k, scope = release.registry, release.mobility_k, release.scope
        values = self.values(query)
        threshold: float = values["threshold"]
        risk = self.exact_values(query, release)
        wanted = self.district_mask(query, registry, scope)
        released = wanted & (risk.inflow >= k)
        small = wanted & (risk.inflow > 0) & (risk.inflow < k)
        no_inflow = wanted & (risk.inflow == 0)
        destinations = np.flatnonzero(released)
        # Released to the precision the noise supports (exact sums: as computed), and ranked by what is released.
        shown_index = np.zeros(len(registry))
        for d in destinations.tolist():
            shown_index[d] = round_supported(float(risk.index[d]), float(risk.index_sigma[d]))
        destinations = destinations[np.lexsort((destinations, -shown_index[destinations]))]
        origins = top_origins(risk, destinations, values["top"], k, release.cases_k)
        raised = alerted(risk.index, risk.index_sigma, threshold)
        codes, names = registry.codes, registry.names
        visible = scope.inside(registry)
        rows: list[tuple[Cell, ...]] = []
        origin_rows: list[tuple[Cell, ...]] = []
        for d, named in zip(destinations.tolist(), origins, strict=True):
            index, sigma = float(shown_index[d]), float(risk.index_sigma[d])
            # A share of I_d carries at least I_d's relative noise; P_d = 1 − e^(−I_d) has σ_P = e^(−I_d)·σ_I.
            share_sigma = sigma / float(risk.index[d]) if risk.index[d] > 0 else 0.0
            probability = round_supported(
                float(importation_probability(np.array([index]))[0]), math.exp(-index) * sigma
            )
            places = supported_decimals(share_sigma)
            percent = 1 if places is None else max(0, places - 2)
            shown: list[str] = []
            # An origin whose share rounds to nothing is not named: its share is below what the noise resolves.
            rounded = [(o, round_supported(s, share_sigma)) for o, s in named]
            for rank, (o, share) in enumerate([(o, s) for o, s in rounded if s > 0], start=1):
                code, name = (int(codes[o]), names[o]) if visible[o] else (OUTSIDE, OUTSIDE_NAME)
                label = name if code == OUTSIDE else f"{code} {name}"
                shown.append(f"{label} ({100 * share:.{percent}f}%)")
                origin_rows.append((int(codes[d]), rank, code, name, share))
            rows.append(
                (
                    int(codes[d]),
                    names[d],
                    registry.provinces[d],
                    index,
                    probability,
                    int(risk.inflow[d]),
                    "; ".join(shown),
                    bool(raised[d]),  # the estimate's own reading, before rounding
                )
            )
        suppressed = int(small.sum())
        notes = [
            f"window: {query.start}..{query.end} ({query.window_days} days); alert threshold I_d >= {threshold:g}",
            f"destinations with inflow below k={k} (and above 0) suppressed: {suppressed}",
            f"destinations with no inflow not listed (I_d = 0): {int(no_inflow.sum())}",
            f"origins named only where their own flow is at least k={k} and their confirmed cases at least "
            f"{release.cases_k}; the others still count in I_d",
        ]
        unpopulated = int((visible & (risk.confirmed > 0) & (risk.residents == 0)).sum())
        if unpopulated:
            notes.append(f"origins with confirmed cases but no residents counted, contributing 0: {unpopulated}")
        if scope.province is not None:
            notes.append(f"top origins outside province {scope.province} shown as {OUTSIDE_NAME!r}")
        if bool((risk.index_sigma[destinations] > 0).any()):
            z = origin_sigmas(len(registry))
            notes.append(
                "noisy sums: I_d, its probability and the shares are rounded to the power of ten at or below their "
                f"standard deviation; origins count in I_d where their confirmed cases reach {z:.1f} sigma and "
                f"their residents 2 sigma; the alert also needs I_d >= {z:.1f} sigma of I_d"
            )
        table = Table("top_origins", ORIGIN_COLUMNS, origin_rows)
        return QueryResult(
            query=query, columns=COLUMNS, rows=rows, suppressed=suppressed, notes=tuple(notes), tables=(table,)
        )


KIND = ImportationRiskKind()
