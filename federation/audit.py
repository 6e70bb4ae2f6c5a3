"""Each node's tamper-evident audit log: one JSON record a line, every record chained to the one before.

A record is ``{"seq", "ts", "node", "event", <fields>, "prev", "hash"}``: ``seq`` counts from 1, ``ts`` is
UTC ISO-8601 with a ``Z``, ``prev`` is the previous record's ``hash`` (64 zeros for the first) and ``hash`` is
the SHA-256 hex digest of the record's canonical JSON without ``hash`` (keys sorted, no spaces, ASCII only).
Lines themselves are that canonical JSON in writing order, so :func:`verify_audit` also notices an edit that
keeps the parsed values (whitespace, escapes). It pinpoints an edited, dropped, inserted or reordered line.

Audit events say who asked what, which round, and what was released or refused. Never put raw records or
per-person values (subscriber, person, passenger or case ids; a single agency's vector) in an audit event:
the log is read by auditors who are not entitled to the data.

Every record is bounded whatever a caller sent: a string field, and each string of a list field, is cut to
``MAX_FIELD_BYTES`` UTF-8 bytes (ending in ``... [truncated]``), and a list keeps at most ``MAX_LIST_ITEMS``
entries (the last one then says how many were left out). Async servers write with :meth:`AuditLog.append_async`,
which runs the write and its fsync on the log's own writer thread: the event loop keeps serving other calls,
and the caller still answers only once the record is on disk.

Durability: a record is written (in the kernel's page cache, so it survives the process) before ``append``
returns; it is fsynced then too unless the caller passes ``durable=False``. An fsync makes every earlier record
of the file durable as well, so a node fsyncs where something leaves it (a masked vector, the shares that
unmask a sum, a refusal) and writes the records of the stages in between without one: they become durable
with the next fsynced record, on :meth:`AuditLog.sync` / :meth:`AuditLog.close`, or by the kernel's writeback
(about 30 s), and only a power loss or kernel crash in that gap can lose them, never a record of a release.

Limits, stated so nobody over-trusts the chain: whoever can write the file can rewrite it from any point
on, recomputing every later hash, and can cut entries off its end. Publishing the head (``seq`` and
``hash`` of the last record, :attr:`AuditReport.head`) somewhere the node cannot rewrite makes both visible.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import fcntl
import functools
import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.bounds import bounded_reason
from federation.errors import ConfigError

GENESIS_HASH = "0" * 64
RESERVED_KEYS = frozenset({"seq", "ts", "node", "event", "prev", "hash"})

AuditValue = str | int | float | bool | list[str] | None

#: Largest string field (and list item) of a record, in UTF-8 bytes; longer ones are cut.
MAX_FIELD_BYTES = 1024
#: Most entries of a list field; a longer list keeps its first entries and a note of how many were left out.
MAX_LIST_ITEMS = 256


def _bounded(value: AuditValue) -> AuditValue:
    if isinstance(value, str):
        return bounded_reason(value, MAX_FIELD_BYTES)
    if isinstance(value, list):
        items = [bounded_reason(item, MAX_FIELD_BYTES) for item in value[:MAX_LIST_ITEMS]]
        if len(value) > MAX_LIST_ITEMS:
            items[-1] = f"... and {len(value) - MAX_LIST_ITEMS + 1} more"
        return items
    return value


def canonical_json(record: dict[str, Any]) -> str:
    """The canonical form hashed: sorted keys, no whitespace, ASCII, no NaN/Infinity."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``record`` without its ``hash`` key."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()


