"""The error boundary keeps the class: every FederationError subclass a servicer raises reaches the client as that
exact subclass, with its message and details, over a real gRPC server with mutual TLS; and each class has its own
exit code of the ``fedbroker`` command, listed in ``fedbroker --help``.

The wire form (a google.rpc.ErrorInfo in the status details) is specified in docs/protocol.md §10.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from fedbroker.cli import build_parser, main
from federation import errors
from federation.identity import Identity
from federation.pki import generate_dev_pki
from federation.rpc import CLASS_KEY, ERROR_DOMAIN, error_from_rpc, reason_of, rpc_errors, status_of
from federation.tls import channel_credentials, channel_options, server_credentials, server_options

SERVICE = "fedbroker.test.Boundary"
DETAILS = {"stage": "share-keys", "node": "telecom-b"}


class _Boundary:
    """A servicer whose methods raise the error class named by the request (UTF-8 class name)."""

    def __init__(self) -> None:
        self.refused: list[tuple[str, str]] = []

    def on_rpc_error(self, method: str, context: Any, error: errors.FederationError) -> None:
        self.refused.append((method, type(error).__name__))

    @rpc_errors()
    async def Fail(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        raise _raise(request)

    @rpc_errors()
    async def FailStreaming(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        yield b"first"
        raise _raise(request)


def _raise(request: bytes) -> BaseException:
    name = request.decode()
    if name == "ValueError":
        return ValueError("an internal value that must not leak")
    return errors.ERROR_CLASSES[name](f"{name} happened; here is what to fix", details=DETAILS)


async def _abort_plain(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    """A peer that aborts with a bare status code and no class (an older node, or a foreign server)."""
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")
    raise AssertionError("abort returns only by raising")


async def _abort_with_info(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    """A peer that names a class the client does not know, or one whose status is not the call's code."""
    name, _, code = request.decode().partition(":")
    info = error_details_pb2.ErrorInfo(reason="X", domain=ERROR_DOMAIN, metadata={CLASS_KEY: name})
    packed = any_pb2.Any()
    packed.Pack(info)
    status = status_pb2.Status(code=grpc.StatusCode[code].value[0], message="odd", details=[packed])
    await context.abort(grpc.StatusCode[code], "odd", trailing_metadata=rpc_status.to_status(status).trailing_metadata)
    raise AssertionError("abort returns only by raising")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Identity, Identity]:
    directory = tmp_path_factory.mktemp("boundary-pki")
    generate_dev_pki(directory, ["telecom-a", "broker"])
    ca = directory / "ca.pem"

    def load(node_id: str) -> Identity:
        return Identity.load(node_id, directory / f"{node_id}.pem", directory / f"{node_id}.key", ca)

    return load("telecom-a"), load("broker")


def _call(
    pki: tuple[Identity, Identity], method: str, payload: bytes, *, streaming: bool = False
) -> tuple[grpc.aio.AioRpcError, list[tuple[str, str]]]:
    server_identity, client_identity = pki
    boundary = _Boundary()

    async def scenario() -> grpc.aio.AioRpcError:
        server = grpc.aio.server(options=server_options())
        raw: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            "Fail": grpc.unary_unary_rpc_method_handler(boundary.Fail),
            "FailStreaming": grpc.unary_stream_rpc_method_handler(boundary.FailStreaming),
            "AbortPlain": grpc.unary_unary_rpc_method_handler(_abort_plain),
            "AbortWithInfo": grpc.unary_unary_rpc_method_handler(_abort_with_info),
        }
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, raw)])
        port = server.add_secure_port("127.0.0.1:0", server_credentials(server_identity))
        await server.start()
        try:
            async with grpc.aio.secure_channel(
                f"127.0.0.1:{port}", channel_credentials(client_identity), options=channel_options("telecom-a")
            ) as channel:
                try:
                    if streaming:
                        stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
                            f"/{SERVICE}/{method}"
                        )
                        async for _ in stream(payload, timeout=30):
                            pass
                    else:
                        unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                            f"/{SERVICE}/{method}"
                        )
                        await unary(payload, timeout=30)
                except grpc.aio.AioRpcError as error:
                    return error
        finally:
            await server.stop(None)
        raise AssertionError(f"{method} succeeded")

    return asyncio.run(scenario()), boundary.refused


@pytest.mark.parametrize("name", sorted(errors.ERROR_CLASSES))
@pytest.mark.parametrize("streaming", [False, True])
def test_every_class_round_trips_exactly(pki: tuple[Identity, Identity], name: str, streaming: bool) -> None:
    cls = errors.ERROR_CLASSES[name]
    method = "FailStreaming" if streaming else "Fail"
    rpc_error, refused = _call(pki, method, name.encode(), streaming=streaming)
    assert rpc_error.code() == status_of(cls(""))
    rebuilt = error_from_rpc(rpc_error, node="telecom-a")
    assert type(rebuilt) is cls
    assert rebuilt.message == f"telecom-a: {name} happened; here is what to fix"
    assert dict(rebuilt.details) == DETAILS
    assert refused == [(method, name)], "the node's audit hook saw the refusal"


