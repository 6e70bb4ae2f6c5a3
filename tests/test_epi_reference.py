"""federation.epi against R: EpiEstim 2.2-4, incidence 1.7.3, surveillance 1.20.3 (fixtures made by
tests/fixtures/epi/make_fixtures.R, checked in because CI has no R), to a relative 1e-6."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from federation.epi.ears import ears_c1, ears_c2, ears_c3
from federation.epi.growth import fit_growth
from federation.epi.rt import discretised_serial_interval, estimate_rt
from federation.epi.special import gamma_cdf, gamma_quantile, normal_quantile, t_quantile

FIXTURES = Path(__file__).parent / "fixtures" / "epi"
RTOL = 1e-6


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def values(items: list[float | None]) -> npt.NDArray[np.float64]:
    """An R vector from JSON: null (NA/NaN) becomes NaN."""
    return np.array([np.nan if v is None else v for v in items], dtype=np.float64)


def assert_matches(ours: npt.ArrayLike, theirs: list[float | None], what: str) -> None:
    np.testing.assert_allclose(np.asarray(ours, dtype=np.float64), values(theirs), rtol=RTOL, atol=1e-12, err_msg=what)


@pytest.mark.parametrize("case", load("epiestim.json"), ids=lambda c: f"{c['name']}-si{c['mean_si']}-tau{c['tau']}")
def test_rt_matches_epiestim(case: dict[str, Any]) -> None:
    local, imported = np.array(case["local"]), np.array(case["imported"])
    days = local.shape[0]
    serial_interval = discretised_serial_interval(case["mean_si"], case["std_si"], days)
    assert_matches(serial_interval, case["si_distr"][:days], "discr_si")
    estimate = estimate_rt(
        local[None, :], imported[None, :], si_mean=case["mean_si"], si_sd=case["std_si"], window_days=case["tau"]
    )
    # EpiEstim reports one row per window; ours are indexed by the window's last day (t_end - 1, 0-based).
    end = np.array(case["t_end"]) - 1
    assert (np.array(case["t_start"]) - 1 == end - case["tau"] + 1).all()
    assert np.isnan(estimate.mean[0, : end[0]]).all()
    assert_matches(estimate.mean[0, end], case["mean"], "Mean(R)")
    assert_matches((np.sqrt(estimate.shape) * estimate.scale)[0, end], case["std"], "Std(R)")
    assert_matches(estimate.lower[0, end], case["lower"], "Quantile.0.025(R)")
    assert_matches(estimate.upper[0, end], case["upper"], "Quantile.0.975(R)")
    assert_matches(gamma_quantile(0.5, estimate.shape, estimate.scale)[0, end], case["median"], "Median(R)")


def test_fixtures_cover_imported_cases_and_zero_days() -> None:
    cases = load("epiestim.json")
    assert any(sum(c["imported"][1:]) > 0 for c in cases)
    zero = next(c for c in cases if c["name"] == "zeros")
    # Windows with no local case and no infectiousness fall back to the prior's scale: EpiEstim still reports them.
    assert any(m is not None for m in zero["mean"]) and 0 in zero["local"]


@pytest.mark.parametrize("case", load("incidence_fit.json"), ids=lambda c: c["name"])
def test_growth_matches_incidence_fit(case: dict[str, Any]) -> None:
    fit = fit_growth(np.array(case["counts"])[None, :], days=case["days"])
    assert_matches(fit.rate, [case["r"]], "r")
    assert_matches(fit.lower, [case["r_lower"]], "r.conf lower")
    assert_matches(fit.upper, [case["r_upper"]], "r.conf upper")
    if "doubling" in case:
        assert_matches(fit.doubling_days, [case["doubling"]], "doubling")
        assert_matches(fit.doubling_lower, [case["doubling_lower"]], "doubling.conf lower")
        assert_matches(fit.doubling_upper, [case["doubling_upper"]], "doubling.conf upper")
        assert np.isnan(fit.halving_days).all()
    else:
        assert_matches(fit.halving_days, [case["halving"]], "halving")
        assert_matches(fit.halving_lower, [case["halving_lower"]], "halving.conf lower")
        assert_matches(fit.halving_upper, [case["halving_upper"]], "halving.conf upper")
        assert np.isnan(fit.doubling_days).all()


@pytest.mark.parametrize("case", load("ears.json"), ids=lambda c: c["name"])
def test_ears_matches_surveillance(case: dict[str, Any]) -> None:
    counts = np.array(case["counts"])
    for method, compute in (("c1", ears_c1), ("c2", ears_c2), ("c3", ears_c3)):
        reference = case[method]
        first = reference["range_start"] - 1
        ours = compute(counts)
        assert np.isnan(ours.upper_bound[:first]).all() and not ours.alarm[:first].any(), method
        assert_matches(ours.upper_bound[first:], reference["upperbound"], f"{method} upperbound")
        # R's alarm is NA where the bound is NaN; ours is no alarm there.
        expected = [bool(a) for a in reference["alarm"] if a is not None]
        known = [a is not None for a in reference["alarm"]]
        assert ours.alarm[first:][known].tolist() == expected, method
        assert not ours.alarm[first:][~np.array(known)].any(), method


def test_special_functions_match_r() -> None:
    special = load("special.json")
    shapes, scales = np.array(special["shapes"]), np.array(special["scales"])
    for p, key in ((0.025, "qgamma_025"), (0.975, "qgamma_975")):
        np.testing.assert_allclose(gamma_quantile(p, shapes, scales), special[key], rtol=1e-10)
    np.testing.assert_allclose(gamma_cdf(special["pgamma_x"], shapes), special["pgamma"], rtol=1e-10)
    np.testing.assert_allclose([t_quantile(0.975, df) for df in special["qt_df"]], special["qt_975"], rtol=1e-10)
    assert normal_quantile(0.999) == pytest.approx(special["qnorm_999"], rel=1e-12)
    assert normal_quantile(0.975) == pytest.approx(special["qnorm_975"], rel=1e-12)
    assert t_quantile(0.025, 7) == pytest.approx(-t_quantile(0.975, 7), rel=1e-14)
