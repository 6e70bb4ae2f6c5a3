"""The survivor set an exact-sum agency has unmasked each aggregate spec for, kept so it never unmasks another.

Two rounds of the same aggregate over the same window with survivor sets that differ give, by subtraction, the
exact sum of the agencies in one set and not the other: a broker that lets an agency contribute to one round and
claims it dropped out of the other learns that agency's vector. An agency whose contributions carry fresh noise
pays for every round in its budget, so the difference is one more noisy release it already paid for. An agency
with ``noise: none`` has no such protection, so it unmasks one survivor set per spec, ever: the first one.

The memory is a JSON-lines file beside the agency's store (``<node id>.survivors.jsonl``), one line per spec::

    {"spec": "telecom.residents|-|-||<registry hash>", "u3": ["telecom-a", "telecom-b", "telecom-c"]}

appended and fsynced before the agency reveals its shares, and read back at start-up (a torn last line, from a
crash before the reveal, is ignored).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from federation.config import NodeConfig
from federation.errors import PolicyRefused

__all__ = ["SurvivorMemory", "release_spec", "survivors_path"]


def survivors_path(node: NodeConfig) -> Path:
    """An agency's survivor memory: ``<store directory>/<node id>.survivors.jsonl``, beside its budget ledger."""
    return node.store.parent / f"{node.id}.survivors.jsonl"


def release_spec(
    aggregate: str, start: dt.date | None, end: dt.date | None, params: Mapping[str, str], registry_hash: str
) -> str:
    """The identity of a release: the aggregate, its window (``-`` for none), its params and the registry."""
    shown = ",".join(f"{key}={params[key]}" for key in sorted(params))
    first = start.isoformat() if start is not None else "-"
    last = end.isoformat() if end is not None else "-"
    return f"{aggregate}|{first}|{last}|{shown}|{registry_hash}"


class SurvivorMemory:
    """Spec -> the sorted survivor set U3 first unmasked for it. Thread-safe."""

    def __init__(self, path: Path, *, owner: str) -> None:
        self._path = path
        self._owner = owner
        self._lock = threading.Lock()
        self._sets: dict[str, tuple[str, ...]] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a torn last line: its round never got the shares
                self._sets.setdefault(str(entry["spec"]), tuple(sorted(str(n) for n in entry["u3"])))

    def admit(self, spec: str, survivors: Sequence[str]) -> None:
        """Record ``survivors`` for ``spec`` (fsynced) or accept the same set again; raise :class:`PolicyRefused`
        naming both sets if the spec was already unmasked for another."""
        u3 = tuple(sorted(survivors))
        with self._lock:
            known = self._sets.get(spec)
            if known == u3:
                return
            if known is not None:
                aggregate = spec.split("|", 1)[0]
                raise PolicyRefused(
                    f"{self._owner} refused to unmask: it already released {aggregate} over this window exactly "
                    f"(noise: none) with survivors {', '.join(known)}; another survivor set ({', '.join(u3)}) "
                    "would let the broker subtract one agency's exact vector. Run it with those survivors, or "
                    "with noise on"
                )
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"spec": spec, "u3": list(u3)}) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            self._sets[spec] = u3
