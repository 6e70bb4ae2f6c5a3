"""``python -m bench memory``: the broker's peak memory during a secure round at n = 8, m = 8,116,801.

The round driver (the REAL :func:`broker.rounds.run_round` over mutual TLS, as in ``python -m bench round``)
runs in its own process, so its figures are the broker side's alone. That process imports everything, opens
its channels and runs one warm-up round of each kind at full size; then, for each repetition, it reads its
idle ``VmRSS`` from /proc/self/status, resets its peak with ``echo 5 > /proc/self/clear_refs``, runs a round
and reads ``VmHWM`` (the peak resident set since the reset). A sampling thread (every 2 ms) also notes in which
stage the resident set peaked. The plaintext federated sum of the same vectors over the same channels is
measured the same way, interleaved, as the baseline: one running sum plus transport buffers.

Target: the secure round's peak stays within three vectors' worth (3 × 8 bytes × m) above idle.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench._common import print_header, print_table
from bench._driver import Driver
from bench._federation import DEFAULT_PROVINCES, NodeProcesses, telecom_ids, write_federation

CONTRIBUTORS = 8
AGGREGATE = "telecom.trips"
TARGET_VECTORS = 3
_MB = 1e6


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    # Writing 5 resets VmHWM to the current RSS (Linux >= 4.0, proc(5) "clear_refs").
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
        clear_refs.write("5")


class _Sampler:
    """Samples VmRSS every ``interval_s`` and remembers the stage in which it was highest."""

    def __init__(self, stage: str = "open", interval_s: float = 0.002) -> None:
        self.stage = stage
        self.peak_kb = 0
        self.peak_stage = ""
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            rss = _status_kb("VmRSS")
            if rss > self.peak_kb:
                self.peak_kb, self.peak_stage = rss, self.stage

    def on_stage(self, completed: str) -> None:
        order = ("open", "share-keys", "masked-input", "consistency", "unmask", "done")
        self.stage = order[min(order.index(completed) + 1, len(order) - 1)]

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _drive(roster: Path, ports: dict[str, int], repetitions: int) -> dict[str, object]:
    """Runs in the driver process; returns its measurements."""
    figures: dict[str, object] = {"rss_after_imports_kb": _status_kb("VmRSS")}
    participants = telecom_ids(CONTRIBUTORS)
    async with Driver(roster, ports) as driver:
        length = driver.length(AGGREGATE)
        figures["cells"] = length
        figures["rss_cold_kb"] = _status_kb("VmRSS")  # channels open, no round yet

        async def secure(sampler: _Sampler) -> None:
            total, _ = await driver.secure_round(participants, AGGREGATE, on_stage=sampler.on_stage)
            del total

        async def plaintext(sampler: _Sampler) -> None:
            sampler.stage = "streaming"
            total = await driver.plaintext_round(participants, length)
            del total

        cases: dict[str, Callable[[_Sampler], object]] = {"secure": secure, "plaintext": plaintext}
        for run in cases.values():  # warm-up at full size: imports, channels, gRPC buffers, thread pools
            with _Sampler() as sampler:
                await run(sampler)  # type: ignore[misc]
        await asyncio.sleep(0.05)
        gc.collect()
        figures["rss_after_warmup_kb"] = _status_kb("VmRSS")
        results: dict[str, list[dict[str, object]]] = {name: [] for name in cases}
        for repetition in range(repetitions):
            names = list(cases) if repetition % 2 == 0 else list(reversed(cases))
            for name in names:
                # Let the loop run the previous round's pending callbacks (they still hold its result
                # vector for an iteration or two), then collect, so idle holds no leftover of that round.
                await asyncio.sleep(0.05)
                gc.collect()
                idle = _status_kb("VmRSS")
                _reset_peak()
                with _Sampler() as sampler:
                    await cases[name](sampler)  # type: ignore[misc]
                peak = _status_kb("VmHWM")
                results[name].append({"idle_kb": idle, "peak_kb": peak, "peak_stage": sampler.peak_stage})
        figures["results"] = results
    return figures


def _driver_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("--federation", type=Path, required=True)
    parser.add_argument("--ports", required=True, help="JSON {node id: port}")
    parser.add_argument("--repetitions", type=int, required=True)
    args = parser.parse_args(argv)
    figures = asyncio.run(_drive(args.federation, json.loads(args.ports), args.repetitions))
    print(json.dumps(figures))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=None, help="measured rounds of each kind (default 5)")
    parser.add_argument("--quick", action="store_true", help="Hubei and neighbours (730 districts): m = 532,900")
    args = parser.parse_args(argv)
    repetitions = args.repetitions or (3 if args.quick else 5)
    provinces = DEFAULT_PROVINCES if args.quick else None
    print_header("memory", argv)
    with tempfile.TemporaryDirectory(prefix="fedbroker-bench-memory-") as scratch:
        roster = write_federation(Path(scratch), CONTRIBUTORS, provinces)
        with NodeProcesses(roster, telecom_ids(CONTRIBUTORS)) as nodes:
            command = [sys.executable, "-m", "bench.memory", "--federation", str(roster)]
            command += ["--ports", json.dumps(nodes.ports), "--repetitions", str(repetitions)]
            began = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
    figures = json.loads(done.stdout)
    cells = int(figures["cells"])
    vector_mb = 8 * cells / _MB
    cold_mb = figures["rss_cold_kb"] * 1000 / _MB

    def mb(kb: float) -> str:
        return f"{kb * 1000 / _MB:.0f} MB ({kb * 1000 / _MB / vector_mb:.2f} vectors)"

    print(f"driver process, n = {CONTRIBUTORS}, m = {cells:,} cells (one vector = {vector_mb:.1f} MB)")
    print(f"RSS after imports {figures['rss_after_imports_kb'] / 1000:.0f} MB; cold idle (channels open, no round)")
    print(f"{cold_mb:.0f} MB; idle after one warm-up round of each kind {figures['rss_after_warmup_kb'] / 1000:.0f} MB")
    print(f"({repetitions} measured rounds of each kind, interleaved, {time.perf_counter() - began:.0f} s in all)\n")
    rows = []
    above: dict[str, float] = {}
    for name, runs in figures["results"].items():
        rises = [r["peak_kb"] - r["idle_kb"] for r in runs]
        above[name] = max(rises) * 1000 / _MB
        rows.append(
            [
                name,
                f"{statistics.median(r['idle_kb'] for r in runs) / 1000:.0f} MB",
                f"{statistics.median(r['peak_kb'] for r in runs) / 1000:.0f} MB",
                mb(statistics.median(rises)),
                mb(max(rises)),
                mb(max(r["peak_kb"] for r in runs) - figures["rss_cold_kb"]),
                ", ".join(sorted({r["peak_stage"] for r in runs})),
            ]
        )
    print_table(
        [
            "round",
            "idle RSS before",
            "peak (VmHWM)",
            "peak − idle, median",
            "peak − idle, max",
            "max peak − cold idle",
            "stage of the peak",
        ],
        rows,
    )
    if args.quick:
        print("(quick: the target is stated for m = 8,116,801; at small m the transport buffers dominate)")
        return 0
    verdict = "met" if above["secure"] <= TARGET_VECTORS * vector_mb else "MISSED"
    print(f"target ≤ {TARGET_VECTORS} vectors ({TARGET_VECTORS * vector_mb:.0f} MB) above idle: ", end="")
    print(f"{above['secure'] / vector_mb:.2f} vectors at most ({verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(_driver_main(sys.argv[1:]))
