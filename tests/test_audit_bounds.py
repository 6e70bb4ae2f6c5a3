"""The audit writer: records are bounded whatever a caller sent, and async writes keep the chain intact."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from federation.audit import MAX_FIELD_BYTES, MAX_LIST_ITEMS, AuditLog, verify_audit


def test_long_fields_and_lists_are_cut_before_hashing(tmp_path: Path) -> None:
    path = tmp_path / "node.jsonl"
    with AuditLog(path, "telecom-a") as log:
        record = log.append("refused", reason="x" * 3_000_000, peers=["p" * 5000] * 10_000)
    assert len(record["reason"].encode()) <= MAX_FIELD_BYTES
    assert record["reason"].endswith("[truncated]")
    assert len(record["peers"]) == MAX_LIST_ITEMS
    assert record["peers"][-1] == f"... and {10_000 - MAX_LIST_ITEMS + 1} more"
    assert all(len(p.encode()) <= MAX_FIELD_BYTES for p in record["peers"])
    assert path.stat().st_size < (MAX_LIST_ITEMS + 2) * MAX_FIELD_BYTES
    assert verify_audit(path).ok


def test_async_appends_run_off_the_event_loop_and_chain_in_order(tmp_path: Path) -> None:
    path = tmp_path / "node.jsonl"
    writers: set[str] = set()

    async def scenario(log: AuditLog) -> list[int]:
        loop_thread = threading.current_thread().name
        original = log.append

        def spy(event: str, **fields: object) -> dict[str, object]:
            writers.add(threading.current_thread().name)
            return original(event, **fields)  # type: ignore[arg-type]

        log.append = spy  # type: ignore[method-assign]
        records = await asyncio.gather(*(log.append_async("round.open", n=i) for i in range(50)))
        assert loop_thread not in writers
        return [int(r["seq"]) for r in records]

    with AuditLog(path, "telecom-a") as log:
        seqs = asyncio.run(scenario(log))
    assert seqs == list(range(1, 51))  # one writer thread: submission order is chain order
    assert [json.loads(line)["n"] for line in path.read_text().splitlines()] == list(range(50))
    assert verify_audit(path).ok
    assert len(writers) == 1
