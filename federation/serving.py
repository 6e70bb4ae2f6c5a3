"""Serving one node: a grpc.aio server with mutual TLS and the standard health service, run until stopped.

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
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from federation.bounds import Bounds
from federation.errors import ConfigError
from federation.handlers import add_service
from federation.identity import Identity
from federation.tls import server_credentials, server_options

log = logging.getLogger(__name__)

#: Seconds in-flight calls get to finish on shutdown.
SHUTDOWN_GRACE_S = 5.0
#: How often a node started by the harness checks that the harness is still alive (seconds).
PARENT_CHECK_S = 1.0


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
) -> None:
    """Bind ``address`` with mTLS (client certificates required), add the services ``register`` adds plus
    gRPC health, report ``service_name`` SERVING, call ``on_ready(port)``, and serve until ``stop`` is set or
    SIGINT/SIGTERM arrives, or process ``parent_pid`` is gone; then report NOT_SERVING and stop gracefully.
    At most ``max_concurrent_rpcs`` calls run at once (None: no cap)."""
    # Beyond max_concurrent_rpcs gRPC itself answers RESOURCE_EXHAUSTED, before any handler runs.
    server = grpc.aio.server(options=server_options(), maximum_concurrent_rpcs=max_concurrent_rpcs)
    register(server)
    health = health_aio.HealthServicer()
    add_service(server, health, health_pb2.DESCRIPTOR.services_by_name["Health"], Bounds(max_members=0))
    port = _bind(server, address, identity)
    await server.start()
    await health.set(service_name, health_pb2.HealthCheckResponse.SERVING)
    log.info("%s serving on port %d", identity.node_id, port)
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
    if watchdog is not None:
        watchdog.cancel()
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
