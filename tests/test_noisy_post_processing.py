"""Post-processing of noisy sums (docs/protocol.md, "Post-processing of noisy sums"), on hand-built sums: signed
cells reach the kinds, the kinds sum before they clip, and presence decisions use the round's σ, so that the
noise of hundreds of empty cells neither biases a sum nor puts every district on alert.

The noise here is drawn with numpy from a fixed seed (a test's stand-in for the agencies' discrete Gaussian,
whose sampler is tested against its exact pmf elsewhere); every assertion is therefore deterministic, and each
tolerance is stated in σ of the quantity it bounds.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics

import numpy as np
import pytest
from numpy.typing import NDArray

from federation.catalog import Release, kind
from federation.catalog.disclosure import DETECTION_SIGMAS, checked_counts, detected, released_count
from federation.catalog.importation_risk import FALSE_ORIGINS, alerted, importation_index, origin_sigmas
from federation.catalog.warning import noisy_tier_history
from federation.epi.tiers import HIGH, LOW, MEDIUM, tier_history
from federation.errors import IntegrityFault
from federation.queries import Query
from federation.registry import load_registry

REGISTRY = load_registry([42, 43])  # Hubei and Hunan: about 230 districts
N = len(REGISTRY)
END = dt.date(2020, 2, 29)


def wire(values: NDArray[np.integer]) -> NDArray[np.uint64]:
    """Signed counts as the secure sum delivers them: two's complement mod 2^64."""
    return np.asarray(values, dtype=np.int64).reshape(-1).view(np.uint64)


def test_noisy_sums_reach_the_kinds_signed_and_broken_ones_are_still_refused() -> None:
    noisy = wire(np.array([-3, 0, 7]))
    assert checked_counts(noisy, 3, noisy=True).tolist() == [-3, 0, 7]
    with pytest.raises(IntegrityFault, match="2\\^63"):
        checked_counts(noisy, 3)  # the same cells in an exact round: a negative contribution
    for absurd in (1 << 62, -(1 << 62), -(1 << 63)):
        with pytest.raises(IntegrityFault, match="2\\^62"):
            checked_counts(wire(np.array([1, absurd])), 2, noisy=True)
    assert released_count(np.array([-2, 0, 3])).tolist() == [0, 0, 3]
    assert detected(np.array([0, 1, 2, 5]), 0.0).tolist() == [0, 1, 2, 5]  # exact: every positive count
    assert detected(np.array([-1, 1, 2, 5]), 1.2).tolist() == [0, 0, 0, 5]  # noisy: at least 2σ = 2.4


def risk_world() -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """A world where only five origins have cases: F(o→d) one trip between every pair, and 150 into each of ten
    destinations from the first infected origin; 500 residents a district."""
    trips = np.full((N, N), 1, dtype=np.int64)
    trips[0, 10:20] = 150
    confirmed = np.zeros(N, dtype=np.int64)
    confirmed[:5] = [20, 8, 6, 4, 3]
    residents = np.full(N, 500, dtype=np.int64)
    return trips, confirmed, residents


def risk_query() -> Query:
    return Query(
        "importation-risk", END - dt.timedelta(days=13), END, {}, "nhc-national", "0" * 32, "2026-12-01T00:00:00Z"
    )


