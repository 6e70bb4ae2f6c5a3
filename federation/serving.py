"""Serving one node: a grpc.aio server with mutual TLS, the standard health service and server reflection,
an opt-in Prometheus endpoint, run until stopped.

Shared by the adapter and the broker so both bind, report health, answer signals and shut down the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from federation.bounds import Bounds
from federation.config import MetricsConfig
from federation.errors import ConfigError
from federation.handlers import add_service
from federation.identity import Identity
from federation.metrics import MetricsEndpoint, start_metrics
from federation.tls import server_credentials, server_options

log = logging.getLogger(__name__)

#: Seconds in-flight calls get to finish on shutdown.
SHUTDOWN_GRACE_S = 5.0
#: How often a node started by the harness checks that the harness is still alive (seconds).
PARENT_CHECK_S = 1.0


@dataclass(frozen=True)
class Serving:
    """What a running node's background work gets: its health service and its metrics address ("" if off)."""

    health: health_aio.HealthServicer
    metrics_address: str


async def serve_node(
    identity: Identity,
    address: str,
    register: Callable[[grpc.aio.Server], None],
    service_name: str,
    *,
    on_ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
    parent_pid: int | None = None,
    max_concurrent_rpcs: int | None = None,
    metrics: MetricsConfig | None = None,
    background: Callable[[Serving], Awaitable[None]] | None = None,
) -> None:
    """Bind ``address`` with mTLS (client certificates required), add the services ``register`` adds plus
    gRPC health, report ``service_name`` SERVING, call ``on_ready(port)``, and serve until ``stop`` is set or
    SIGINT/SIGTERM arrives, or process ``parent_pid`` is gone; then report NOT_SERVING and stop gracefully.
    At most ``max_concurrent_rpcs`` calls run at once (None: no cap). With ``metrics.port`` set, Prometheus
    metrics are served there; ``background(serving)`` runs while the node serves and is cancelled at stop."""
    # Beyond max_concurrent_rpcs gRPC itself answers RESOURCE_EXHAUSTED, before any handler runs.
    server = grpc.aio.server(options=server_options(), maximum_concurrent_rpcs=max_concurrent_rpcs)
    register(server)
    health = health_aio.HealthServicer()
    health_service = health_pb2.DESCRIPTOR.services_by_name["Health"]
    add_service(server, health, health_service, Bounds(max_members=0))
    # Reflection lets grpcurl and similar tools list and call the services; callers still need mTLS.
    reflection.enable_server_reflection((service_name, health_service.full_name, reflection.SERVICE_NAME), server)
    port = _bind(server, address, identity)
    endpoint: MetricsEndpoint | None = None
    if metrics is not None and metrics.port is not None:
        try:
            endpoint = start_metrics(metrics.host, metrics.port)
        except OSError:
            raise ConfigError(
                f"{identity.node_id} could not serve metrics on {metrics.host}:{metrics.port} (in use, or not an "
                "address of this host); fix metrics.port or metrics.host in the roster"
            ) from None
        log.info("%s metrics on http://%s/metrics", identity.node_id, endpoint.address)
    try:
        await _serve(server, health, identity, service_name, port, endpoint, on_ready, stop, parent_pid, background)
    finally:
        if endpoint is not None:
            endpoint.stop()


async def _serve(
    server: grpc.aio.Server,
    health: health_aio.HealthServicer,
    identity: Identity,
    service_name: str,
    port: int,
    endpoint: MetricsEndpoint | None,
    on_ready: Callable[[int], None] | None,
    stop: asyncio.Event | None,
    parent_pid: int | None,
    background: Callable[[Serving], Awaitable[None]] | None,
) -> None:
    await server.start()
    await health.set(service_name, health_pb2.HealthCheckResponse.SERVING)
    log.info("%s serving on port %d", identity.node_id, port)
    work = None
    if background is not None:
        work = asyncio.ensure_future(background(Serving(health, endpoint.address if endpoint else "")))
    if on_ready is not None:
        on_ready(port)
    event = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Off the main thread signal handlers cannot be installed: then the caller owns `stop`.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, event.set)
    watchdog = asyncio.create_task(_watch_parent(parent_pid, event)) if parent_pid else None
    await event.wait()
    for task in (watchdog, work):
        if task is not None:
            task.cancel()
    log.info("%s stopping", identity.node_id)
    await health.enter_graceful_shutdown()
    await server.stop(grace=SHUTDOWN_GRACE_S)


def _bind(server: grpc.aio.Server, address: str, identity: Identity) -> int:
    """Bind ``address`` for mutual TLS and return the port; ConfigError saying why when it cannot be bound.

    The port is probed first with a plain socket, so an address in use gets one clear line instead of gRPC's
    transport log; gRPC's own bind failure (a race with the probe) is mapped the same way."""
    if address_in_use(address):
        raise ConfigError(_in_use_message(address))
    try:
        port = server.add_secure_port(address, server_credentials(identity))
    except RuntimeError:  # grpcio >= 1.5x raises instead of returning 0
        port = 0
    if port == 0:
        if address_in_use(address):
            raise ConfigError(_in_use_message(address))
        raise ConfigError(
            f"{identity.node_id} could not bind {address}; check that the host is one of this machine's "
            "addresses and that the port is allowed (ports below 1024 need privileges)"
        )
    return port


def _in_use_message(address: str) -> str:
    return (
        f"address {address} is in use (another fedbroker node?); stop the process holding it or give this node "
        "another address in the roster (or --listen)"
    )


def address_in_use(address: str) -> bool:
    """True when some socket already listens on ``address`` (host:port, port 0 never is). False when the
    address cannot be resolved or probed: then gRPC's own bind decides and reports."""
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]")
    if not port_text.isdigit() or int(port_text) == 0:
        return False
    try:
        infos = socket.getaddrinfo(host, int(port_text), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as probe:
            # SO_REUSEADDR as gRPC sets it: a port in TIME_WAIT only is free, a listening one is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once this process is no longer ``parent_pid``'s child (the parent died and we were
    re-parented), checking every ``PARENT_CHECK_S`` seconds."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_CHECK_S)
    log.warning("parent process %d is gone: stopping", parent_pid)
    stop.set()
