"""Observability of a running federation: `fedbroker status`, per-kind broker health, Prometheus metrics,
server reflection and JSON logs, all against real node processes.

Only the three carriers run; the roster's health networks and ticketing operators are down, so the broker
must report the telecom kind serving and the other two NOT_SERVING.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import urllib.request
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from broker.client import run_query
from fedbroker.cli import main as fedbroker_main
from fedbroker.harness import LocalFederation
from fedbroker.logs import configure_logging
from federation.catalog import new_query
from federation.config import FederationConfig
from federation.tls import channel_credentials, channel_options
from federation.v1 import broker_pb2, broker_pb2_grpc
from tests.federation_fixtures import own_federation, roster_variant
from tests.waiting import wait_for

pytestmark = pytest.mark.slow
TELECOM = ("telecom-a", "telecom-b", "telecom-c")
NATIONAL = "nhc-national"


@pytest.fixture(scope="module")
def fed(small_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    run_dir = tmp_path_factory.mktemp("observed-run")
    roster = roster_variant(small_scenario, run_dir / "federation.observed.yaml", min_contributors=2)
    with own_federation(roster, run_dir, nodes=TELECOM, metrics=True, log_format="json") as federation:
        yield federation


def _status(config: FederationConfig) -> tuple[int, list[dict[str, Any]]]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = fedbroker_main(["status", "--federation", str(config.path), "--format", "json"])
    return code, json.loads(out.getvalue())


def _scrape(address: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _kind_health(config: FederationConfig, kind: str) -> int:
    async def check() -> int:
        identity = config.identity(NATIONAL)
        async with grpc.aio.secure_channel(
            config.broker.address, channel_credentials(identity), options=channel_options(config.broker.id)
        ) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=f"federation.v1.Broker/{kind}"), timeout=30)
            return int(reply.status)

    return asyncio.run(check())


def test_status_shows_every_node_and_the_kinds_below_threshold(fed: LocalFederation) -> None:
    config = fed.config
    code, reports = wait_for(lambda: (lambda r: r if r[1][0]["kinds"] else None)(_status(config)))
    assert code == 1  # health and transport kinds cannot run
    by_id = {r["node_id"]: r for r in reports}
    broker = by_id[config.broker.id]
    assert broker["health"] == "SERVING" and broker["role"] == "broker"
    kinds = {k["kind"]: k for k in broker["kinds"]}
    assert kinds["telecom"] == {"kind": "telecom", "reachable": 3, "total": 3, "threshold": 2, "serving": True}
    assert kinds["health"]["reachable"] == 0 and not kinds["health"]["serving"]
    assert not kinds["transport"]["serving"]
    for node_id in TELECOM:
        report = by_id[node_id]
        assert report["health"] == "SERVING"
        assert report["version"] and report["version"] == broker["version"]
        assert report["registry_hash"] == broker["registry_hash"] == config.domain.registry_hash
        assert report["data_start"] == config.data_start.isoformat()
        assert report["data_end"] == config.data_end.isoformat()
        assert report["live_rounds"] == 0
        assert report["metrics"].startswith("127.0.0.1:")
    for node in config.nodes:
        if node.id not in TELECOM:
            assert by_id[node.id]["health"] == "UNREACHABLE" and by_id[node.id]["problem"]
    assert _kind_health(config, "telecom") == health_pb2.HealthCheckResponse.SERVING
    assert _kind_health(config, "health") == health_pb2.HealthCheckResponse.NOT_SERVING


def test_metrics_count_rounds_stages_bytes_and_refusals(fed: LocalFederation) -> None:
    config = fed.config
    _, reports = _status(config)
    addresses = {r["node_id"]: r["metrics"] for r in reports if r["metrics"]}
    assert set(addresses) == {config.broker.id, *TELECOM}
    before = {n: _scrape(a) for n, a in addresses.items()}
    query = new_query("population", start=config.data_end, end=config.data_end, params={}, coordinator=NATIONAL)
    answer = asyncio.run(run_query(config, NATIONAL, query))
    assert answer.rows
    after = {n: _scrape(a) for n, a in addresses.items()}

    def delta(node: str, sample: str) -> float:
        return after[node].get(sample, 0.0) - before[node].get(sample, 0.0)

    broker = config.broker.id
    assert delta(broker, 'fedbroker_rounds_total{outcome="completed"}') == 1
    assert delta(broker, 'fedbroker_stage_seconds_count{stage="open"}') == 1
    sent = sum(delta(n, 'fedbroker_masked_bytes_total{direction="sent"}') for n in TELECOM)
    received = delta(broker, 'fedbroker_masked_bytes_total{direction="received"}')
    assert sent > 0 and received == sent  # every masked byte sent was summed once
    for node in TELECOM:
        assert delta(node, 'fedbroker_rounds_total{outcome="completed"}') == 1
        assert delta(node, 'fedbroker_stage_seconds_count{stage="masked-input"}') == 1
        assert after[node]["fedbroker_live_rounds"] == 0
    assert after[broker]["fedbroker_queries_in_flight"] == 0

    # A refusal is counted by method and error class: an adapter's certificate may not describe the federation.
    async def describe_as_adapter() -> grpc.StatusCode:
        identity = config.identity("telecom-a")
        async with grpc.aio.secure_channel(
            config.broker.address, channel_credentials(identity), options=channel_options(broker)
        ) as channel:
            try:
                await broker_pb2_grpc.BrokerStub(channel).DescribeFederation(
                    broker_pb2.DescribeFederationRequest(), timeout=30
                )
            except grpc.aio.AioRpcError as error:
                return error.code()
        raise AssertionError("an adapter described the federation")

    assert asyncio.run(describe_as_adapter()) == grpc.StatusCode.PERMISSION_DENIED
    sample = 'fedbroker_refusals_total{method="DescribeFederation",reason="PermissionDenied"}'
    assert _scrape(addresses[broker])[sample] - after[broker].get(sample, 0.0) == 1


def test_reflection_lists_the_services(fed: LocalFederation) -> None:
    config = fed.config
    identity = config.identity(NATIONAL)
    for target, address, service in (
        (config.broker.id, config.broker.address, "federation.v1.Broker"),
        ("telecom-a", config.node("telecom-a").address, "federation.v1.AgencyAdapter"),
    ):
        with grpc.secure_channel(address, channel_credentials(identity), options=channel_options(target)) as channel:
            database = ProtoReflectionDescriptorDatabase(channel)
            services = set(database.get_services())
            assert {service, "grpc.health.v1.Health"} <= services
            methods = {m.name for m in database.FindFileContainingSymbol(service).service[0].method}
            assert "Status" in methods


def test_nodes_log_json_lines(fed: LocalFederation) -> None:
    for node_id, text in fed.logs():
        entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert any(re.fullmatch(rf"{node_id} serving on port \d+", e["message"]) for e in entries), node_id
        assert all({"ts", "level", "logger", "message"} <= set(e) for e in entries)


def test_json_formatter_keeps_exceptions_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging(log_format="json", level="debug")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("fedbroker.test").exception("failed %s", "here")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line]
    entry = json.loads(line)
    assert entry["message"] == "failed here" and entry["level"] == "error" and "ValueError: boom" in entry["exception"]
