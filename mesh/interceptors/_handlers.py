"""Rebuilding gRPC method handlers around wrapped behaviours."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, cast

import grpc

# The type stubs make RpcMethodHandler generic; at run time it is not subscriptable.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"
UnaryBehaviour = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
StreamBehaviour = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]

INFRASTRUCTURE_PREFIXES = ("/grpc.health.", "/grpc.reflection.", "/backbeat.admin.")


def is_infrastructure(method: str) -> bool:
    """Return True for health, reflection and admin methods, which faults, traces and metrics leave alone."""
    return method.startswith(INFRASTRUCTURE_PREFIXES)


def wrap_handler(
    handler: Handler,
    wrap_unary: Callable[[UnaryBehaviour], UnaryBehaviour],
    wrap_stream: Callable[[StreamBehaviour], StreamBehaviour],
) -> Handler:
    """Return a copy of `handler` whose unary-unary or unary-stream behaviour is wrapped."""
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            wrap_unary(cast(UnaryBehaviour, handler.unary_unary)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            wrap_stream(cast(StreamBehaviour, handler.unary_stream)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler
