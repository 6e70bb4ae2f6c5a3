"""Run one agency node: a grpc.aio server with mutual TLS, the adapter service and the standard health service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from adapters.service import AdapterService
from adapters.store import open_store
from federation.audit import AuditLog
from federation.config import FederationConfig
from federation.errors import ConfigError, RegistryMismatch
from federation.identity import Identity
from federation.registry import load_registry
from federation.tls import server_credentials, server_options
from federation.v1 import adapter_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = "federation.v1.AgencyAdapter"


def build_adapter(federation: FederationConfig, node_id: str) -> tuple[AdapterService, Identity]:
    """Load and check everything the node needs before it listens: identity, registry, store."""
    node = federation.node(node_id)
    if node.kind not in ("telecom", "health", "transport"):
        raise ConfigError(f"{federation.path}: node {node_id} has kind {node.kind!r}, not an agency kind")
    identity = Identity.load(node.id, node.cert, node.key, federation.ca)
    registry = load_registry(federation.domain.provinces)
    if registry.hash != federation.domain.registry_hash:
        raise RegistryMismatch(
            f"{federation.path}: domain.registry_hash {federation.domain.registry_hash[:12]}… differs from this "
            f"build's registry {registry.hash[:12]}…; regenerate the scenario or upgrade fedbroker"
        )
    open_store(node.store).close()  # fail at start-up, not on the first round, if the store is missing
    audit = AuditLog(node.audit_log, node.id)
    return AdapterService(federation, node, identity, registry, audit), identity


async def serve_adapter(
    federation: FederationConfig,
    node_id: str,
    *,
    listen: str | None = None,
    on_ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set or SIGINT/SIGTERM; ``on_ready(port)`` runs once the port is bound."""
    service, identity = build_adapter(federation, node_id)
    address = listen or federation.node(node_id).address
    server = grpc.aio.server(options=server_options())
    adapter_pb2_grpc.add_AgencyAdapterServicer_to_server(service, server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_secure_port(address, server_credentials(identity))
    if port == 0:
        raise ConfigError(f"{node_id} could not bind {address}: is the port in use?")
    await server.start()
    await health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    log.info("%s serving on port %d", node_id, port)
    if on_ready is not None:
        on_ready(port)
    await _wait_for_stop(stop)
    await health.enter_graceful_shutdown()
    await server.stop(grace=5.0)


async def _wait_for_stop(stop: asyncio.Event | None) -> None:
    event = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Off the main thread signal handlers cannot be installed: then the caller owns `stop`.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, event.set)
    await event.wait()
