"""``python -m bench contribution``: one adapter's masked contribution and the broker's unmasking.

Side by side, interleaved, at m = 2849² = 8,116,801 cells (the national OD vector, 65 MB):

- ``AdapterRound.masked_input(..., out=)`` for n = 3, 8, 16 participants: n − 1 pairwise masks, the self
  mask and the adds into a preallocated buffer, against its limit, n bare AES-128-CTR keystreams into a
  preallocated buffer (OpenSSL, in 256 KiB calls from a cached block of zeros, as prg does);
- ``BrokerRound.unmask`` at n = 8 (t = 5) with no dropout (8 self masks to remove) and with one dropout
  (7 self masks and the dropped party's 7 pairwise masks), against 8 and 14 bare keystreams. Each unmask
  repetition uses a fresh round driven in process through every stage (real ECDSA identities, masked inputs
  streamed in 2 MiB chunks); only the unmask call is timed, and its output is checked against Σ x_u.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from bench._common import SelfTimed, clock, interleave, print_header, print_table, ratio, seconds
from bench._secagg import Identities, PreparedRound, Vector, count_vectors, node_ids, prepare_round, round_until_unmask
from bench.mask import bare_keystream_blocks as bare_keystream

NATIONAL_OD_CELLS = 2849 * 2849
QUICK_CELLS = 1_000_000
CONTRIBUTORS = (3, 8, 16)
UNMASK_CONTRIBUTORS = 8
UNMASK_THRESHOLD = 5


def _keystreams(count: int, zeros: bytes, out: Vector) -> Callable[[], None]:
    seeds = [bytes([i]) * 16 for i in range(count)]

    def run() -> None:
        for seed in seeds:
            bare_keystream(seed, zeros, out)

    return run


def _masked_case(prepared: PreparedRound, node_id: str, out: Vector) -> Callable[[], object]:
    return lambda: prepared.masked_input(node_id, out=out)


def _unmask_case(vectors: dict[str, Vector], identities: Identities, dropped: list[str]) -> Callable[[], SelfTimed]:
    survivors = [n for n in vectors if n not in dropped]
    expected = np.zeros_like(next(iter(vectors.values())))
    for node_id in survivors:
        expected += vectors[node_id]

    def run() -> SelfTimed:
        prepared = prepare_round(vectors, UNMASK_THRESHOLD, identities)
        revealed = round_until_unmask(prepared, dropped)
        timer = clock()  # the same clock as interleave's: wall, or this thread's CPU time
        began = timer()
        total = prepared.broker.unmask(revealed)
        elapsed = timer() - began
        if not np.array_equal(total, expected):
            raise AssertionError("BrokerRound.unmask did not release the survivors' exact sum")
        return SelfTimed(elapsed)

    return run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench contribution", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=None, help=f"vector length m (default {NATIONAL_OD_CELLS:,})")
    parser.add_argument("--repetitions", type=int, default=None, help="timed repetitions (default 7, quick 3)")
    parser.add_argument("--quick", action="store_true", help=f"m = {QUICK_CELLS:,}, 3 repetitions")
    args = parser.parse_args(argv)
    cells = args.cells or (QUICK_CELLS if args.quick else NATIONAL_OD_CELLS)
    repetitions = args.repetitions or (3 if args.quick else 7)
    print_header("contribution", argv)

    out = np.empty(cells, dtype=np.uint64)
    zeros = bytes(8 * cells)
    shared_vector = np.random.default_rng(3).integers(0, 2**20, size=cells, dtype=np.uint64)
    cases: dict[str, Callable[[], object]] = {}
    for n in CONTRIBUTORS:
        ids = node_ids(n)
        prepared = prepare_round(dict.fromkeys(ids, shared_vector), max(2, n // 2 + 1), Identities(ids))
        me = ids[n // 2]
        cases[f"masked_input, n = {n}"] = _masked_case(prepared, me, out)
        cases[f"limit: {n} bare keystreams"] = _keystreams(n, zeros, out)

    ids = node_ids(UNMASK_CONTRIBUTORS)
    vectors = count_vectors(ids, cells, seed=11)
    identities = Identities(ids)
    cases["unmask, n = 8, 0 dropouts"] = _unmask_case(vectors, identities, [])
    cases["unmask, n = 8, 1 dropout"] = _unmask_case(vectors, identities, [ids[3]])
    cases["limit: 14 bare keystreams"] = _keystreams(14, zeros, out)
    samples = interleave(cases, repetitions)

    print(f"m = {cells:,} uint64 cells ({8 * cells / 1e6:.0f} MB), median of {repetitions}, interleaved\n")
    rows = []
    for n in CONTRIBUTORS:
        ours, limit = samples[f"masked_input, n = {n}"], samples[f"limit: {n} bare keystreams"]
        rows.append(
            [
                f"masked_input, n = {n} ({n - 1} pair masks + self mask)",
                seconds(ours.median),
                f"{n} keystreams: {seconds(limit.median)}",
                ratio(ours.median, limit.median),
                ours.spread(),
            ]
        )
    for label, limit_name, masks in (
        ("unmask, n = 8, 0 dropouts (8 self masks)", "limit: 8 bare keystreams", 8),
        ("unmask, n = 8, 1 dropout (7 self + 7 pair masks)", "limit: 14 bare keystreams", 14),
    ):
        ours = samples[label.split(" (")[0]]
        limit = samples[limit_name]
        rows.append(
            [
                label,
                seconds(ours.median),
                f"{masks} keystreams: {seconds(limit.median)}",
                ratio(ours.median, limit.median),
                ours.spread(),
            ]
        )
    print_table(["operation", "median", "limit (median)", "vs limit", "min – max"], rows)
    return 0
