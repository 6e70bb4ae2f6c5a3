"""``fedbroker demo``: the demo scenario, a whole federation on loopback, the day's queries with noise on, and one
subscriber's own itinerary through its carrier's SMS gateway (with how to try it by hand).

The demo world is Hubei (103 districts) with 100,000 persons, about a thousand a district, and its roster lets a
round spend up to ρ = 5 (the broker lowers it per aggregate to where each agency's noise variance is 1, so every
cell of every sum gets σ ≈ 1.7), so that the noisy answers agree with the exact ones where it matters; README
("Noise") gives the figures and the weak privacy that buys at this scale. ``--exact`` runs with exact sums."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path

from adapters.backends import open_backend
from adapters.itinerary.query import itinerary_of
from adapters.itinerary.sms import local_outbox
from fedbroker.client import Client
from fedbroker.harness import LocalFederation
from fedbroker.html_report import gather, render_report
from fedbroker.itinerary import answer_table, get_itinerary, request_code
from fedbroker.report import format_json, importation_summary, tier_summary
from federation.catalog import agency_query_kinds
from federation.config import FederationConfig, PrivacyPolicy, dump_federation, load_federation
from federation.errors import ConfigError, FederationError, NodeUnavailable
from federation.privacy.ledger import ledger_path
from federation.registry import load_registry
from federation.v1 import broker_pb2

NATIONAL_COORDINATOR = "nhc-national"
DEMO_KINDS = ("importation-risk", "warning")
DEMO_CARRIER = "telecom-a"
#: The demo's world (docs: README "Noise"): one province, so that a district holds about a thousand persons.
DEMO_PROVINCES = (42,)
DEMO_SUBSCRIBERS = 100_000
#: The most zCDP ρ a noisy round spends per data day (trips rounds spend it all), and each agency's budget per
#: day: the demo's queries spend about 16 on a telecom day, 3.3 on a health day.
DEMO_RHO_PER_ROUND = 5.0
DEMO_RHO_PER_DAY = 50.0


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
            if not config.gateways:
                raise ConfigError(f"{roster} predates the carriers' SMS gateways")
            if config.domain.provinces != DEMO_PROVINCES or config.broker.rho_per_round != DEMO_RHO_PER_ROUND:
                raise ConfigError(f"{roster} predates the demo's world (Hubei, rho {DEMO_RHO_PER_ROUND} per round)")
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
    _say(f"generating the demo scenario (Hubei) in {scenario} ...")
    generate_scenario(scenario, provinces=DEMO_PROVINCES, subscribers=subscribers or DEMO_SUBSCRIBERS, force=True)
    demo_privacy(roster)
    _say(f"  generated in {time.perf_counter() - started:.1f} s")
    return roster


def demo_privacy(roster: Path) -> None:
    """Rewrite the generated roster with the demo's privacy: ρ :data:`DEMO_RHO_PER_ROUND` per round and
    :data:`DEMO_RHO_PER_DAY` per agency and day, noise on everywhere."""
    config = load_federation(roster)
    nodes = tuple(
        dataclasses.replace(
            n,
            policy=dataclasses.replace(
                n.policy,
                privacy=dataclasses.replace(n.policy.privacy, noise="discrete-gaussian", rho_per_day=DEMO_RHO_PER_DAY),
            ),
        )
        for n in config.nodes
    )
    broker = dataclasses.replace(config.broker, rho_per_round=DEMO_RHO_PER_ROUND)
    dump_federation(dataclasses.replace(config, nodes=nodes, broker=broker), roster)


def reset_budgets(config: FederationConfig) -> None:
    """Forget every ledger of the demo's scenario (the agencies' and the broker's copy), so that each demo run
    starts with the whole budget: a demonstration re-runs the same days, which a deployment never would."""
    for node in config.nodes:
        ledger_path(node).unlink(missing_ok=True)
    mirror = config.broker.audit_log.parent / "budget"
    for path in mirror.glob("*.jsonl") if mirror.is_dir() else ():
        path.unlink()


def exact_roster(roster: Path) -> Path:
    """A copy of the roster beside it in which every agency adds no noise (``privacy.noise: none``)."""
    config = load_federation(roster)
    nodes = tuple(
        dataclasses.replace(n, policy=dataclasses.replace(n.policy, privacy=PrivacyPolicy(noise="none")))
        for n in config.nodes
    )
    exact = roster.with_name("federation.exact.yaml")
    dump_federation(dataclasses.replace(config, nodes=nodes), exact)
    return exact


def run_demo(workdir: Path, *, fresh: bool = False, subscribers: int | None = None, exact: bool = False) -> int:
    roster = ensure_scenario(workdir, fresh=fresh, subscribers=subscribers)
    if exact:
        roster = exact_roster(roster)
        _say("exact sums: every agency's noise is off for this run (noise: none)")
    else:
        reset_budgets(load_federation(roster))
        _say(
            f"noise on: discrete Gaussian, rho {DEMO_RHO_PER_ROUND:g} per round, each agency's budget reset to "
            f"{DEMO_RHO_PER_DAY:g} per data day for this run (--exact for exact sums)"
        )
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
        # The day's tiers, saved below, are what a carrier would load as its risk list (medium and high).
        itinerary = show_one_itinerary(
            config, risk_list=roster.parent / "reports" / f"warning-{config.data_end.isoformat()}.json"
        )
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
    print(itinerary)
    return 0


def show_one_itinerary(config: FederationConfig, *, risk_list: Path, carrier: str = DEMO_CARRIER) -> str:
    """One subscriber who travelled, asking its carrier for its own itinerary as phone and gateway would: the
    code is read back from the local SMS outbox. Returns the text to print, with how to try it by hand (with
    ``risk_list`` loaded by every carrier, so that cities holding a listed district are starred)."""
    msisdn = _a_traveller(config, carrier)
    if msisdn is None:
        return f"\n(no {carrier} subscriber with a number in this scenario: regenerate it to try the itinerary)"
    outbox = local_outbox(config.ca)
    before = _outbox_size(outbox)
    asyncio.run(request_code(config, carrier, msisdn))
    code = _await_code(outbox, before, msisdn)
    answer = asyncio.run(get_itinerary(config, carrier, msisdn, code))
    roster = config.path.with_name("federation.yaml")
    return "\n".join(
        [
            "",
            f"The consented itinerary service, for one {carrier} subscriber (code read from {outbox}):",
            answer_table(answer),
            "",
            "Try it yourself (a number may ask for 3 codes an hour; a code lasts 5 minutes, once):",
            f"  fedbroker up --federation {roster} --risk-list {risk_list} &",
            f"  fedbroker itinerary request --federation {roster} --carrier {carrier} --msisdn {msisdn}",
            f"  tail -n 1 {outbox}",
            f"  fedbroker itinerary show --federation {roster} --carrier {carrier} --msisdn {msisdn} "
            "--code CODE [--format json]",
        ]
    )


def _a_traveller(config: FederationConfig, carrier: str) -> str | None:
    """The number of a subscriber with at least two cities in its itinerary (the demo's pick): among the first
    subscribers seen in two prefectures in the last week of data, the first whose itinerary, computed by the
    carrier's own statement, lists two; else the first of them."""
    node = config.node(carrier)
    store = open_backend(node.location())
    try:
        candidates = [
            str(number)
            for (number,) in store.rows(
                """
                SELECT subscribers.msisdn
                FROM signalling JOIN cells USING (cell_id) JOIN subscribers USING (subscriber_id)
                WHERE signalling.ts >= (SELECT max(ts) FROM signalling) - INTERVAL '7' DAY
                  AND subscribers.msisdn IS NOT NULL
                GROUP BY subscribers.subscriber_id, subscribers.msisdn
                HAVING count(DISTINCT CAST(floor(cells.district / 100.0) AS INTEGER)) >= 2
                ORDER BY subscribers.subscriber_id
                LIMIT 20
                """
            )
        ]
        policy = node.policy.itinerary
        min_stay = dt.timedelta(hours=policy.min_stay_hours)
        for number in candidates:
            if len(itinerary_of(store, number, window_days=policy.window_days, min_stay=min_stay).cities) >= 2:
                return number
    finally:
        store.close()
    return candidates[0] if candidates else None


def _outbox_size(outbox: Path) -> int:
    return outbox.stat().st_size if outbox.exists() else 0


def _await_code(outbox: Path, after: int, msisdn: str) -> str:
    """The code of the first SMS to ``msisdn`` written past byte ``after``; the carrier sends it just after
    answering, so poll for the line (bounded)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _outbox_size(outbox) > after:
            with outbox.open("rb") as stream:
                stream.seek(after)
                for line in stream.read().decode("utf-8").splitlines():
                    message = json.loads(line)
                    if message.get("to") == msisdn:
                        found = re.search(r"\b([0-9]{6})\b", str(message.get("text", "")))
                        if found:
                            return found.group(1)
        time.sleep(0.05)
    raise NodeUnavailable(f"no SMS reached {outbox} within 30 s")
