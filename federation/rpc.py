"""The one boundary between the error tree and gRPC status codes, both directions.

Servicers wrap their handlers with :func:`rpc_errors`; clients turn an ``AioRpcError`` back into the
matching :class:`~federation.errors.FederationError` with :func:`error_from_rpc`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from federation import errors
from federation.bounds import bounded_reason

log = logging.getLogger(__name__)

_STATUS_TO_ERROR: dict[grpc.StatusCode, type[errors.FederationError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidQuery,
    grpc.StatusCode.FAILED_PRECONDITION: errors.RoundError,
    grpc.StatusCode.ABORTED: errors.RoundAborted,
    grpc.StatusCode.ALREADY_EXISTS: errors.RoundReplayed,
    grpc.StatusCode.NOT_FOUND: errors.UnknownRound,
    grpc.StatusCode.UNAUTHENTICATED: errors.AuthenticationFailed,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: errors.NodeUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.NodeUnavailable,
}


def status_of(error: errors.FederationError) -> grpc.StatusCode:
    """The grpc.StatusCode an error maps to."""
    return getattr(grpc.StatusCode, error.status, grpc.StatusCode.INTERNAL)


def error_from_rpc(error: grpc.aio.AioRpcError, *, node: str) -> errors.FederationError:
    """Rebuild a federation error from a failed call to ``node``; the message names the node."""
    code = error.code()
    cls = _STATUS_TO_ERROR.get(code, errors.FederationError)
    # A peer's text is bounded before it is repeated in our own messages, coverage and audit records.
    details = bounded_reason(error.details() or code.name)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return errors.NodeUnavailable(f"{node} unavailable ({code.name.lower()}): {details}")
    return cls(f"{node}: {details}")


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
                hook = on_error or getattr(self, "on_rpc_error", None)
                if hook is not None:
                    outcome = hook(name, context, error)
                    if inspect.isawaitable(outcome):
                        await outcome
                await context.abort(status_of(error), error.message)
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
