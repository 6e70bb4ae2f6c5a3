"""The ``fedbroker`` command (README.md, "The command line"): scenario, ingest, store, serve, up, query, demo, audit,
bench."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fedbroker.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from federation.errors import EXIT_CODES, FederationError


def exit_codes_epilog() -> str:
    """The exit codes of every command, one per error class (federation/errors.py), for ``fedbroker --help``."""
    lines = [f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items()]
    return "exit status:\n" + "\n".join(lines) + "\n\nsee docs/protocol.md for the wire protocol."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedbroker",
        description="Multi-agency data federation broker for epidemic response.",
        epilog=exit_codes_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress of every node step")
    parser.add_argument(
        "--log-format", choices=LOG_FORMATS, default="text", help="text for people, json for log collectors"
    )
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, help="lowest level logged (default: info for serve/up, else warning)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scenario = commands.add_parser("scenario", help="synthetic scenarios")
    scenario_commands = scenario.add_subparsers(dest="scenario_command", required=True, metavar="ACTION")
    generate = scenario_commands.add_parser("generate", help="write a synthetic federation: stores, roster, PKI")
    from fedbroker.scenario import add_arguments as scenario_arguments

    scenario_arguments(generate)

    ingest = commands.add_parser("ingest", help="load an agency's own CSV/Parquet export into its store")
    from adapters.ingest import add_arguments as ingest_arguments

    ingest_arguments(ingest)

    store = commands.add_parser("store", help="an agency store: copy it between engines, refresh its partials")
    store_commands = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    copy = store_commands.add_parser(
        "copy", help="copy an agency's raw tables between any two stores (DuckDB, PostgreSQL, Spark Parquet)"
    )
    from adapters.store_copy import add_arguments as copy_arguments

    copy_arguments(copy)
    refresh = store_commands.add_parser("refresh", help="rebuild a store's daily partial aggregates")
    from adapters.store_copy import add_refresh_arguments

    add_refresh_arguments(refresh)

    serve = commands.add_parser("serve", help="run one node (for separate hosts)")
    serve.add_argument("role", choices=["adapter", "broker"])
    serve.add_argument("--config", type=Path, required=True, help="the federation roster (federation.yaml)")
    serve.add_argument("--id", help="this adapter's node id in the roster")
    serve.add_argument("--listen", help="host:port to bind (default: the roster's address)")
    serve.add_argument(
        "--local",
        type=Path,
        help="this host's own file: key, store, audit log, policy, limits, metrics (docs/deploy.md)",
    )
    serve.add_argument("--ready-file", type=Path, help="write the bound port here once serving")
    serve.add_argument("--exit-with-parent", type=int, metavar="PID", help="stop when process PID is gone")
    serve.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics here (0: any free port)"
    )
    serve.add_argument("--metrics-host", default="127.0.0.1", help="metrics bind address (default loopback)")
    serve.add_argument(
        "--risk-list", type=Path, metavar="FILE", help="carrier: district codes to flag in itineraries (JSON/CSV)"
    )

    status = commands.add_parser("status", help="each node's health, version, registry, data window, live rounds")
    status.add_argument("--federation", type=Path, required=True, help="the roster (federation.yaml)")
    status.add_argument(
        "--as",
        dest="member",
        help="roster member whose certificate to call with (default: the first coordinator whose key the roster lists)",
    )
    status.add_argument("--format", choices=["table", "json"], default="table")

    up = commands.add_parser("up", help="run a whole local federation until interrupted")
    up.add_argument("--federation", type=Path, required=True, help="the roster (federation.yaml)")
    up.add_argument(
        "--ephemeral",
        action="store_true",
        help="bind ephemeral ports; the roster with the real "
        "addresses is written beside the file as federation.runtime.yaml",
    )
    up.add_argument("--risk-list", type=Path, metavar="FILE", help="every carrier's itinerary risk list (JSON/CSV)")

    itinerary = commands.add_parser("itinerary", help="a subscriber's own places visited, as phone and SMS gateway")
    from fedbroker.itinerary import add_arguments as itinerary_arguments

    itinerary_arguments(itinerary)

    from fedbroker.query_cli import add_query_parser

    add_query_parser(commands)

    demo = commands.add_parser("demo", help="generate or reuse the demo scenario, run the day's queries with noise")
    demo.add_argument("--workdir", type=Path, default=Path("fedbroker-work"), help="where the scenario lives")
    demo.add_argument("--fresh", action="store_true", help="regenerate the scenario even if one exists")
    demo.add_argument("--subscribers", type=int, help="persons in the synthetic world")
    noise = demo.add_mutually_exclusive_group()
    noise.add_argument(
        "--exact",
        action="store_true",
        help="every agency adds no noise (noise: none), so the answer can be checked against the raw tables",
    )
    noise.add_argument(
        "--noise",
        action="store_true",
        help="every agency adds its discrete Gaussian noise (the default; kept so that older scripts still run)",
    )

    budget = commands.add_parser("budget", help="every agency's privacy-budget ledger, as the agencies report it")
    budget.add_argument("--federation", type=Path, required=True, help="the roster (federation.yaml)")
    budget.add_argument("--as", dest="coordinator", required=True, help="coordinator id to ask as")
    budget.add_argument("--broker", help="broker address, if not the roster's")
    budget.add_argument("--format", choices=("table", "json"), default="table")

    pki = commands.add_parser("pki", help="the federation CA: init, request (a member's key), sign, revoke")
    from fedbroker.pki_cli import add_arguments as pki_arguments

    pki_arguments(pki)

    audit = commands.add_parser("audit", help="audit logs")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_commands.add_parser("verify", help="check a hash-chained audit log")
    verify.add_argument("files", type=Path, nargs="+")
    verify.add_argument(
        "--expect-head",
        metavar="SEQ:HASH",
        help="also require each log to hold this record (a head recorded elsewhere): catches a cut tail or a rewrite",
    )
    cross = audit_commands.add_parser(
        "cross-check", help="check every head one organisation recorded of another against that one's log"
    )
    cross.add_argument("dirs", type=Path, nargs="+", help="audit directories (or log files) of the organisations")

    report = commands.add_parser("report", help="the day's situation as one self-contained HTML file")
    report.add_argument("--federation", type=Path, required=True, help="the roster (federation.runtime.yaml)")
    report.add_argument("--as", dest="coordinator", required=True, help="coordinator id (signs every query)")
    report.add_argument("--end", help="the day reported, YYYY-MM-DD (default: the federation's last day)")
    report.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    report.add_argument("--broker", help="broker host:port (default: the roster's)")

    results = commands.add_parser("results", help="answers kept with `query --output DIR`")
    results_commands = results.add_subparsers(dest="results_command", required=True, metavar="ACTION")
    listing = results_commands.add_parser("list", help="list the saved answers of a results folder")
    listing.add_argument("--dir", type=Path, required=True, help="the results folder given to query --output")
    show = results_commands.add_parser("show", help="print one saved answer")
    show.add_argument("id", help="the answer's id (or a unique prefix of it or of its query sha256)")
    show.add_argument("--dir", type=Path, required=True, help="the results folder given to query --output")
    show.add_argument("--format", choices=["table", "json", "csv"], default="table")
    show.add_argument("--limit", type=int, help="table: show at most this many rows")

    bench = commands.add_parser("bench", help="run a benchmark from bench/")
    bench.add_argument("name")
    bench.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from fedbroker.query_cli import suggest

    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(words)
    if unknown:
        parser.error(suggest(parser, words, unknown))
    serving = args.command in ("serve", "up")
    level = args.log_level or ("info" if (args.verbose or serving) else "warning")
    configure_logging(log_format=args.log_format, level=level)
    try:
        return _dispatch(args)
    except FederationError as error:
        print(f"fedbroker: {type(error).__name__}: {error.message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "scenario":
        from fedbroker.scenario import run as run_scenario

        return run_scenario(args)
    if args.command == "ingest":
        from adapters.ingest import run as run_ingest

        return run_ingest(args)
    if args.command == "store":
        from adapters.store_copy import run as run_copy
        from adapters.store_copy import run_refresh

        return run_copy(args) if args.store_command == "copy" else run_refresh(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "up":
        return _up(args)
    if args.command == "pki":
        from fedbroker.pki_cli import run as run_pki

        return run_pki(args)
    if args.command == "status":
        from fedbroker.status import run_status

        return run_status(args.federation, args.member, args.format)
    if args.command == "query":
        from fedbroker.commands import run_query_command

        return run_query_command(args)
    if args.command == "itinerary":
        from fedbroker.itinerary import run as run_itinerary

        return run_itinerary(args)
    if args.command == "demo":
        from fedbroker.demo import run_demo

        return run_demo(args.workdir, fresh=args.fresh, subscribers=args.subscribers, exact=args.exact)
    if args.command == "budget":
        from fedbroker.commands import budget_command

        return budget_command(args)
    if args.command == "audit":
        from fedbroker.commands import cross_check_command, verify_audit_command

        if args.audit_command == "cross-check":
            return cross_check_command(args.dirs)
        return verify_audit_command(args.files, expect_head=args.expect_head)
    if args.command == "report":
        from fedbroker.commands import report_command

        return report_command(args)
    if args.command == "results":
        from fedbroker.commands import results_command

        return results_command(args)
    if args.command == "bench":
        from bench.__main__ import main as bench_main

        return bench_main([args.name, *args.args])
    raise AssertionError(args.command)


def _serve(args: argparse.Namespace) -> int:
    from federation.config import MetricsConfig, apply_local, load_federation

    federation = load_federation(args.config)
    if args.local is not None:
        federation = apply_local(federation, args.id if args.role == "adapter" else federation.broker.id, args.local)
    metrics = None if args.metrics_port is None else MetricsConfig(port=args.metrics_port, host=args.metrics_host)

    ready = ready_file_writer(args.ready_file)

    if args.role == "adapter":
        if not args.id:
            print("fedbroker serve adapter: --id NODE is required (which node of the roster to run)", file=sys.stderr)
            return 2
        from adapters.node import serve_adapter

        asyncio.run(
            serve_adapter(
                federation,
                args.id,
                listen=args.listen,
                on_ready=ready,
                parent_pid=args.exit_with_parent,
                metrics_config=metrics,
                risk_list=args.risk_list,
            )
        )
    else:
        from broker.node import serve_broker

        asyncio.run(
            serve_broker(
                federation, listen=args.listen, on_ready=ready, parent_pid=args.exit_with_parent, metrics_config=metrics
            )
        )
    return 0


def ready_file_writer(path: Path | None) -> Callable[[int], None]:
    """An ``on_ready(port)`` that writes the bound port to ``path`` atomically (nothing if ``path`` is None)."""

    def ready(port: int) -> None:
        if path is not None:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(f"{port}\n")
            tmp.replace(path)  # atomic: the harness never reads a half-written port

    return ready


def _up(args: argparse.Namespace) -> int:
    from fedbroker.supervise import run_up

    return run_up(args.federation, ephemeral=args.ephemeral, risk_list=args.risk_list)
