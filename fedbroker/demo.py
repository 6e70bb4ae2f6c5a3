"""``fedbroker demo``: the default scenario, a whole federation on loopback, one importation-risk query."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from broker.client import run_query
from fedbroker.harness import LocalFederation
from fedbroker.report import format_json, importation_summary, tier_summary
from federation.catalog import agency_query_kinds, new_query
from federation.config import load_federation
from federation.errors import FederationError
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
        query = new_query(
            "importation-risk", start=None, end=config.data_end, params={}, coordinator=NATIONAL_COORDINATOR
        )

        def progress(event: broker_pb2.Progress) -> None:
            if event.stage in ("plan", "unmask"):
                label = f"[{event.round}] " if event.round else ""
                _say(f"  {label}{event.stage}: {event.message}")

        asked = time.perf_counter()
        answer = asyncio.run(run_query(config, NATIONAL_COORDINATOR, query, on_progress=progress))
        _say(f"  answered in {time.perf_counter() - asked:.1f} s")
        # The same day's official risk tiers, from the same federation: what a coordinator publishes next.
        tiers_query = new_query(
            "warning",
            start=None,
            end=config.data_end,
            params={},
            coordinator=NATIONAL_COORDINATOR,
            data_start=config.data_start,
        )
        asked = time.perf_counter()
        tiers = asyncio.run(run_query(config, NATIONAL_COORDINATOR, tiers_query, on_progress=progress))
        _say(f"  risk tiers answered in {time.perf_counter() - asked:.1f} s")
    _say("every node stopped")
    report = roster.parent / "reports" / f"importation-risk-{query.end.isoformat()}.json"
    report.parent.mkdir(exist_ok=True)
    report.write_text(format_json(answer) + "\n")
    tiers_report = report.with_name(f"warning-{tiers_query.end.isoformat()}.json")
    tiers_report.write_text(format_json(tiers) + "\n")
    print(importation_summary(answer))
    print()
    print(tier_summary(tiers))
    print(f"\nthe whole answers (every released district) are in {report} and {tiers_report}")
    return 0
