"""Records each incoming call's deadline so downstream calls can share it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from mesh import deadlines
from mesh.interceptors._handlers import (
    Continuation,
    Handler,
    HandlerCache,
    StreamBehaviour,
    UnaryBehaviour,
    is_protocol,
    wrap_handler,
)


class ServerDeadlineInterceptor(grpc.aio.ServerInterceptor):
    """Stores the call's time remaining in the deadline context variable."""

    def __init__(self) -> None:
        self._handlers = HandlerCache()

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or is_protocol(handler_call_details.method):
            return handler
        cached = self._handlers.get(handler)
        if cached is not None:
            return cached

        def wrap_unary(behaviour: UnaryBehaviour) -> UnaryBehaviour:
            async def with_deadline(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                deadlines.set_deadline_from_remaining(context.time_remaining())
                return await behaviour(request, context)

            return with_deadline

        def wrap_stream(behaviour: StreamBehaviour) -> StreamBehaviour:
            async def with_deadline(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                deadlines.set_deadline_from_remaining(context.time_remaining())
                async for message in behaviour(request, context):
                    yield message

            return with_deadline

        return self._handlers.put(handler, wrap_handler(handler, wrap_unary, wrap_stream))
