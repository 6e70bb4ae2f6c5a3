"""``python -m bench e2e``: end-to-end importation-risk latency as the coordinator sees it, and how it grows
with the number of districts.

For each domain a synthetic scenario is generated (``fedbroker.scenario.generate_scenario``, 100,000 persons,
28 days, seed 20200101; reused when already there) and its whole federation is started with
:class:`fedbroker.harness.LocalFederation` (broker and eight adapters, each its own process, mutual TLS on
loopback). All federations stay up together, and the queries are interleaved across them: repetition r asks
each domain once, in an order that rotates with r. A query is ``importation-risk`` for the data's last 14 days,
signed and sent by :func:`broker.client.run_query` as the national coordinator; its latency is from signing
to the released answer (three rounds in parallel: telecom OD, telecom residents, health confirmed cases, then
the join and disclosure control). Domains:

- ≈500 districts: provinces 34, 36, 41, 42, 50 (Anhui, Jiangxi, Henan, Hubei, Chongqing): 501 districts;
- default: Hubei and its six neighbours (34, 36, 41, 42, 43, 50, 61): 730 districts;
- ≈1,000: the default plus 51 and 52 (Sichuan, Guizhou): 1,001 districts;
- national (``--national`` scenario): 2,849 districts, OD vector 8,116,801 cells.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench._common import Samples, interleave, print_header, print_table, seconds
from broker.client import run_query
from fedbroker.harness import LocalFederation
from federation.catalog import new_query
from federation.config import FederationConfig, load_federation
from federation.errors import FederationError
from federation.v1 import broker_pb2

COORDINATOR = "nhc-national"
SUBSCRIBERS = 100_000
QUICK_SUBSCRIBERS = 20_000
DAYS = 28
SEED = 20200101


@dataclass(frozen=True)
class Domain:
    label: str
    provinces: tuple[int, ...] | None


DOMAINS = (
    Domain("≈500", (34, 36, 41, 42, 50)),
    Domain("default", (34, 36, 41, 42, 43, 50, 61)),
    Domain("≈1,000", (34, 36, 41, 42, 43, 50, 51, 52, 61)),
    Domain("national", None),
)
QUICK_DOMAINS = DOMAINS[:2]


@dataclass
class _Rounds:
    """Per query: seconds from sending it to each (round, stage) progress event, and to the answer."""

    marks: list[dict[tuple[str, str], float]] = field(default_factory=list)


def _scenario(workdir: Path, domain: Domain, subscribers: int) -> tuple[Path, int, float]:
    """The domain's federation.yaml (generated unless the same scenario is there), its districts, and the
    seconds spent generating (0 when reused)."""
    from fedbroker.scenario import generate_scenario

    name = "national" if domain.provinces is None else "provinces-" + "-".join(map(str, domain.provinces))
    out = workdir / f"{name}-{subscribers}"
    manifest = out / "scenario.json"
    wanted = {
        "provinces": "all" if domain.provinces is None else list(domain.provinces),
        "subscribers": subscribers,
        "days": DAYS,
        "seed": SEED,
    }
    with contextlib.suppress(OSError, ValueError, KeyError, FederationError):
        found = json.loads(manifest.read_text(encoding="utf-8"))
        if {key: found["params"][key] for key in wanted} == wanted:
            load_federation(out / "federation.yaml")
            return out / "federation.yaml", int(found["districts"]), 0.0
    began = time.perf_counter()
    summary = generate_scenario(
        out, provinces=domain.provinces, subscribers=subscribers, days=DAYS, seed=SEED, force=True
    )
    return summary.federation, summary.districts, time.perf_counter() - began


def _query_case(config: FederationConfig, rounds: _Rounds) -> Callable[[], object]:
    def run() -> None:
        query = new_query("importation-risk", start=None, end=config.data_end, params={}, coordinator=COORDINATOR)
        began = time.perf_counter()
        marks: dict[tuple[str, str], float] = {}

        def progress(event: broker_pb2.Progress) -> None:
            marks[event.round, event.stage] = time.perf_counter() - began

        answer = asyncio.run(run_query(config, COORDINATOR, query, on_progress=progress))
        marks["", "answer"] = time.perf_counter() - began
        if not answer.rows:
            raise AssertionError("the importation-risk query released no rows")
        rounds.marks.append(marks)

    return run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("fedbroker-work/bench-e2e"), help="scenarios live here")
    parser.add_argument("--repetitions", type=int, default=None, help="queries per domain (default 5)")
    parser.add_argument("--quick", action="store_true", help="≈500 and default domains, 20,000 persons, 3 queries")
    args = parser.parse_args(argv)
    domains = QUICK_DOMAINS if args.quick else DOMAINS
    subscribers = QUICK_SUBSCRIBERS if args.quick else SUBSCRIBERS
    repetitions = args.repetitions or (3 if args.quick else 5)
    print_header("e2e", argv)

    rosters = {}
    for domain in domains:
        roster, districts, generated = _scenario(args.workdir, domain, subscribers)
        rosters[domain.label] = (roster, districts)
        note = f"generated in {generated:.0f} s" if generated else "reused"
        print(
            f"  {domain.label}: {districts:,} districts, {subscribers:,} persons, {roster.parent} ({note})", flush=True
        )

    rounds = {domain.label: _Rounds() for domain in domains}
    with contextlib.ExitStack() as stack:
        cases: dict[str, Callable[[], object]] = {}
        for domain in domains:
            started = time.perf_counter()
            federation = LocalFederation(rosters[domain.label][0])
            federation.start()
            stack.callback(federation.stop)
            print(f"  {domain.label}: federation up in {time.perf_counter() - started:.1f} s", flush=True)
            cases[domain.label] = _query_case(federation.config, rounds[domain.label])
        samples: dict[str, Samples] = interleave(cases, repetitions)

    print(f"\nimportation-risk, last 14 days, median of {repetitions} queries per domain, interleaved\n")
    rows, stage_rows = [], []
    for domain in domains:
        label = domain.label
        districts = rosters[label][1]
        timed = rounds[label].marks[-repetitions:]  # drop the warm-up query

        def at(round_name: str, stage: str, timed: list[dict[tuple[str, str], float]] = timed) -> float:
            return statistics.median(marks[round_name, stage] for marks in timed)

        rows.append(
            [
                label,
                "all" if domain.provinces is None else ",".join(map(str, domain.provinces)),
                f"{districts:,}",
                f"{districts * districts:,}",
                seconds(samples[label].median),
                samples[label].spread(),
                " / ".join(seconds(at(name, "unmask")) for name in ("trips", "residents", "confirmed")),
            ]
        )
        last_unmask = statistics.median(
            marks["", "answer"] - max(marks[name, "unmask"] for name in ("trips", "residents", "confirmed"))
            for marks in timed
        )
        stage_rows.append(
            [
                label,
                f"{districts:,}",
                seconds(at("trips", "open") - at("", "plan")),
                seconds(at("trips", "masked-input") - at("trips", "open")),
                seconds(at("trips", "unmask") - at("trips", "masked-input")),
                seconds(last_unmask),
            ]
        )
    print_table(
        [
            "domain",
            "provinces",
            "districts",
            "OD cells",
            "latency (median)",
            "min – max",
            "rounds done at: trips / residents / confirmed",
        ],
        rows,
    )
    print("where the time goes: the OD round (telecom trips, 3 carriers) and the release, medians\n")
    print_table(
        [
            "domain",
            "districts",
            "trips Open (policy + DuckDB aggregate + keys)",
            "share-keys + masked-input",
            "consistency + unmask",
            "join, disclosure, answer after the last unmask",
        ],
        stage_rows,
    )
    return 0
