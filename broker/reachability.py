"""Which agency kinds the broker can serve now: it health-checks every adapter and compares, per kind, the
agencies it reached with the threshold a round of that kind needs.

The result is published on the broker's own gRPC health service as ``federation.v1.Broker/<kind>``
(SERVING or NOT_SERVING), so a load balancer or an operator sees that, say, transport queries cannot run,
and in the broker's Status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from federation.config import NODE_KINDS, FederationConfig
from federation.v1 import common_pb2

log = logging.getLogger(__name__)

#: Seconds between two rounds of health checks, and the deadline of one check.
CHECK_INTERVAL_S = 10.0
CHECK_TIMEOUT_S = 3.0
ADAPTER_SERVICE = "federation.v1.AgencyAdapter"


def kind_service(broker_service: str, kind: str) -> str:
    """The health service name under which the broker reports ``kind``."""
    return f"{broker_service}/{kind}"


async def reachable_adapters(channels: Mapping[str, grpc.aio.Channel]) -> set[str]:
    """Ids of the adapters whose health check answers SERVING within CHECK_TIMEOUT_S."""

    async def check(node_id: str, channel: grpc.aio.Channel) -> str | None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.TimeoutError):
            stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs package types the sync stub only
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=ADAPTER_SERVICE), timeout=CHECK_TIMEOUT_S)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return node_id
        return None

    answers = await asyncio.gather(*(check(n, c) for n, c in channels.items()))
    return {n for n in answers if n is not None}


def kind_health(
    federation: FederationConfig, reachable: set[str], threshold_of: Mapping[str, int]
) -> list[common_pb2.KindHealth]:
    """Per agency kind of the roster: reached, total, the threshold of its rounds, and whether reached >= it."""
    out = []
    for kind in NODE_KINDS:
        ids = [n.id for n in federation.nodes_of_kind(kind)]
        if not ids:
            continue
        up = len([n for n in ids if n in reachable])
        threshold = threshold_of[kind]
        out.append(
            common_pb2.KindHealth(
                kind=kind, reachable=up, total=len(ids), threshold=threshold, serving=up >= threshold and up >= 2
            )
        )
    return out


async def watch_kinds(
    federation: FederationConfig,
    channels: Mapping[str, grpc.aio.Channel],
    health: health_aio.HealthServicer,
    broker_service: str,
    threshold_of: Mapping[str, int],
    publish: list[common_pb2.KindHealth],
    *,
    interval_s: float = CHECK_INTERVAL_S,
) -> None:
    """Forever: check every adapter, set each kind's health status, and replace ``publish``'s contents."""
    while True:
        kinds = kind_health(federation, await reachable_adapters(channels), threshold_of)
        for entry in kinds:
            status = (
                health_pb2.HealthCheckResponse.SERVING if entry.serving else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            await health.set(kind_service(broker_service, entry.kind), status)
        publish[:] = kinds
        await asyncio.sleep(interval_s)
