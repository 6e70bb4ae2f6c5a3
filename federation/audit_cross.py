"""Cross-checking audit logs of several organisations against the heads each recorded of the others.

Every stage request carries the broker's audit head (``seq``, ``hash`` of its last record) and every adapter
answer carries the adapter's; each side records the other's head in the record it writes (adapters as
``broker_seq``/``broker_hash``, the broker as ``peer_heads`` entries ``"<node>:<seq>:<hash>"``). One node can
verify only that its own chain is unbroken; it cannot see its end cut off or the whole log rewritten with fresh
hashes. The heads another organisation recorded can: :func:`cross_check` finds, for every recorded head, the
other organisation's log and says whether that log still holds a record with that seq and that hash.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Contradiction", "RecordedHead", "cross_check", "recorded_heads"]


@dataclass(frozen=True)
class RecordedHead:
    """A head of ``organisation``'s log as ``recorder`` wrote it down at ``line`` (seq ``recorder_seq``)."""

    recorder: str
    log: Path
    line: int
    recorder_seq: int
    organisation: str
    seq: int
    hash: str


@dataclass(frozen=True)
class Contradiction:
    """A recorded head that the named organisation's log does not hold."""

    head: RecordedHead
    problem: str

    def __str__(self) -> str:
        h = self.head
        return (
            f"{h.log} (of {h.recorder}) line {h.line}, seq {h.recorder_seq}: recorded {h.organisation}'s head "
            f"seq {h.seq} hash {h.hash[:16]}..., but {self.problem}"
        )


def _records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="ascii", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("seq"), int):
            records.append(record)
    return records


def recorded_heads(path: Path) -> tuple[str | None, list[RecordedHead]]:
    """(the log's own node id, every head of another organisation recorded in it)."""
    node: str | None = None
    heads: list[RecordedHead] = []
    for number, record in enumerate(_records(path), start=1):
        node = node or record.get("node")
        recorder, seq = str(record.get("node")), int(record["seq"])
        broker_seq, broker_hash, peer = record.get("broker_seq"), record.get("broker_hash"), record.get("peer")
        if isinstance(broker_seq, int) and isinstance(broker_hash, str) and isinstance(peer, str) and broker_seq:
            heads.append(RecordedHead(recorder, path, number, seq, peer, broker_seq, broker_hash))
        for entry in record.get("peer_heads") or []:
            parts = str(entry).split(":")
            if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) > 0:
                heads.append(RecordedHead(recorder, path, number, seq, parts[0], int(parts[1]), parts[2]))
    return node, heads


def cross_check(logs: Sequence[Path]) -> tuple[list[Contradiction], int, list[str]]:
    """(contradictions, heads checked, organisations whose log was not among ``logs``)."""
    by_node: dict[str, dict[int, str]] = {}
    paths: dict[str, Path] = {}
    recorded: list[RecordedHead] = []
    for path in logs:
        node, heads = recorded_heads(path)
        if node is not None:
            by_node[node] = {int(r["seq"]): str(r.get("hash")) for r in _records(path)}
            paths[node] = path
        recorded += heads
    contradictions: list[Contradiction] = []
    absent: set[str] = set()
    checked = 0
    for head in recorded:
        chain = by_node.get(head.organisation)
        if chain is None:
            absent.add(head.organisation)
            continue
        checked += 1
        where = paths[head.organisation]
        if head.seq not in chain:
            last = max(chain, default=0)
            contradictions.append(
                Contradiction(head, f"{where} ends at seq {last} (its tail was cut or the log replaced)")
            )
        elif chain[head.seq] != head.hash:
            contradictions.append(
                Contradiction(
                    head, f"{where} has hash {chain[head.seq][:16]}... at seq {head.seq} (rewritten from there on)"
                )
            )
    return contradictions, checked, sorted(absent)


def audit_logs(directories: Iterable[Path]) -> list[Path]:
    """Every ``*.jsonl`` audit log directly in the given directories (or the files themselves)."""
    found: list[Path] = []
    for entry in directories:
        if entry.is_dir():
            found += sorted(p for p in entry.glob("*.jsonl") if p.is_file())
        else:
            found.append(entry)
    return found


def head_problem(path: Path, seq: int, digest: str) -> str | None:
    """Why ``path`` does not hold a record with this seq and hash (None if it does): the check behind
    ``audit verify --expect-head``, against a head published or recorded elsewhere."""
    chain = {int(r["seq"]): str(r.get("hash")) for r in _records(path)}
    if seq not in chain:
        return f"{path} has no seq {seq}: it ends at seq {max(chain, default=0)} (its tail was cut)"
    if chain[seq] != digest:
        return f"{path} has hash {chain[seq][:16]}... at seq {seq}, expected {digest[:16]}... (rewritten)"
    return None
