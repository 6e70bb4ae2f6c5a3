"""``fedbroker status``: ask every node of a roster for its health and Status, concurrently, and print them.

A node that cannot be reached is shown as such with the reason; the command exits 1 when any node is not
serving or when the broker reports an agency kind below its threshold, so scripts can alert on it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from federation.bounds import bounded_reason
from federation.config import FederationConfig, load_federation
from federation.errors import ConfigError
from federation.tls import channel_credentials, channel_options
from federation.v1 import adapter_pb2_grpc, broker_pb2_grpc, common_pb2

STATUS_TIMEOUT_S = 10.0


@dataclass
class NodeReport:
    node_id: str
    role: str
    address: str
    health: str  # SERVING, NOT_SERVING, or UNREACHABLE
    version: str = ""
    registry_hash: str = ""
    data_start: str = ""
    data_end: str = ""
    live_rounds: int = 0
    queries_in_flight: int = 0
    metrics: str = ""
    kinds: list[dict[str, Any]] = field(default_factory=list)
    problem: str = ""


def caller_id(federation: FederationConfig, member: str | None) -> str:
    """``member``, or the first coordinator whose key the roster lists."""
    if member:
        return member
    for coordinator in federation.coordinators:
        if coordinator.key is not None:
            return coordinator.id
    raise ConfigError(f"{federation.path}: no coordinator with a key in the roster; pass --as MEMBER-ID")


async def gather_status(federation: FederationConfig, member: str) -> list[NodeReport]:
    """One report per server of the roster (broker first, then nodes in roster order)."""
    identity = federation.identity(member)
    credentials = channel_credentials(identity)
    targets = [(federation.broker.id, "broker", federation.broker.address)]
    targets += [(node.id, "adapter", node.address) for node in federation.nodes]

    async def one(node_id: str, role: str, address: str) -> NodeReport:
        report = NodeReport(node_id=node_id, role=role, address=address, health="UNREACHABLE")
        async with grpc.aio.secure_channel(address, credentials, options=channel_options(node_id)) as channel:
            try:
                health: Any = health_pb2_grpc.HealthStub(channel)
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=STATUS_TIMEOUT_S)
                report.health = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                stub: Any = (
                    broker_pb2_grpc.BrokerStub(channel)
                    if role == "broker"
                    else adapter_pb2_grpc.AgencyAdapterStub(channel)
                )
                status: common_pb2.NodeStatus = await stub.Status(common_pb2.StatusRequest(), timeout=STATUS_TIMEOUT_S)
            except grpc.aio.AioRpcError as error:
                report.problem = bounded_reason(f"{error.code().name}: {error.details()}", 200)
                return report
        report.version, report.registry_hash = status.version, status.registry_hash
        report.data_start, report.data_end = status.data_start, status.data_end
        report.live_rounds, report.queries_in_flight = status.live_rounds, status.queries_in_flight
        report.metrics = status.metrics_address
        report.kinds = [
            {"kind": k.kind, "reachable": k.reachable, "total": k.total, "threshold": k.threshold, "serving": k.serving}
            for k in status.kinds
        ]
        return report

    return list(await asyncio.gather(*(one(*target) for target in targets)))


def healthy(reports: list[NodeReport]) -> bool:
    return all(r.health == "SERVING" for r in reports) and all(k["serving"] for r in reports for k in r.kinds)


def render_status(reports: list[NodeReport]) -> str:
    lines = [f"{'node':<16} {'role':<8} {'health':<12} {'version':<8} {'registry':<12} {'data':<23} {'live':>4}  note"]
    for r in reports:
        data = f"{r.data_start}..{r.data_end}" if r.data_start else "-"
        note = r.problem or (f"metrics {r.metrics}" if r.metrics else "")
        if r.role == "broker" and not r.problem:
            note = f"{r.queries_in_flight} queries running" + (f"; {note}" if note else "")
        registry = r.registry_hash[:12] if r.registry_hash else "-"
        lines.append(
            f"{r.node_id:<16} {r.role:<8} {r.health:<12} {r.version or '-':<8} {registry:<12} {data:<23} "
            f"{r.live_rounds:>4}  {note}"
        )
    for r in reports:
        for k in r.kinds:
            verdict = "serving" if k["serving"] else "NOT SERVING"
            lines.append(
                f"{r.node_id}: {k['kind']} {verdict}: {k['reachable']} of {k['total']} agencies reachable, "
                f"threshold {k['threshold']}"
            )
    hashes = {r.registry_hash for r in reports if r.registry_hash}
    if len(hashes) > 1:
        lines.append("registry hashes differ between nodes: rounds will be refused (FAILED_PRECONDITION)")
    return "\n".join(lines)


def run_status(path: Path, member: str | None, output: str) -> int:
    federation = load_federation(path)
    reports = asyncio.run(gather_status(federation, caller_id(federation, member)))
    if output == "json":
        print(json.dumps([asdict(r) for r in reports], indent=2))
    else:
        print(render_status(reports))
    ok = healthy(reports)
    if not ok:
        print("fedbroker status: some nodes or agency kinds are not serving", file=sys.stderr)
    return 0 if ok else 1
