"""``fedbroker up``: run a whole local federation and watch it until Ctrl-C or SIGTERM.

Every node is its own process (:class:`fedbroker.harness.LocalFederation`). While they run, ``up`` checks them
every ``WATCH_INTERVAL_S`` seconds and reports any that exits, with its exit code and the last lines of its log;
the others keep running. SIGINT and SIGTERM both stop every node the same way (SIGTERM, then SIGKILL after a
grace period) and ``up`` prints what it stopped. The exit status is 0 when every node was still running at the
stop, 1 when some node had exited on its own.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from fedbroker.harness import LocalFederation
from federation.config import load_federation

WATCH_INTERVAL_S = 0.5
LOG_TAIL_LINES = 15


def run_up(federation_path: Path, *, ephemeral: bool, risk_list: Path | None = None) -> int:
    """Run every node until a signal; with ``risk_list``, every carrier flags itinerary cities from it."""
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        runtime = federation_path.parent / "federation.runtime.yaml"  # where --ephemeral's help says it is
        risk_lists = {}
        if risk_list is not None:
            carriers = load_federation(federation_path).nodes_of_kind("telecom")
            risk_lists = {node.id: risk_list for node in carriers}
        with LocalFederation(
            federation_path, ephemeral_ports=ephemeral, runtime_path=runtime, risk_lists=risk_lists
        ) as federation:
            _announce(federation)
            exited = _watch(federation, stop)
            running = [n for n, p in federation.processes.items() if p.process.poll() is None]
            why = received[0] if received else "stop"
            print(f"{why}: stopping {len(running)} node(s): {', '.join(running) or 'none'}", flush=True)
        print(f"stopped {', '.join(running) or 'nothing'}", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if exited else 0


def _announce(federation: LocalFederation) -> None:
    config = federation.config
    print(f"federation {config.name}: broker {config.broker.id} at {config.broker.address}")
    print(f"  {'broker':<9} {config.broker.id:<14} {config.broker.address:<21} pid {federation.pid(config.broker.id)}")
    for node in config.nodes:
        if node.id in federation.processes:
            print(f"  {node.kind:<9} {node.id:<14} {node.address:<21} pid {federation.pid(node.id)}")
    for gateway in config.gateways:
        print(f"  gateway   {gateway.id:<14} SMS gateway of {gateway.carrier} (fedbroker itinerary request|show)")
    print(
        f"query it with: fedbroker query importation-risk --federation {config.path} --as "
        f"{config.coordinators[0].id}\nCtrl-C (or SIGTERM) stops every node.",
        flush=True,
    )


def _watch(federation: LocalFederation, stop: threading.Event) -> set[str]:
    """Until ``stop``: report each node that exits, once. Returns the ids of those that exited."""
    exited: set[str] = set()
    while not stop.wait(WATCH_INTERVAL_S):
        for node_id, proc in federation.processes.items():
            code = proc.process.poll()
            if code is None or node_id in exited:
                continue
            exited.add(node_id)
            tail = (
                proc.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                if proc.log_path.exists()
                else []
            )
            print(
                f"fedbroker up: {node_id} exited with code {code}; the others keep running. Last log lines:",
                file=sys.stderr,
            )
            for line in tail:
                print(f"  {node_id} | {line}", file=sys.stderr)
            sys.stderr.flush()
    return exited