def test_importation_risk_from_noisy_sums_keeps_the_exact_alerts() -> None:
    trips, confirmed, residents = risk_world()
    exact_index = importation_index(trips, confirmed, residents)
    # σ of one round at ρ = 0.5: trips Δ₂² = 30 → 5.5, cases 3 → 1.7, residents 1 → 1.0.
    sigma = {"trips": math.sqrt(30), "confirmed": math.sqrt(3), "residents": 1.0}
    rng = np.random.default_rng(12)
    cases = np.zeros((N, 3), dtype=np.int64)
    cases[:, 0] = confirmed
    noisy = {
        "trips": trips + np.rint(rng.normal(0, sigma["trips"], trips.shape)).astype(np.int64),
        "residents": residents + np.rint(rng.normal(0, sigma["residents"], N)).astype(np.int64),
        "confirmed": cases + np.rint(rng.normal(0, sigma["confirmed"], cases.shape)).astype(np.int64),
    }
    release = Release(REGISTRY, {k: wire(v) for k, v in noisy.items()}, 15, 3, sigma=sigma)
    risk = kind("importation-risk").exact_values(risk_query(), release)  # type: ignore[attr-defined]
    # Without detection every one of ~230 origins would carry a weight (half of them positive): noise ~ 0.4σ_C
    # per origin times ~700 trips would put I_d near 5 everywhere. With it, only origins whose noisy count
    # reaches origin_sigmas(N) ≈ 2.6 σ_C count: the five infected ones and, by chance, FALSE_ORIGINS = 1 of the
    # others on average (Poisson: more than 11 with probability below 1e-6).
    assert origin_sigmas(N) == pytest.approx(statistics.NormalDist().inv_cdf(1 - FALSE_ORIGINS / N))
    assert origin_sigmas(1) == origin_sigmas(2) == DETECTION_SIGMAS  # never below the presence rule
    assert (risk.weights > 0).sum() <= 5 + 11
    alerts = risk.index >= 1.0
    assert alerts[10:20].all()  # I_d = 150 · 20/500 = 6 there: far above the threshold
    # Elsewhere I_d ≈ 0.08 with noise σ_F·√(Σ w²) ≈ 0.25 (and a spurious origin of ~4 cases adds ~0.01): none
    # of the other ~220 districts reaches 1 but with probability P(Z ≥ 3.7) ≈ 1e-4 each.
    assert alerts.sum() == 10
    # The inflow is summed over signed cells: unbiased (σ·√(N−1) ≈ 83), not pushed up by ~0.4σ per cell.
    inflow_sigma = sigma["trips"] * math.sqrt(N - 1)
    bias = float(np.mean(risk.inflow - (trips.sum(axis=0) - np.diagonal(trips))))
    assert abs(bias) < 4 * inflow_sigma / math.sqrt(N)
    assert np.abs(risk.index[10:20] - exact_index[10:20]).max() < 0.5 * exact_index[10:20].min()


def test_an_origin_whose_noisy_flows_dwarf_the_threshold_puts_no_district_on_alert() -> None:
    # The seven-province scenario at ρ = 0.05: flows with σ_F ≈ 17 per cell, cases σ_C ≈ 5.5, about 130
    # residents a district. One origin has 30 cases (w = 0.23) and one trip to every district: its true
    # contribution to every I_d is 0.23, far below the threshold 1, but w·σ_F ≈ 4 of noise rides on it.
    trips = np.ones((N, N), dtype=np.int64)
    confirmed = np.zeros((N, 3), dtype=np.int64)
    confirmed[0, 0] = 30
    residents = np.full(N, 130, dtype=np.int64)
    sigma = {"trips": 17.3, "confirmed": 5.5, "residents": 3.2}
    rng = np.random.default_rng(21)
    noisy = {
        "trips": trips + np.rint(rng.normal(0, sigma["trips"], trips.shape)).astype(np.int64),
        "residents": residents + np.rint(rng.normal(0, sigma["residents"], N)).astype(np.int64),
        "confirmed": confirmed + np.rint(rng.normal(0, sigma["confirmed"], confirmed.shape)).astype(np.int64),
    }
    release = Release(REGISTRY, {k: wire(v) for k, v in noisy.items()}, 15, 3, sigma=sigma)
    risk = kind("importation-risk").exact_values(risk_query(), release)  # type: ignore[attr-defined]
    assert risk.weights[0] > 0  # the origin counts (30 ≥ 2.6σ_C = 14.5, but for 1e-3 of the noise)
    # Read as a point estimate, I_d ≥ 1 would put about 40 % of the districts on alert.
    assert (risk.index >= 1.0).sum() > 0.25 * N
    # The alert also asks for I_d ≥ origin_sigmas(N) · σ_I: FALSE_ORIGINS = 1 district on alert on average by
    # noise alone (Poisson: more than 11 with probability below 1e-6).
    raised = alerted(risk.index, risk.index_sigma, 1.0)
    assert raised.sum() <= 11
    result = kind("importation-risk").build(risk_query(), release)
    assert sum(row[result.columns.index("alert")] is True for row in result.rows) == int(raised.sum())
    assert alerted(np.array([0.99, 1.0]), np.zeros(2), 1.0).tolist() == [False, True]  # exact: I_d ≥ threshold


