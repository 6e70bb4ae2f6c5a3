"""zCDP accounting of the distributed discrete Gaussian: σ from ρ and the sensitivity, ρ of a release, ε(δ).

Privacy unit: one person's contribution to one day of data (a *person-day*), bounded in each aggregate's SQL.
Neighbouring stores differ in everything one person contributes to one day's cells of one aggregate:

| aggregate | bound in SQL | Δ₂² (squared L2 sensitivity) |
|---|---|---|
| telecom.presence, telecom.roamers | one last event per person-day | 1 |
| telecom.residents (window-free) | one home district per person | 1 |
| telecom.trips | at most ``max_trips_per_day`` (k) trips per person-day; origin that day or the day before | (k+1)²+1 |
| transport.trips | at most k tickets per person-day | k² |
| telecom.arrivals | a person once per district in the window | 1 |
| telecom.exposure | a person in one district (their last event of the last day) | 2 |
| health.cases | a person once per status and day | 3 (one cell per status) |
| health.confirmed_daily | a person once per day | 1 |
| health.clusters | as confirmed_daily; one person's case is in a cluster's count for 14 days | 14 |
| health.cluster_cases | as confirmed_daily; one cell per district for the whole window | 4 |

Why: a telecom trip of day d is a pair of consecutive events whose earlier one is on day d or d − 1. Removing
one person's events of day t changes that person's trips of day t and day t + 1 only: day t loses all its
counted trips (at most k, possibly all in one cell); on day t + 1 the first pair's earlier event becomes one of
day t − 1 or before, which is no trip, so day t + 1 can lose its first trip and the day's bound then admits its
(k+1)-th (−1 in one cell, +1 in another); a later day d ≥ t + 2 whose first event followed day t's last had no
trip from that pair before (two days back) and has none after. So at most k + 1 trips are removed, in the worst
case all from one cell, and one is added elsewhere: Δ₂² = (k+1)² + 1, below the (k+1)(k+2) this module used
when a trip's origin could be any earlier day. The same holds for a provincial layout, whose cells are sums of
disjoint sets of whole-domain cells. Transport tickets are dated by their own departure and read nothing else:
at most k tickets of day t, Δ₂² = k². Arrivals count (person, district) pairs: without day t, the district of
day t may lose its arrival and the district of day t + 1 may gain one, but only when it is the same district,
so one cell changes by one. Exposure counts a person only in the district of their last event of the window's
last day, once as present and once as exposed. Cluster cases count, per district, the confirmed person-days of
the window's clusters with at least two of them: without one person-day its cluster loses one case, or both
where it had exactly two (it is no longer a cluster), in the one cell of its district: Δ₂ ≤ 2.

Days charged: the data days of the window; arrivals, telecom trips and exposure also read the day before the
window (an arrival on the first day needs that day's presence, a trip of the first day may start on it, the stay
under way at the window's start is seen from that day's last event), so they charge it too
(:func:`charged_window`). Nothing older: a person-day before that changes no trip, arrival or exposure of the
window. Exposure's Δ₂² stays 2: a person-day of the day before changes at most whether that person counts as
exposed, one cell.

Each of the t-or-more surviving agencies adds N_Z(0, σ²/t) to every cell, with σ² = Δ₂²/(2ρ) (an exact
fraction). For one party the discrete Gaussian is exactly Δ₂²/(2σ²)-zCDP (Canonne, Kamath, Steinke 2020,
Theorem 14). A sum of n independent N_Z(0, σ²/t) is not itself a discrete Gaussian; Kairouz, Liu and Steinke
(ICML 2021, Theorem 1) bound it: with per-party variance s² = σ²/t, dimension d and
τ = 10 Σ_{k=1}^{n−1} exp(−2π² s² k/(k+1)), the sum is ½ε²-zCDP with
ε = min(√(Δ₂²/(n s²) + ½τd), Δ₂/(√n s) + τ√d). Accounting uses n = t, the fewest survivors a round may have
(more survivors only add independent noise). ε(δ) = ρ + 2√(ρ ln(1/δ)) (Bun and Steinke 2016, Proposition 1.3).
"""

from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction

from federation.errors import InvalidQuery
from federation.vocabulary import CLUSTER_WINDOW_DAYS

__all__ = [
    "WINDOW_FREE",
    "charged_window",
    "epsilon_for",
    "party_sigma2",
    "release_rho",
    "sensitivity_squared",
    "sum_sigma",
    "window_free_period",
]

#: The ledger key that window-free aggregates (residents) charge instead of a data day, with its period.
WINDOW_FREE = "window-free"


def window_free_period(query_end: dt.date) -> str:
    """The period a window-free release belongs to: the calendar month of the signed query's end, ``YYYY-MM``.
    Both the broker (which reuses one release per period) and every agency (which charges its ledger per period)
    derive it from the same signed date, so a broker cannot move a release into another period."""
    return f"{query_end.year:04d}-{query_end.month:02d}"


_SENSITIVITY_SQUARED = {
    "telecom.presence": 1,
    "telecom.roamers": 1,
    "telecom.residents": 1,
    "telecom.arrivals": 1,
    "telecom.exposure": 2,
    "health.cases": 3,
    "health.confirmed_daily": 1,
    # One person's confirmed row adds to one (district, cluster) count on 14 consecutive days: each of those
    # district-days' cluster counts changes by at most one.
    "health.clusters": CLUSTER_WINDOW_DAYS,
    # One cell per district over the whole window: a cluster of two loses both its cases with one of them.
    "health.cluster_cases": 4,
}
#: The most decimal places a round's ρ may have (parse_rho).
_MAX_RHO_DECIMALS = 6
#: Aggregates whose vector also depends on the day before the window, which a release therefore charges.
_READS_DAY_BEFORE = frozenset({"telecom.arrivals", "telecom.exposure", "telecom.trips"})


def sensitivity_squared(aggregate: str, max_trips_per_day: int) -> int:
    """Δ₂² of one person-day in ``aggregate``'s vector (see the module table)."""
    if aggregate == "telecom.trips":
        return (max_trips_per_day + 1) ** 2 + 1
    if aggregate == "transport.trips":
        return max_trips_per_day * max_trips_per_day
    try:
        return _SENSITIVITY_SQUARED[aggregate]
    except KeyError:
        raise InvalidQuery(f"no sensitivity is defined for aggregate {aggregate!r}") from None


def charged_window(aggregate: str, start: dt.date | None, end: dt.date | None) -> tuple[dt.date | None, dt.date | None]:
    """The inclusive days a release of ``aggregate`` over [start, end] charges (None, None: window-free)."""
    if start is not None and aggregate in _READS_DAY_BEFORE:
        return start - dt.timedelta(days=1), end
    return start, end


def parse_rho(text: str) -> Fraction:
    """A round's ρ as sent (a decimal string such as "0.05"), exactly; InvalidQuery unless 0 < ρ <= 100."""
    try:
        rho = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise InvalidQuery(f"the round's rho {text!r} is not a decimal number; send e.g. 0.05") from None
    if not 0 < rho <= 100:
        raise InvalidQuery(f"the round's rho {text} must be in (0, 100]")
    if rho.denominator > 10**_MAX_RHO_DECIMALS:
        # σ²/t = Δ₂²/(2ρt) feeds the exact sampler's integer arithmetic: keep its terms small.
        raise InvalidQuery(f"the round's rho {text[:40]} has more than {_MAX_RHO_DECIMALS} decimal places; round it")
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
