"""``python -m bench round``: a whole secure round over gRPC with mutual TLS on loopback, against a plaintext
federated sum of the same vectors over the same transport and chunking.

n node processes on 127.0.0.1 port 0 (bench PKI and roster, see :mod:`bench._federation`) serve the REAL
adapter service with a seeded vector source (DuckDB excluded from both sides), driven by the REAL
:func:`broker.rounds.run_round`; the plaintext baseline streams the same vectors as the same 2 MiB
``MaskedInputChunk`` messages over the same mTLS channels and adds them into one running sum. Policy is not
bypassed: every secure round is a freshly signed query whose round has the measured length on the domain
(national: ``flows`` → telecom.trips, 2849² = 8,116,801 cells; ``importation-risk`` → telecom.residents,
2,849 cells). Pairs are interleaved (secure, plaintext, then plaintext, secure, ...), medians of the
repetitions, and every secure sum is checked against the plaintext sum.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench._common import Samples, cpu_seconds, print_header, print_table, ratio, seconds
from bench._driver import STAGES, Driver
from bench._federation import DEFAULT_PROVINCES, NodeProcesses, synthetic_vector, telecom_ids, write_federation
from federation.secagg import apply_masks

CONTRIBUTORS = (3, 8)
AGGREGATES = ("telecom.residents", "telecom.trips")
TARGET_RATIO = 1.5


def _province_list(text: str) -> tuple[int, ...] | None:
    return None if text == "all" else tuple(int(p) for p in text.split(","))


async def interleave_async(
    cases: dict[str, Callable[[], Awaitable[object]]], repetitions: int, warmup: int = 1
) -> dict[str, Samples]:
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            await cases[name]()
    samples = {name: Samples(name) for name in names}
    for repetition in range(repetitions):
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            began = time.perf_counter()
            await cases[name]()
            samples[name].seconds.append(time.perf_counter() - began)
    return samples


def _floor_row(n: int, length: int, cpu_plain: float, cpu_secure: float) -> list[object]:
    """The secure round's extra work, timed alone: every adapter adds n masks (n − 1 pairwise + its self mask);
    the broker removes n self masks. (There is no payload digest: the stream is closed by its length.)"""
    vector = np.zeros(length, dtype=np.uint64)
    masks = [(bytes([i]) * 16, 1) for i in range(8)]
    mask_s = min(_timed(lambda: apply_masks(vector, masks)) for _ in range(3)) / len(masks)
    masks_cpu = (n * n + n) * mask_s
    floor = (cpu_plain + masks_cpu) / cpu_plain
    return [
        n,
        f"{length:,}",
        f"{masks_cpu:.2f} s",
        f"{cpu_plain:.2f} s",
        f"{floor:.2f}×",
        ratio(cpu_secure, cpu_plain),
    ]


def _timed(run: Callable[[], object]) -> float:
    """CPU seconds of this thread for ``run`` (the floor is CPU work; wall time would count the other
    processes sharing the cores)."""
    began = time.thread_time()
    run()
    return time.thread_time() - began


def _own_cpu() -> tuple[float, float]:
    """(CPU seconds of this process, all threads; CPU seconds of the calling thread), µs resolution."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, time.thread_time()


@dataclass
class _Accounting:
    """Per-repetition CPU seconds of every process (driver + nodes), of the broker (the driver process: all
    its threads, and its event-loop thread alone) and per-stage wall seconds."""

    cpu: dict[str, list[float]] = field(default_factory=lambda: {"secure": [], "plaintext": []})
    broker_cpu: dict[str, list[float]] = field(default_factory=lambda: {"secure": [], "plaintext": []})
    broker_loop_cpu: dict[str, list[float]] = field(default_factory=lambda: {"secure": [], "plaintext": []})
    stages: list[dict[str, float]] = field(default_factory=list)

    def broker(self, kind: str, before: tuple[float, float]) -> None:
        after = _own_cpu()
        self.broker_cpu[kind].append(after[0] - before[0])
        self.broker_loop_cpu[kind].append(after[1] - before[1])


async def _one_size(
    driver: Driver, pids: list[int], aggregate: str, n: int, repetitions: int
) -> tuple[dict[str, Samples], _Accounting]:
    participants = telecom_ids(n)
    length = driver.length(aggregate)
    expected = np.zeros(length, dtype=np.uint64)
    for node_id in participants:
        expected += synthetic_vector(node_id, length)
    accounting = _Accounting()

    async def secure() -> None:
        before, own = cpu_seconds(pids), _own_cpu()
        total, stages = await driver.secure_round(participants, aggregate)
        accounting.broker("secure", own)
        accounting.cpu["secure"].append(cpu_seconds(pids) - before)
        accounting.stages.append(stages)
        if not np.array_equal(total, expected):
            raise AssertionError("the secure round did not release the exact sum")

    async def plaintext() -> None:
        before, own = cpu_seconds(pids), _own_cpu()
        total = await driver.plaintext_round(participants, length)
        accounting.broker("plaintext", own)
        accounting.cpu["plaintext"].append(cpu_seconds(pids) - before)
        if not np.array_equal(total, expected):
            raise AssertionError("the plaintext sum is wrong")

    samples = await interleave_async({"secure": secure, "plaintext": plaintext}, repetitions)
    for series in (accounting.cpu, accounting.broker_cpu, accounting.broker_loop_cpu):
        for key in series:
            series[key] = series[key][-repetitions:]  # drop the warm-up
    accounting.stages = accounting.stages[-repetitions:]
    return samples, accounting


