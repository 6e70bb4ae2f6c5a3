"""``python -m bench scale``: how the telecom trips aggregate and the national importation-risk query grow with
the number of signalling events: raw scans vs daily partials vs Spark local.

For each size a national scenario is generated (``fedbroker.scenario.generate_scenario``, all 2,849 districts,
28 days, seed 20200101; reused when already there): 100,000 / 300,000 / 1,000,000 persons give about 11 M /
34 M / 112 M signalling events over the three carriers. Then, per size:

- **partials**: ``fedbroker store refresh`` on every agency store (timed once: the cost of keeping them);
- **trips aggregate** (``telecom.trips``, national domain, the data's last 14 days) on carrier telecom-a,
  interleaved: raw DuckDB scan (``use_partials=False``), DuckDB partials, and Spark local (``local[2]``) over a
  Parquet copy of the same store (``fedbroker store copy``), raw scan;
- **national importation-risk** through two :class:`fedbroker.harness.LocalFederation` over the same stores (each
  node its own process, mutual TLS on loopback), one with ``FEDBROKER_PARTIALS=off`` (raw scans), one on the
  partials, queries interleaved.

``uptime`` is printed before and after: the machine is shared, and the load changes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from adapters.aggregates import AggregateRequest, compute_aggregate
from adapters.backends import Store, open_backend
from adapters.partials import fresh, refresh
from adapters.service import PARTIALS_ENV
from adapters.store_copy import copy_store
from bench._common import Samples, interleave, print_header, print_table, seconds
from broker.client import run_query
from fedbroker.harness import LocalFederation
from federation.catalog import new_query
from federation.config import FederationConfig, PrivacyPolicy, dump_federation, load_federation
from federation.errors import FederationError
from federation.registry import load_registry
from federation.stores import StoreLocation
from federation.v1 import broker_pb2

COORDINATOR = "nhc-national"
SIZES = (100_000, 300_000, 1_000_000)
QUICK_SIZES = (20_000,)
DAYS = 28
SEED = 20200101
CARRIER = "telecom-a"


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _scenario(workdir: Path, persons: int) -> tuple[Path, float]:
    from fedbroker.scenario import generate_scenario

    out = workdir / f"national-{persons}"
    wanted = {"provinces": "all", "subscribers": persons, "days": DAYS, "seed": SEED}
    with contextlib.suppress(OSError, ValueError, KeyError, FederationError):
        found = json.loads((out / "scenario.json").read_text(encoding="utf-8"))
        if {key: found["params"][key] for key in wanted} == wanted:
            load_federation(out / "federation.yaml")
            return out / "federation.yaml", 0.0
    began = time.perf_counter()
    generate_scenario(out, provinces=None, subscribers=persons, days=DAYS, seed=SEED, force=True)
    return out / "federation.yaml", time.perf_counter() - began


@contextlib.contextmanager
def _opened(location: StoreLocation) -> Iterator[Store]:
    store = open_backend(location, read_only=False)
    try:
        yield store
    finally:
        store.close()


def _events(config: FederationConfig) -> int:
    total = 0
    for node in config.nodes_of_kind("telecom"):
        with _opened(node.location()) as store:
            ((count,),) = store.rows("SELECT count(*) FROM signalling")
            total += int(count)
    return total


def _refresh_all(config: FederationConfig) -> float:
    """Refresh every store whose partials are not fresh; seconds spent (0 when all were fresh)."""
    spent = 0.0
    for node in config.nodes:
        with _opened(node.location()) as store:
            aggregates = {"telecom": "telecom.trips", "health": "health.cases", "transport": "transport.trips"}
            if fresh(store, aggregates[node.kind]):
                continue
            began = time.perf_counter()
            refresh(store, node.kind)
            spent += time.perf_counter() - began
    return spent


def _variant(config: FederationConfig, folder: Path, *, exact: bool = False) -> Path:
    """The same federation in its own directory (its own runtime roster and run dir), over the same stores, with
    deadlines long enough for a raw scan of a hundred million events on a shared machine; ``exact``: every
    agency's noise off (``privacy.noise: none``, as ``fedbroker demo`` runs by default)."""
    target = folder / "federation.yaml"
    broker = dataclasses.replace(config.broker, round_timeout_s=1800.0, stage_timeout_s=1200.0)
    nodes = config.nodes
    if exact:
        nodes = tuple(
            dataclasses.replace(n, policy=dataclasses.replace(n.policy, privacy=PrivacyPolicy(noise="none")))
            for n in config.nodes
        )
    dump_federation(dataclasses.replace(config, broker=broker, nodes=nodes), target)
    return target


