"""``python -m bench mask``: mask generation for one uint64 vector, ours against its limit and its peers.

Side by side, interleaved, at m = 8,000,000 cells (64 MB):

- ours: :func:`federation.secagg.prg` into a preallocated buffer, the same allocating, and
  :func:`federation.secagg.apply_masks` adding 1 and 8 masks into a vector in place (per mask);
- the limit: the bare OpenSSL AES-128-CTR keystream (through ``cryptography``, the library ``prg`` uses)
  encrypting zeros into a preallocated buffer, in one call and in 256 KiB calls from one cached block of zeros;
  ratios are against the faster of the two. For reference, the same keystream from pycryptodome, which
  ``prg`` used before;
- numpy PCG64 (non-cryptographic): ``Generator.integers`` and ``random_raw`` (both allocate: neither takes
  ``out=``) and ``random_raw`` block by block copied into the buffer;
- Flower's SecAgg+ mask generator ``pseudo_rand_gen`` (legacy MT19937 ``randint``; allocates), in a throwaway
  venv given with ``--flwr-python``, at Flower's default ``modulus_range`` 2^32 and at 2^63 (the widest range
  ``randint`` takes for int64, closest to our full 64-bit cells).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt
from Crypto.Cipher import AES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bench._common import SelfTimed, gib_per_s, interleave, print_header, print_table, ratio, seconds
from federation.secagg import apply_masks, prg

DEFAULT_CELLS = 8_000_000
QUICK_CELLS = 1_000_000
_KNOWN_ANSWER = [0x825B8F87373BA1C6, 0x79D8C8A162814F6F, 0x1EB4C09595134673, 0x0A2DF465E3BD7B49]
_WORKER = Path(__file__).with_name("_flwr_worker.py")
_PCG_BLOCK = 32_768
_KEYSTREAM_BLOCK = 256 * 1024
#: Flower's default SecAggPlusWorkflow modulus_range, and the widest range its randint(int64) accepts.
FLOWER_RANGES = (2**32, 2**63)
TARGET_VS_LIMIT = 1.05


class FlowerWorker:
    """A long-lived process in the Flower venv, so each timing is one line over a pipe."""

    def __init__(self, python: str) -> None:
        self._process = subprocess.Popen(
            [python, str(_WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )

    def _ask(self, line: str) -> str:
        stdin, stdout = self._streams()
        stdin.write(line + "\n")
        stdin.flush()
        answer = stdout.readline()
        if not answer:
            raise RuntimeError(f"the Flower worker exited (code {self._process.wait()}); is flwr installed there?")
        return answer.strip()

    def _streams(self) -> tuple[IO[str], IO[str]]:
        assert self._process.stdin is not None and self._process.stdout is not None
        return self._process.stdin, self._process.stdout

    def versions(self) -> dict[str, str]:
        found: dict[str, str] = json.loads(self._ask("versions"))
        return found

    def time(self, cells: int, num_range: int) -> SelfTimed:
        return SelfTimed(self._ask(f"time {cells} {num_range}"))

    def close(self) -> None:
        stdin, _ = self._streams()
        stdin.write("quit\n")
        stdin.flush()
        self._process.wait(timeout=30)


def bare_keystream(seed: bytes, zeros: bytes, out: npt.NDArray[np.uint64]) -> None:
    """The limit: OpenSSL AES-128-CTR from counter block 0, one call, into a preallocated buffer."""
    Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor().update_into(zeros, out.data.cast("B"))


def bare_keystream_blocks(seed: bytes, zeros: bytes, out: npt.NDArray[np.uint64]) -> None:
    """The limit: OpenSSL's keystream in 256 KiB calls from one cached block of zeros (what prg does, without
    its checks)."""
    cipher = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    block = memoryview(zeros)[:_KEYSTREAM_BLOCK]
    target = out.data.cast("B")
    for start in range(0, len(target), _KEYSTREAM_BLOCK):
        piece = target[start : start + _KEYSTREAM_BLOCK]
        cipher.update_into(block[: len(piece)], piece)


def bare_keystream_pycryptodome(seed: bytes, zeros: bytes, out: npt.NDArray[np.uint64]) -> None:
    """Reference: pycryptodome AES-128-CTR from counter block 0, one call, into a preallocated buffer."""
    AES.new(seed, AES.MODE_CTR, nonce=b"", initial_value=0).encrypt(zeros, output=out.data.cast("B"))


def _pcg_blocks(generator: np.random.Generator, out: npt.NDArray[np.uint64]) -> None:
    bits = generator.bit_generator
    for start in range(0, out.shape[0], _PCG_BLOCK):
        block = out[start : start + _PCG_BLOCK]
        block[:] = bits.random_raw(block.shape[0])


def _flower_case(worker: FlowerWorker, cells: int, num_range: int) -> Callable[[], object]:
    return lambda: worker.time(cells, num_range)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench mask", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=None, help=f"vector length m (default {DEFAULT_CELLS:,})")
    parser.add_argument("--repetitions", type=int, default=None, help="timed repetitions (default 9, quick 5)")
    parser.add_argument("--quick", action="store_true", help=f"m = {QUICK_CELLS:,}, 5 repetitions")
    parser.add_argument("--flwr-python", help="python of a throwaway venv with flwr installed (Flower's line)")
    args = parser.parse_args(argv)
    cells = args.cells or (QUICK_CELLS if args.quick else DEFAULT_CELLS)
    repetitions = args.repetitions or (5 if args.quick else 9)

    if prg(bytes(range(16)), 4).tolist() != _KNOWN_ANSWER:
        raise AssertionError("federation.secagg.prg does not reproduce the pinned known answer")
    worker = FlowerWorker(args.flwr_python) if args.flwr_python else None
    extra = {}
    if worker is not None:
        found = worker.versions()
        extra = {"flwr": found["flwr"], "flwr venv numpy": found["numpy"], "flwr venv python": found["python"]}
    else:
        extra = {"flwr": "not measured: pass --flwr-python"}
    print_header("mask", argv, extra)

    rng = np.random.default_rng(7)
    seed = rng.bytes(16)
    seeds8 = [(rng.bytes(16), 1 if i % 2 else -1) for i in range(8)]
    out = np.empty(cells, dtype=np.uint64)
    vector = rng.integers(0, 2**64, size=cells, dtype=np.uint64, endpoint=False)
    zeros = bytes(8 * cells)
    pcg = np.random.Generator(np.random.PCG64(7))
    cases: dict[str, Callable[[], object]] = {
        "ours: prg into buffer": lambda: prg(seed, cells, out=out),
        "bare AES-128-CTR into buffer, OpenSSL": lambda: bare_keystream(seed, zeros, out),
        "bare AES-128-CTR into buffer, OpenSSL, 256 KiB calls": lambda: bare_keystream_blocks(seed, zeros, out),
        "reference: AES-128-CTR into buffer, pycryptodome (the library prg used before)": lambda: (
            bare_keystream_pycryptodome(seed, zeros, out)
        ),
        "ours: prg allocating": lambda: prg(seed, cells),
        "ours: apply_masks, 1 mask in place": lambda: apply_masks(vector, [(seed, 1)]),
        "ours: apply_masks, 8 masks in place": lambda: apply_masks(vector, seeds8),
        "numpy PCG64 integers (allocates)": lambda: pcg.integers(0, 2**64, size=cells, dtype=np.uint64),
        "numpy PCG64 random_raw (allocates)": lambda: pcg.bit_generator.random_raw(cells),
        "numpy PCG64 random_raw blocks into buffer": lambda: _pcg_blocks(pcg, out),
    }
    if worker is not None:
        for num_range in FLOWER_RANGES:
            label = f"Flower pseudo_rand_gen, range 2^{num_range.bit_length() - 1} (allocates)"
            cases[label] = _flower_case(worker, cells, num_range)
    try:
        samples = interleave(cases, repetitions)
    finally:
        if worker is not None:
            worker.close()

    per_mask = {"ours: apply_masks, 8 masks in place": 8}
    limit = min(sample.median for name, sample in samples.items() if "bare AES-128-CTR" in name)
    rows = []
    for name, sample in samples.items():
        masks = per_mask.get(name, 1)
        median = sample.median / masks
        label = f"{name} (per mask)" if masks > 1 else name
        rows.append([label, seconds(median), gib_per_s(8 * cells, median), ratio(median, limit), sample.spread(masks)])
    if worker is None:
        rows.append(["Flower pseudo_rand_gen", "not measured: pass --flwr-python", "", "", ""])
    print(f"m = {cells:,} uint64 cells ({8 * cells / 1e6:.0f} MB), median of {repetitions}, interleaved\n")
    print_table(["generator", "median", "throughput", "vs bare OpenSSL keystream", "min – max"], rows)

    ours = samples["ours: prg into buffer"].median
    verdict = "met" if ours / limit <= TARGET_VS_LIMIT else "MISSED"
    print(f"target ours ≤ {TARGET_VS_LIMIT}× the bare keystream: {ours / limit:.2f}× ({verdict})")
    flower = [s.median for n, s in samples.items() if n.startswith("Flower")]
    if flower:
        verdict = "met" if ours < min(flower) else "MISSED"
        print(f"target ours faster than Flower: {min(flower) / ours:.1f}× faster than its fastest line ({verdict})")
    return 0
