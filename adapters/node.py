"""Run one agency node: a grpc.aio server with mutual TLS, the adapter service and the standard health service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import grpc

from adapters.backends import data_window, open_backend
from adapters.itinerary.service import ItineraryService
from adapters.itinerary.sms import OutboxSender, local_outbox
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
from federation.v1 import adapter_pb2, itinerary_pb2

log = logging.getLogger(__name__)

ADAPTER_SERVICE = adapter_pb2.DESCRIPTOR.services_by_name["AgencyAdapter"]
SERVICE_NAME = ADAPTER_SERVICE.full_name
ITINERARY_SERVICE = itinerary_pb2.DESCRIPTOR.services_by_name["Itinerary"]


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


def build_itinerary(federation: FederationConfig, node_id: str, *, risk_list: Path | None) -> ItineraryService | None:
    """A carrier's itinerary service (None for other kinds), texting through the local federation's outbox
    ``DIR/sms/outbox.jsonl`` beside the roster; ConfigError for a risk list given to a non-carrier."""
    node = federation.node(node_id)
    if node.kind != "telecom":
        if risk_list is not None:
            raise ConfigError(f"--risk-list is for carriers; {node_id} is a {node.kind} node")
        return None
    audit = AuditLog(node.audit_log, node.id)
    sender = OutboxSender(local_outbox(federation.ca))
    return ItineraryService(federation, node, audit, sender, risk_list=risk_list)


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
    risk_list: Path | None = None,
) -> None:
    """Serve until ``stop`` is set or SIGINT/SIGTERM; ``on_ready(port)`` runs once the port is bound.
    ``metrics_config`` overrides the roster's ``metrics`` of the node; ``stage_hooks`` is for the fault harness
    only (:mod:`fedbroker.faults`). A carrier also serves its subscribers' Itinerary service, flagging cities
    from ``risk_list``."""
    service, identity = build_adapter(federation, node_id, stage_hooks=stage_hooks)
    itinerary = build_itinerary(federation, node_id, risk_list=risk_list)
    address = listen or federation.node(node_id).address
    bounds = Bounds(max_members=len(federation.nodes))

    def register(server: grpc.aio.Server) -> None:
        add_service(server, service, ADAPTER_SERVICE, bounds)
        if itinerary is not None:
            add_service(server, itinerary, ITINERARY_SERVICE, bounds)

    try:
        await serve_node(
            identity,
            address,
            register,
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