def test_noisy_tiers_leave_empty_districts_low() -> None:
    days = 40
    daily = np.zeros((N, days), dtype=np.int64)
    daily[0] = 3  # 120 cumulative: high with its cluster
    daily[1, -5] = 6  # new cases: medium
    clusters = np.zeros((N, days), dtype=np.int64)
    clusters[0, -14:] = 4
    exact = tier_history(daily, clusters)
    assert noisy_tier_history(daily, clusters, 0.0, 0.0).tolist() == exact.tolist()  # σ = 0: the exact rule
    rng = np.random.default_rng(7)
    sigma_day, sigma_clusters = 0.6, 0.9  # ρ = 1 per round: confirmed_daily σ 0.71 per cell, √2 of them a day
    noisy_daily = daily + np.rint(rng.normal(0, sigma_day, daily.shape)).astype(np.int64)
    noisy_clusters = clusters + np.rint(rng.normal(0, sigma_clusters, clusters.shape)).astype(np.int64)
    tiers = noisy_tier_history(noisy_daily, noisy_clusters, sigma_day, sigma_clusters)[:, -1]
    assert tiers[0] == HIGH and tiers[1] == MEDIUM
    # An empty district turns medium only where its 14-day noise reaches 2σ (2.3 %): about 5 of 230.
    assert (tiers[2:] != LOW).sum() <= 0.023 * N + 3 * math.sqrt(0.023 * N)


def test_a_round_asks_for_no_finer_noise_than_the_accounting_pays_for() -> None:
    from fractions import Fraction

    from broker.budget import round_rho
    from federation.errors import InvalidQuery
    from federation.privacy.accounting import parse_rho, party_sigma2, release_rho, sensitivity_squared

    assert round_rho(0.05, 1, 3) == 0.05  # the generated roster's ρ is below every aggregate's ceiling
    for aggregate in ("telecom.residents", "health.cases", "health.clusters", "health.cluster_cases", "telecom.trips"):
        sensitivity2 = sensitivity_squared(aggregate, 4)
        rho = parse_rho(repr(round_rho(5.0, sensitivity2, 3)))
        party = party_sigma2(rho, sensitivity2, 3)
        assert 1 <= party < Fraction(101, 100), aggregate  # σ²/t at least 1, within the 3-digit rounding
        # ... where the Kairouz–Liu–Steinke charge stays within 25 % of ρ even for 10⁴ cells (it is 8 to 130
        # times ρ at σ²/t = 1/2).
        assert release_rho(sensitivity2, party, 3, 10_000) < 1.25 * float(rho), aggregate
    with pytest.raises(InvalidQuery, match="decimal places"):
        parse_rho("0.16666666666666666")


