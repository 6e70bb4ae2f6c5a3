"""Prometheus metrics of one node (one node per process), served on an opt-in HTTP port.

What is counted is operational only: rounds by outcome, stage latencies, refusals by error class, masked
bytes streamed, rounds held now. No label ever carries a query's contents, a district, a value or an id
other than the RPC method, so the endpoint reveals no more than the node's traffic pattern. It is plain
HTTP without authentication: it binds loopback unless the roster's ``metrics.host`` says otherwise, and a
deployment firewalls it like any other admin port (``docs/deploy.md``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

#: Seconds: a stage is a few ms on a small scenario and up to minutes nationally.
_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

ROUNDS = Counter(
    "fedbroker_rounds",
    "Secure-aggregation rounds by outcome (adapter: opened, completed, aborted; "
    "broker: completed, aborted, failed, cancelled)",
    ["outcome"],
)
STAGE_SECONDS = Histogram(
    "fedbroker_stage_seconds",
    "Time per round stage: an adapter's handling of one stage call, the broker's fan-out of one stage",
    ["stage"],
    buckets=_STAGE_BUCKETS,
)
REFUSALS = Counter("fedbroker_refusals", "Refused calls by method and error class", ["method", "reason"])
MASKED_BYTES = Counter(
    "fedbroker_masked_bytes", "Masked-contribution bytes streamed (adapter: sent, broker: received)", ["direction"]
)
LIVE_ROUNDS = Gauge("fedbroker_live_rounds", "Rounds held in memory (adapter) or being driven (broker) now")
QUERIES_IN_FLIGHT = Gauge("fedbroker_queries_in_flight", "Queries the broker is running now")

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def stage_name(method: str) -> str:
    """The stage an adapter RPC serves, in the broker's spelling: ``ShareKeys`` -> ``share-keys``."""
    return _CAMEL.sub("-", method).lower()


def track_live_rounds(count: Callable[[], int]) -> None:
    """Report ``count()`` as the live-rounds gauge whenever the endpoint is scraped."""
    LIVE_ROUNDS.set_function(lambda: float(count()))


@dataclass
class MetricsEndpoint:
    """A running Prometheus endpoint; ``address`` is host:port as bound (port 0 picks a free one)."""

    address: str
    _server: WSGIServer
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics(host: str, port: int) -> MetricsEndpoint:
    """Serve ``/metrics`` on host:port from a daemon thread."""
    server, thread = start_http_server(port, addr=host)
    bound = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    return MetricsEndpoint(address=f"{shown}:{bound}", _server=server, _thread=thread)
