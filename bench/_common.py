"""Shared ground of the benchmarks: interleaved timing, medians, the environment header and markdown tables.

Every benchmark measures a figure and its baseline (or limit) in one run, interleaved: repetition r runs every
case once, in an order that rotates with r, so slow drift of a noisy machine (other processes, frequency
scaling, page cache) hits every case alike. Figures are medians; ratios are of medians.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

#: Packages whose versions every benchmark header names (flwr comes from its own venv, see bench.mask);
#: cryptography for the OpenSSL reference keystream in the mask benchmark and the ECDSA identities.
VERSIONED_PACKAGES = ("numpy", "pycryptodome", "cryptography", "grpcio", "duckdb")


CLOCK_ENV = "FEDBROKER_BENCH_CLOCK"
"""``cpu`` makes :func:`interleave` (and the Flower worker) time each call by the calling thread's CPU time
(``time.thread_time``) instead of wall time: on a shared, oversubscribed machine a single-threaded case's CPU
time hardly depends on how often it was descheduled, its wall time does."""


def clock() -> Callable[[], float]:
    """The timer :func:`interleave` uses: ``time.thread_time`` if ``FEDBROKER_BENCH_CLOCK=cpu``, else wall."""
    return time.thread_time if os.environ.get(CLOCK_ENV) == "cpu" else time.perf_counter


def clock_name() -> str:
    return "CPU time of the calling thread" if os.environ.get(CLOCK_ENV) == "cpu" else "wall time"


class SelfTimed(float):
    """Returned by a case that times itself (e.g. in another process): the sample is this value in seconds,
    not the wall time of the call."""


@dataclass
class Samples:
    """Seconds per repetition of one case."""

    name: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def spread(self, divisor: float = 1.0) -> str:
        """min–max of the repetitions (each divided by ``divisor``), for judging the noise."""
        return f"{seconds(min(self.seconds) / divisor)} – {seconds(max(self.seconds) / divisor)}"


def interleave(cases: Mapping[str, Callable[[], object]], repetitions: int, *, warmup: int = 1) -> dict[str, Samples]:
    """Run every case ``warmup`` times untimed, then ``repetitions`` rounds of every case, rotating the order.

    A case that returns :class:`SelfTimed` contributes that figure instead of the time of the call; calls are
    timed by :func:`clock`."""
    timer = clock()
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    samples = {name: Samples(name) for name in names}
    for repetition in range(repetitions):
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            began = timer()
            result = cases[name]()
            elapsed = timer() - began
            samples[name].seconds.append(float(result) if isinstance(result, SelfTimed) else elapsed)
    return samples


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """nproc, the CPU, python and the versions of the packages the figures depend on."""
    info = {
        "nproc": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
    }
    for package in VERSIONED_PACKAGES:
        info[package] = package_version(package)
    info.update(extra or {})
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_header(benchmark: str, argv: Sequence[str], extra: Mapping[str, str] | None = None) -> None:
    """The exact command and the environment, as the first lines of a benchmark's output."""
    command = shlex.join(["python", "-m", "bench", benchmark, *argv])
    if os.environ.get(CLOCK_ENV):
        command = f"{CLOCK_ENV}={os.environ[CLOCK_ENV]} {command}"
    print(f"## {benchmark}\n")
    print(f"command: `{command}`  ")
    print("  ".join(f"{key} {value}" for key, value in environment(extra).items()))
    print(f"timed by: {clock_name()}")
    print()


def print_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A markdown table (pasted as is into BENCHMARKS.md)."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    print(flush=True)


def seconds(value: float) -> str:
    """A duration for a table: ms below one second, s above."""
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}×" if baseline > 0 else "n/a"


def gib_per_s(byte_count: int, duration: float) -> str:
    return f"{byte_count / duration / 2**30:.2f} GiB/s"


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds consumed so far by the processes ``pids`` (all their threads), from
    /proc/PID/stat (resolution 1/CLK_TCK, usually 10 ms)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / tick


def run_python(python: str, args: Sequence[str], *, timeout_s: float = 60.0) -> str:
    """Run another interpreter (e.g. a throwaway venv's) and return its stdout; raise with its stderr."""
    done = subprocess.run([python, *args], capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{python} {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def this_python() -> str:
    return sys.executable
