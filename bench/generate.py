"""``python -m bench generate``: wall time and peak memory of ``fedbroker scenario generate`` by world size, this
checkout against a baseline checkout, side by side in one run, and whether both wrote the same world.

Each generation runs in its own process (``python -c`` calling ``generate_scenario``), started with the
checkout's directory first on ``sys.path``; its wall time is measured around the process and its peak resident
set is the child's ``ru_maxrss`` from ``os.wait4`` (what ``/usr/bin/time -v`` reports as "Maximum resident set
size"). Per size the baseline and this checkout alternate which goes first. Both must report the same
``content_sha256`` (the hash over every column of every agency): a faster generator that writes another world
is a bug, and the benchmark fails.

Worlds: national (2,849 districts), 28 days, seed 20200101 by default, the scale benchmark's scenarios
(``python -m bench scale`` reuses this checkout's, which are kept in ``--workdir``); the baseline's are
removed after each size. ``--default-world`` instead times the generator's default world (seven provinces,
100,000 persons, 60 days).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench._common import print_header, print_table

SIZES = (100_000, 300_000, 1_000_000)
QUICK_SIZES = (20_000,)
DAYS = 28
SEED = 20200101
THIS_CHECKOUT = Path(__file__).resolve().parent.parent

# Run by the child: generate one world and print its summary as JSON on the last line.
_CHILD = """
import json, sys
from pathlib import Path
from fedbroker.scenario import generate_scenario
out, provinces, persons, days, seed = sys.argv[1], json.loads(sys.argv[2]), *map(int, sys.argv[3:6])
summary = generate_scenario(Path(out), provinces=provinces, subscribers=persons, days=days, seed=seed, force=True)
events = sum(rows.get("signalling", 0) for rows in summary.rows.values())
print(json.dumps({"sha256": summary.content_sha256, "events": events}))
"""


@dataclass(frozen=True)
class Generated:
    """One generation: wall seconds, the child's peak RSS in bytes, its content hash and signalling events."""

    wall_s: float
    peak_rss_bytes: int
    sha256: str
    events: int


def _generate(checkout: Path, out: Path, provinces: list[int] | None, persons: int, days: int, seed: int) -> Generated:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    argv = [sys.executable, "-c", _CHILD, str(out), json.dumps(provinces), str(persons), str(days), str(seed)]
    began = time.perf_counter()
    child = subprocess.Popen(argv, cwd=checkout, env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"generation in {checkout} failed with exit status {child.returncode}")
    summary = json.loads(output.strip().splitlines()[-1])
    return Generated(wall, int(usage.ru_maxrss) * 1024, str(summary["sha256"]), int(summary["events"]))


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="a checkout of the baseline (e.g. `git archive` of main)")
    parser.add_argument("--workdir", type=Path, default=Path("fedbroker-work/bench-scale"), help="worlds here")
    parser.add_argument("--sizes", help="comma-separated persons per world (default 100000,300000,1000000)")
    parser.add_argument("--days", type=int, default=DAYS, help=f"days per world (default {DAYS})")
    parser.add_argument("--default-world", action="store_true", help="the generator's default world instead")
    parser.add_argument("--quick", action="store_true", help="one small national world (20,000 persons)")
    args = parser.parse_args(argv)
    worlds: list[tuple[str, list[int] | None, int, int]]
    if args.default_world:
        from fedbroker.scenario.write import DEFAULT_PROVINCES

        worlds = [("default", list(DEFAULT_PROVINCES), 100_000, 60)]
    else:
        sizes = QUICK_SIZES if args.quick else tuple(int(s) for s in args.sizes.split(",")) if args.sizes else SIZES
        worlds = [(f"national-{persons}", None, persons, args.days) for persons in sizes]
    checkouts = {"this checkout": THIS_CHECKOUT}
    if args.baseline is not None:
        checkouts = {"baseline": args.baseline.resolve(), **checkouts}
    print_header("generate", argv, {"baseline": str(args.baseline) if args.baseline else "none"})
    print(f"uptime before: {_uptime()}\n", flush=True)

    rows = []
    failed = False
    for index, (name, provinces, persons, days) in enumerate(worlds):
        order = list(checkouts)
        if index % 2:
            order.reverse()
        figures: dict[str, Generated] = {}
        for label in order:
            out = args.workdir.resolve() / (name if label == "this checkout" else f"baseline-{name}")
            figures[label] = _generate(checkouts[label], out, provinces, persons, days, SEED)
            print(f"  {name} {label}: {figures[label]}  (uptime {_uptime()})", flush=True)
            if label != "this checkout":
                shutil.rmtree(out, ignore_errors=True)
        same = len({f.sha256 for f in figures.values()}) == 1
        failed |= not same
        for label in checkouts:
            generated = figures[label]
            rows.append(
                [
                    f"{persons:,}",
                    f"{generated.events:,}",
                    label,
                    f"{generated.wall_s:.1f} s",
                    f"{generated.peak_rss_bytes / 2**30:.2f} GiB",
                    generated.sha256[:16] + ("" if same else " (DIFFERS)"),
                ]
            )
    print(f"\nuptime after: {_uptime()}\n")
    print_table(["persons", "signalling events", "generator", "wall", "peak RSS", "content_sha256"], rows)
    if failed:
        print("the checkouts wrote different worlds for the same seed", file=sys.stderr)
        return 1
    return 0
