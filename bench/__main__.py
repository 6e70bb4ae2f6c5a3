"""``python -m bench NAME`` / ``fedbroker bench NAME``: run one benchmark and print its figures."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

#: benchmark name -> module in bench/ whose ``main(argv) -> int`` runs it.
BENCHMARKS: dict[str, str] = {
    "mask": "bench.mask",
    "contribution": "bench.contribution",
    "round": "bench.secure_round",
    "memory": "bench.memory",
    "aggregation": "bench.aggregation",
    "e2e": "bench.e2e",
    "scale": "bench.scale",
    "generate": "bench.generate",
    "sampler": "bench.sampler",
    "utility": "bench.utility",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in BENCHMARKS:
        known = ", ".join(sorted(BENCHMARKS)) or "none yet"
        print(f"usage: python -m bench NAME [ARGS]; benchmarks: {known}", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[args[0]])
    run: Callable[[list[str]], int] = module.main
    return run(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
