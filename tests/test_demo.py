"""`fedbroker demo` from scratch, noise on: it must print the importation-risk answer with σ and the budget left,
stop every node, and the answer it saved must agree, within bounds derived from its σ, with an independent
recomputation straight from the raw DuckDB files (numpy over the raw signalling, subscribers and cases; none of
the adapters' SQL). The kinds' exactness with ``noise: none`` is the oracle tests' (test_federation_*)."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
import pytest

from federation.catalog.importation_risk import origin_sigmas
from federation.config import FederationConfig, load_federation
from federation.registry import load_registry
from tests.oracle import oracle_itinerary

pytestmark = pytest.mark.slow
DAY_US = 86_400_000_000


def _trips(store: Path, codes: npt.NDArray[np.int32], start: dt.date, end: dt.date) -> npt.NDArray[np.int64]:
    con = duckdb.connect(str(store), read_only=True)
    try:
        raw = con.execute(
            "SELECT s.subscriber_id, epoch_us(s.ts) AS us, coalesce(c.district, -1) AS district "
            "FROM signalling s LEFT JOIN cells c USING (cell_id) ORDER BY s.subscriber_id, s.ts, s.cell_id"
        ).fetchnumpy()
    finally:
        con.close()
    subscriber, us, district = raw["subscriber_id"], raw["us"], raw["district"]
    n = len(codes)
    position = np.searchsorted(codes, district)
    known = (position < n) & (codes[np.minimum(position, n - 1)] == district)
    day = (us // DAY_US).astype(np.int64)
    first, last = (np.datetime64(start, "D").astype(np.int64), np.datetime64(end, "D").astype(np.int64))
    move = (
        (subscriber[1:] == subscriber[:-1])
        & (district[1:] != district[:-1])
        & known[1:]
        & known[:-1]
        & (day[1:] >= first)
        & (day[1:] <= last)
    )
    cell = position[:-1][move] * n + position[1:][move]
    return np.bincount(cell, minlength=n * n).reshape(n, n)


def test_demo_runs_with_noise_and_agrees_with_the_raw_tables(tmp_path: Path) -> None:
    """The demo with its default noise: it prints σ and the budget left per round, and its importation-risk
    answer agrees with the exact one recomputed from the raw tables within bounds derived from the printed σ.

    Each bound below is a worst-case bias (what detection at 2σ can drop or add) plus 6σ of Gaussian noise, so a
    district breaks it with probability below 2·10⁻⁹; over the ~100 districts and four checks the test fails by
    chance with probability below 10⁻⁶."""
    done = subprocess.run(
        [sys.executable, "-m", "fedbroker", "demo", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Importation risk" in done.stdout and "every node stopped" in done.stderr
    assert "Risk tiers (February 2020 rule)" in done.stdout
    for name in ("trips", "residents", "confirmed", "clusters"):
        assert re.search(
            rf"round {name}: discrete Gaussian noise, sigma [0-9.]+ per cell; rho [0-9.]+ spent", done.stdout
        )
    assert "left" in done.stdout and "exact sums" not in done.stdout
    (tiers,) = (tmp_path / "default" / "reports").glob("warning-*.json")
    warning = json.loads(tiers.read_text())
    roster = load_federation(tmp_path / "default" / "federation.yaml")
    reports = list((tmp_path / "default" / "reports").glob("importation-risk-*.json"))
    assert len(reports) == 1
    answer = json.loads(reports[0].read_text())
    sigma = {p["round"]: p["sigma"] for p in answer["privacy"]}
    assert all(p["noise"] == "discrete-gaussian" and p["rho_left"] > 0 for p in answer["privacy"])

    codes = load_registry(roster.domain.provinces).codes
    n = len(codes)
    end = dt.date.fromisoformat(answer["query"]["end"])
    start = dt.date.fromisoformat(answer["query"]["start"])
    assert (end - start).days + 1 == 14 and end == roster.data_end
    flows = np.sum([_trips(node.store, codes, start, end) for node in roster.nodes_of_kind("telecom")], axis=0)
    residents = np.zeros(n, dtype=np.int64)
    for node in roster.nodes_of_kind("telecom"):
        with duckdb.connect(str(node.store), read_only=True) as con:
            homes = con.execute("SELECT home_district FROM subscribers").fetchnumpy()["home_district"]
        residents += np.bincount(np.searchsorted(codes, homes), minlength=n)
    confirmed = _confirmed(roster, codes, start, end)

    np.fill_diagonal(flows, 0)
    weight = np.divide(confirmed, residents, out=np.zeros(n), where=residents > 0)
    index = weight @ flows  # I_d = sum_o F(o->d) C_o / N_o
    inflow = flows.sum(axis=0)
    col = {c: i for i, c in enumerate(answer["columns"])}
    released = {row[col["district"]]: row for row in answer["rows"]}
    k = roster.broker.mobility_k
    s_f, s_c = sigma["trips"], sigma["confirmed"]
    # Inflow: a sum of n - 1 signed cells, unbiased, σ·√(n−1).
    s_inflow = s_f * math.sqrt(n - 1)
    assert {int(codes[d]) for d in range(n) if inflow[d] >= k + 6 * s_inflow} <= set(released)
    for d in range(n):
        row = released.get(int(codes[d]))
        if row is not None:
            assert abs(row[col["inflow"]] - inflow[d]) <= 6 * s_inflow + 1, codes[d]
    # I_d: noise σ_F·√(Σ w²) from the flows and Σ F²σ_C²/N² from the cases; detection may drop an origin with
    # C_o < 8σ_C (at most its whole term) or admit an empty one (a count below 8σ_C over its N_o).
    populated = residents > 0
    spread = np.sqrt(
        s_f**2 * (weight**2).sum() + (flows**2).T @ np.where(populated, s_c**2 / np.maximum(residents, 1) ** 2, 0)
    )
    unsure = (confirmed > 0) & (confirmed < 8 * s_c)
    dropped = (flows * (weight * unsure)[:, None]).sum(axis=0)
    added = (flows * np.where(populated & (confirmed == 0), 8 * s_c / np.maximum(residents, 1), 0)[:, None]).sum(axis=0)
    # The alert also needs I_d >= z_n·σ̂_I, σ̂_I the kind's plug-in estimate over the origins it counts. Within 6σ
    # of every value (a 1e-9 tail each), C̃_o <= C_o + 6σ_C, Ñ_o >= N_o - 6σ_N and F̃ <= F + 6σ_F bound each
    # origin's term; it counts the infected origins and, by chance, empty ones (Poisson with mean 1: more than
    # 11 with probability below 1e-6), bounded by the 11 largest empty terms of each destination. The bound is
    # loose (an empty origin of few residents weighs much), so in this world no district may be surely on alert:
    # importation-risk's alerts are checked against their noise in tests/test_noisy_post_processing.py.
    s_n = sigma["residents"]
    low_n = np.maximum(residents - 6 * s_n, 1)
    w_high = np.where(populated, (confirmed + 6 * s_c) / low_n, 0)
    term = s_f**2 * w_high[:, None] ** 2 + (flows + 6 * s_f) ** 2 * ((s_c**2 + w_high**2 * s_n**2) / low_n**2)[:, None]
    infected = populated & (confirmed > 0)
    estimate_bound = np.sqrt(
        term[infected].sum(axis=0) + np.sort(term[populated & ~infected], axis=0)[-11:].sum(axis=0)
    )
    floor = np.maximum(1.0, origin_sigmas(n) * estimate_bound)
    surely_on = (index - dropped - 6 * spread >= floor) & (inflow >= k + 6 * s_inflow)
    surely_off = index + added + 6 * spread < 1.0
    alerted = {code for code, row in released.items() if row[col["alert"]]}
    assert {int(c) for c in codes[surely_on]} <= alerted
    assert surely_off.sum() >= 10, "the scenario no longer has districts clearly off alert: the check would be empty"
    assert not alerted & {int(c) for c in codes[surely_off]}
    # Tiers: a district without a confirmed case in the 14 days turns medium only where the noise of its count
    # reaches 2σ, or high where that of its cluster count does (P(Z >= 2) = 2.3 % each): at most a binomial
    # tail's worth of them. One with 8σ or more cases is never low.
    tier_col, district_col = warning["columns"].index("tier"), warning["columns"].index("district")
    tier = {row[district_col]: row[tier_col] for row in warning["rows"]}
    empty = [int(codes[d]) for d in range(n) if confirmed[d] == 0]
    spurious = sum(tier[c] != "low" for c in empty)
    assert spurious <= _binomial_bound(len(empty), 2 * 0.023, 1e-7), spurious
    assert all(tier[int(codes[d])] != "low" for d in range(n) if confirmed[d] >= 8 * s_c)
    _check_itinerary_part(done.stdout, roster)
    for log in (tmp_path / "default" / "run").glob("*.log"):
        assert "Traceback" not in log.read_text(), log
    assert not _processes_mentioning(str(tmp_path)), "the demo left node processes running"


def _confirmed(
    roster: FederationConfig, codes: npt.NDArray[np.int32], start: dt.date, end: dt.date
) -> npt.NDArray[np.int64]:
    """Confirmed persons per district reported in [start, end], straight from every health network's rows."""
    confirmed = np.zeros(len(codes), dtype=np.int64)
    for node in roster.nodes_of_kind("health"):
        with duckdb.connect(str(node.store), read_only=True) as con:
            where = con.execute(
                "SELECT district FROM cases WHERE status = 'confirmed' AND report_date BETWEEN ? AND ?", [start, end]
            ).fetchnumpy()["district"]
        confirmed += np.bincount(np.searchsorted(codes, where), minlength=len(codes))
    return confirmed