@dataclass(frozen=True)
class QuerySplit:
    """Where one query's wall time went, from the broker's progress events as the coordinator receives them
    (seconds after the call): ``opened`` when the last round's Open stage answered (every agency has
    approved the query and computed its aggregate vector: the store's part), ``summed`` when the last
    round's sum was recovered (ShareKeys, MaskedInput, Consistency, Unmask: the secure aggregation), and
    ``total`` when the released answer arrived (join and disclosure control after that)."""

    opened: float
    summed: float
    total: float


def _query(config: FederationConfig, splits: list[QuerySplit] | None = None) -> Callable[[], object]:
    def run() -> None:
        query = new_query("importation-risk", start=None, end=config.data_end, params={}, coordinator=COORDINATOR)
        marks: dict[str, float] = {}
        began = time.perf_counter()

        def note(event: broker_pb2.Progress) -> None:
            if event.stage in ("open", "unmask"):
                marks[event.stage] = time.perf_counter() - began  # the last round's mark wins

        answer = asyncio.run(run_query(config, COORDINATOR, query, on_progress=note))
        total = time.perf_counter() - began
        if not answer.rows:
            raise AssertionError("the importation-risk query released no rows")
        if splits is not None:
            splits.append(QuerySplit(marks["open"], marks["unmask"], total))

    return run


def _trips_request(config: FederationConfig) -> AggregateRequest:
    end = config.data_end
    return AggregateRequest("telecom.trips", load_registry(None).codes, end - dt.timedelta(days=13), end, {})


def _trips_cases(config: FederationConfig) -> tuple[dict[str, Callable[[], object]], contextlib.ExitStack]:
    request = _trips_request(config)
    stack = contextlib.ExitStack()
    duck = stack.enter_context(_opened(config.node(CARRIER).location()))
    cases: dict[str, Callable[[], object]] = {
        "raw DuckDB": lambda: compute_aggregate(duck, request, use_partials=False),
        "partials DuckDB": lambda: compute_aggregate(duck, request),
        # The two parts of the partials path: the freshness check (fingerprints of the raw tables), then the sum.
        "of which freshness": lambda: fresh(duck, request.name),
    }
    return cases, stack