def _line(record: dict[str, Any]) -> str:
    # Writing order (not sorted) keeps the line readable; the verifier re-serialises in the same way.
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class AuditLog:
    """Appends hash-chained records to ``path`` for ``node_id``; safe to share between threads.

    Reopening an existing log continues its chain. Appends also take an exclusive ``flock`` on the file and
    re-read the tail if another process wrote to it, so two writers never fork the chain.
    """

    def __init__(self, path: Path, node_id: str, *, clock: Callable[[], datetime.datetime] = _utc_now) -> None:
        self.path = path
        self.node_id = node_id
        self._clock = clock
        self._lock = threading.Lock()
        # One writer thread: records keep the order they were submitted in, and an fsync never runs on
        # (or waits for a slot behind long computations in) the event loop's default executor.
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"audit-{node_id}")
        self._unsynced = False  # a record was written with durable=False and not fsynced since
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "r+b", buffering=0)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._seq, self._prev, self._size = self._read_tail()
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            self._file.close()
            raise

    @property
    def last_seq(self) -> int:
        """``seq`` of the last record written (0 for an empty log)."""
        return self._seq

    @property
    def head(self) -> str:
        """``hash`` of the last record written (64 zeros for an empty log)."""
        return self._prev

    def append(self, event: str, *, durable: bool = True, **fields: AuditValue) -> dict[str, Any]:
        """Write one record and return it (with ``hash``); it is on disk (flushed, fsynced) on return, or with
        ``durable=False`` written but not fsynced (see the module's "Durability").

        Field names must not be one of the reserved keys; values are str, int, float, bool, list[str] or None.
        Strings and lists are bounded (``MAX_FIELD_BYTES``, ``MAX_LIST_ITEMS``) before they are hashed.
        """
        clash = RESERVED_KEYS.intersection(fields)
        if clash:
            raise ValueError(f"audit fields may not be named {sorted(clash)}: those keys belong to the chain")
        for name, value in fields.items():
            if isinstance(value, list) and not all(isinstance(item, str) for item in value):
                raise TypeError(f"audit field {name!r}: a list must hold strings only")
            if value is not None and not isinstance(value, str | int | float | bool | list):
                raise TypeError(f"audit field {name!r}: {type(value).__name__} is not an audit value")
        fields = {name: _bounded(value) for name, value in fields.items()}
        with self._lock:
            fd = self._file.fileno()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size != self._size:
                    self._seq, self._prev, self._size = self._read_tail()
                record: dict[str, Any] = {
                    "seq": self._seq + 1,
                    "ts": self._clock().astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "node": self.node_id,
                    "event": event,
                    **fields,
                    "prev": self._prev,
                }
                record["hash"] = record_hash(record)
                data = (_line(record) + "\n").encode("ascii")
                written = 0
                while written < len(data):
                    written += self._file.write(data[written:])
                if durable:
                    os.fsync(fd)
                self._unsynced = not durable
                self._seq, self._prev, self._size = record["seq"], record["hash"], self._size + len(data)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        return record

    async def append_async(self, event: str, *, durable: bool = True, **fields: AuditValue) -> dict[str, Any]:
        """:meth:`append` on the log's writer thread; returns once the record is written (and fsynced if
        ``durable``)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._writer, functools.partial(self.append, event, durable=durable, **fields)
        )

    def sync(self) -> None:
        """fsync records written with ``durable=False`` since the last fsync (a no-op when there are none)."""
        with self._lock:
            if self._unsynced and not self._file.closed:
                os.fsync(self._file.fileno())
                self._unsynced = False

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self.sync()
        with self._lock:
            self._file.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read_tail(self) -> tuple[int, str, int]:
        """(seq, hash, file size) of the last record; refuses to extend a log whose end is damaged."""
        size = os.fstat(self._file.fileno()).st_size
        if size == 0:
            return 0, GENESIS_HASH, 0
        fix = (
            f"run the audit verifier on {self.path}, keep the file as evidence and move it aside; "
            "the node starts a new log"
        )
        tail = _last_line(self._file, size)
        if tail is None:
            raise ConfigError(f"{self.path}: the last line is incomplete (a cut write?); {fix}")
        try:
            record = json.loads(tail)
            seq, stored = record["seq"], record["hash"]
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"{self.path}: the last line is not an audit record; {fix}") from exc
        if not isinstance(seq, int) or stored != record_hash(record):
            raise ConfigError(f"{self.path}: the last record fails its hash check (edited?); {fix}")
        return seq, stored, size


def _last_line(file: Any, size: int) -> bytes | None:
    """The last newline-terminated line of a file of ``size`` bytes, or None if it does not end in one."""
    block, end = 4096, size
    buffer = b""
    while end > 0:
        start = max(0, end - block)
        file.seek(start)
        buffer = file.read(end - start) + buffer
        end = start
        if buffer.count(b"\n") >= 2 or end == 0:
            break
    if not buffer.endswith(b"\n"):
        return None
    return buffer[:-1].rsplit(b"\n", 1)[-1]


@dataclass(frozen=True)
class AuditReport:
    """Outcome of :func:`verify_audit`. ``problems`` lists one line per damaged entry, first problem first
    (later ones may follow from it); ``head`` is (seq, hash) of the last record, for anchoring elsewhere."""

    ok: bool
    entries: int
    problems: list[str] = field(default_factory=list)
    head: tuple[int, str] = (0, GENESIS_HASH)


@dataclass(frozen=True)
class _Link:
    """What a line claims about its place in the chain."""

    line: int
    seq: int
    hash: str


def verify_audit(path: Path) -> AuditReport:
    """Check every line of an audit log: valid JSON, its own hash, ``seq`` one more than the line before,
    ``prev`` equal to that line's hash. Never raises for a damaged log; an unreadable file is a problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return AuditReport(ok=False, entries=0, problems=[f"{path}: cannot read ({exc.strerror})"])
    if not raw:
        return AuditReport(ok=True, entries=0)
    lines = raw.split(b"\n")
    cut = lines[-1] != b""
    if not cut:
        lines.pop()
    records = [_parse(line) for line in lines]
    # Where each seq and hash occurs, to say "reordered" or "inserted" instead of only "does not match".
    seq_lines: dict[int, list[int]] = {}
    hash_lines: dict[str, int] = {}
    for number, record in enumerate(records, start=1):
        if isinstance(record, dict):
            seq_lines.setdefault(record["seq"], []).append(number)
            hash_lines.setdefault(record["hash"], number)

    problems: list[str] = []
    # Links the next line may continue. Until the first problem only the previous line; after a damaged line
    # its claim, its position and the older links stay acceptable, so one damage is reported once. None: the
    # previous line was unreadable, so the next line's link cannot be judged (that line is reported already).
    candidates: list[_Link] | None = [_Link(0, 0, GENESIS_HASH)]
    for number, record in enumerate(records, start=1):
        if isinstance(record, str):
            problems.append(f"line {number}: {record}")
            candidates = None
            continue
        link = _Link(number, record["seq"], record["hash"])
        matched = None
        for candidate in candidates or []:
            if record["seq"] == candidate.seq + 1 and record["prev"] == candidate.hash:
                matched = candidate
                break
        problem = None
        if record_hash(record) != record["hash"] or _line(record).encode() != lines[number - 1]:
            problem = "hash mismatch (edited)"
        elif candidates and matched is None:
            problem = _chain_problem(record, number, candidates[0], seq_lines, hash_lines)
        others = [c for c in candidates or [] if c is not matched]
        if problem is not None:
            problems.append(f"line {number}: {problem}")
            # An edited line may have had its seq edited too: also accept a successor of its position.
            position = [_Link(number, others[0].seq + 1, link.hash)] if others else []
            candidates = [link, *position, *others][:8]
        else:
            candidates = [link, *(others if problems else [])][:8]
    if cut:
        problems.append(f"line {len(records)}: no final newline (the last write was cut short)")
    last = next((r for r in reversed(records) if isinstance(r, dict)), None)
    head = (0, GENESIS_HASH) if last is None else (last["seq"], last["hash"])
    return AuditReport(ok=not problems, entries=len(records), problems=problems, head=head)


