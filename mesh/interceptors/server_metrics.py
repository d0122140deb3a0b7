"""RPC counts and durations per method, for the Prometheus metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from mesh.interceptors._handlers import (
    StreamBehaviour,
    UnaryBehaviour,
    WrappingInterceptor,
)
from mesh.metrics import RPC_DURATION, RPC_HANDLED


def _code_name(context: grpc.aio.ServicerContext[Any, Any], failed: bool) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "UNKNOWN" if failed else "OK"


class ServerMetricsInterceptor(WrappingInterceptor):
    """Counts each finished call by status code and records its duration."""

    def __init__(self, service: str) -> None:
        self._service = service
        super().__init__()

    def _record(self, method: str, code: str, started: float) -> None:
        RPC_HANDLED.labels(self._service, method, code).inc()
        RPC_DURATION.labels(self._service, method).observe(time.perf_counter() - started)

    def wrap_unary(self, behaviour: UnaryBehaviour, method: str) -> UnaryBehaviour:
        async def measured(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            try:
                response = await behaviour(request, context)
            except asyncio.CancelledError:
                self._record(method, "CANCELLED", started)
                raise
            except BaseException:
                self._record(method, _code_name(context, failed=True), started)
                raise
            self._record(method, _code_name(context, failed=False), started)
            return response

        return measured

    def wrap_stream(self, behaviour: StreamBehaviour, method: str) -> StreamBehaviour:
        async def measured(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                async for message in behaviour(request, context):
                    yield message
            except (asyncio.CancelledError, GeneratorExit):
                self._record(method, "CANCELLED", started)
                raise
            except BaseException:
                self._record(method, _code_name(context, failed=True), started)
                raise
            self._record(method, _code_name(context, failed=False), started)

        return measured