def _spark_trips(config: FederationConfig, spark_tables: Path) -> tuple[float, float, float]:
    """Trips on Spark local[2] after the session and its views are up: seconds of one raw scan, of building the
    partials (0 when fresh) and of one answer from them after one untimed warm-up."""
    request = _trips_request(config)
    location = StoreLocation("spark", spark_master="local[2]", spark_tables=str(spark_tables))
    with _opened(location) as spark:
        spark.rows("SELECT count(*) FROM cells")  # starts the session and registers the views, untimed
        began = time.perf_counter()
        compute_aggregate(spark, request, use_partials=False)
        raw_s = time.perf_counter() - began
        refreshed = 0.0
        if not fresh(spark, request.name):
            began = time.perf_counter()
            refresh(spark, "telecom")
            refreshed = time.perf_counter() - began
        compute_aggregate(spark, request)
        began = time.perf_counter()
        compute_aggregate(spark, request)
        return raw_s, refreshed, time.perf_counter() - began


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("fedbroker-work/bench-scale"), help="scenarios here")
    parser.add_argument("--sizes", help="comma-separated persons per scenario (default 100000,300000,1000000)")
    parser.add_argument("--repetitions", type=int, default=3, help="timed runs per case (default 3)")
    parser.add_argument("--no-spark", action="store_true", help="leave out the Spark lines")
    parser.add_argument(
        "--spark-max-persons",
        type=int,
        default=SIZES[-1],
        help="run the Spark lines only up to this size (minutes per size on two cores; default: every size)",
    )
    parser.add_argument("--quick", action="store_true", help="one small scenario (20,000 persons), 2 repetitions")
    parser.add_argument(
        "--no-federation", action="store_true", help="leave out the importation-risk query (the store side only)"
    )
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else tuple(int(s) for s in args.sizes.split(",")) if args.sizes else SIZES
    repetitions = 2 if args.quick else args.repetitions
    print_header("scale", argv)
    print(f"uptime before: {_uptime()}\n", flush=True)

    trip_rows, risk_rows, cost_rows = [], [], []
    for persons in sizes:
        roster, generated = _scenario(args.workdir, persons)
        config = load_federation(roster)
        events = _events(config)
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        refreshed = _refresh_all(config)
        spark_tables = None
        copied = 0.0
        if not args.no_spark and persons <= args.spark_max_persons:
            spark_tables = roster.parent / "spark" / CARRIER
            if not spark_tables.is_dir():
                began = time.perf_counter()
                target = StoreLocation("spark", spark_master="local[2]", spark_tables=str(spark_tables))
                copy_store(config.node(CARRIER).location(), target)
                copied = time.perf_counter() - began
        print(
            f"  {persons:,} persons: {events:,} events; generated in {generated:.0f} s (0: reused), bench peak RSS "
            f"{peak_gib:.1f} GiB; partials refreshed in {refreshed:.1f} s; Parquet copy {copied:.1f} s",
            flush=True,
        )
        cost_rows.append([f"{persons:,}", f"{events:,}", f"{generated:.0f} s", f"{refreshed:.1f} s", f"{copied:.1f} s"])

        cases, opened = _trips_cases(config)
        with opened:
            trips: dict[str, Samples] = interleave(cases, repetitions)
        # Spark's raw scan of tens of millions of events takes minutes here: one timed run per size, after warm-up.
        spark_figures = ["—", "—"]
        if spark_tables is not None:
            raw_s, spark_refresh, spark_partials = _spark_trips(config, spark_tables)
            spark_figures = [seconds(raw_s) + " (1 run)", seconds(spark_partials) + " (1 run)"]
            cost_rows[-1].append(f"{spark_refresh:.1f} s")
        elif not args.no_spark:
            cost_rows[-1].append("—")
        trip_rows.append(
            [f"{events:,}", *(f"{seconds(s.median)} ({s.spread()})" for s in trips.values()), *spark_figures]
        )
        trip_columns = [*trips, "Spark local[2] raw", "Spark local[2] partials"]
        with _opened(config.node(CARRIER).location()) as store:
            (partial_rows,) = store.rows("SELECT count(*) FROM partial_telecom_trips")
        trip_rows[-1].append(f"{int(partial_rows[0]):,}")

        if args.no_federation:
            continue
        splits: dict[str, list[QuerySplit]] = {"partials": [], "partials, noise off": []}
        with contextlib.ExitStack() as stack:
            federations: dict[str, Callable[[], object]] = {}
            variants = (("raw scans", "off", False), ("partials", "on", False), ("partials, noise off", "on", True))
            for label, setting, exact in variants:
                folder = roster.parent / f"bench-{setting}{'-exact' if exact else ''}"
                folder.mkdir(exist_ok=True)
                previous = os.environ.get(PARTIALS_ENV)
                os.environ[PARTIALS_ENV] = setting
                try:
                    federation = LocalFederation(_variant(config, folder, exact=exact), run_dir=folder / "run")
                    federation.start()
                finally:
                    if previous is None:
                        os.environ.pop(PARTIALS_ENV, None)
                    else:
                        os.environ[PARTIALS_ENV] = previous
                stack.callback(federation.stop)
                federations[label] = _query(federation.config, splits.get(label))
            risk: dict[str, Samples] = interleave(federations, repetitions)
        row = [f"{events:,}", *(f"{seconds(s.median)} ({s.spread()})" for s in risk.values())]
        for samples in splits.values():
            del samples[:-repetitions]  # the warm-up's split is not a sample
            row.append(
                " / ".join(
                    seconds(statistics.median(part))
                    for part in (
                        [q.opened for q in samples],
                        [q.summed - q.opened for q in samples],
                        [q.total - q.summed for q in samples],
                    )
                )
            )
        risk_rows.append(row)

    print(f"\nuptime after: {_uptime()}\n")
    print("cost of each size\n")
    print_table(
        ["persons", "signalling events", "generation", "partials refresh (all stores)", "Parquet copy"]
        + ([] if args.no_spark else ["Spark partials refresh (telecom-a)"]),
        cost_rows,
    )
    print(f"telecom.trips on {CARRIER}, national domain, last 14 days: median (min – max) of {repetitions}\n")
    print_table(["events (3 carriers)", *trip_columns, "partial_telecom_trips rows"], trip_rows)
    if risk_rows:
        print(f"national importation-risk through the federation: median (min – max) of {repetitions}\n")
        print(
            "split of each partials line (medians): Open (approval, the stores' aggregates and each agency's noise) "
            "until the last round opened / the secure aggregation until the last sum / join and release\n"
        )
        print_table(
            [
                "events (3 carriers)",
                "raw scans",
                "partials",
                "partials, noise off",
                "partials: Open / secure rounds / release",
                "noise off: Open / secure rounds / release",
            ],
            risk_rows,
        )
    return 0
