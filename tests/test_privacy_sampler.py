"""The exact discrete Gaussian sampler and the zCDP accounting, checked against exact pmfs and OpenDP.

χ² tests use a fixed sample size and a critical value at a false-failure rate of 10^-4 per test (Wilson–Hilferty
approximation of the χ² quantile, accurate to well under 1% at these degrees of freedom): a correct sampler fails
one run in ten thousand; a sampler off by a few percent in any bin fails nearly always.
"""

from __future__ import annotations

import ast
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import opendp.prelude as dp
import pytest

from federation.privacy.accounting import epsilon_for, party_sigma2, release_rho, sensitivity_squared
from federation.privacy.sampler import discrete_gaussian, discrete_gaussian_pmf, uniform_below

PRIVACY_DIR = Path(__file__).resolve().parent.parent / "federation" / "privacy"
SAMPLES = 40_000
Z_UPPER_1E4 = 3.7190  # standard normal quantile at 1 − 10^-4


def chi2_critical(df: int) -> float:
    """Upper 10^-4 quantile of χ²(df) (Wilson–Hilferty)."""
    h = 2.0 / (9.0 * df)
    return df * (1.0 - h + Z_UPPER_1E4 * math.sqrt(h)) ** 3


def test_no_noise_module_imports_a_non_cryptographic_generator() -> None:
    for path in sorted(PRIVACY_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                assert name != "random" and not name.startswith("random."), f"{path.name} imports {name}"
                assert not name.startswith("numpy.random"), f"{path.name} imports {name}"
        text = path.read_text(encoding="utf-8")
        assert "np.random" not in text and "default_rng" not in text, path.name


@pytest.mark.parametrize("sigma2", [Fraction(1, 3), Fraction(5, 2), Fraction(80), Fraction(1000, 3)])
def test_samples_follow_the_exact_discrete_gaussian(sigma2: Fraction) -> None:
    samples = discrete_gaussian(SAMPLES, sigma2)
    sigma = math.sqrt(float(sigma2))
    support = int(6 * sigma) + 2
    pmf = discrete_gaussian_pmf(sigma2, support)
    # Bins of consecutive values, each with an expected count of at least 20; the rest of the mass is the tail bin.
    edges: list[tuple[int, int]] = []
    low = -support
    while low <= support:
        high, mass = low, pmf[low]
        while mass * SAMPLES < 20 and high < support:
            high += 1
            mass += pmf[high]
        edges.append((low, high))
        low = high + 1
    observed, expected = [], []
    for low, high in edges:
        observed.append(int(((samples >= low) & (samples <= high)).sum()))
        expected.append(SAMPLES * math.fsum(pmf[y] for y in range(low, high + 1)))
    observed.append(SAMPLES - sum(observed))
    expected.append(max(SAMPLES - math.fsum(expected), 1e-12))
    chi2 = math.fsum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True) if e >= 1)
    assert observed[-1] <= 5, f"{observed[-1]} samples beyond ±{support}"
    assert chi2 < chi2_critical(len(edges) - 1), (chi2, len(edges))


def test_a_biased_sampler_is_caught() -> None:
    """The χ² check has power: samples of a 10% wider Gaussian fail it."""
    sigma2 = Fraction(5, 2)
    wrong = discrete_gaussian(SAMPLES, sigma2 * Fraction(121, 100))
    pmf = discrete_gaussian_pmf(sigma2, 12)
    chi2 = math.fsum((int((wrong == y).sum()) - SAMPLES * pmf[y]) ** 2 / (SAMPLES * pmf[y]) for y in range(-6, 7))
    assert chi2 > chi2_critical(12)


def test_uniform_below_is_uniform() -> None:
    draws = uniform_below(60_000, 6)
    counts = np.bincount(draws, minlength=6)
    chi2 = float(((counts - 10_000) ** 2 / 10_000).sum())
    assert draws.min() >= 0 and draws.max() < 6
    assert chi2 < chi2_critical(5)


@pytest.mark.parametrize(("sensitivity2", "rho"), [(1, "0.05"), (3, "0.05"), (16, "0.05"), (1, "0.5")])
def test_single_party_rho_matches_opendp(sensitivity2: int, rho: str) -> None:
    """One party adding N_Z(0, σ²): our ρ equals OpenDP's zCDP map of its discrete Gaussian on integers."""
    dp.enable_features("contrib")
    sigma2 = party_sigma2(Fraction(rho), sensitivity2, 1)
    ours = release_rho(sensitivity2, sigma2, parties=1, dimension=10_000)
    measurement = dp.m.make_gaussian(
        dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=float), scale=math.sqrt(float(sigma2))
    )
    theirs = measurement.map(math.sqrt(sensitivity2))  # type: ignore[no-untyped-call]
    assert math.isclose(ours, float(Fraction(rho)), rel_tol=1e-12)
    assert math.isclose(ours, theirs, rel_tol=1e-6), (ours, theirs)
    # Our ε(δ) = ρ + 2√(ρ ln 1/δ) is a valid but looser conversion than OpenDP's optimal one.
    approx = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(measurement), 1e-6)
    theirs_epsilon, _ = approx.map(math.sqrt(sensitivity2))  # type: ignore[no-untyped-call]
    assert theirs_epsilon <= epsilon_for(ours, 1e-6) <= 1.5 * theirs_epsilon


def test_distributed_rho_against_an_independent_closed_form() -> None:
    """Kairouz–Liu–Steinke's bound, recomputed here term by term for a small per-party variance where τ matters."""
    for parties, variance, dimension, sensitivity2 in [(3, Fraction(3, 10), 100, 1), (2, Fraction(5), 10**6, 16)]:
        s2 = float(variance)
        tau = 10 * sum(math.exp(-2 * math.pi**2 * s2 * k / (k + 1)) for k in range(1, parties))
        eps_a = math.sqrt(sensitivity2 / (parties * s2) + tau * dimension / 2)
        eps_b = math.sqrt(sensitivity2 / (parties * s2)) + tau * math.sqrt(dimension)
        expected = min(eps_a, eps_b) ** 2 / 2
        assert math.isclose(release_rho(sensitivity2, variance, parties, dimension), expected, rel_tol=1e-12)
        assert expected >= sensitivity2 / (2 * parties * s2)  # never below the nominal ρ


def test_sigma_from_rho_and_sensitivity() -> None:
    assert sensitivity_squared("telecom.trips", 4) == 30  # (k + √2)² < (k+1)(k+2): the next day's first trip
    assert sensitivity_squared("transport.trips", 4) == 16
    assert sensitivity_squared("health.cases", 4) == 3
    # σ² on the sum = Δ²/(2ρ); each of t parties adds a t-th of it.
    assert party_sigma2(Fraction("0.05"), 16, 2) * 2 == Fraction(160)


def test_every_catalog_aggregate_has_a_sensitivity() -> None:
    """A new aggregate must state what one person-day adds to it, or noisy agencies cannot calibrate its noise."""
    from federation.catalog.aggregates import AGGREGATES

    for name in AGGREGATES:
        assert sensitivity_squared(name, 4) >= 1, name
