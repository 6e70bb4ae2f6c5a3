"""Cross-anchored audit against real nodes: each side records the other's head on every stage, and
``fedbroker audit cross-check`` catches what one log alone cannot show (a cut tail, a rewrite with fresh hashes)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.client import run_query
from fedbroker.harness import LocalFederation
from federation.audit import record_hash, verify_audit
from federation.audit_cross import cross_check
from federation.catalog import new_query
from federation.config import PrivacyPolicy
from tests.federation_fixtures import private_copy
from tests.test_round_refusals import TELECOM

pytestmark = pytest.mark.slow
NATIONAL = "nhc-national"


@pytest.fixture(scope="module")
def audit_dir(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The audit logs of a broker and three carriers after one population query (a snapshot copy). The roster is
    a private copy with its own audit logs: the shared scenario's broker log holds other tests' rounds."""
    run_dir = tmp_path_factory.mktemp("anchoring")
    roster = private_copy(small_scenario, run_dir / "federation", privacy=PrivacyPolicy())
    with LocalFederation(roster, run_dir=run_dir / "run", nodes=TELECOM) as federation:
        config = federation.config
        query = new_query("population", start=config.data_end, end=config.data_end, params={}, coordinator=NATIONAL)
        asyncio.run(run_query(config, NATIONAL, query))
        snapshot = run_dir / "audit"
        snapshot.mkdir()
        for log in [config.broker.audit_log, *(config.node(n).audit_log for n in TELECOM)]:
            shutil.copyfile(log, snapshot / log.name)
    yield snapshot


def _copy(audit_dir: Path, target: Path) -> Path:
    shutil.copytree(audit_dir, target)
    return target


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rewrite(path: Path, from_seq: int) -> None:
    """Edit the record at ``from_seq`` and recompute every hash from there on, as a node able to write its own
    file could: the chain verifies again."""
    records = _records(path)
    prev = None
    for record in records:
        if prev is not None:
            record["prev"] = prev
        if record["seq"] == from_seq:
            record["event"] = str(record["event"]) + ".rewritten"
        if prev is not None or record["seq"] == from_seq:
            record["hash"] = record_hash(record)
        prev = record["hash"] if record["seq"] >= from_seq else None
    path.write_text("".join(json.dumps(r, separators=(",", ":"), ensure_ascii=True) + "\n" for r in records))


def test_each_side_records_the_others_head(audit_dir: Path) -> None:
    contradictions, checked, absent = cross_check(sorted(audit_dir.glob("*.jsonl")))
    assert contradictions == [] and absent == []
    adapter_records = [r for r in _records(audit_dir / "telecom-a.jsonl") if str(r["event"]).startswith("round.")]
    assert adapter_records and all(int(str(r["broker_seq"])) > 0 for r in adapter_records)
    summed = [r for r in _records(next(audit_dir.glob("broker*.jsonl"))) if r["event"] == "round.summed"]
    assert summed and {str(h).split(":")[0] for h in summed[-1]["peer_heads"]} == set(TELECOM)
    assert checked >= 5 * len(TELECOM)


def test_a_cut_tail_passes_verify_but_not_the_cross_check(audit_dir: Path, tmp_path: Path) -> None:
    logs = _copy(audit_dir, tmp_path / "cut")
    victim = logs / "telecom-a.jsonl"
    lines = victim.read_text().splitlines(keepends=True)
    original_head = json.loads(lines[-1])
    victim.write_text("".join(lines[:-2]))  # telecom-a drops its last two records (consistency, unmask)
    assert verify_audit(victim).ok  # the chain alone cannot tell
    contradictions, _, _ = cross_check(sorted(logs.glob("*.jsonl")))
    assert contradictions, "a cut tail went unnoticed"
    text = str(contradictions[0])
    assert "telecom-a" in text and "ends at seq" in text and "broker" in text, text

    cli = subprocess.run(
        [sys.executable, "-m", "fedbroker", "audit", "cross-check", str(logs)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cli.returncode == 1 and str(victim) in cli.stdout, cli.stdout
    expect = f"{original_head['seq']}:{original_head['hash']}"
    verify = subprocess.run(
        [sys.executable, "-m", "fedbroker", "audit", "verify", str(victim), "--expect-head", expect],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 1 and "cut" in verify.stdout, verify.stdout
    intact = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedbroker",
            "audit",
            "verify",
            str(audit_dir / "telecom-a.jsonl"),
            "--expect-head",
            expect,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert intact.returncode == 0, intact.stdout


def test_a_rewritten_broker_log_passes_verify_but_not_the_cross_check(audit_dir: Path, tmp_path: Path) -> None:
    logs = _copy(audit_dir, tmp_path / "rewritten")
    broker_log = next(logs.glob("broker*.jsonl"))
    _rewrite(broker_log, from_seq=1)  # the broker rewrites its whole history with fresh hashes
    assert verify_audit(broker_log).ok
    contradictions, _, _ = cross_check(sorted(logs.glob("*.jsonl")))
    assert contradictions, "a rewritten log went unnoticed"
    assert all("rewritten" in c.problem and broker_log.name in c.problem for c in contradictions)
    assert {c.head.recorder for c in contradictions} == set(TELECOM)
