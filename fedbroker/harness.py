"""A whole federation on one machine: every node its own process on loopback, with mutual TLS.

Used by the demo, the integration tests and the benchmarks. Adapters start first on ephemeral ports (each
writes its bound port to a ready file); the harness then writes a runtime roster with the real addresses and
starts the broker on it. Hooks kill, stall (SIGSTOP), resume or restart any node; ``faults`` starts chosen
adapters through the test-only fault entry point (:mod:`fedbroker.faults`).

Everything a federation writes at run time (ready files, logs, the runtime roster and, with ``audit_dir``, the
audit logs) goes into its own ``run_dir``, so two federations over the same scenario share nothing but the
read-only stores and certificates. Carriers also serve their
subscribers' itinerary, callable by each carrier's SMS gateway of the roster (``gateways``; the generated
scenario has one per carrier), with the risk list given in ``risk_lists``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from federation.config import FederationConfig, dump_federation, load_federation
from federation.errors import FederationError, NodeUnavailable

#: How long a node may take to bind its port (seconds): imports plus opening its store.
START_TIMEOUT_S = 60.0
#: A node over a Spark store starts a JVM and its Spark session before it binds: minutes on a loaded machine.
SPARK_START_TIMEOUT_S = 300.0


@dataclass
class NodeProcess:
    node_id: str
    role: str  # "adapter" | "broker"
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    stalled: bool = False
    start_timeout_s: float = START_TIMEOUT_S


@dataclass
class LocalFederation:
    """Start with ``with LocalFederation(path) as fed:``; ``fed.config`` is the runtime roster."""

    federation_path: Path
    run_dir: Path | None = None
    ephemeral_ports: bool = True
    nodes: Sequence[str] | None = None  # adapters to start (default: every node in the roster)
    faults: Mapping[str, str] = field(default_factory=dict)  # node id -> fault spec (fedbroker.faults; tests)
    metrics: bool = False  # serve each node's Prometheus metrics on a free loopback port (see its Status)
    log_format: str = "text"  # the nodes' --log-format
    runtime_path: Path | None = None  # the runtime roster (default: run_dir / federation.runtime.yaml)
    audit_dir: Path | None = None  # if set, every node's audit log is written here instead of the roster's path
    risk_lists: Mapping[str, Path] = field(default_factory=dict)  # carrier id -> its itinerary risk list file
    processes: dict[str, NodeProcess] = field(default_factory=dict)
    _config: FederationConfig | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def __enter__(self) -> LocalFederation:
        self.start()
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.stop()

    @property
    def config(self) -> FederationConfig:
        if self._config is None:
            raise NodeUnavailable("the federation is not started")
        return self._config

    @property
    def broker_address(self) -> str:
        return self.config.broker.address

    def start(self) -> None:
        base = load_federation(self.federation_path)
        run_dir = self.run_dir or base.path.parent / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        runtime_path = self.runtime_path or run_dir / "federation.runtime.yaml"
        self.runtime_path = runtime_path
        if self.audit_dir is not None:
            base = _with_audit_dir(base, self.audit_dir)
            # Adapters start before their addresses are known: they read this roster (their own audit paths).
            dump_federation(base, runtime_path)
            base = load_federation(runtime_path)
        wanted = list(self.nodes) if self.nodes is not None else [n.id for n in base.nodes]
        try:
            pending = {
                node_id: self._spawn(
                    "adapter", node_id, base.path, self._listen(base, node_id), fault=self.faults.get(node_id)
                )
                for node_id in wanted
            }
            for node_id, proc in pending.items():
                if base.node(node_id).location().engine == "spark":
                    proc.start_timeout_s = SPARK_START_TIMEOUT_S
            addresses = {node_id: f"127.0.0.1:{self._await_port(proc)}" for node_id, proc in pending.items()}
            for node_id, proc in pending.items():
                proc.port = int(addresses[node_id].rsplit(":", 1)[1])
                self.processes[node_id] = proc
            runtime = base.with_addresses(addresses)
            dump_federation(runtime, runtime_path)
            broker = self._spawn("broker", base.broker.id, runtime_path, self._listen(base, base.broker.id))
            broker.port = self._await_port(broker)
            self.processes[base.broker.id] = broker
            addresses[base.broker.id] = f"127.0.0.1:{broker.port}"
            final = base.with_addresses(addresses)
            dump_federation(final, runtime_path)
            self._config = load_federation(runtime_path)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every node: SIGTERM (graceful), then SIGKILL after a grace period. Idempotent."""
        for proc in self.processes.values():
            if proc.process.poll() is None:
                if proc.stalled:
                    os.kill(proc.process.pid, signal.SIGCONT)
                proc.process.terminate()
        deadline = time.monotonic() + 10
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.process.poll() is None:
                proc.process.kill()
                proc.process.wait()
        self.processes.clear()

    # -- fault hooks ----------------------------------------------------------------------------------------

    def kill(self, node_id: str) -> None:
        """SIGKILL a node: it vanishes mid-whatever, as a crash would."""
        proc = self.processes[node_id]
        proc.process.kill()
        proc.process.wait()

    def stall(self, node_id: str) -> None:
        """SIGSTOP a node: its connections stay open but it answers nothing (a hung host)."""
        proc = self.processes[node_id]
        os.kill(proc.process.pid, signal.SIGSTOP)
        proc.stalled = True

    def resume(self, node_id: str) -> None:
        proc = self.processes[node_id]
        os.kill(proc.process.pid, signal.SIGCONT)
        proc.stalled = False

    def restart(self, node_id: str) -> None:
        """Start a killed (or running) adapter again on the same port, so the broker's channel finds it.
        The restarted node runs without any fault it was started with."""
        proc = self.processes[node_id]
        if proc.process.poll() is None:
            self.kill(node_id)
        fresh = self._spawn(proc.role, node_id, self.config.path, f"127.0.0.1:{proc.port}")
        fresh.port = self._await_port(fresh)
        self.processes[node_id] = fresh

    def pid(self, node_id: str) -> int:
        return self.processes[node_id].process.pid

    def logs(self) -> Iterator[tuple[str, str]]:
        for node_id, proc in self.processes.items():
            yield node_id, proc.log_path.read_text(errors="replace") if proc.log_path.exists() else ""

    # -- internals ------------------------------------------------------------------------------------------

    def _listen(self, base: FederationConfig, node_id: str) -> str:
        if self.ephemeral_ports:
            return "127.0.0.1:0"
        address = base.broker.address if node_id == base.broker.id else base.node(node_id).address
        return address

    def _spawn(
        self, role: str, node_id: str, config_path: Path, listen: str, *, fault: str | None = None
    ) -> NodeProcess:
        assert self.run_dir is not None
        ready = self.run_dir / f"{node_id}.port"
        ready.unlink(missing_ok=True)
        log_path = self.run_dir / f"{node_id}.log"
        if fault is not None:
            # The test-only entry point installs the fault; `fedbroker serve` has no way to.
            args = [sys.executable, "-m", "fedbroker.faults", "--fault", fault, "--log-format", self.log_format]
        else:
            args = [sys.executable, "-m", "fedbroker", "--log-format", self.log_format, "serve", role]
        args += ["--config", str(config_path)]
        if self.metrics:
            args += ["--metrics-port", "0"]
        if role == "adapter":
            args += ["--id", node_id]
            if node_id in self.risk_lists:
                args += ["--risk-list", str(self.risk_lists[node_id])]
        # The node watches this process and stops if it dies, so a crashed test run or demo never leaves
        # nodes behind holding ports.
        args += ["--listen", listen, "--ready-file", str(ready), "--exit-with-parent", str(os.getpid())]
        with log_path.open("ab") as log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return NodeProcess(node_id=node_id, role=role, process=process, port=0, log_path=log_path)

    def _await_port(self, proc: NodeProcess) -> int:
        assert self.run_dir is not None
        ready = self.run_dir / f"{proc.node_id}.port"

        @retry(
            retry=retry_if_exception_type(FileNotFoundError),
            stop=stop_after_delay(proc.start_timeout_s),
            wait=wait_fixed(0.05),
            reraise=True,
        )
        def read_port() -> int:
            if proc.process.poll() is not None:
                tail = proc.log_path.read_text(errors="replace")[-2000:]
                raise FederationError(f"{proc.node_id} exited with code {proc.process.returncode} at start:\n{tail}")
            text = ready.read_text().strip()
            if not text:
                raise FileNotFoundError(ready)
            return int(text)

        try:
            return read_port()
        except FileNotFoundError:
            raise NodeUnavailable(
                f"{proc.node_id} did not bind a port within {proc.start_timeout_s:.0f} s; see {proc.log_path}"
            ) from None


def _with_audit_dir(config: FederationConfig, audit_dir: Path) -> FederationConfig:
    """``config`` with every node's and the broker's audit log moved into ``audit_dir`` (same file names)."""
    audit_dir.mkdir(parents=True, exist_ok=True)
    broker = dataclasses.replace(config.broker, audit_log=audit_dir / config.broker.audit_log.name)
    nodes = tuple(dataclasses.replace(n, audit_log=audit_dir / n.audit_log.name) for n in config.nodes)
    return dataclasses.replace(config, broker=broker, nodes=nodes)
