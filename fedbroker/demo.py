"""``fedbroker demo``: the default scenario, a whole federation on loopback, one importation-risk query."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from fedbroker.client import Client
from fedbroker.harness import LocalFederation
from fedbroker.html_report import gather, render_report
from fedbroker.report import format_json, importation_summary, tier_summary
from federation.catalog import agency_query_kinds
from federation.config import load_federation
from federation.errors import FederationError
from federation.registry import load_registry
from federation.v1 import broker_pb2

NATIONAL_COORDINATOR = "nhc-national"
DEMO_KINDS = ("importation-risk", "warning")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_scenario(workdir: Path, *, fresh: bool, subscribers: int | None) -> Path:
    """The scenario's federation.yaml: reused when it loads cleanly and its agencies serve the demo's query kinds,
    generated otherwise."""
    from fedbroker.scenario import generate_scenario

    scenario = workdir / "default"
    roster = scenario / "federation.yaml"
    if roster.exists() and not fresh:
        try:
            config = load_federation(roster)
            stale = sorted(
                {
                    k
                    for n in config.nodes
                    for k in agency_query_kinds(n.kind)
                    if k in DEMO_KINDS and k not in n.policy.allowed_queries
                }
            )
            if not stale:
                _say(f"reusing the scenario in {scenario} (pass --fresh to regenerate)")
                return roster
            _say(f"regenerating the scenario: its agencies predate the query kinds {', '.join(stale)}")
        except FederationError as error:
            _say(f"regenerating the scenario: {error.message}")
    started = time.perf_counter()
    _say(f"generating the default scenario (Hubei and neighbours) in {scenario} ...")
    if subscribers:
        generate_scenario(scenario, force=True, subscribers=subscribers)
    else:
        generate_scenario(scenario, force=True)
    _say(f"  generated in {time.perf_counter() - started:.1f} s")
    return roster


def run_demo(workdir: Path, *, fresh: bool = False, subscribers: int | None = None) -> int:
    roster = ensure_scenario(workdir, fresh=fresh, subscribers=subscribers)
    started = time.perf_counter()
    _say("starting every node on loopback with mutual TLS ...")
    with LocalFederation(roster) as federation:
        config = federation.config
        _say(
            f"  broker + {len(config.nodes)} adapters up in {time.perf_counter() - started:.1f} s "
            f"({', '.join(n.id for n in config.nodes)})"
        )

        def progress(event: broker_pb2.Progress) -> None:
            if event.stage in ("plan", "unmask"):
                label = f"[{event.round}] " if event.round else ""
                _say(f"  {label}{event.stage}: {event.message}")

        # The day's importation risk, its flows, the official risk tiers and the trend (where the catalog has
        # them), all from the same federation: what a coordinator publishes next.
        asked = time.perf_counter()
        client = Client(config, NATIONAL_COORDINATOR, on_progress=progress)
        inputs = gather(client, config.data_end, load_registry(config.domain.provinces))
        _say(f"  answered in {time.perf_counter() - asked:.1f} s")
    _say("every node stopped")
    day = config.data_end.isoformat()
    reports = roster.parent / "reports"
    reports.mkdir(exist_ok=True)
    saved = [reports / f"importation-risk-{day}.json"]
    saved[0].write_text(format_json(inputs.importation) + "\n")
    print(importation_summary(inputs.importation))
    if inputs.warning is not None:
        saved.append(reports / f"warning-{day}.json")
        saved[-1].write_text(format_json(inputs.warning) + "\n")
        print()
        print(tier_summary(inputs.warning))
    page = reports / f"report-{day}.html"
    page.write_text(render_report(inputs), encoding="utf-8")
    print(f"\nthe whole answers (every released district) are in {' and '.join(str(p) for p in saved)}")
    print(f"the day's report (maps, flows, tiers and Rt curves) is in {page}")
    return 0