def _parse(line: bytes) -> dict[str, Any] | str:
    """The record on a line, or a description of why it is not one."""
    try:
        record = json.loads(line.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return "not valid JSON"
    if not isinstance(record, dict):
        return "not valid JSON (not an object)"
    for key, kind in (("seq", int), ("ts", str), ("node", str), ("event", str), ("prev", str), ("hash", str)):
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            return f"missing or malformed {key!r}"
    return record


def _chain_problem(
    record: dict[str, Any],
    number: int,
    before: _Link,
    seq_lines: dict[int, list[int]],
    hash_lines: dict[str, int],
) -> str:
    """Why a line with a correct own hash does not continue the line before it."""
    seq, after = record["seq"], f"line {before.line}" if before.line else "the start of the log"
    if seq > before.seq + 1:
        elsewhere = [
            (missing, line)
            for missing in range(before.seq + 1, seq)
            for line in seq_lines.get(missing, [])
            if line > number
        ]
        if elsewhere:
            missing, line = elsewhere[0]
            return f"seq {seq} follows {before.seq} (reordered: seq {missing} is at line {line})"
        return f"seq {seq} follows {before.seq} (entry removed)"
    if seq <= before.seq:
        earlier = [line for line in seq_lines.get(seq, []) if line < number]
        if earlier:
            return f"seq {seq} repeats line {earlier[0]} (inserted or reordered)"
        return f"seq {seq} follows {before.seq} (inserted or reordered)"
    pointed = hash_lines.get(record["prev"])
    where = f"; it points at line {pointed}" if pointed is not None and pointed != number else ""
    return f"prev does not match {after} (inserted or reordered{where})"
