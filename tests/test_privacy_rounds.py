"""Distributed discrete Gaussian noise and the privacy budget against real nodes (three carriers, t = 2).

Each carrier adds N_Z(0, σ²/t) per cell before masking; the unmasked sum minus the oracle's exact sum is the
noise the federation added, whose variance must be |U3|·σ²/t. Every agency charges ρ per data day in a ledger
that survives restarts and refuses beyond ``rho_per_day``; the broker refuses early from its own copy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import grpc
import numpy as np
import numpy.typing as npt
import pytest

from broker.client import run_query
from fedbroker.harness import LocalFederation
from federation.catalog import new_query
from federation.config import PrivacyPolicy
from federation.errors import ResourceExhausted
from federation.registry import load_registry
from federation.v1 import adapter_pb2
from tests import oracle
from tests.federation_fixtures import oracle_sum, private_copy
from tests.test_differencing import presence_round
from tests.test_round_refusals import TELECOM, EvilBroker

pytestmark = pytest.mark.slow
NATIONAL = "nhc-national"
RHO = 0.05
NOISY = PrivacyPolicy(noise="discrete-gaussian", rho_per_day=0.12, max_trips_per_day=4)
# Presence: Δ₂² = 1; each of the three carriers adds σ²/t = 1/(2·0.05·2) = 5, so the sum's variance is 15.
SUM_VARIANCE = 3 * 1 / (2 * RHO * 2)


def noisy_federation(small_scenario: Path, directory: Path) -> LocalFederation:
    roster = private_copy(small_scenario, directory, privacy=NOISY, rho_per_round=RHO, min_contributors=2)
    return LocalFederation(roster, run_dir=directory / "run", nodes=TELECOM)


@pytest.fixture(scope="module")
def variance_fed(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    with noisy_federation(small_scenario, tmp_path_factory.mktemp("noise-variance")) as federation:
        yield federation


@pytest.fixture(scope="module")
def budget_fed(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    with noisy_federation(small_scenario, tmp_path_factory.mktemp("noise-budget")) as federation:
        yield federation


def test_the_noise_on_the_sum_has_variance_sigma_squared(variance_fed: LocalFederation) -> None:
    """Three disjoint weeks, one round each: every cell's noisy sum minus its exact sum is one draw of the
    federation's noise. With ~2 000 draws the sample variance is within 15% of 15 (five standard errors)."""
    evil = EvilBroker(variance_fed.config)
    codes = evil.registry.codes
    end = variance_fed.config.data_end
    draws = []
    for week in range(3):
        last = end - dt.timedelta(days=7 * week)
        first = last - dt.timedelta(days=6)
        noisy = presence_round(evil, first, last, rho=repr(RHO)).view(np.int64)

        def presence(con: duckdb.DuckDBPyConnection, a: dt.date = first, b: dt.date = last) -> npt.NDArray[np.uint64]:
            return oracle.oracle_presence(con, codes, a, b)

        exact = oracle_sum(variance_fed.config, "telecom", presence)
        draws.append(noisy - exact.astype(np.int64))
    noise = np.concatenate(draws).astype(np.float64)
    assert noise.size > 1500
    assert np.count_nonzero(noise) > 0.8 * noise.size  # noise is really there
    variance = float(noise.var())
    assert abs(variance / SUM_VARIANCE - 1) < 5 * math.sqrt(2 / noise.size), variance
    assert abs(float(noise.mean())) < 5 * math.sqrt(SUM_VARIANCE / noise.size)