def _binomial_bound(trials: int, p: float, tail: float) -> int:
    """The least m with P(Binomial(trials, p) > m) <= tail."""
    total = 0.0
    for m in range(trials + 1):
        total += math.comb(trials, m) * p**m * (1 - p) ** (trials - m)
        if 1 - total <= tail:
            return m
    return trials


def _check_itinerary_part(stdout: str, roster: FederationConfig) -> None:
    """The demo's last part: one telecom-a subscriber's own cities (against the oracle over its raw rows) and
    the commands to try it by hand."""
    assert "The consented itinerary service, for one telecom-a subscriber" in stdout
    (number,) = set(re.findall(r"fedbroker itinerary request .* --msisdn (\+[0-9]+)", stdout))
    assert "fedbroker itinerary show" in stdout and "sms/outbox.jsonl" in stdout
    lines = stdout[stdout.index("Places visited by") :].splitlines()
    shown = [
        int(line.split()[0]) for line in lines[1 : next(i for i, t in enumerate(lines) if t.startswith("updated"))]
    ]
    node = roster.node("telecom-a")
    policy = node.policy.itinerary
    with duckdb.connect(str(node.store), read_only=True) as con:
        expected = oracle_itinerary(con, number, policy.window_days, dt.timedelta(hours=policy.min_stay_hours))
    assert shown == expected and len(shown) >= 1, stdout


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found
