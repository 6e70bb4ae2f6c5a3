"""Registering a service on a gRPC server with request deserializers that refuse instead of raising.

The generated ``add_..._to_server`` functions parse requests with ``FromString``: malformed bytes then raise
inside gRPC, which answers UNKNOWN with the Python exception's text and logs a traceback on every call.
:func:`add_service` registers every method of a service from its descriptor instead, with a deserializer that
turns malformed bytes, and any field over its cap (:mod:`federation.bounds`), into a refusal: the handler
is not called, the caller gets INVALID_ARGUMENT with a fixed message naming the message type or the field,
and the servicer's ``on_rpc_error`` hook (the node's audit) records it. Nothing else changes.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.message import Message

from federation import metrics
from federation.bounds import Bounds, bounded_reason, bounds_problem
from federation.errors import InvalidQuery


@dataclass(frozen=True)
class RejectedRequest:
    """Handed to the method in place of a request the deserializer refused; ``reason`` is safe to show."""

    reason: str


def request_deserializer(message_class: type[Message], bounds: Bounds) -> Callable[[bytes], Message | RejectedRequest]:
    """Parse a request of ``message_class``; a RejectedRequest for malformed bytes or a field over its cap."""
    type_name = message_class.DESCRIPTOR.full_name

    def deserialize(raw: bytes) -> Message | RejectedRequest:
        try:
            message = message_class.FromString(raw)
        except Exception:  # DecodeError and whatever else the parser raises: the caller sent garbage
            return RejectedRequest(
                f"the request is not a valid {type_name} message (malformed protobuf); "
                "build it from proto/federation/v1"
            )
        problem = bounds_problem(message, bounds)
        return message if problem is None else RejectedRequest(f"{problem}; send a smaller request")

    return deserialize


def add_service(server: grpc.aio.Server, servicer: Any, service: Any, bounds: Bounds) -> None:
    """Register every method of ``service`` (a protobuf ServiceDescriptor) on ``server``, implemented by
    ``servicer``'s method of the same name, with tolerant request deserializers (see the module docstring).
    Client streaming is not used."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        if method.client_streaming:
            raise ValueError(f"{method.full_name}: client-streaming methods are not supported")
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        behaviour = _guarded(servicer, getattr(servicer, method.name), method.name)
        deserialize = request_deserializer(request_class, bounds)
        serialize = response_class.SerializeToString
        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                behaviour, request_deserializer=deserialize, response_serializer=serialize
            )
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                behaviour, request_deserializer=deserialize, response_serializer=serialize
            )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))


def _guarded(servicer: Any, behaviour: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``behaviour`` that refuses a RejectedRequest (audited through the servicer's hook) before running."""

    async def refuse(request: RejectedRequest, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        error = InvalidQuery(bounded_reason(request.reason))
        hook = getattr(servicer, "on_rpc_error", None)
        if hook is not None:
            outcome = hook(name, context, error)
            if inspect.isawaitable(outcome):
                await outcome
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)

    latency = metrics.STAGE_SECONDS.labels(stage=metrics.stage_name(name))

    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            if isinstance(request, RejectedRequest):
                await refuse(request, context)
                return
            with latency.time():
                async for item in behaviour(request, context):
                    yield item

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, RejectedRequest):
            await refuse(request, context)
        with latency.time():
            return await behaviour(request, context)

    return unary
