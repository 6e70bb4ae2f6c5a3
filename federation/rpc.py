"""The one boundary between the error tree and gRPC status codes, both directions.

Servicers wrap their handlers with :func:`rpc_errors`; clients turn an ``AioRpcError`` back into the
matching :class:`~federation.errors.FederationError` with :func:`error_from_rpc`.

The class survives the wire (docs/protocol.md §10): a node ends a failed call with the class's status code and
message, and in the status details (the ``grpc-status-details-bin`` trailer, a ``google.rpc.Status``) one
``google.rpc.ErrorInfo`` with ``domain`` :data:`ERROR_DOMAIN`, ``reason`` the class name in UPPER_SNAKE_CASE and
``metadata`` ``{"class": <class name>, **error.details}``. The client rebuilds that exact subclass, as Temporal's
``RPCError`` does; a status without it (a transport failure, an older peer, an unknown class) falls back on the
status code.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from federation import errors
from federation.bounds import bounded_reason

log = logging.getLogger(__name__)

#: ``ErrorInfo.domain`` of every fedbroker error.
ERROR_DOMAIN = "fedbroker.federation.v1"
#: The ``ErrorInfo.metadata`` key that names the error's class.
CLASS_KEY = "class"
_DETAILS_KEY = "grpc-status-details-bin"
_MAX_DETAILS = 16

_STATUS_TO_ERROR: dict[grpc.StatusCode, type[errors.FederationError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidQuery,
    grpc.StatusCode.FAILED_PRECONDITION: errors.RoundError,
    grpc.StatusCode.ABORTED: errors.RoundAborted,
    grpc.StatusCode.ALREADY_EXISTS: errors.RoundReplayed,
    grpc.StatusCode.NOT_FOUND: errors.UnknownRound,
    grpc.StatusCode.DATA_LOSS: errors.IntegrityFault,
    grpc.StatusCode.UNAUTHENTICATED: errors.AuthenticationFailed,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: errors.NodeUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.NodeUnavailable,
}


def status_of(error: errors.FederationError) -> grpc.StatusCode:
    """The grpc.StatusCode an error maps to."""
    return status_of_class(type(error))


def reason_of(cls: type[errors.FederationError]) -> str:
    """``ErrorInfo.reason`` of a class: its name in UPPER_SNAKE_CASE (``PolicyRefused`` -> ``POLICY_REFUSED``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cls.__name__).upper()


def error_trailers(error: errors.FederationError) -> tuple[tuple[str, bytes], ...]:
    """The trailing metadata that carries ``error``'s class and details: ``grpc-status-details-bin``, a
    ``google.rpc.Status`` with the call's code and message and one ``ErrorInfo``."""
    info = error_details_pb2.ErrorInfo(
        reason=reason_of(type(error)),
        domain=ERROR_DOMAIN,
        metadata={**dict(error.details), CLASS_KEY: type(error).__name__},
    )
    packed = any_pb2.Any()
    packed.Pack(info)
    status = status_pb2.Status(code=status_of(error).value[0], message=error.message, details=[packed])
    trailers = rpc_status.to_status(status).trailing_metadata
    return tuple((str(key), value if isinstance(value, bytes) else value.encode()) for key, value in trailers)


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    """The fedbroker ErrorInfo of a failed call, if the status details carry one consistent with the call's code
    and message (as ``grpc_status.rpc_status.from_call`` checks); None otherwise."""
    for key, value in error.trailing_metadata() or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:  # a malformed trailer from a peer is no class at all
            return None
        if status.code != error.code().value[0] or status.message != (error.details() or ""):
            return None
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == ERROR_DOMAIN:  # Unpack is False for another message type
                return info
    return None


def bounded_details(details: Mapping[str, str]) -> Mapping[str, str]:
    """At most 16 details, keys cut to 64 bytes and values to MAX_REASON_BYTES: what leaves or enters a node."""
    items = sorted((k, v) for k, v in details.items() if k != CLASS_KEY)[:_MAX_DETAILS]
    return MappingProxyType({bounded_reason(k, 64): bounded_reason(v) for k, v in items})


def status_of_class(cls: type[errors.FederationError]) -> grpc.StatusCode:
    """The grpc.StatusCode a class of the tree maps to."""
    return getattr(grpc.StatusCode, cls.status, grpc.StatusCode.INTERNAL)


def error_from_rpc(error: grpc.aio.AioRpcError, *, node: str) -> errors.FederationError:
    """Rebuild a federation error from a failed call to ``node``: the exact class the node raised (from its
    ErrorInfo) with its details, else the class of the status code; the message names the node."""
    code = error.code()
    # A peer's text is bounded before it is repeated in our own messages, coverage and audit records.
    text = bounded_reason(error.details() or code.name)
    info = _error_info(error)
    cls = errors.ERROR_CLASSES.get(info.metadata.get(CLASS_KEY, "")) if info is not None else None
    if cls is not None and status_of_class(cls) == code:
        return cls(f"{node}: {text}", details=bounded_details(dict(info.metadata)) if info is not None else None)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return errors.NodeUnavailable(f"{node} unavailable ({code.name.lower()}): {text}")
    return _STATUS_TO_ERROR.get(code, errors.FederationError)(f"{node}: {text}")


Handler = TypeVar("Handler", bound=Callable[..., Any])
OnError = Callable[[str, Any, errors.FederationError], Any]


def rpc_errors(on_error: OnError | None = None) -> Callable[[Handler], Handler]:
    """Decorate a grpc.aio servicer method (unary or server-streaming): a FederationError becomes an abort
    with its status and message, after ``on_error(method, context, error)`` (the node's audit hook, sync or
    async) ran. The message is first cut to ``MAX_REASON_BYTES``, so neither the status nor the audit record
    grows with what a caller sent. Anything else is logged and becomes INTERNAL without its text, so no
    internal value can leak."""

    def decorate(handler: Handler) -> Handler:
        name = handler.__name__

        async def fail(self: Any, context: Any, error: BaseException) -> None:
            if isinstance(error, errors.FederationError):
                error.message = bounded_reason(error.message)
                error.details = bounded_details(error.details)
                hook = on_error or getattr(self, "on_rpc_error", None)
                if hook is not None:
                    outcome = hook(name, context, error)
                    if inspect.isawaitable(outcome):
                        await outcome
                await context.abort(status_of(error), error.message, trailing_metadata=error_trailers(error))
            log.exception("internal error in %s", name)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {name}; see the node's log")

        if inspect.isasyncgenfunction(handler):

            @functools.wraps(handler)
            async def stream_wrapper(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
                try:
                    async for item in handler(self, request, context):
                        yield item
                except (grpc.aio.AbortError, GeneratorExit):
                    raise
                except Exception as error:
                    await fail(self, context, error)

            return stream_wrapper  # type: ignore[return-value]

        @functools.wraps(handler)
        async def unary_wrapper(self: Any, request: Any, context: Any) -> Any:
            try:
                return await handler(self, request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await fail(self, context, error)

        return unary_wrapper  # type: ignore[return-value]

    return decorate
