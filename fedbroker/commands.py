"""Command bodies too long for the parser module: query and audit verify."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

from broker.client import fetch_budget, run_query
from fedbroker.progress import ProgressView
from fedbroker.query_cli import query_params
from fedbroker.report import format_budget, format_grid, render
from fedbroker.results import list_results, load_answer, save_answer
from federation.audit import verify_audit
from federation.audit_cross import audit_logs, cross_check, head_problem
from federation.catalog import new_query
from federation.config import FederationConfig, load_federation
from federation.errors import ConfigError, InvalidQuery
from federation.registry import load_registry


def run_query_command(args: argparse.Namespace) -> int:
    federation = load_federation(args.federation)
    end = args.end or federation.data_end
    params = query_params(args)
    tiers = getattr(args, "risk_from_warning", None)
    if tiers:
        params = {**params, "risk_districts": _risk_districts(args, federation, end, tiers, params)}
    query = new_query(
        args.kind,
        start=args.start,
        end=end,
        params=params,
        coordinator=args.coordinator,
        data_start=federation.data_start,
    )
    progress = ProgressView(sys.stderr, interactive=sys.stderr.isatty())
    try:
        answer = asyncio.run(
            run_query(federation, args.coordinator, query, broker_address=args.broker, on_progress=progress)
        )
    finally:
        progress.close()
    print(render(answer, args.format, limit=args.limit))
    if args.output is not None:
        registry = load_registry(federation.domain.provinces)
        formats = [f.strip() for f in args.save_as.split(",") if f.strip()]
        folder = save_answer(answer, args.output, formats=formats, registry=registry)
        print(f"kept in {folder}", file=sys.stderr)
    return 0


def _risk_districts(
    args: argparse.Namespace, federation: FederationConfig, end: dt.date, tiers: tuple[str, ...], params: dict[str, str]
) -> str:
    """The risk districts a warning query finds for ``--risk-from-warning`` (the first of two signed queries)."""
    from fedbroker.risk_from_warning import FLAG, risk_districts_from_warning

    if "risk_districts" in params:
        raise InvalidQuery(f"give --risk-districts or {FLAG}, not both")
    progress = ProgressView(sys.stderr, interactive=sys.stderr.isatty())
    try:
        found, warning = asyncio.run(
            risk_districts_from_warning(
                federation, args.coordinator, end, tiers, broker_address=args.broker, on_progress=progress
            )
        )
    finally:
        progress.close()
    print(
        f"warning query {warning.query['nonce']} for {end}: {len(found)} district(s) of tier "
        f"{' or '.join(tiers)}: {', '.join(str(c) for c in found[:20])}{' ...' if len(found) > 20 else ''}",
        file=sys.stderr,
    )
    return ",".join(str(c) for c in found)


def results_command(args: argparse.Namespace) -> int:
    """``fedbroker results list|show``: the answers kept in a results folder."""
    if args.results_command == "list":
        entries = list_results(args.dir)
        columns = ("id", "kind", "start", "end", "coordinator", "rows", "query_sha256")
        rows = [[e[c] if c != "query_sha256" else e[c][:16] for c in columns] for e in entries]
        print(format_grid(list(columns), rows))
        print(f"\n{len(entries)} saved answers in {args.dir}")
        return 0
    answer = load_answer(args.dir, args.id)
    print(render(answer, args.format, limit=args.limit))
    return 0


def budget_command(args: argparse.Namespace) -> int:
    """Print every agency's ledger (ρ spent and left per data day), as the agencies report it."""
    federation = load_federation(args.federation)
    budget = asyncio.run(fetch_budget(federation, args.coordinator, broker_address=args.broker))
    print(format_budget(budget, fmt=args.format))
    return 0


def cross_check_command(directories: Sequence[Path]) -> int:
    """Check every audit head an organisation recorded of another against that organisation's log.

    Exit status 0 when every recorded head is found, 1 when a log contradicts a head another recorded (its tail
    was cut, or it was rewritten), each contradiction printed with the recording log, line and seq and the
    organisation whose log contradicts it.
    """
    logs = audit_logs(directories)
    contradictions, checked, absent = cross_check(logs)
    for contradiction in contradictions:
        print(f"CONTRADICTED: {contradiction}")
    for organisation in absent:
        print(f"note: heads of {organisation} were recorded but its log was not given")
    print(f"{len(logs)} logs, {checked} recorded heads checked, {len(contradictions)} contradicted")
    return 1 if contradictions else 0


def verify_audit_command(files: Sequence[Path], *, expect_head: str | None = None) -> int:
    """Verify each audit log; print one verdict per file and every problem found, with its line number.

    Exit status 0 when every log is intact, 1 when any is damaged or cannot be read. An intact log's head
    (seq and hash of its last record) is printed so it can be compared with a copy published elsewhere: the
    chain alone cannot show that records were cut off the end of the file.
    """
    expected = _expected_head(expect_head)
    failed = 0
    for path in files:
        try:
            path.open("rb").close()
        except OSError as exc:
            failed += 1
            print(f"{path}: cannot read ({exc.strerror})")
            continue
        report = verify_audit(path)
        if report.ok and expected is not None:
            problem = head_problem(path, *expected)
            if problem is not None:
                failed += 1
                print(f"{path}: chain intact, but {problem}")
                continue
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


def report_command(args: argparse.Namespace) -> int:
    """``fedbroker report``: run the report's queries and write one self-contained HTML file."""
    import datetime as dt

    from fedbroker.client import Client
    from fedbroker.html_report import gather, render_report

    federation = load_federation(args.federation)
    progress = ProgressView(sys.stderr, interactive=sys.stderr.isatty())
    client = Client(federation, args.coordinator, broker_address=args.broker, on_progress=progress)
    end = dt.date.fromisoformat(args.end) if args.end else federation.data_end
    try:
        inputs = gather(client, end, load_registry(federation.domain.provinces))
    finally:
        progress.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render_report(inputs), encoding="utf-8")
    print(f"report written to {args.out}", file=sys.stderr)
    return 0


def _expected_head(text: str | None) -> tuple[int, str] | None:
    if text is None:
        return None
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise ConfigError(f"--expect-head {text!r}: write SEQ:HASH, e.g. 12:<64 hex digits> as audit verify prints")
    return int(seq), digest
