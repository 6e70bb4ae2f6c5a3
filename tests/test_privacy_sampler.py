"""The exact discrete Gaussian sampler and the zCDP accounting, checked against exact pmfs and OpenDP.

χ² tests use a fixed sample size and a critical value at a false-failure rate of 10^-7 per test (Wilson–Hilferty
approximation of the χ² quantile, accurate to about 1% at these degrees of freedom): a correct sampler fails one
run in ten million; a sampler off by a few percent in any bin still fails nearly always (a 10 % wider σ gives a
χ² several times the critical value, ``test_a_biased_sampler_is_caught``). The module runs 16 such tests, so a
correct sampler fails it about once in 600,000 runs. The bounds on exp and on the distribution function
are checked deterministically against ``decimal`` at 60 digits (correctly rounded by its specification).
"""

from __future__ import annotations

import ast
import decimal
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import opendp.prelude as dp
import pytest

from federation.privacy import sampler
from federation.privacy.accounting import epsilon_for, party_sigma2, release_rho, sensitivity_squared
from federation.privacy.cks import discrete_gaussian_cks
from federation.privacy.gaussian_cdf import cdf_table, exp_neg_bounds, reach_for
from federation.privacy.sampler import discrete_gaussian, discrete_gaussian_pmf, uniform_below

PRIVACY_DIR = Path(__file__).resolve().parent.parent / "federation" / "privacy"
SAMPLES = 40_000
Z_UPPER = 5.1993  # standard normal quantile at 1 − 10^-7


def chi2_critical(df: int) -> float:
    """Upper 10^-7 quantile of χ²(df) (Wilson–Hilferty)."""
    h = 2.0 / (9.0 * df)
    return df * (1.0 - h + Z_UPPER * math.sqrt(h)) ** 3


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


def assert_follows_the_pmf(samples: np.ndarray, sigma2: Fraction) -> None:
    """χ² of ``samples`` against N_Z(0, σ²) at the module's false-failure rate."""
    count = samples.size
    sigma = math.sqrt(float(sigma2))
    support = int(6 * sigma) + 2
    pmf = discrete_gaussian_pmf(sigma2, support)
    # Bins of consecutive values, each with an expected count of at least 20; the rest of the mass is the tail bin.
    edges: list[tuple[int, int]] = []
    low = -support
    while low <= support:
        high, mass = low, pmf[low]
        while mass * count < 20 and high < support:
            high += 1
            mass += pmf[high]
        edges.append((low, high))
        low = high + 1
    observed, expected = [], []
    for low, high in edges:
        observed.append(int(((samples >= low) & (samples <= high)).sum()))
        expected.append(count * math.fsum(pmf[y] for y in range(low, high + 1)))
    observed.append(count - sum(observed))
    expected.append(max(count - math.fsum(expected), 1e-12))
    chi2 = math.fsum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True) if e >= 1)
    assert observed[-1] <= 5, f"{observed[-1]} samples beyond ±{support}"
    assert chi2 < chi2_critical(max(len(edges) - 1, 1)), (chi2, len(edges))


# σ² < 1, fractions, the demo's 1 and the roster's tens, and a wide table (σ = 1000, about 15,000 boundaries).
@pytest.mark.parametrize(
    "sigma2",
    [Fraction(1, 50), Fraction(1, 3), Fraction(1), Fraction(5, 2), Fraction(30), Fraction(1000, 3), Fraction(10**6)],
)
def test_samples_follow_the_exact_discrete_gaussian(sigma2: Fraction) -> None:
    samples = discrete_gaussian(SAMPLES, sigma2)
    assert samples.dtype == np.int64 and samples.shape == (SAMPLES,)
    assert_follows_the_pmf(samples, sigma2)


@pytest.mark.parametrize("sigma2", [Fraction(1, 3), Fraction(5, 2), Fraction(80)])
def test_small_words_force_the_per_word_and_the_extension_paths(sigma2: Fraction) -> None:
    """With 8-bit first words and 8-bit extensions most slots leave the block table and many need more bits:
    the slow paths, which 32-bit words reach about once per vector, still sample exactly."""
    samples, per_word, extended = sampler._sample_by_inversion(
        SAMPLES, sigma2.numerator, sigma2.denominator, word_bits=8, extension_bits=8
    )
    assert per_word > SAMPLES // 100 and extended > SAMPLES // 1000, (per_word, extended)
    assert_follows_the_pmf(samples, sigma2)


@pytest.mark.parametrize("sigma2", [Fraction(5, 2), Fraction(80)])
def test_the_rejection_sampler_for_wide_sigma_follows_the_pmf(sigma2: Fraction) -> None:
    assert_follows_the_pmf(discrete_gaussian_cks(SAMPLES, sigma2), sigma2)


def test_sigma_beyond_the_widest_table_goes_to_the_rejection_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counted(count: int, sigma2: Fraction) -> np.ndarray:
        calls.append(count)
        return discrete_gaussian_cks(count, sigma2)

    monkeypatch.setattr(sampler, "discrete_gaussian_cks", counted)
    discrete_gaussian(10, Fraction(5, 2))
    assert calls == []
    monkeypatch.setattr(sampler, "MAX_TABLE_REACH", 4)
    assert_follows_the_pmf(discrete_gaussian(SAMPLES, Fraction(5, 2)), Fraction(5, 2))
    assert calls == [SAMPLES]


