"""Window-free releases (residents) kept by the broker and reused within their period (docs/security.md,
"Differential privacy and the budget").

A window-free aggregate does not depend on the query's window, so once its (noisy) sum is released, every later
query of the same period can reuse it: post-processing of a released value costs no privacy. The broker keeps
each such sum, keyed by aggregate, params, registry hash, the participating agencies and their noise, and the
period (the calendar month of the signed query's end, accounting.window_free_period), in
``<broker audit directory>/budget/window-free.jsonl``: one fsynced JSON line per release, read back at start-up,
so a restarted broker reuses what it released before. Each agency still charges its own ledger per period, so a
broker that does not reuse pays again, and is refused once the period's budget is spent.

A line: ``{"key": "<aggregate>|<params>|<registry hash>|<participants>|<noise>|<period>", "contributors": [...],
"sigma": 1.73, "noisy": true, "total": "<base64 of the sum's uint64 little-endian cells>"}``.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["KeptRelease", "WindowFreeReleases", "release_key"]


@dataclass(frozen=True)
class KeptRelease:
    """A released window-free sum: its cells (uint64, mod 2^64 as unmasked), who contributed, its σ per cell."""

    total: npt.NDArray[np.uint64]
    contributors: tuple[str, ...]
    sigma: float
    noisy: bool


def release_key(
    aggregate: str,
    params: Mapping[str, str],
    registry_hash: str,
    participants: Sequence[str],
    noisy: bool,
    period: str,
) -> str:
    """What makes two window-free releases interchangeable: the same aggregate, params, domain, agencies
    invited, noise policy and period."""
    shown = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    noise = "noisy" if noisy else "exact"
    return f"{aggregate}|{shown}|{registry_hash}|{','.join(sorted(participants))}|{noise}|{period}"


class WindowFreeReleases:
    """The broker's kept window-free releases, persisted in ``path``. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._kept: dict[str, KeptRelease] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    total = np.frombuffer(base64.b64decode(entry["total"]), dtype="<u8").astype(np.uint64)
                    kept = KeptRelease(total, tuple(entry["contributors"]), float(entry["sigma"]), bool(entry["noisy"]))
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line: that release is simply run (and paid for) again
                self._kept[str(entry["key"])] = kept

    def get(self, key: str) -> KeptRelease | None:
        with self._lock:
            return self._kept.get(key)

    def keep(self, key: str, release: KeptRelease) -> None:
        """Remember ``release`` under ``key`` (fsynced before it counts)."""
        line = json.dumps(
            {
                "key": key,
                "contributors": list(release.contributors),
                "sigma": release.sigma,
                "noisy": release.noisy,
                "total": base64.b64encode(release.total.astype("<u8").tobytes()).decode("ascii"),
            }
        )
        with self._lock:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("a", encoding="utf-8") as stream:
                stream.write(line + "\n")
                stream.flush()
                os.fsync(stream.fileno())
            self._kept[key] = release
