"""Run the broker node: a grpc.aio server with mutual TLS, and mTLS channels to every adapter in the roster."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

import grpc

from broker.reachability import watch_kinds
from broker.service import BrokerService
from federation.audit import AuditLog
from federation.bounds import Bounds
from federation.config import NODE_KINDS, FederationConfig, MetricsConfig
from federation.handlers import add_service
from federation.identity import Identity
from federation.registry import load_domain
from federation.serving import Serving, serve_node
from federation.tls import channel_credentials, channel_options
from federation.v1 import adapter_pb2_grpc, broker_pb2

log = logging.getLogger(__name__)

BROKER_SERVICE = broker_pb2.DESCRIPTOR.services_by_name["Broker"]
SERVICE_NAME = BROKER_SERVICE.full_name


async def serve_broker(
    federation: FederationConfig,
    *,
    listen: str | None = None,
    on_ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
    parent_pid: int | None = None,
    metrics_config: MetricsConfig | None = None,
) -> None:
    """Serve coordinators until ``stop`` is set or SIGINT/SIGTERM; ``on_ready(port)`` once bound.
    ``metrics_config`` overrides the roster's ``broker.metrics``."""
    config = federation.broker
    identity = Identity.load(config.id, config.cert, config.key, federation.ca)
    registry = load_domain(federation.domain.provinces, federation.domain.registry_hash, source=str(federation.path))
    credentials = channel_credentials(identity)
    channels = {
        node.id: grpc.aio.secure_channel(node.address, credentials, options=channel_options(node.id))
        for node in federation.nodes
    }
    stubs: dict[str, adapter_pb2_grpc.AgencyAdapterAsyncStub] = {
        node_id: adapter_pb2_grpc.AgencyAdapterStub(channel) for node_id, channel in channels.items()
    }
    service = BrokerService(federation, registry, AuditLog(config.audit_log, config.id), stubs)
    try:
        await serve_node(
            identity,
            listen or config.address,
            lambda server: add_service(server, service, BROKER_SERVICE, Bounds(max_members=len(federation.nodes))),
            SERVICE_NAME,
            on_ready=on_ready,
            stop=stop,
            parent_pid=parent_pid,
            max_concurrent_rpcs=config.limits.max_concurrent_rpcs,
            metrics=metrics_config or config.metrics,
            background=lambda serving: _background(federation, channels, service, serving),
        )
    finally:
        for channel in channels.values():
            await channel.close()


async def _background(
    federation: FederationConfig,
    channels: Mapping[str, grpc.aio.Channel],
    service: BrokerService,
    serving: Serving,
) -> None:
    service.metrics_address = serving.metrics_address
    thresholds = {kind: service.threshold_of(kind) for kind in NODE_KINDS if federation.nodes_of_kind(kind)}
    await watch_kinds(federation, channels, serving.health, SERVICE_NAME, thresholds, service.kind_health)
