"""The hash-chained audit log: untouched logs verify, every kind of tampering is found and pinpointed."""

from __future__ import annotations

import itertools
import json
import os
import threading
from pathlib import Path

import pytest

from federation.audit import GENESIS_HASH, AuditLog, record_hash, verify_audit
from federation.errors import ConfigError


def write_log(path: Path, entries: int = 10) -> list[dict[str, object]]:
    with AuditLog(path, "telecom-a") as log:
        return [
            log.append(
                "contributed",
                round_id=f"{i:032x}",
                query="population",
                coordinator="nhc-national",
                window_days=14,
                share=0.5,
                released=True,
                participants=["health-net-1", "telecom-a"],
                reason=None,
            )
            for i in range(entries)
        ]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_records_chain_and_untouched_log_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "telecom-a.jsonl"
    records = write_log(path)
    assert [r["seq"] for r in records] == list(range(1, 11))
    assert records[0]["prev"] == GENESIS_HASH
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(records))
    first = json.loads(lines_of(path)[0])
    assert first == records[0]
    assert list(first)[:4] == ["seq", "ts", "node", "event"] and list(first)[-2:] == ["prev", "hash"]
    assert first["ts"].endswith("Z") and first["node"] == "telecom-a"
    assert record_hash(first) == first["hash"]

    report = verify_audit(path)
    assert report.ok and report.entries == 10 and report.problems == []
    assert report.head == (10, records[-1]["hash"])


def test_one_byte_edit_is_pinpointed(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path)
    lines = lines_of(path)
    lines[6] = lines[6].replace(b'"window_days":14', b'"window_days":15')
    path.write_bytes(b"".join(lines))
    report = verify_audit(path)
    assert not report.ok
    assert report.problems == ["line 7: hash mismatch (edited)"]


def test_whitespace_edit_keeping_values_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path)
    lines = lines_of(path)
    lines[2] = lines[2].replace(b'"event":', b'"event": ', 1)
    path.write_bytes(b"".join(lines))
    assert verify_audit(path).problems == ["line 3: hash mismatch (edited)"]


def test_deleted_line_is_pinpointed(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 14)
    lines = lines_of(path)
    del lines[11]
    path.write_bytes(b"".join(lines))
    report = verify_audit(path)
    assert not report.ok and report.entries == 13
    assert report.problems == ["line 12: seq 13 follows 11 (entry removed)"]


def test_deleted_first_line_is_pinpointed(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 3)
    path.write_bytes(b"".join(lines_of(path)[1:]))
    assert verify_audit(path).problems == ["line 1: seq 2 follows 0 (entry removed)"]


def test_swapped_pair_is_pinpointed(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path)
    lines = lines_of(path)
    lines[3], lines[4] = lines[4], lines[3]
    path.write_bytes(b"".join(lines))
    report = verify_audit(path)
    assert not report.ok
    assert report.problems[0] == "line 4: seq 5 follows 3 (reordered: seq 4 is at line 5)"


def test_inserted_copy_is_pinpointed(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path)
    lines = lines_of(path)
    lines.insert(6, lines[2])  # replay entry 3 as line 7
    path.write_bytes(b"".join(lines))
    report = verify_audit(path)
    assert report.problems == ["line 7: seq 3 repeats line 3 (inserted or reordered)"]


def test_inserted_forged_record_with_valid_hash_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    records = write_log(path)
    forged = dict(records[3], seq=5, prev=records[3]["hash"], event="released", query="cases")
    forged["hash"] = record_hash(forged)
    lines = lines_of(path)
    lines.insert(4, (json.dumps(forged, separators=(",", ":")) + "\n").encode())
    path.write_bytes(b"".join(lines))
    report = verify_audit(path)
    # The forged line 5 chains correctly; the genuine entry after it exposes it.
    assert report.problems == ["line 6: seq 5 repeats line 5 (inserted or reordered)"]


def test_prev_mismatch_is_pinpointed(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    records = write_log(path, 6)
    # A record rewritten with the right seq and its own hash recomputed, but pointing at line 2.
    rewritten = dict(records[4], prev=records[1]["hash"])
    rewritten["hash"] = record_hash(rewritten)
    lines = lines_of(path)
    lines[4] = (json.dumps(rewritten, separators=(",", ":")) + "\n").encode()
    path.write_bytes(b"".join(lines))
    report = verify_audit(path)
    assert report.problems[0] == "line 5: prev does not match line 4 (inserted or reordered; it points at line 2)"


def test_garbage_and_cut_lines_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path)
    lines = lines_of(path)
    lines[8] = b"{not json\n"
    path.write_bytes(b"".join(lines) + b'{"seq":11')
    report = verify_audit(path)
    assert report.problems[0] == "line 9: not valid JSON"
    assert report.problems[-1] == "line 11: no final newline (the last write was cut short)"


def test_empty_and_missing_logs(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert verify_audit(tmp_path / "empty.jsonl").ok
    missing = verify_audit(tmp_path / "missing.jsonl")
    assert not missing.ok and "cannot read" in missing.problems[0]


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    records = write_log(path, 3)
    with AuditLog(path, "telecom-a") as log:
        assert log.last_seq == 3 and log.head == records[-1]["hash"]
        record = log.append("refused", query="flows", reason="window too long")
    assert record["seq"] == 4 and record["prev"] == records[-1]["hash"]
    assert verify_audit(path).ok and verify_audit(path).entries == 4


def test_two_writers_on_one_file_do_not_fork_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with AuditLog(path, "broker") as first, AuditLog(path, "broker") as second:
        for i in range(5):
            first.append("tick", i=i)
            second.append("tock", i=i)
    report = verify_audit(path)
    assert report.ok and report.entries == 10


def test_concurrent_appends_from_threads(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with AuditLog(path, "broker") as log:
        threads = [
            threading.Thread(target=lambda n=n: [log.append("stage", worker=n) for _ in range(25)]) for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    report = verify_audit(path)
    assert report.ok and report.entries == 200


def test_reopening_a_damaged_tail_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 2)
    with path.open("ab") as file:
        file.write(b'{"seq":3,')
    with pytest.raises(ConfigError, match="last line is incomplete"):
        AuditLog(path, "telecom-a")
    lines = lines_of(path)[:2]
    lines[1] = lines[1].replace(b"population", b"flows")
    path.write_bytes(b"".join(lines))
    with pytest.raises(ConfigError, match="fails its hash check"):
        AuditLog(path, "telecom-a")


def test_reserved_and_unsupported_fields_are_refused(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "log.jsonl", "broker") as log:
        with pytest.raises(ValueError, match="may not be named"):
            log.append("x", seq=1)
        with pytest.raises(TypeError, match="list must hold strings"):
            log.append("x", ids=[1, 2])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="not an audit value"):
            log.append("x", blob=b"raw")  # type: ignore[arg-type]
    assert verify_audit(tmp_path / "log.jsonl").entries == 0


def test_records_without_fsync_are_written_and_made_durable_by_the_next_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stages that release nothing skip their fsync; the next durable record, sync() or close() covers them."""
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    path = tmp_path / "telecom-a.jsonl"
    log = AuditLog(path, "telecom-a")
    log.append("round.open", round="01", durable=False)
    log.append("round.share-keys", round="01", durable=False)
    assert synced == []
    assert len(lines_of(path)) == 2  # written (page cache) before append returned
    log.append("round.masked-input", round="01")
    assert len(synced) == 1
    log.sync()
    assert len(synced) == 1  # nothing pending: no second fsync
    log.append("round.consistency", round="01", durable=False)
    log.close()
    assert len(synced) == 2  # close made the pending record durable
    assert verify_audit(path).ok
