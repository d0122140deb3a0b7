"""Server spans: one SERVER span per call, joined to the caller's trace."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace

from mesh.interceptors._handlers import (
    StreamBehaviour,
    UnaryBehaviour,
    WrappingInterceptor,
)
from mesh.tracing import extract_context

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


def _status_code(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if code in (None, 0) else grpc.StatusCode.UNKNOWN


def _finish(span: trace.Span, code: grpc.StatusCode) -> None:
    if not span.is_recording():
        return
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in (
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.CANCELLED,
    ):
        span.set_status(trace.StatusCode.ERROR, code.name)


class ServerTracingInterceptor(WrappingInterceptor):
    """Opens a SERVER span per call from the traceparent in the request metadata."""

    def __init__(self, service: str) -> None:
        self._service = service
        super().__init__()

    def _start(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> trace.Span:
        parent = extract_context(context.invocation_metadata())
        service_name, _, method_name = method.lstrip("/").rpartition("/")
        return tracer.start_span(
            method.lstrip("/"),
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": service_name,
                "rpc.method": method_name,
                "backbeat.service": self._service,
            },
        )

    def wrap_unary(self, behaviour: UnaryBehaviour, method: str) -> UnaryBehaviour:
        async def traced(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            span = self._start(method, context)
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                response = await behaviour(request, context)
                _finish(span, _status_code(context))
                return response
            except asyncio.CancelledError:
                _finish(span, grpc.StatusCode.CANCELLED)
                raise
            except BaseException:
                _finish(span, _status_code(context))
                raise
            finally:
                otel_context.detach(token)
                span.end()

        return traced

    def wrap_stream(self, behaviour: StreamBehaviour, method: str) -> StreamBehaviour:
        async def traced(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            span = self._start(method, context)
            span_context = trace.set_span_in_context(span)
            messages = 0
            try:
                iterator = behaviour(request, context).__aiter__()
                while True:
                    token = otel_context.attach(span_context)
                    try:
                        message = await iterator.__anext__()
                    except StopAsyncIteration:
                        break
                    finally:
                        otel_context.detach(token)
                    messages += 1
                    yield message
                _finish(span, _status_code(context))
            except (asyncio.CancelledError, GeneratorExit):
                _finish(span, grpc.StatusCode.CANCELLED)
                raise
            except BaseException:
                _finish(span, _status_code(context))
                raise
            finally:
                span.set_attribute("backbeat.messages_sent", messages)
                span.end()

        return traced
