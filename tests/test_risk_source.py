"""The risk-source model and the Student t quantile against R (tests/fixtures/risk_source.R made the fixture)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from federation.risk_source import fit_risk_source, student_t_cdf, student_t_quantile

FIXTURE: dict[str, Any] = json.loads((Path(__file__).parent / "fixtures" / "risk_source.json").read_text())


def test_student_t_quantiles_match_r() -> None:
    for df, row in zip(FIXTURE["qt_df"], FIXTURE["qt"], strict=True):
        for p, expected in zip(FIXTURE["qt_p"], row, strict=True):
            got = student_t_quantile(p, df)
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-12), (p, df)
            assert student_t_quantile(1 - p, df) == pytest.approx(-expected, rel=1e-12)
            assert student_t_cdf(got, df) == pytest.approx(p, abs=1e-14)
    assert student_t_quantile(0.5, 7) == 0.0
    # df = 1 is the Cauchy distribution and df = 2 has a closed form: independent checks of the CDF.
    assert student_t_cdf(1.0, 1) == pytest.approx(0.75, abs=1e-15)
    assert student_t_cdf(2.0, 2) == pytest.approx(0.5 + 2.0 / (2 * math.sqrt(6.0)), abs=1e-15)
    with pytest.raises(ValueError):
        student_t_quantile(1.0, 3)


def test_the_fit_matches_r_lm_rstandard_and_prediction_intervals() -> None:
    fit = fit_risk_source(np.array(FIXTURE["arrivals"]), np.array(FIXTURE["confirmed"]))
    assert fit.fitted and fit.n == len(FIXTURE["arrivals"])
    for name in ("intercept", "slope", "r_squared", "residual_sd"):
        assert getattr(fit, name) == pytest.approx(FIXTURE[name], rel=1e-12), name
    np.testing.assert_allclose(fit.expected, FIXTURE["expected"], rtol=1e-12)
    np.testing.assert_allclose(fit.standardised_residual, FIXTURE["standardised_residual"], rtol=1e-11)
    assert list(fit.flag) == FIXTURE["flag"]
    assert {"above", "below"} <= set(fit.flag)
    # The interval's half width is t · s · sqrt(1 + h): rebuild R's bounds from the fit.
    x = np.log1p(np.array(FIXTURE["arrivals"], dtype=np.float64))
    leverage = 1 / fit.n + (x - x.mean()) ** 2 / ((x - x.mean()) ** 2).sum()
    centre = fit.intercept + fit.slope * x
    half = fit.t_quantile * fit.residual_sd * np.sqrt(1 + leverage)
    np.testing.assert_allclose(centre - half, FIXTURE["lower"], rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(centre + half, FIXTURE["upper"], rtol=1e-11, atol=1e-12)


def test_too_few_points_or_no_spread_is_no_fit() -> None:
    for arrivals, confirmed in (([20, 30], [1, 2]), ([], []), ([40, 40, 40], [1, 5, 9])):
        fit = fit_risk_source(np.array(arrivals, dtype=np.int64), np.array(confirmed, dtype=np.int64))
        assert not fit.fitted and fit.n == len(arrivals)
        assert all(flag == "" for flag in fit.flag) and np.isnan(fit.expected).all()


def test_a_perfect_fit_flags_nothing() -> None:
    arrivals = np.array([15, 30, 60, 120])
    fit = fit_risk_source(arrivals, arrivals)  # y = x exactly
    assert fit.slope == pytest.approx(1.0) and fit.intercept == pytest.approx(0.0, abs=1e-12)
    assert fit.flag == ("within",) * 4 and not np.isnan(fit.standardised_residual).any()