def test_the_status_details_carry_an_error_info(pki: tuple[Identity, Identity]) -> None:
    rpc_error, _ = _call(pki, "Fail", b"PolicyRefused")
    (trailer,) = [v for k, v in rpc_error.trailing_metadata() or () if k == "grpc-status-details-bin"]
    assert isinstance(trailer, bytes)
    status = status_pb2.Status.FromString(trailer)
    assert status.code == grpc.StatusCode.PERMISSION_DENIED.value[0] and status.message == rpc_error.details()
    (detail,) = status.details
    info = error_details_pb2.ErrorInfo()
    assert detail.Unpack(info)
    assert (info.domain, info.reason) == (ERROR_DOMAIN, "POLICY_REFUSED")
    assert dict(info.metadata) == {**DETAILS, CLASS_KEY: "PolicyRefused"}


def test_an_unexpected_exception_is_internal_without_its_text(pki: tuple[Identity, Identity]) -> None:
    rpc_error, refused = _call(pki, "Fail", b"ValueError")
    assert rpc_error.code() == grpc.StatusCode.INTERNAL
    assert "must not leak" not in (rpc_error.details() or "")
    rebuilt = error_from_rpc(rpc_error, node="telecom-a")
    assert type(rebuilt) is errors.FederationError and refused == []


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # A class from a newer peer: the status code decides.
        (b"QuotaExhausted:PERMISSION_DENIED", errors.PermissionDenied),
        # A class that does not map to the call's code is not believed.
        (b"IntegrityFault:INVALID_ARGUMENT", errors.InvalidQuery),
        (b"PolicyRefused:UNAVAILABLE", errors.NodeUnavailable),
    ],
)
def test_a_class_that_does_not_fit_falls_back_on_the_status_code(
    pki: tuple[Identity, Identity], payload: bytes, expected: type[errors.FederationError]
) -> None:
    rpc_error, _ = _call(pki, "AbortWithInfo", payload)
    assert type(error_from_rpc(rpc_error, node="telecom-a")) is expected


def test_a_status_without_details_falls_back_on_the_status_code(pki: tuple[Identity, Identity]) -> None:
    rpc_error, _ = _call(pki, "AbortPlain", b"")
    rebuilt = error_from_rpc(rpc_error, node="telecom-a")
    assert type(rebuilt) is errors.PermissionDenied and rebuilt.message == "telecom-a: no"


def test_classes_name_their_reason_in_upper_snake_case() -> None:
    assert reason_of(errors.PolicyRefused) == "POLICY_REFUSED"
    assert reason_of(errors.IntegrityFault) == "INTEGRITY_FAULT"
    assert reason_of(errors.FederationError) == "FEDERATION_ERROR"


# -- exit codes ---------------------------------------------------------------------------------------------------


def test_each_error_group_has_its_own_exit_code() -> None:
    groups: dict[int, set[type[errors.FederationError]]] = {
        3: {errors.ConfigError, errors.RegistryMismatch},
        4: {errors.InvalidQuery, errors.UnknownDistrict, errors.VectorMismatch},
        5: {errors.AuthenticationFailed, errors.CodeRejected, errors.PermissionDenied, errors.PolicyRefused},
        6: {errors.NodeUnavailable},
        7: {errors.RoundError, errors.RoundAborted, errors.RoundReplayed, errors.UnknownRound},
        8: {errors.IntegrityFault},
        9: {errors.ResourceExhausted, errors.RateLimited, errors.BudgetExhausted, errors.IngestBusy},
        1: {errors.FederationError},
    }
    assert {cls for classes in groups.values() for cls in classes} == set(errors.ERROR_CLASSES.values())
    for code, classes in groups.items():
        assert {cls.exit_code for cls in classes} == {code}, classes
        assert code in errors.EXIT_CODES
    assert errors.EXIT_CODES[2].startswith("usage")


def test_help_lists_every_exit_code() -> None:
    text = build_parser().format_help()
    for code, meaning in errors.EXIT_CODES.items():
        assert f"{code:>3}  {meaning.split(':')[0]}" in text, code


def test_main_exits_with_the_class_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # config: the roster file does not exist.
    missing = tmp_path / "missing.yaml"
    assert main(["query", "population", "--federation", str(missing), "--as", "nhc-national"]) == 3
    assert "ConfigError" in capsys.readouterr().err
    # usage: argparse's own exit status.
    with pytest.raises(SystemExit) as usage:
        main(["query"])
    assert usage.value.code == 2


def test_the_installed_command_exits_with_the_class_code(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fedbroker", "serve", "broker", "--config", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