async def measure(roster: Path, nodes: NodeProcesses, repetitions: int, aggregates: tuple[str, ...]) -> None:
    pids = [os.getpid(), *nodes.pids().values()]
    async with Driver(roster, nodes.ports) as driver:
        print(f"domain: {len(driver.registry):,} districts\n", flush=True)
        rows, cpu_rows, stage_rows, floor_rows, broker_rows = [], [], [], [], []
        for aggregate in aggregates:
            length = driver.length(aggregate)
            for n in CONTRIBUTORS:
                samples, accounting = await _one_size(driver, pids, aggregate, n, repetitions)
                secure_s, plain_s = samples["secure"], samples["plaintext"]
                size = f"{length:,} ({aggregate})"
                rows.append(
                    [
                        n,
                        size,
                        seconds(secure_s.median),
                        seconds(plain_s.median),
                        ratio(secure_s.median, plain_s.median),
                        f"{secure_s.spread()} / {plain_s.spread()}",
                    ]
                )
                cpu_secure = statistics.median(accounting.cpu["secure"])
                cpu_plain = statistics.median(accounting.cpu["plaintext"])
                # /proc counts CPU in 10 ms ticks per process: below ~0.1 s in all the figure is noise.
                cpu_ratio = ratio(cpu_secure, cpu_plain) if cpu_plain >= 0.1 else "(too small to count)"
                cpu_rows.append([n, size, f"{cpu_secure:.2f} s", f"{cpu_plain:.2f} s", cpu_ratio])
                broker_cpu = {k: statistics.median(v) for k, v in accounting.broker_cpu.items()}
                loop_cpu = {k: statistics.median(v) for k, v in accounting.broker_loop_cpu.items()}
                broker_rows.append(
                    [
                        n,
                        size,
                        seconds(broker_cpu["secure"]),
                        seconds(broker_cpu["plaintext"]),
                        ratio(broker_cpu["secure"], broker_cpu["plaintext"]),
                        seconds(loop_cpu["secure"]),
                        seconds(loop_cpu["plaintext"]),
                        ratio(loop_cpu["secure"], loop_cpu["plaintext"]),
                    ]
                )
                if aggregate == AGGREGATES[-1]:
                    floor_rows.append(_floor_row(n, length, cpu_plain, cpu_secure))
                stage_rows.append(
                    [n, f"{length:,}", *(seconds(statistics.median(t[s] for t in accounting.stages)) for s in STAGES)]
                )
        print(f"median of {repetitions} interleaved pairs (wall time of the whole round, as the broker sees it)\n")
        print_table(["n", "m (cells)", "secure", "plaintext", "secure / plaintext", "min – max (secure / plain)"], rows)
        print(f"CPU seconds per round, all {len(pids)} processes (driver + every node), median\n")
        print_table(["n", "m (cells)", "secure CPU", "plaintext CPU", "ratio"], cpu_rows)
        print("the broker's own work per round, median: CPU of the driver process (all threads: event loop, gRPC,")
        print("the unmask thread), and of its event-loop thread alone; the adapters' work is in other processes\n")
        print_table(
            [
                "n",
                "m (cells)",
                "broker CPU secure",
                "broker CPU plaintext",
                "ratio",
                "event loop secure",
                "event loop plaintext",
                "ratio",
            ],
            broker_rows,
        )
        print("secure round by stage (median wall time between the driver's progress callbacks)\n")
        print_table(["n", "m", *STAGES], stage_rows)
        print("CPU floor of the secure round: the plaintext round's CPU plus the work only secure aggregation does,")
        print("timed alone in this process (n² + n masks of keystream + add over m cells)\n")
        print_table(
            ["n", "m", "masks (n² + n)", "plaintext CPU", "floor CPU ratio", "measured CPU ratio"],
            floor_rows,
        )
        large = [r for r in rows if r[0] == max(CONTRIBUTORS) and "trips" in str(r[1])]
        if large:
            print(
                f"target secure / plaintext ≤ {TARGET_RATIO}× at the largest m, n = {max(CONTRIBUTORS)}: {large[0][4]}"
            )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench round", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--provinces",
        default=None,
        help="domain: 'all' (national, default) or province codes like 42,43 (quick: the default scenario's)",
    )
    parser.add_argument("--repetitions", type=int, default=None, help="timed pairs per size (default 5, quick 3)")
    parser.add_argument("--quick", action="store_true", help="Hubei and neighbours (730 districts), 3 repetitions")
    parser.add_argument("--workdir", type=Path, help="where to write the bench PKI and roster (default: a temp dir)")
    parser.add_argument(
        "--aggregate", action="append", choices=AGGREGATES, help="measure only this round size (repeatable)"
    )
    parser.add_argument(
        "--audit-fsync",
        choices=("release", "every"),
        default="release",
        help="adapters fsync audit records where something leaves the node (the product) or every record (before)",
    )
    args = parser.parse_args(argv)
    default_domain = ",".join(map(str, DEFAULT_PROVINCES)) if args.quick else "all"
    provinces = _province_list(args.provinces or default_domain)
    repetitions = args.repetitions or (3 if args.quick else 5)
    print_header("round", argv)
    with tempfile.TemporaryDirectory(prefix="fedbroker-bench-round-") as scratch:
        workdir = args.workdir or Path(scratch)
        roster = write_federation(workdir, max(CONTRIBUTORS), provinces)
        node_args = ("--audit-fsync", args.audit_fsync)
        with NodeProcesses(roster, telecom_ids(max(CONTRIBUTORS)), node_args) as nodes:
            asyncio.run(measure(roster, nodes, repetitions, tuple(args.aggregate or AGGREGATES)))
    return 0
