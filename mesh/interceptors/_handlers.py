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

PROTOCOL_PREFIXES = ("/grpc.health.", "/grpc.reflection.")
INFRASTRUCTURE_PREFIXES = (*PROTOCOL_PREFIXES, "/backbeat.admin.")


def is_protocol(method: str) -> bool:
    """Return True for health and reflection methods, whose handlers are not Backbeat code."""
    return method.startswith(PROTOCOL_PREFIXES)


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


class HandlerCache:
    """Wrapped handlers by the handler they wrap, so each method is wrapped once, not per call.

    gRPC's generic handlers return the same handler object for a method on every call,
    so identity is a safe key; the original is kept to keep its id from being reused.
    """

    def __init__(self) -> None:
        self._wrapped: dict[int, tuple[Handler, Handler]] = {}

    def get(self, handler: Handler) -> Handler | None:
        """Return the wrapped version of `handler`, or None when it has not been wrapped yet."""
        entry = self._wrapped.get(id(handler))
        return entry[1] if entry is not None and entry[0] is handler else None

    def put(self, handler: Handler, wrapped: Handler) -> Handler:
        """Remember `wrapped` as the wrapped version of `handler` and return it."""
        self._wrapped[id(handler)] = (handler, wrapped)
        return wrapped


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Base of the mesh's server interceptors: wraps each method's handler once, then reuses it.

    Subclasses implement wrap_unary and wrap_stream; skip names the methods they leave alone.
    """

    def __init__(self) -> None:
        self._handlers = HandlerCache()

    def skip(self, method: str) -> bool:
        """Return True for methods this interceptor leaves alone: health, reflection and admin."""
        return is_infrastructure(method)

    def wrap_unary(self, behaviour: UnaryBehaviour, method: str) -> UnaryBehaviour:
        """Return `behaviour` wrapped for a unary-unary call of `method`."""
        raise NotImplementedError

    def wrap_stream(self, behaviour: StreamBehaviour, method: str) -> StreamBehaviour:
        """Return `behaviour` wrapped for a unary-stream call of `method`."""
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or self.skip(method):
            return handler

        cached = self._handlers.get(handler)
        if cached is not None:
            return cached
        wrapped = wrap_handler(
            handler,
            lambda behaviour: self.wrap_unary(behaviour, method),
            lambda behaviour: self.wrap_stream(behaviour, method),
        )
        return self._handlers.put(handler, wrapped)
