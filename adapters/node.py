"""Run one agency node: a grpc.aio server with mutual TLS, the adapter service and the standard health service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from adapters.backends import data_window, open_backend
from adapters.service import AdapterService
from adapters.stages import NO_HOOKS, StageHooks
from federation.audit import AuditLog
from federation.bounds import Bounds
from federation.config import FederationConfig, MetricsConfig
from federation.errors import ConfigError
from federation.handlers import add_service
from federation.identity import Identity
from federation.registry import load_domain
from federation.serving import Serving, serve_node
from federation.v1 import adapter_pb2

log = logging.getLogger(__name__)

ADAPTER_SERVICE = adapter_pb2.DESCRIPTOR.services_by_name["AgencyAdapter"]
SERVICE_NAME = ADAPTER_SERVICE.full_name


def build_adapter(
    federation: FederationConfig, node_id: str, *, stage_hooks: StageHooks = NO_HOOKS
) -> tuple[AdapterService, Identity]:
    """Load and check everything the node needs before it listens: identity, registry, store."""
    node = federation.node(node_id)
    if node.kind not in ("telecom", "health", "transport"):
        raise ConfigError(f"{federation.path}: node {node_id} has kind {node.kind!r}, not an agency kind")
    identity = Identity.load(node.id, node.cert, node.key, federation.ca)
    registry = load_domain(federation.domain.provinces, federation.domain.registry_hash, source=str(federation.path))
    # Fail at start-up, not on the first round, if the store is missing or unreachable; a Spark store also starts
    # its session here, so that the first round does not wait for a JVM.
    store = open_backend(node.location())
    try:
        data_window(store, node.kind)
    finally:
        store.close()
    audit = AuditLog(node.audit_log, node.id)
    return AdapterService(federation, node, identity, registry, audit, stage_hooks=stage_hooks), identity


async def serve_adapter(
    federation: FederationConfig,
    node_id: str,
    *,
    listen: str | None = None,
    on_ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
    parent_pid: int | None = None,
    metrics_config: MetricsConfig | None = None,
    stage_hooks: StageHooks = NO_HOOKS,
) -> None:
    """Serve until ``stop`` is set or SIGINT/SIGTERM; ``on_ready(port)`` runs once the port is bound.
    ``metrics_config`` overrides the roster's ``metrics`` of the node; ``stage_hooks`` is for the fault harness
    only (:mod:`fedbroker.faults`)."""
    service, identity = build_adapter(federation, node_id, stage_hooks=stage_hooks)
    address = listen or federation.node(node_id).address
    try:
        await serve_node(
            identity,
            address,
            lambda server: add_service(server, service, ADAPTER_SERVICE, Bounds(max_members=len(federation.nodes))),
            SERVICE_NAME,
            on_ready=on_ready,
            stop=stop,
            parent_pid=parent_pid,
            max_concurrent_rpcs=federation.node(node_id).limits.max_concurrent_rpcs,
            metrics=metrics_config or federation.node(node_id).metrics,
            background=lambda serving: _note_metrics(service, serving),
        )
    finally:
        # Records of stages that release nothing are written without an fsync; make them durable on the way out.
        service.close_audit()


async def _note_metrics(service: AdapterService, serving: Serving) -> None:
    service.metrics_address = serving.metrics_address
