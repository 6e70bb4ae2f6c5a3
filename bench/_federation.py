"""A bench-only federation on loopback: a dev PKI, a roster of n telecom nodes and their server processes.

Each node is its own process (``python -m bench._round_node``) on 127.0.0.1 port 0 with its real mutual-TLS
certificate. It serves the REAL :class:`adapters.service.AdapterService` whose vector source is a seeded random
vector (no DuckDB: store time is excluded from both sides of the comparison), and beside it the bench-only
plaintext service of :mod:`bench._round_node`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt
import yaml

from federation.pki import generate_dev_pki
from federation.registry import load_registry

BROKER_ID = "bench-broker"
COORDINATOR_ID = "bench-national"
DATA_START = "2020-01-01"
DATA_END = "2020-01-28"
#: The 2,849-district national domain: flows OD = 8,116,801 cells, residents = 2,849 cells.
NATIONAL: tuple[int, ...] | None = None
#: Hubei and its six neighbours (the default scenario): 730 districts, OD = 532,900 cells.
DEFAULT_PROVINCES = (34, 36, 41, 42, 43, 50, 61)
START_TIMEOUT_S = 60.0


def telecom_ids(count: int) -> list[str]:
    return [f"telecom-{i:02d}" for i in range(1, count + 1)]


def synthetic_vector(node_id: str, length: int, seed: int = 2020) -> npt.NDArray[np.uint64]:
    """The node's x_u: seeded counts below 2^20 (the bench's stand-in for an aggregate)."""
    index = int(node_id.rsplit("-", 1)[1])
    return np.random.default_rng([seed, index]).integers(0, 2**20, size=length, dtype=np.uint64)


def write_federation(directory: Path, nodes: int, provinces: Sequence[int] | None) -> Path:
    """Write ``pki/`` and ``federation.yaml`` for a broker, ``nodes`` telecom nodes and a national coordinator.

    Every node allows flows and importation-risk queries (31-day windows, at least 2 contributors). Node
    addresses in the roster are placeholders: the processes bind port 0 and report the port they got.
    """
    ids = telecom_ids(nodes)
    generate_dev_pki(directory / "pki", [BROKER_ID, *ids, COORDINATOR_ID])
    domain = None if provinces is None else tuple(sorted(provinces))
    registry = load_registry(domain)
    (directory / "audit").mkdir(parents=True, exist_ok=True)
    document = {
        "version": 1,
        "name": "bench",
        "domain": {"provinces": "all" if domain is None else list(domain), "registry_hash": registry.hash},
        "data": {"start": DATA_START, "end": DATA_END},
        "pki": {"ca": "pki/ca.pem"},
        "broker": {
            "id": BROKER_ID,
            "address": "127.0.0.1:17400",
            "cert": f"pki/{BROKER_ID}.pem",
            "key": f"pki/{BROKER_ID}.key",
            "audit_log": f"audit/{BROKER_ID}.jsonl",
            "round_timeout_s": 600,
            "stage_timeout_s": 300,
        },
        "nodes": [
            {
                "id": node_id,
                "kind": "telecom",
                "address": f"127.0.0.1:{17401 + i}",
                "store": f"agencies/{node_id}.duckdb",  # never opened: the bench service overrides _compute
                "cert": f"pki/{node_id}.pem",
                "key": f"pki/{node_id}.key",
                "audit_log": f"audit/{node_id}.jsonl",
                "policy": {
                    "allowed_queries": ["flows", "importation-risk"],
                    "max_window_days": 31,
                    "min_contributors": 2,
                },
            }
            for i, node_id in enumerate(ids)
        ],
        "coordinators": [
            {
                "id": COORDINATOR_ID,
                "role": "national",
                "cert": f"pki/{COORDINATOR_ID}.pem",
                "key": f"pki/{COORDINATOR_ID}.key",
            }
        ],
    }
    path = directory / "federation.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class NodeProcesses:
    """``with NodeProcesses(roster, ids) as nodes:`` starts one bench node process per id; ``nodes.ports``."""

    federation_path: Path
    ids: Sequence[str]
    #: extra arguments for every node process (e.g. ``("--audit-fsync", "every")``)
    node_args: Sequence[str] = ()
    ports: dict[str, int] = field(default_factory=dict)
    _processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __enter__(self) -> NodeProcesses:
        run_dir = self.federation_path.parent / "run"
        run_dir.mkdir(exist_ok=True)
        try:
            for node_id in self.ids:
                ready = run_dir / f"{node_id}.port"
                ready.unlink(missing_ok=True)
                args = [sys.executable, "-m", "bench._round_node", "--federation", str(self.federation_path)]
                args += ["--id", node_id, "--ready-file", str(ready), "--parent-pid", str(os.getpid())]
                args += list(self.node_args)
                with (run_dir / f"{node_id}.log").open("ab") as log:
                    self._processes[node_id] = subprocess.Popen(
                        args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                    )
            for node_id in self.ids:
                self.ports[node_id] = self._await_port(node_id, run_dir / f"{node_id}.port")
        except BaseException:
            self.stop()
            raise
        return self

    def _await_port(self, node_id: str, ready: Path) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        process = self._processes[node_id]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log = (ready.parent / f"{node_id}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"bench node {node_id} exited with code {process.returncode}:\n{log}")
            with contextlib.suppress(FileNotFoundError, ValueError):
                return int(ready.read_text().strip())
            time.sleep(0.05)
        raise RuntimeError(f"bench node {node_id} did not bind a port within {START_TIMEOUT_S:.0f} s")

    def pids(self) -> dict[str, int]:
        return {node_id: process.pid for node_id, process in self._processes.items()}

    def stop(self) -> None:
        """SIGTERM every node this object started, then SIGKILL any that has not exited after 10 s."""
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self._processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            if process.poll() is None:
                process.kill()
                process.wait()
        self._processes.clear()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
