"""Flower's SecAgg+ mask generator, timed inside a throwaway venv that has flwr (never the project's venv).

Run by :mod:`bench.mask` as ``FLWR_PYTHON bench/_flwr_worker.py``; it imports only the standard library, numpy
and flwr, so it runs without fedbroker installed. Protocol on stdin/stdout, one line each:
``versions`` → JSON ``{"flwr": ..., "numpy": ..., "python": ...}``;
``time CELLS NUM_RANGE`` → seconds (float) of one ``pseudo_rand_gen(seed, NUM_RANGE, [(CELLS,)])`` call;
``quit`` ends it. The timing is taken here, around the call alone, so pipe latency is not counted.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from typing import Any


def main() -> int:
    flwr: Any = importlib.import_module("flwr")
    numpy: Any = importlib.import_module("numpy")
    secaggplus: Any = importlib.import_module("flwr.common.secure_aggregation.secaggplus_utils")
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "versions":
            print(
                json.dumps({"flwr": flwr.__version__, "numpy": numpy.__version__, "python": platform.python_version()})
            )
        elif words[0] == "time":
            cells, num_range = int(words[1]), int(words[2])
            seed = os.urandom(32)  # SecAgg+ seeds are 32-byte HKDF outputs
            # The same clock as bench._common.interleave (FEDBROKER_BENCH_CLOCK=cpu: this thread's CPU time).
            timer = time.thread_time if os.environ.get("FEDBROKER_BENCH_CLOCK") == "cpu" else time.perf_counter
            began = timer()
            masks = secaggplus.pseudo_rand_gen(seed, num_range, [(cells,)])
            elapsed = timer() - began
            if masks[0].shape != (cells,):
                print(f"unexpected mask shape {masks[0].shape}", file=sys.stderr)
                return 1
            del masks
            print(f"{elapsed:.9f}")
        else:
            print(f"unknown command {words[0]!r}", file=sys.stderr)
            return 2
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