def test_budget_is_charged_reported_and_enforced(budget_fed: LocalFederation, tmp_path: Path) -> None:
    config = budget_fed.config
    day = config.data_end

    def population() -> dict[str, object]:
        query = new_query("population", start=day, end=day, params={}, coordinator=NATIONAL)
        answer = asyncio.run(run_query(config, NATIONAL, query))
        (privacy,) = answer.privacy
        return privacy

    first = population()
    assert first["noise"] == "discrete-gaussian"
    assert math.isclose(float(first["sigma"]), math.sqrt(SUM_VARIANCE), rel_tol=1e-9)  # type: ignore[arg-type]
    assert math.isclose(float(first["rho_spent"]), RHO, rel_tol=1e-6)  # type: ignore[arg-type]
    assert math.isclose(float(first["rho_left"]), 0.12 - RHO, rel_tol=1e-6)  # type: ignore[arg-type]
    population()
    # A third release of the same day would spend 0.15 > 0.12: the broker refuses before any round starts.
    with pytest.raises(ResourceExhausted) as caught:
        population()
    assert day.isoformat() in caught.value.message and "left" in caught.value.message

    # The ledgers as the agencies report them.
    printed = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedbroker",
            "budget",
            "--federation",
            str(config.path),
            "--as",
            NATIONAL,
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(printed.stdout)
    assert sorted(a["node_id"] for a in report["agencies"]) == list(TELECOM)  # only the carriers run here
    assert len(report["missing"]) == len(config.nodes) - len(TELECOM)
    for agency in report["agencies"]:
        if agency["node_id"] in TELECOM:
            assert math.isclose(agency["days"][day.isoformat()]["spent"], 2 * RHO, rel_tol=1e-6)

    # A broker that ignores its own ledger is refused by each agency, also after the agency restarted.
    evil = EvilBroker(config)
    for restarted in (False, True):
        if restarted:
            budget_fed.restart("telecom-a")
        query, signed = evil.query(start=day, end=day)
        spec = evil.spec(query, rho=repr(RHO))
        with pytest.raises(grpc.aio.AioRpcError) as refusal:
            asyncio.run(evil.open_all(secrets.token_bytes(16), signed, spec, targets=["telecom-a"]))
        assert refusal.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert day.isoformat() in (refusal.value.details() or "")


def test_a_noisy_agency_refuses_a_round_without_rho(budget_fed: LocalFederation) -> None:
    evil = EvilBroker(budget_fed.config)
    query, signed = evil.query(start=budget_fed.config.data_start, end=budget_fed.config.data_start)
    with pytest.raises(grpc.aio.AioRpcError) as refusal:
        asyncio.run(evil.open_all(secrets.token_bytes(16), signed, evil.spec(query), targets=["telecom-b"]))
    assert refusal.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "rho" in (refusal.value.details() or "")


@pytest.mark.parametrize(
    ("kind", "aggregate", "offset"),
    [("flows", "telecom.trips", 3), ("exposure", "telecom.exposure", 6)],
)
def test_a_release_that_reads_the_day_before_its_window_charges_it(
    budget_fed: LocalFederation, kind: str, aggregate: str, offset: int
) -> None:
    """A trip of the window's first day may start on the day before, and the stay under way when an exposure
    window opens is seen from that day's last event (docs/protocol.md, "Definitions"): every carrier and the
    broker's copy of its ledger charge that day with the window, and no earlier one."""
    config = budget_fed.config
    day = config.data_start + dt.timedelta(days=offset)
    before, earlier = day - dt.timedelta(days=1), day - dt.timedelta(days=2)
    codes = load_registry(config.domain.provinces).codes
    params = {"source": "telecom"} if kind == "flows" else {"risk_districts": str(int(codes[0])), "days": "1"}
    query = new_query(kind, start=day, end=day, params=params, coordinator=NATIONAL)
    answer = asyncio.run(run_query(config, NATIONAL, query))
    (privacy,) = answer.privacy
    rho = float(privacy["rho_spent"])
    assert privacy["aggregate"] == aggregate and math.isclose(rho, RHO, rel_tol=1e-6)
    evil = EvilBroker(config)
    for carrier in TELECOM:
        report = asyncio.run(evil.call(carrier, "Budget", adapter_pb2.BudgetRequest()))
        spent = {d.day: d.spent for d in report.days}
        assert math.isclose(spent[day.isoformat()], rho) and math.isclose(spent[before.isoformat()], rho), spent
        assert earlier.isoformat() not in spent, spent
        mirrored = [
            json.loads(line)
            for line in (config.broker.audit_log.parent / "budget" / f"{carrier}.jsonl").read_text().splitlines()
        ]
        assert [before.isoformat(), day.isoformat()] in [entry["days"] for entry in mirrored], mirrored
