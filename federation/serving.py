"""Serving one node: a grpc.aio server with mutual TLS and the standard health service, run until stopped.

Shared by the adapter and the broker so both bind, report health, answer signals and shut down the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from federation.errors import ConfigError
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
) -> None:
    """Bind ``address`` with mTLS (client certificates required), add the services ``register`` adds plus
    gRPC health, report ``service_name`` SERVING, call ``on_ready(port)``, and serve until ``stop`` is set or
    SIGINT/SIGTERM arrives, or process ``parent_pid`` is gone; then report NOT_SERVING and stop gracefully."""
    server = grpc.aio.server(options=server_options())
    register(server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_secure_port(address, server_credentials(identity))
    if port == 0:
        raise ConfigError(f"{identity.node_id} could not bind {address}: is the port in use?")
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


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once this process is no longer ``parent_pid``'s child (the parent died and we were
    re-parented), checking every ``PARENT_CHECK_S`` seconds."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_CHECK_S)
    log.warning("parent process %d is gone: stopping", parent_pid)
    stop.set()
