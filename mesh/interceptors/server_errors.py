"""Maps domain errors to gRPC status codes with google.rpc details.

BackbeatError subclasses become their status code, message and details.
Any other exception becomes INTERNAL with a generic message, while the
traceback is logged and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from grpc_status import rpc_status

from mesh.errors import BackbeatError, DeadlineExceeded, DownstreamError, to_rpc_status
from mesh.interceptors._handlers import (
    StreamBehaviour,
    UnaryBehaviour,
    WrappingInterceptor,
    is_protocol,
)

logger = logging.getLogger(__name__)

EXPECTED_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


class RepeatFilter:
    """Lets one log line per (method, status) through each `window_s`, counting the rest."""

    def __init__(self, window_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    def admit(self, method: str, code: str) -> int | None:
        """Return how many lines were suppressed since the last one, or None to suppress this one."""
        now = self._clock()
        started, suppressed = self._windows.get((method, code), (-self._window_s, 0))
        if now - started < self._window_s:
            self._windows[(method, code)] = (started, suppressed + 1)
            return None
        self._windows[(method, code)] = (now, 0)
        return suppressed


_repeats = RepeatFilter()


async def _abort(context: grpc.aio.ServicerContext[Any, Any], method: str, error: BackbeatError) -> None:
    status = rpc_status.to_status(to_rpc_status(error))
    if status.code in EXPECTED_CODES:
        logger.info("%s failed with %s: %s", method, status.code.name, status.details)
    else:
        suppressed = _repeats.admit(method, status.code.name)
        if suppressed is not None:
            level = (
                logging.WARNING if isinstance(error, DownstreamError | DeadlineExceeded) else logging.ERROR
            )
            logger.log(
                level,
                "%s failed with %s: %s (%d similar failures not logged since the previous line)",
                method,
                status.code.name,
                status.details,
                suppressed,
            )
    await context.abort(status.code, status.details, status.trailing_metadata)


async def _internal(context: grpc.aio.ServicerContext[Any, Any], method: str) -> None:
    logger.exception("%s raised an unexpected error; returning INTERNAL", method)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


class ServerErrorInterceptor(WrappingInterceptor):
    """Turns exceptions raised by handlers into gRPC statuses."""

    def skip(self, method: str) -> bool:
        """Return True for health and reflection; admin calls get deadlines and error mapping too."""
        return is_protocol(method)

    def wrap_unary(self, behaviour: UnaryBehaviour, method: str) -> UnaryBehaviour:
        async def mapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await behaviour(request, context)
            except BackbeatError as error:
                await _abort(context, method, error)
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception:
                await _internal(context, method)

        return mapped

    def wrap_stream(self, behaviour: StreamBehaviour, method: str) -> StreamBehaviour:
        async def mapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            try:
                async for message in behaviour(request, context):
                    yield message
            except BackbeatError as error:
                await _abort(context, method, error)
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception:
                await _internal(context, method)

        return mapped