def test_edge_counts_and_bad_variances() -> None:
    assert discrete_gaussian(0, Fraction(3)).shape == (0,)
    with pytest.raises(ValueError, match="non-negative"):
        discrete_gaussian(-1, Fraction(3))
    with pytest.raises(ValueError, match="positive"):
        discrete_gaussian(3, Fraction(0))


def exact_exp_neg(x: Fraction) -> decimal.Decimal:
    with decimal.localcontext(decimal.Context(prec=60)):
        return (-decimal.Decimal(x.numerator) / decimal.Decimal(x.denominator)).exp()


@pytest.mark.parametrize(
    ("num", "den", "bits"),
    [(1, 2, 64), (1, 6, 64), (1, 1, 40), (3, 2, 96), (7, 3, 64), (500, 1, 64), (1, 10**9, 64), (25, 1, 160)],
)
def test_exp_bounds_bracket_the_exact_value(num: int, den: int, bits: int) -> None:
    lo, hi = exp_neg_bounds(num, den, bits)
    with decimal.localcontext(decimal.Context(prec=60)):
        exact = exact_exp_neg(Fraction(num, den)) * (decimal.Decimal(2) ** bits)
        assert lo <= exact <= hi, (lo, exact, hi)
    assert hi - lo <= 4  # tight: only a loose bound would make the sampler draw more bits
    assert exp_neg_bounds(0, 5, 64) == (1 << 64, 1 << 64)


def exact_cdf(sigma2: Fraction, reach: int) -> Iterator[decimal.Decimal]:
    """F(y) for y = −reach − 1 .. reach, in decimal at 60 digits, the series summed to where terms vanish."""
    with decimal.localcontext(decimal.Context(prec=60)):
        far = reach + int(30 * math.sqrt(float(sigma2))) + 30
        weights = {y: exact_exp_neg(Fraction(y * y) / (2 * sigma2)) for y in range(-far, far + 1)}
        total = sum(weights.values(), decimal.Decimal(0))
        running = sum((weights[y] for y in range(-far, -reach)), decimal.Decimal(0))
        yield running / total
        for y in range(-reach, reach + 1):
            running += weights[y]
            yield running / total


@pytest.mark.parametrize("sigma2", [Fraction(1, 3), Fraction(5, 2), Fraction(30)])
def test_cdf_bounds_bracket_the_exact_distribution_function(sigma2: Fraction) -> None:
    p, q = sigma2.numerator, sigma2.denominator
    reach = reach_for(p, q, 40)
    table = cdf_table(p, q, 64, reach)
    assert len(table.lower) == len(table.upper) == 2 * reach + 2
    assert all(a <= b for a, b in zip(table.lower, table.lower[1:], strict=False))
    with decimal.localcontext(decimal.Context(prec=60)):
        scale = decimal.Decimal(2) ** 64
        for lower, exact, upper in zip(table.lower, exact_cdf(sigma2, reach), table.upper, strict=True):
            assert lower <= exact * scale <= upper, (lower, exact * scale, upper)
    # Inside the table the bounds are a few units apart; the two tails' bound is loose but below 2^-40.
    assert max(up - low for low, up in zip(table.lower[1:-1], table.upper[1:-1], strict=True)) <= 1 << 20
    assert table.upper[0] < 1 << 24


@pytest.mark.parametrize("sigma2", [Fraction(1, 3), Fraction(5, 2)])
def test_the_decision_rule_never_contradicts_the_exact_distribution_function(sigma2: Fraction) -> None:
    """Deterministic: prefixes of V at and around every boundary, and between them, either stay undecided or
    name the y with F(y − 1) ≤ V < F(y) for every V they cover."""
    p, q = sigma2.numerator, sigma2.denominator
    bits = 24
    table = sampler._level(p, q, bits)
    boundaries = list(exact_cdf(sigma2, table.reach))
    decided = undecided = 0
    with decimal.localcontext(decimal.Context(prec=60)):
        scale = decimal.Decimal(2) ** bits
        prefixes: set[int] = set()
        for boundary in boundaries:
            centre = int(boundary * scale)
            prefixes.update(range(max(centre - 3, 0), min(centre + 4, 1 << bits)))
        prefixes.update(range(0, 1 << bits, 4099))
        for prefix in sorted(prefixes):
            sample = sampler._decide(table, prefix, bits)
            if sample is None:
                undecided += 1
                continue
            decided += 1
            low, high = prefix / scale, (prefix + 1) / scale
            i = sample + table.reach  # boundaries[i] = F(sample − 1)
            assert boundaries[i] <= low and high <= boundaries[i + 1], (prefix, sample)
    assert decided > 4000 and 0 < undecided < 3 * len(boundaries) + 4, (decided, undecided)


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
    # k + 1 trips out of one cell (day t's k and day t + 1's first), one more admitted elsewhere: (k+1)² + 1.
    assert sensitivity_squared("telecom.trips", 4) == 26
    assert sensitivity_squared("transport.trips", 4) == 16
    assert sensitivity_squared("health.cases", 4) == 3
    # σ² on the sum = Δ²/(2ρ); each of t parties adds a t-th of it.
    assert party_sigma2(Fraction("0.05"), 16, 2) * 2 == Fraction(160)


def test_every_catalog_aggregate_has_a_sensitivity() -> None:
    """A new aggregate must state what one person-day adds to it, or noisy agencies cannot calibrate its noise."""
    from federation.catalog.aggregates import AGGREGATES

    for name in AGGREGATES:
        assert sensitivity_squared(name, 4) >= 1, name
