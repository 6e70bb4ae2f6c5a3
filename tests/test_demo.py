"""`fedbroker demo` from scratch: it must print the importation-risk answer, stop every node, and the answer it
saved must be reproduced by an independent recomputation straight from the raw DuckDB files (numpy over the
raw signalling, subscribers and cases; none of the adapters' SQL)."""

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


def test_demo_runs_and_its_answer_is_reproduced_from_raw_tables(tmp_path: Path) -> None:
    # No flag: the demo's default is exact sums (its small world's counts do not survive the noise).
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
    (tiers,) = (tmp_path / "default" / "reports").glob("warning-*.json")
    warning = json.loads(tiers.read_text())
    # The default scenario is built so that warning finds every tier on its last day.
    assert {row[warning["columns"].index("tier")] for row in warning["rows"]} == {"low", "medium", "high"}
    assert "exact sums (noise: none)" in done.stdout
    roster = load_federation(tmp_path / "default" / "federation.yaml")
    reports = list((tmp_path / "default" / "reports").glob("importation-risk-*.json"))
    assert len(reports) == 1
    answer = json.loads(reports[0].read_text())

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
    confirmed = np.zeros(n, dtype=np.int64)
    for node in roster.nodes_of_kind("health"):
        with duckdb.connect(str(node.store), read_only=True) as con:
            where = con.execute(
                "SELECT district FROM cases WHERE status = 'confirmed' AND report_date BETWEEN ? AND ?", [start, end]
            ).fetchnumpy()["district"]
        confirmed += np.bincount(np.searchsorted(codes, where), minlength=n)

    np.fill_diagonal(flows, 0)
    weight = np.divide(confirmed, residents, out=np.zeros(n), where=residents > 0)
    index = weight @ flows  # I_d = sum_o F(o->d) C_o / N_o
    inflow = flows.sum(axis=0)
    col = {c: i for i, c in enumerate(answer["columns"])}
    released = {row[col["district"]]: row for row in answer["rows"]}
    k = roster.broker.mobility_k
    assert set(released) == {int(codes[d]) for d in range(n) if inflow[d] >= k}
    assert answer["suppressed"] == int(((inflow > 0) & (inflow < k)).sum())
    for d in range(n):
        row = released.get(int(codes[d]))
        if row is None:
            continue
        assert row[col["inflow"]] == inflow[d]
        assert math.isclose(row[col["importation_index"]], index[d], rel_tol=1e-9, abs_tol=1e-12)
        assert row[col["alert"]] == bool(index[d] >= 1.0)
    assert any(row[col["alert"]] for row in answer["rows"])
    _check_itinerary_part(done.stdout, roster)
    for log in (tmp_path / "default" / "run").glob("*.log"):
        assert "Traceback" not in log.read_text(), log
    assert not _processes_mentioning(str(tmp_path)), "the demo left node processes running"


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
