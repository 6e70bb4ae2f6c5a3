"""A node's port is its own: a second process cannot bind it and take a share of its connections.

gRPC turns SO_REUSEPORT on by default; with it a second ``fedbroker serve`` on a live node's port reported
ready and received part of the new connections. Servers now set ``grpc.so_reuseport = 0``, and a node whose
address is in use stops at start with one line saying so and a non-zero exit, not a traceback.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from federation.config import load_federation
from federation.serving import address_in_use
from federation.tls import channel_credentials, channel_options, server_options
from federation.v1 import adapter_pb2, adapter_pb2_grpc
from tests.waiting import wait_for

NODE = "telecom-a"


def test_a_second_grpc_server_cannot_bind_a_live_port() -> None:
    async def scenario() -> None:
        first = grpc.aio.server(options=server_options())
        port = first.add_insecure_port("127.0.0.1:0")
        await first.start()
        try:
            assert address_in_use(f"127.0.0.1:{port}")
            second = grpc.aio.server(options=server_options())
            with pytest.raises(RuntimeError):
                second.add_insecure_port(f"127.0.0.1:{port}")
        finally:
            await first.stop(grace=None)
        assert not address_in_use(f"127.0.0.1:{port}")

    asyncio.run(scenario())


def _serve(config: Path, listen: str, ready: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        args = [sys.executable, "-m", "fedbroker", "serve", "adapter", "--config", str(config), "--id", NODE]
        args += ["--listen", listen, "--ready-file", str(ready), "--exit-with-parent", str(os.getpid())]
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def live_adapter(small_scenario: Path, tmp_path: Path) -> Iterator[int]:
    ready = tmp_path / "first.port"
    process = _serve(small_scenario, "127.0.0.1:0", ready, tmp_path / "first.log")
    try:
        port = wait_for(lambda: int(ready.read_text()) if ready.exists() and ready.read_text().strip() else None)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_a_second_node_on_a_live_port_exits_with_one_clear_line(
    small_scenario: Path, live_adapter: int, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{live_adapter}"
    log = tmp_path / "second.log"
    second = _serve(small_scenario, address, tmp_path / "second.port", log)
    assert second.wait(timeout=120) != 0
    output = log.read_text()
    assert f"address {address} is in use (another fedbroker node?)" in output
    assert "Traceback" not in output
    assert not (tmp_path / "second.port").exists()

    # Every fresh connection still lands on the first node (each channel is a new TCP connection).
    federation = load_federation(small_scenario)
    broker = federation.identity(federation.broker.id)

    async def describe_many() -> set[str]:
        seen: set[str] = set()
        for _ in range(10):
            async with grpc.aio.secure_channel(
                address, channel_credentials(broker), options=channel_options(NODE)
            ) as channel:
                reply = await adapter_pb2_grpc.AgencyAdapterStub(channel).Describe(
                    adapter_pb2.DescribeRequest(), timeout=30
                )
                seen.add(reply.node_id)
        return seen

    assert asyncio.run(describe_many()) == {NODE}
