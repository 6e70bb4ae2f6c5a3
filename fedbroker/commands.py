"""Command bodies too long for the parser module: query and audit verify."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from broker.client import run_query
from fedbroker.query_cli import query_params
from fedbroker.report import render
from federation.audit import verify_audit
from federation.catalog import new_query
from federation.config import load_federation
from federation.v1 import broker_pb2


def run_query_command(args: argparse.Namespace) -> int:
    federation = load_federation(args.federation)
    end = args.end or federation.data_end
    query = new_query(
        args.kind,
        start=args.start,
        end=end,
        params=query_params(args),
        coordinator=args.coordinator,
        data_start=federation.data_start,
    )
    interactive = sys.stderr.isatty()

    def progress(event: broker_pb2.Progress) -> None:
        label = f"[{event.round}] " if event.round else ""
        line = f"{label}{event.stage}: {event.message}"
        if interactive:
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr)

    answer = asyncio.run(
        run_query(federation, args.coordinator, query, broker_address=args.broker, on_progress=progress)
    )
    if interactive:
        print("\r\033[K", end="", file=sys.stderr)
    print(render(answer, args.format, limit=args.limit))
    return 0


def verify_audit_command(files: Sequence[Path]) -> int:
    """Verify each audit log; print one verdict per file and every problem found, with its line number.

    Exit status 0 when every log is intact, 1 when any is damaged or cannot be read. An intact log's head
    (seq and hash of its last record) is printed so it can be compared with a copy published elsewhere: the
    chain alone cannot show that records were cut off the end of the file.
    """
    failed = 0
    for path in files:
        try:
            path.open("rb").close()
        except OSError as exc:
            failed += 1
            print(f"{path}: cannot read ({exc.strerror})")
            continue
        report = verify_audit(path)
        if report.ok:
            seq, head = report.head
            print(f"{path}: ok, {report.entries} entries, chain intact; head seq {seq} hash {head}")
        else:
            failed += 1
            print(f"{path}: TAMPERED, {len(report.problems)} problem(s) in {report.entries} lines")
            for problem in report.problems:
                print(f"  {problem}")
    if len(files) > 1:
        print(f"{len(files) - failed} of {len(files)} audit logs intact")
    return 1 if failed else 0