def test_noisy_indices_and_shares_are_rounded_to_what_their_noise_supports() -> None:
    from federation.catalog.disclosure import round_supported, supported_decimals

    assert [supported_decimals(s) for s in (0.0, 0.23, 3.0, 40.0)] == [None, 1, 0, -1]
    assert round_supported(1.7281, 0.23) == 1.7 and round_supported(1.7281, 0.0) == 1.7281
    trips, confirmed, residents = risk_world()
    cases = np.zeros((N, 3), dtype=np.int64)
    cases[:, 0] = confirmed
    sigma = {"trips": 2.0, "confirmed": 1.0, "residents": 1.0}
    rng = np.random.default_rng(3)
    noisy = {
        "trips": trips + np.rint(rng.normal(0, 2.0, trips.shape)).astype(np.int64),
        "residents": residents + np.rint(rng.normal(0, 1.0, N)).astype(np.int64),
        "confirmed": cases + np.rint(rng.normal(0, 1.0, cases.shape)).astype(np.int64),
    }
    release = Release(REGISTRY, {k: wire(v) for k, v in noisy.items()}, 15, 3, sigma=sigma)
    entry = kind("importation-risk")
    risk = entry.exact_values(risk_query(), release)  # type: ignore[attr-defined]
    result = entry.build(risk_query(), release)
    position = {int(c): i for i, c in enumerate(REGISTRY.codes.tolist())}
    at = result.columns.index("importation_index")
    for row in result.rows:
        d = position[int(str(row[0]))]
        sigma_d = float(risk.index_sigma[d])
        assert sigma_d > 0
        assert row[at] == round_supported(float(risk.index[d]), sigma_d)  # no digit below its σ is released
    # I_d ≈ 6 in the ten destinations of the infected origin: σ_I ≈ 2·20/500 plus the rate's noise, tenths.
    assert all(0.05 < float(risk.index_sigma[d]) < 1 for d in range(10, 20))
    shares = result.table("top_origins").rows
    assert shares and all(round(float(str(s[4])), 2) == float(str(s[4])) for s in shares)


def noisy(values: NDArray[np.integer], sigma: float, seed: int) -> NDArray[np.uint64]:
    """``values`` plus rounded normal noise of σ (a fixed seed), on the wire."""
    rng = np.random.default_rng(seed)
    return wire(np.asarray(values, dtype=np.int64) + np.rint(rng.normal(0, sigma, np.shape(values))).astype(np.int64))


def numbers(columns: tuple[str, ...], row: tuple[object, ...]) -> dict[str, float]:
    """A result row's numeric cells by column, NaN for a withheld (None) or text cell."""
    return {c: float(v) if isinstance(v, (int, float)) else math.nan for c, v in zip(columns, row, strict=True)}


def step_of(sigma: float) -> float:
    """The power of ten at or below σ: what a released value with that noise is rounded to."""
    return 10.0 ** math.floor(math.log10(sigma))


