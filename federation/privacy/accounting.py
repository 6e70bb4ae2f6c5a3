"""zCDP accounting of the distributed discrete Gaussian: σ from ρ and the sensitivity, ρ of a release, ε(δ).

Privacy unit: one person's contribution to one day of data (a *person-day*), bounded in each aggregate's SQL.
Neighbouring stores differ in everything one person contributes to one day's cells of one aggregate:

| aggregate | bound in SQL | Δ₂² (squared L2 sensitivity) |
|---|---|---|
| telecom.presence, telecom.roamers | one last event per person-day | 1 |
| telecom.residents (window-free) | one home district per person | 1 |
| telecom.trips, transport.trips | at most ``max_trips_per_day`` trips (tickets) per person-day | k² |
| health.cases | a person counted once per status in the window | 3 (one cell per status) |
| health.confirmed_daily | a person counted once, at their first confirmed row in the window | 1 |
| health.clusters | as confirmed_daily; one person's case is in a cluster's count for 14 days | 14 |

Each of the t-or-more surviving agencies adds N_Z(0, σ²/t) to every cell, with σ² = Δ₂²/(2ρ) (an exact
fraction). For one party the discrete Gaussian is exactly Δ₂²/(2σ²)-zCDP (Canonne, Kamath, Steinke 2020,
Theorem 14). A sum of n independent N_Z(0, σ²/t) is not itself a discrete Gaussian; Kairouz, Liu and Steinke
(ICML 2021, Theorem 1) bound it: with per-party variance s² = σ²/t, dimension d and
τ = 10 Σ_{k=1}^{n−1} exp(−2π² s² k/(k+1)), the sum is ½ε²-zCDP with
ε = min(√(Δ₂²/(n s²) + ½τd), Δ₂/(√n s) + τ√d). Accounting uses n = t, the fewest survivors a round may have
(more survivors only add independent noise). ε(δ) = ρ + 2√(ρ ln(1/δ)) (Bun and Steinke 2016, Proposition 1.3).
"""

from __future__ import annotations

import math
from fractions import Fraction

from federation.errors import InvalidQuery
from federation.vocabulary import CLUSTER_WINDOW_DAYS

__all__ = [
    "WINDOW_FREE",
    "epsilon_for",
    "party_sigma2",
    "release_rho",
    "sensitivity_squared",
    "sum_sigma",
]

#: The ledger key that window-free aggregates (residents) charge instead of a data day.
WINDOW_FREE = "window-free"

_SENSITIVITY_SQUARED = {
    "telecom.presence": 1,
    "telecom.roamers": 1,
    "telecom.residents": 1,
    "health.cases": 3,
    "health.confirmed_daily": 1,
    # One person's confirmed row adds to one (district, cluster) count on 14 consecutive days: each of those
    # district-days' cluster counts changes by at most one.
    "health.clusters": CLUSTER_WINDOW_DAYS,
}
_TRIPS = ("telecom.trips", "transport.trips")


def sensitivity_squared(aggregate: str, max_trips_per_day: int) -> int:
    """Δ₂² of one person-day in ``aggregate``'s vector (see the module table)."""
    if aggregate in _TRIPS:
        return max_trips_per_day * max_trips_per_day
    try:
        return _SENSITIVITY_SQUARED[aggregate]
    except KeyError:
        raise InvalidQuery(f"no sensitivity is defined for aggregate {aggregate!r}") from None


def parse_rho(text: str) -> Fraction:
    """A round's ρ as sent (a decimal string such as "0.05"), exactly; InvalidQuery unless 0 < ρ <= 100."""
    try:
        rho = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise InvalidQuery(f"the round's rho {text!r} is not a decimal number; send e.g. 0.05") from None
    if not 0 < rho <= 100:
        raise InvalidQuery(f"the round's rho {text} must be in (0, 100]")
    return rho


def party_sigma2(rho: Fraction, sensitivity2: int, threshold: int) -> Fraction:
    """Per-party variance parameter σ²/t = Δ₂²/(2ρt), exact."""
    return Fraction(sensitivity2) / (2 * rho * threshold)


def _tau(party_variance: float, parties: int) -> float:
    return 10 * math.fsum(math.exp(-2 * math.pi**2 * party_variance * k / (k + 1)) for k in range(1, parties))


def release_rho(sensitivity2: int, party_variance: Fraction, parties: int, dimension: int) -> float:
    """ρ (zCDP) of the sum of ``parties`` independent N_Z(0, party_variance) per cell (Kairouz–Liu–Steinke)."""
    s2 = float(party_variance)
    tau = _tau(s2, parties)
    first = math.sqrt(sensitivity2 / (parties * s2) + 0.5 * tau * dimension)
    second = math.sqrt(sensitivity2) / math.sqrt(parties * s2) + tau * math.sqrt(dimension)
    epsilon = min(first, second)
    return 0.5 * epsilon * epsilon


def epsilon_for(rho: float, delta: float) -> float:
    """(ε, δ)-DP implied by ρ-zCDP: ε = ρ + 2√(ρ ln(1/δ))."""
    if not 0 < delta < 1:
        raise ValueError(f"δ must be in (0, 1), got {delta}")
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


def sum_sigma(party_variances: list[Fraction]) -> float:
    """Standard deviation of each cell of a released sum: √(Σ per-party variance parameters) (an upper bound
    on the sum's true standard deviation, which for a discrete Gaussian is at most its parameter)."""
    return math.sqrt(float(sum(party_variances, Fraction(0))))
