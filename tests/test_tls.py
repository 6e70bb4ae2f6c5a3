"""Mutual TLS between real grpc.aio endpoints on loopback: who gets in, and who the server sees."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from federation.errors import AuthenticationFailed
from federation.identity import Identity
from federation.pki import generate_ca, generate_dev_pki, issue_certificate
from federation.tls import (
    MAX_MESSAGE_BYTES,
    channel_credentials,
    channel_options,
    identity_from_auth_context,
    peer_identity,
    server_credentials,
    server_options,
)

NOW = datetime.datetime.now(datetime.UTC)
WHO = "/fedbroker.test.Echo/Who"
HANDLED: list[str] = []  # peers the echo handler answered in the current serve_and_call


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pki_dir = tmp_path_factory.mktemp("pki")
    generate_dev_pki(pki_dir, ["broker", "telecom-a"])
    return pki_dir


def load(pki: Path, node_id: str) -> Identity:
    return Identity.load(node_id, pki / f"{node_id}.pem", pki / f"{node_id}.key", pki / "ca.pem")


def unchecked_identity(node_id: str, cert_key: tuple[bytes, bytes], ca_pem: bytes) -> Identity:
    """An identity that skips load()'s checks, as an attacker's or a stale client would hold."""
    return Identity(node_id=node_id, cert_pem=cert_key[0], key_pem=cert_key[1], ca_pem=ca_pem)


async def who(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    HANDLED.append("?")
    try:
        HANDLED[-1] = peer_identity(context)
        return HANDLED[-1].encode()
    except AuthenticationFailed as exc:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
        raise


def serve_and_call(
    server_identity: Identity | None, call: Callable[[int], Awaitable[bytes]]
) -> bytes | grpc.aio.AioRpcError:
    """Start an echo server on 127.0.0.1:0 (mTLS unless ``server_identity`` is None), run ``call(port)``."""

    HANDLED.clear()

    async def main() -> bytes | grpc.aio.AioRpcError:
        handler = grpc.method_handlers_generic_handler(
            "fedbroker.test.Echo", {"Who": grpc.unary_unary_rpc_method_handler(who)}
        )
        server = grpc.aio.server(options=server_options())
        server.add_generic_rpc_handlers((handler,))
        if server_identity is None:
            port = server.add_insecure_port("127.0.0.1:0")
        else:
            port = server.add_secure_port("127.0.0.1:0", server_credentials(server_identity))
        await server.start()
        try:
            return await call(port)
        except grpc.aio.AioRpcError as exc:
            return exc
        finally:
            await server.stop(None)

    return asyncio.run(main())


def as_client(credentials: grpc.ChannelCredentials, peer_id: str) -> Callable[[int], Awaitable[bytes]]:
    async def call(port: int) -> bytes:
        options = channel_options(peer_id)
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
            reply: bytes = await echo(channel)(b"", timeout=5)
            return reply

    return call


def echo(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(WHO, request_serializer=bytes, response_deserializer=bytes)


def assert_refused(outcome: bytes | grpc.aio.AioRpcError) -> None:
    assert isinstance(outcome, grpc.aio.AioRpcError), f"the call got through: {outcome!r}"
    assert outcome.code() == grpc.StatusCode.UNAVAILABLE, outcome
    assert HANDLED == [], "the handler ran for a refused connection"


def test_federation_client_is_identified_by_its_certificate(pki: Path) -> None:
    client = load(pki, "telecom-a")
    outcome = serve_and_call(load(pki, "broker"), as_client(channel_credentials(client), "broker"))
    assert outcome == b"telecom-a"


def test_client_without_certificate_is_refused(pki: Path) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=(pki / "ca.pem").read_bytes())
    assert_refused(serve_and_call(load(pki, "broker"), as_client(credentials, "broker")))


def test_client_with_certificate_from_another_ca_is_refused(pki: Path) -> None:
    foreign_ca = generate_ca("someone else")
    foreign = issue_certificate(*foreign_ca, "telecom-a", not_before=NOW, not_after=NOW + datetime.timedelta(days=1))
    # It trusts our CA, so only the server's check of its certificate can stop it.
    impostor = unchecked_identity("telecom-a", foreign, (pki / "ca.pem").read_bytes())
    assert_refused(serve_and_call(load(pki, "broker"), as_client(channel_credentials(impostor), "broker")))


def test_client_with_expired_certificate_is_refused(pki: Path) -> None:
    ca_pem = (pki / "ca.pem").read_bytes()
    expired = issue_certificate(
        ca_pem,
        (pki / "ca.key").read_bytes(),
        "telecom-a",
        not_before=NOW - datetime.timedelta(days=30),
        not_after=NOW - datetime.timedelta(days=1),
    )
    stale = unchecked_identity("telecom-a", expired, ca_pem)
    assert_refused(serve_and_call(load(pki, "broker"), as_client(channel_credentials(stale), "broker")))


def test_client_expecting_another_server_id_is_refused(pki: Path) -> None:
    client = load(pki, "telecom-a")
    # The server at this address is "broker"; a client that expects "telecom-a" there must not talk to it.
    call = as_client(channel_credentials(client), "telecom-a")
    assert_refused(serve_and_call(load(pki, "broker"), call))


def test_server_with_certificate_from_another_ca_is_refused(pki: Path) -> None:
    foreign_ca = generate_ca("someone else")
    foreign = issue_certificate(*foreign_ca, "broker", not_before=NOW, not_after=NOW + datetime.timedelta(days=1))
    fake_broker = unchecked_identity("broker", foreign, foreign_ca[0])
    client = load(pki, "telecom-a")
    assert_refused(serve_and_call(fake_broker, as_client(channel_credentials(client), "broker")))


def test_plaintext_call_has_no_identity() -> None:
    async def call(port: int) -> bytes:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply: bytes = await echo(channel)(b"", timeout=5)
            return reply

    outcome = serve_and_call(None, call)
    assert isinstance(outcome, grpc.aio.AioRpcError)
    assert outcome.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "did not arrive over TLS" in (outcome.details() or "")


def test_identity_never_comes_from_metadata(pki: Path) -> None:
    client = load(pki, "telecom-a")

    async def call(port: int) -> bytes:
        options = channel_options("broker")
        credentials = channel_credentials(client)
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
            metadata = (("x509_subject_alternative_name", "nhc-national"), ("peer", "nhc-national"))
            reply: bytes = await echo(channel)(b"", timeout=5, metadata=metadata)
            return reply

    assert serve_and_call(load(pki, "broker"), call) == b"telecom-a"


def test_auth_context_without_a_single_node_id_is_refused() -> None:
    ssl: dict[str, Any] = {"transport_security_type": [b"ssl"]}
    with pytest.raises(AuthenticationFailed, match="did not arrive over TLS"):
        identity_from_auth_context({})
    with pytest.raises(AuthenticationFailed, match="no client certificate"):
        identity_from_auth_context(ssl)
    with pytest.raises(AuthenticationFailed, match="no client certificate"):
        identity_from_auth_context({**ssl, "x509_subject_alternative_name": [b"a", b"b"]})
    assert identity_from_auth_context({**ssl, "x509_subject_alternative_name": [b"telecom-a"]}) == "telecom-a"


def test_channel_options_pin_the_peer_and_limits() -> None:
    options = dict(channel_options("telecom-a"))
    assert options["grpc.ssl_target_name_override"] == "telecom-a"
    assert options["grpc.max_receive_message_length"] == MAX_MESSAGE_BYTES == 8 * 1024 * 1024
    assert options["grpc.max_send_message_length"] == MAX_MESSAGE_BYTES
    assert options["grpc.keepalive_time_ms"] > 0
    with pytest.raises(ValueError, match="not a valid node id"):
        channel_options("127.0.0.1")
