"""Fault injection: delays and errors from the process's fault rules, recorded on the span."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from mesh.faults import FaultDecision, FaultRegistry
from mesh.interceptors._handlers import (
    StreamBehaviour,
    UnaryBehaviour,
    WrappingInterceptor,
)
from mesh.tracing import annotate

logger = logging.getLogger(__name__)


async def _apply(decision: FaultDecision, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    annotate(fault_delay_ms=round(decision.delay_s * 1000, 1))
    if decision.delay_s > 0:
        await asyncio.sleep(decision.delay_s)
    if decision.error is not None:
        annotate(fault_error=decision.error.name)
        logger.info("injected fault on %s: %s", method, decision.error.name)
        await context.abort(decision.error, f"injected fault: {decision.error.name}")


class ServerFaultInterceptor(WrappingInterceptor):
    """Delays or fails calls as the fault rules specify, and does nothing while there are none."""

    def __init__(self, faults: FaultRegistry) -> None:
        self._faults = faults
        super().__init__()

    def wrap_unary(self, behaviour: UnaryBehaviour, method: str) -> UnaryBehaviour:
        async def faulty(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            decision = self._faults.decide(method)
            if decision is not None:
                await _apply(decision, method, context)
            return await behaviour(request, context)

        return faulty

    def wrap_stream(self, behaviour: StreamBehaviour, method: str) -> StreamBehaviour:
        async def faulty(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            decision = self._faults.decide(method)
            if decision is not None:
                await _apply(decision, method, context)
            async for message in behaviour(request, context):
                yield message

        return faulty