def test_trend_releases_counts_and_rt_to_what_their_noise_supports() -> None:
    from federation.catalog import new_query
    from federation.epi.rt import estimate_rt

    days, start = 40, dt.date(2020, 1, 1)
    rise = np.minimum(np.rint(4 * 1.15 ** np.arange(days)), 60).astype(np.int64)
    daily = np.zeros((N, days, 2), dtype=np.int64)
    hubei = np.flatnonzero(REGISTRY.codes // 10_000 == 42)
    daily[hubei[:10], :, 0] = rise  # ten districts with the same local epidemic, two imported cases a day
    daily[hubei[:10], :, 1] = 2
    sigma = 2.0
    query = new_query(
        "trend", start=start, end=start + dt.timedelta(days=days - 1), params={"level": "province"}, coordinator="x"
    )
    release = Release(REGISTRY, {"confirmed": noisy(daily, sigma, 5)}, 15, 3, sigma={"confirmed": sigma})
    result = kind("trend").build(query, release)
    rows = [numbers(result.columns, row) for row in result.rows if row[0] == 42]
    # Hubei sums 103 districts' cells: σ·√103 ≈ 20 per origin and day, so its counts are released in tens.
    area_sigma = sigma * math.sqrt(len(hubei))
    assert step_of(area_sigma) == 10
    assert all(r[c] % 10 == 0 for r in rows for c in ("confirmed", "local", "imported") if not math.isnan(r[c]))
    # R_t from the exact series lies inside the released interval (posterior and noise, 95 % each way) on at
    # least 90 % of the days it is released (here 32 of 33; the posterior interval alone, without the noise of
    # the 103 districts' cells, misses it on 6 of them).
    exact = estimate_rt(
        daily[hubei, :, 0].sum(axis=0)[None], daily[hubei, :, 1].sum(axis=0)[None], si_mean=4.7, si_sd=2.9
    )
    released = [(t, r) for t, r in enumerate(rows) if not math.isnan(r["r_mean"])]
    assert len(released) >= 25
    inside = [r["r_lower"] <= exact.mean[0, t] <= r["r_upper"] for t, r in released]
    assert sum(inside) >= 0.9 * len(released)
    # No digit below R_t's noise: σ_R falls from about 0.2 (tenths) on the first windows to 0.014 (hundredths).
    assert all(round(r["r_mean"], 2) == r["r_mean"] for _, r in released)
    assert round(released[0][1]["r_mean"], 1) == released[0][1]["r_mean"]


def test_outflow_and_return_to_work_release_no_digit_below_their_noise() -> None:
    from federation.catalog import new_query

    end = dt.date(2020, 1, 23)
    sigma = 5.0
    arrivals = np.full(N, 200, dtype=np.int64)
    cases = np.zeros((N, 3), dtype=np.int64)
    cases[:, 0] = np.arange(N) % 40
    outflow = new_query("outflow", start=None, end=end, params={"home": "4201", "level": "prefecture"}, coordinator="x")
    sums = {"arrivals": noisy(arrivals, sigma, 8), "confirmed": noisy(cases, sigma, 9)}
    result = kind("outflow").build(
        outflow, Release(REGISTRY, sums, 15, 3, sigma={"arrivals": sigma, "confirmed": sigma})
    )
    prefectures = REGISTRY.codes // 100
    for row in result.rows:
        r = numbers(result.columns, row)
        step = step_of(sigma * math.sqrt(int((prefectures == r["area"]).sum())))
        assert r["arrivals"] % step == 0 and (math.isnan(r["confirmed"]) or r["confirmed"] % step == 0), r
    assert any(step_of(sigma * math.sqrt(int((prefectures == row[0]).sum()))) == 10 for row in result.rows)

    window, baseline_days = 7, 5
    presence = np.full((N, window), 300, dtype=np.int64)
    baseline = np.full((N, baseline_days), 400, dtype=np.int64)
    trips = np.full((N, N), 3, dtype=np.int64)
    empty = np.zeros((N, 3), dtype=np.int64)
    rtw = new_query(
        "return-to-work",
        start=None,
        end=end,
        params={"baseline_start": "2020-01-01", "baseline_end": "2020-01-05", "cases_start": "2020-01-01"},
        coordinator="x",
    )
    sums = {
        "baseline": noisy(baseline, sigma, 10),
        "presence": noisy(presence, sigma, 11),
        "trips": noisy(trips, sigma, 12),
        "new_cases": wire(empty),
        "cumulative_cases": wire(empty),
        "cluster_cases": wire(np.zeros(N, dtype=np.int64)),
    }
    noise = {"baseline": sigma, "presence": sigma, "trips": sigma}
    result = kind("return-to-work").build(rtw, Release(REGISTRY, sums, 15, 3, sigma=noise))
    for row in result.rows:
        r = numbers(result.columns, row)
        assert r["baseline"] % 1 == 0  # a median: one day's σ 5, units
        assert round(r["presence"], 0) == r["presence"]  # a mean of 7 days: σ 1.9, units
        assert r["inflow_from_low"] % 10 == 0  # every origin low: σ·√230 ≈ 76, tens
        assert round(r["change_pct"], 0) == r["change_pct"]  # 100·√(σ_p² + σ_b²·(3/4)²)/400 ≈ 1.4 points
