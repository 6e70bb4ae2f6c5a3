"""``fedbroker audit verify FILE...``: an intact log says so and prints its head; an edited, removed, inserted or
reordered line makes the command fail and name the line; several files get one verdict each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fedbroker.cli import main
from federation.audit import AuditLog, record_hash


def node_log(path: Path, entries: int = 8) -> list[dict[str, Any]]:
    """A broker-like log: what was asked, what was refused, what was released (never a raw value)."""
    with AuditLog(path, "broker") as log:
        records = []
        for i in range(entries):
            if i % 3 == 0:
                records.append(log.append("query.received", peer="nhc-national", kind="cases", nonce=f"{i:032x}"))
            elif i % 3 == 1:
                records.append(
                    log.append(
                        "refused", method="RunQuery", peer="hubei-jpc", status="PERMISSION_DENIED", reason="outside"
                    )
                )
            else:
                records.append(log.append("query.released", peer="nhc-national", kind="cases", rows=12, suppressed=3))
        return records


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def verify(capsys: pytest.CaptureFixture[str], *paths: Path) -> tuple[int, list[str]]:
    capsys.readouterr()
    status = main(["audit", "verify", *map(str, paths)])
    return status, capsys.readouterr().out.splitlines()


def test_intact_log_passes_and_prints_its_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broker.jsonl"
    records = node_log(path)
    status, out = verify(capsys, path)
    assert status == 0
    assert out == [f"{path}: ok, 8 entries, chain intact; head seq 8 hash {records[-1]['hash']}"]


def test_edited_line_fails_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broker.jsonl"
    node_log(path)
    lines = lines_of(path)
    lines[2] = lines[2].replace(b'"suppressed":3', b'"suppressed":0')  # hide that cells were suppressed
    path.write_bytes(b"".join(lines))
    status, out = verify(capsys, path)
    assert status == 1
    assert out == [f"{path}: TAMPERED, 1 problem(s) in 8 lines", "  line 3: hash mismatch (edited)"]


def test_edit_with_recomputed_hash_is_still_caught_by_the_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broker.jsonl"
    records = node_log(path)
    forged = dict(records[1], peer="nhc-national")  # blame someone else for the refusal
    forged["hash"] = record_hash(forged)
    lines = lines_of(path)
    lines[1] = (json.dumps(forged, separators=(",", ":")) + "\n").encode()
    path.write_bytes(b"".join(lines))
    status, out = verify(capsys, path)
    assert status == 1 and out[0].startswith(f"{path}: TAMPERED")
    assert out[1] == "  line 3: prev does not match line 2 (inserted or reordered)"


def test_removed_line_fails_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broker.jsonl"
    node_log(path)
    lines = lines_of(path)
    del lines[4]  # drop the refusal recorded as seq 5
    path.write_bytes(b"".join(lines))
    status, out = verify(capsys, path)
    assert status == 1
    assert out[1:] == ["  line 5: seq 6 follows 4 (entry removed)"]


def test_inserted_line_fails_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broker.jsonl"
    records = node_log(path)
    # A forged release chained onto seq 4 with a valid hash of its own: the genuine seq 5 exposes it.
    forged = dict(records[3], seq=5, prev=records[3]["hash"], event="query.released", rows=1, suppressed=0)
    forged["hash"] = record_hash(forged)
    lines = lines_of(path)
    lines.insert(4, (json.dumps(forged, separators=(",", ":")) + "\n").encode())
    path.write_bytes(b"".join(lines))
    status, out = verify(capsys, path)
    assert status == 1
    assert out[1:] == ["  line 6: seq 5 repeats line 5 (inserted or reordered)"]


def test_reordered_lines_fail_naming_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broker.jsonl"
    node_log(path)
    lines = lines_of(path)
    lines[5], lines[6] = lines[6], lines[5]
    path.write_bytes(b"".join(lines))
    status, out = verify(capsys, path)
    assert status == 1
    assert out[1] == "  line 6: seq 7 follows 5 (reordered: seq 6 is at line 7)"


def test_cut_tail_is_caught_only_by_the_published_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broker.jsonl"
    node_log(path)
    _, published = verify(capsys, path)
    path.write_bytes(b"".join(lines_of(path)[:-2]))
    status, out = verify(capsys, path)
    # The chain alone cannot see entries cut off the end (docs/security.md): the head printed before differs.
    assert status == 0 and out != published and "head seq 6 " in out[0]


def test_several_files_get_one_verdict_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad, missing = tmp_path / "broker.jsonl", tmp_path / "telecom-a.jsonl", tmp_path / "nowhere.jsonl"
    node_log(good)
    node_log(bad)
    bad.write_bytes(bad.read_bytes().replace(b"hubei-jpc", b"hubei-jpX", 1))
    status, out = verify(capsys, good, bad, missing)
    assert status == 1
    assert out[0].startswith(f"{good}: ok, 8 entries")
    assert out[1:3] == [f"{bad}: TAMPERED, 1 problem(s) in 8 lines", "  line 2: hash mismatch (edited)"]
    assert out[3] == f"{missing}: cannot read (No such file or directory)"
    assert out[4] == "1 of 3 audit logs intact"


def test_command_line_entry_point(tmp_path: Path) -> None:
    path = tmp_path / "broker.jsonl"
    node_log(path, 3)
    ok = subprocess.run(
        [sys.executable, "-m", "fedbroker", "audit", "verify", str(path)], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0 and "chain intact" in ok.stdout
    path.write_bytes(b"".join(lines_of(path)[1:]))
    damaged = subprocess.run(
        [sys.executable, "-m", "fedbroker", "audit", "verify", str(path)], capture_output=True, text=True, check=False
    )
    assert damaged.returncode == 1 and "line 1: seq 2 follows 0 (entry removed)" in damaged.stdout
