"""A coordinator recovering suppressed cells from released answers alone, against real nodes.

Two attacks found by the red team (issue 12), each played twice: on a federation whose agencies sum exactly
(``noise: none``), where it recovers every suppressed cell exactly (so the test shows the attack is real), and on
one whose agencies add their discrete Gaussian shares, where it recovers nothing exactly and each release is
charged to every agency's budget:

- **overlapping windows**: ``flows`` over [s, e] minus ``flows`` over [s + 1, e] is day s's flow for every pair
  released in both, though day s's own query suppresses it (a trip counts on its arrival day, so the
  difference is exactly one day's trips);
- **marginals**: ``importation-risk``'s ``inflow`` of a destination minus the ``flows`` released into it is the
  total of the suppressed flows into that destination.

Why the noisy bounds do not fail by chance (false-failure rate below 10⁻⁶ per assertion): each recovered value
carries noise of standard deviation at least σ, the stated σ of one release's cell (about 21 here: telecom.trips,
Δ₂² = 30, ρ = 0.05, three carriers at t = 2). A discrete Gaussian of that width takes any one integer value
with probability at most p = 1/(σ√(2π)), so the count of exact recoveries is bounded by the binomial (n, p)
quantile at 1 − 10⁻⁶ (:func:`tests.attacks.binomial_bound`); an RMS error below σ/4 over n ≥ 10 values means
χ²_n < n/16, probability below 2·10⁻⁶.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from fedbroker.harness import LocalFederation
from federation.config import FederationConfig, PrivacyPolicy
from federation.registry import load_registry
from tests import oracle
from tests.attacks import ask, binomial_bound, noisy, released_flows
from tests.federation_fixtures import EXACT, oracle_sum, private_copy

pytestmark = pytest.mark.slow
RHO = 0.05
NOISY = PrivacyPolicy(noise="discrete-gaussian", rho_per_day=0.5)
WINDOW_DAYS = 7
#: The fewest recovered cells an attack must produce for the bounds to mean something.
FEWEST_CELLS = 10


@dataclass(frozen=True)
class Attacked:
    """What one federation released to the attacker and what its raw tables say."""

    config: FederationConfig
    codes: npt.NDArray[np.int32]
    k: int


def _federation(small_scenario: Path, directory: Path, privacy: PrivacyPolicy) -> LocalFederation:
    roster = private_copy(small_scenario, directory, privacy=privacy, rho_per_round=RHO, min_contributors=2)
    return LocalFederation(roster, run_dir=directory / "run")


@pytest.fixture(scope="module", params=["exact", "noisy"])
def attacked(
    request: pytest.FixtureRequest, small_scenario: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Attacked]:
    policy = EXACT if request.param == "exact" else NOISY
    with _federation(small_scenario, tmp_path_factory.mktemp(request.param), policy) as federation:
        config = federation.config
        codes = load_registry(config.domain.provinces).codes
        yield Attacked(config, codes, config.broker.mobility_k)


def _true_trips(attacked: Attacked, start: dt.date, end: dt.date) -> npt.NDArray[np.int64]:
    n = attacked.codes.shape[0]
    total = oracle_sum(attacked.config, "telecom", lambda con: oracle.oracle_trips(con, attacked.codes, start, end))
    return total.astype(np.int64).reshape(n, n)


def _assert_outcome(
    is_noisy: bool, recovered: npt.NDArray[np.int64], truth: npt.NDArray[np.int64], sigma: float, what: str
) -> None:
    assert recovered.shape[0] >= FEWEST_CELLS, f"{what}: only {recovered.shape[0]} cells to recover"
    cells = recovered.shape[0]
    exact = int(np.count_nonzero(recovered == truth))
    if not is_noisy:
        assert exact == cells, f"{what}: exact sums must let the attack recover every cell (it is real)"
        return
    assert sigma >= 10, f"{what}: σ = {sigma} is below what the module's bounds assume"
    bound = binomial_bound(cells, 1 / (sigma * math.sqrt(2 * math.pi)))
    assert exact <= bound, f"{what}: {exact} of {cells} suppressed cells recovered exactly (at most {bound})"
    # The error is noise of the size the release states, not a small perturbation one could round away.
    rms = math.sqrt(float(np.mean((recovered - truth).astype(np.float64) ** 2)))
    assert rms >= sigma / 4, f"{what}: recovery error {rms:.1f} is far below σ = {sigma:.1f}"


def test_overlapping_windows_recover_a_suppressed_day_only_without_noise(attacked: Attacked) -> None:
    config, codes, k = attacked.config, attacked.codes, attacked.k
    end = config.data_end
    start = end - dt.timedelta(days=WINDOW_DAYS - 1)
    wide = ask(config, "flows", start, end)
    narrow = ask(config, "flows", start + dt.timedelta(days=1), end)
    single_day = _true_trips(attacked, start, start)
    position = {int(code): i for i, code in enumerate(codes.tolist())}
    a, b = released_flows(wide), released_flows(narrow)
    pairs = [pair for pair in a if pair in b and 0 < single_day[position[pair[0]], position[pair[1]]] < k]
    recovered = np.array([a[p] - b[p] for p in pairs], dtype=np.int64)
    truth = np.array([single_day[position[o], position[d]] for o, d in pairs], dtype=np.int64)
    is_noisy = noisy(wide)
    (privacy,) = narrow.privacy
    _assert_outcome(is_noisy, recovered, truth, float(privacy["sigma"]), "day s from two overlapping windows")
    if is_noisy:
        # The days the two windows share were charged again at every carrier: the difference cost its ρ.
        assert math.isclose(float(wide.privacy[0]["rho_left"]) - float(privacy["rho_left"]), RHO, rel_tol=1e-6)


def test_inflow_minus_released_flows_recovers_the_suppressed_total_only_without_noise(attacked: Attacked) -> None:
    config, codes, k = attacked.config, attacked.codes, attacked.k
    end = config.data_end
    start = end - dt.timedelta(days=WINDOW_DAYS - 1)
    flows = released_flows(ask(config, "flows", start, end))
    risk = ask(config, "importation-risk", start, end, window_days=str(WINDOW_DAYS))
    district, inflow_at = risk.columns.index("district"), risk.columns.index("inflow")
    inflow = {int(row[district]): int(row[inflow_at]) for row in risk.rows}
    trips = _true_trips(attacked, start, end)
    np.fill_diagonal(trips, 0)
    hidden = np.where((trips > 0) & (trips < k), trips, 0).sum(axis=0)  # suppressed trips into each destination
    position = {int(code): i for i, code in enumerate(codes.tolist())}
    into: dict[int, int] = {}
    for (_, destination), count in flows.items():
        into[destination] = into.get(destination, 0) + count
    destinations = [d for d in inflow if hidden[position[d]] > 0]
    recovered = np.array([inflow[d] - into.get(d, 0) for d in destinations], dtype=np.int64)
    truth = np.array([hidden[position[d]] for d in destinations], dtype=np.int64)
    trips_privacy = next(p for p in risk.privacy if p["round"] == "trips")
    _assert_outcome(noisy(risk), recovered, truth, float(trips_privacy["sigma"]), "suppressed inflow from the marginal")
