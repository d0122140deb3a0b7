"""Records each incoming call's deadline so downstream calls can share it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from mesh import deadlines
from mesh.interceptors._handlers import (
    StreamBehaviour,
    UnaryBehaviour,
    WrappingInterceptor,
    is_protocol,
)


class ServerDeadlineInterceptor(WrappingInterceptor):
    """Stores the call's time remaining in the deadline context variable."""

    def skip(self, method: str) -> bool:
        """Return True for health and reflection; admin calls get deadlines and error mapping too."""
        return is_protocol(method)

    def wrap_unary(self, behaviour: UnaryBehaviour, method: str) -> UnaryBehaviour:
        async def with_deadline(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            deadlines.set_deadline_from_remaining(context.time_remaining())
            return await behaviour(request, context)

        return with_deadline

    def wrap_stream(self, behaviour: StreamBehaviour, method: str) -> StreamBehaviour:
        async def with_deadline(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            deadlines.set_deadline_from_remaining(context.time_remaining())
            async for message in behaviour(request, context):
                yield message

        return with_deadline
