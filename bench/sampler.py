"""``python -m bench sampler``: the exact discrete Gaussian noise one agency adds to one contribution, the
sampler before session 21 against this checkout's, side by side in one run.

Each case noises an m-cell uint64 vector (default m = 8,116,801, the national OD vector) with N_Z(0, σ²) per
cell the way an adapter does at Open: **after** = :func:`federation.privacy.release.add_noise` (this checkout's
:func:`federation.privacy.sampler.discrete_gaussian`, blocks of ``NOISE_BLOCK_CELLS``), **before** = the same
blocks through :func:`federation.privacy.cks.discrete_gaussian_cks` (the session-20 sampler, moved there
unchanged, where it remains the fallback for σ² too wide for the inversion tables). Interleaved repetitions,
medians (see ``bench/_common.py``). An untimed pass per case counts the CSPRNG bytes drawn per cell and checks
the samples' variance against the exact pmf's, so a fast sampler that drew the wrong distribution shows.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from types import ModuleType

import numpy as np
import numpy.typing as npt

from bench._common import interleave, print_header, print_table, ratio, seconds
from federation.privacy import cks, sampler
from federation.privacy.release import NOISE_BLOCK_CELLS, add_noise

DEFAULT_CELLS = 8_116_801
QUICK_CELLS = 200_000
DEFAULT_SIGMA2 = "1,3,30"

Vector = npt.NDArray[np.uint64]


def _baseline_add_noise(vector: Vector, party_variance: Fraction) -> None:
    """``add_noise`` as it is, with the baseline sampler."""
    for start in range(0, vector.size, NOISE_BLOCK_CELLS):
        block = vector[start : start + NOISE_BLOCK_CELLS]
        noise = cks.discrete_gaussian_cks(block.size, party_variance)
        np.add(block, noise.view(np.uint64), out=block)


#: case name -> (the noising function, the module whose ``secrets`` it draws from)
CASES: dict[str, tuple[Callable[[Vector, Fraction], None], ModuleType]] = {
    "before": (_baseline_add_noise, cks),
    "after": (add_noise, sampler),
}


class _CountingSecrets:
    """Stands in for the ``secrets`` module inside one sampler module, counting the bytes drawn."""

    def __init__(self) -> None:
        self.drawn = 0

    def token_bytes(self, count: int) -> bytes:
        self.drawn += count
        return secrets.token_bytes(count)

    @staticmethod
    def randbelow(bound: int) -> int:
        return secrets.randbelow(bound)


@contextlib.contextmanager
def _counting(module: ModuleType) -> Iterator[_CountingSecrets]:
    counter = _CountingSecrets()
    saved = getattr(module, "secrets")  # noqa: B009 (patched below, so read the same way)
    setattr(module, "secrets", counter)  # noqa: B010
    try:
        yield counter
    finally:
        setattr(module, "secrets", saved)  # noqa: B010


def _case(noise: Callable[[Vector, Fraction], None], vector: Vector, sigma2: Fraction) -> Callable[[], None]:
    return lambda: noise(vector, sigma2)


def _exact_variance(sigma2: Fraction) -> float:
    support = int(12 * math.sqrt(float(sigma2))) + 12
    pmf = sampler.discrete_gaussian_pmf(sigma2, support)
    return math.fsum(y * y * p for y, p in pmf.items())


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench sampler", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=DEFAULT_CELLS, help=f"cells per vector (default {DEFAULT_CELLS})")
    parser.add_argument("--sigma2", default=DEFAULT_SIGMA2, help=f"comma-separated σ² (default {DEFAULT_SIGMA2})")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CELLS:,} cells, one repetition")
    args = parser.parse_args(argv)
    cells, repetitions = (QUICK_CELLS, 1) if args.quick else (args.cells, args.repetitions)
    variances = [Fraction(text) for text in args.sigma2.split(",")]
    print_header("sampler", argv, {"cells": f"{cells:,}", "noise block": f"{NOISE_BLOCK_CELLS:,} cells"})
    print(f"uptime before: {_uptime()}\n", flush=True)

    rows = []
    failed = False
    for sigma2 in variances:
        vectors = {name: np.zeros(cells, dtype=np.uint64) for name in CASES}
        checks: dict[str, tuple[float, float]] = {}
        for name, (noise, module) in CASES.items():
            vector = vectors[name]
            with _counting(module) as counter:
                noise(vector, sigma2)
            signed = vector.view(np.int64)
            checks[name] = (counter.drawn / cells, float(np.var(signed, dtype=np.float64)))
            vector[:] = 0
        samples = interleave(
            {name: _case(noise, vectors[name], sigma2) for name, (noise, _) in CASES.items()},
            repetitions,
            warmup=0,
        )
        exact = _exact_variance(sigma2)
        # The sample variance of m draws has standard error about σ²·√(2/m); 6 of them is a failure.
        tolerance = 6 * exact * math.sqrt(2 / cells) + 1e-9
        for name in CASES:
            failed |= abs(checks[name][1] - exact) > tolerance
        before, after = samples["before"], samples["after"]
        rows.append(
            [
                str(sigma2),
                f"{seconds(before.median)} ({before.spread()})",
                f"{seconds(after.median)} ({after.spread()})",
                ratio(before.median, after.median),
                f"{checks['before'][0]:.1f} / {checks['after'][0]:.1f}",
                f"{checks['before'][1]:.4f} / {checks['after'][1]:.4f} / {exact:.4f}",
            ]
        )
        print(f"  σ² = {sigma2}: done (uptime {_uptime()})", flush=True)
    print(f"\nuptime after: {_uptime()}\n")
    print(f"{cells:,} cells, median (min – max) of {repetitions}, interleaved\n")
    print_table(
        [
            "σ²",
            "before",
            "after",
            "speed-up",
            "CSPRNG bytes / cell (before / after)",
            "variance before / after / exact",
        ],
        rows,
    )
    if failed:
        print("a sampler's variance is more than 6 standard errors from the exact pmf's", file=sys.stderr)
        return 1
    return 0
