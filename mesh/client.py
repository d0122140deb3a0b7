"""Downstream calls with a deadline budget, a circuit breaker and a client span.

A Downstream wraps the generated stub of one target service. Each call gets
min(hop budget, time left minus margin) as its timeout, passes through the
breaker for (caller, target), carries the W3C traceparent and is recorded as
a CLIENT span with the breaker state. Failures become DownstreamError with
the status code of the call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import grpc
import pybreaker
from google.protobuf import descriptor as proto_descriptor
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from mesh import deadlines
from mesh.breakers import BreakerRegistry
from mesh.channels import ChannelPool, retry_service_config
from mesh.config import MeshSettings
from mesh.errors import DeadlineExceeded, DownstreamError
from mesh.tracing import outgoing_metadata

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

StubT = TypeVar("StubT")
RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


class Downstream(Generic[StubT]):
    """Calls one target service through its generated stub."""

    def __init__(
        self,
        *,
        caller: str,
        target: str,
        stub_class: Callable[[grpc.aio.Channel], StubT],
        service: proto_descriptor.ServiceDescriptor,
        channel: grpc.aio.Channel,
        breakers: BreakerRegistry,
        budget_s: float,
        margin_s: float,
        clock: Callable[[], float] = time.monotonic,
        use_breaker: bool = True,
        use_deadline: bool = True,
    ) -> None:
        self.target = target
        self.stub = stub_class(channel)
        self.breaker = breakers.get(caller, target)
        self._half_open_trials = breakers.half_open_trials
        self._trials_in_flight = 0
        self._service = service.full_name
        self._method_names = {id(getattr(self.stub, method.name)): method.name for method in service.methods}
        self._budget_s = budget_s
        self._margin_s = margin_s
        self._clock = clock
        self._use_breaker = use_breaker
        self._use_deadline = use_deadline

    @contextmanager
    def _guard(self) -> Iterator[None]:
        if not self._use_breaker:
            yield
            return
        # Closed breakers let every call through. Otherwise the call is a trial (or is
        # rejected by pybreaker while open), and only half_open_trials run at once.
        trial = self.breaker.current_state != pybreaker.STATE_CLOSED
        if trial and self._trials_in_flight >= self._half_open_trials:
            raise pybreaker.CircuitBreakerError("half-open trial calls already in flight")
        self._trials_in_flight += trial
        try:
            with self.breaker.calling():
                yield
        finally:
            self._trials_in_flight -= trial

    def _timeout(self, budget_s: float | None, name: str) -> float | None:
        if not self._use_deadline:
            return None
        return deadlines.outgoing_timeout(budget_s or self._budget_s, self._margin_s, name, self._clock)

    def _span_name(self, method: object) -> str:
        return f"{self._service}/{self._method_names.get(id(method), 'unknown')}"

    def _failure(self, span: trace.Span, error: grpc.aio.AioRpcError) -> DownstreamError:
        span.set_attribute("rpc.grpc.status_code", error.code().value[0])
        span.set_status(trace.StatusCode.ERROR, error.code().name)
        return DownstreamError(self.target, error.code(), error.details() or error.code().name)

    def _open_circuit(self, span: trace.Span) -> DownstreamError:
        span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.UNAVAILABLE.value[0])
        span.set_status(trace.StatusCode.ERROR, "circuit breaker open")
        logger.info("call to %s rejected: circuit breaker %s is open", self.target, self.breaker.name)
        return DownstreamError(
            self.target, grpc.StatusCode.UNAVAILABLE, f"circuit breaker {self.breaker.name} is open"
        )

    async def unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[RequestT, ResponseT],
        request: RequestT,
        *,
        budget_s: float | None = None,
    ) -> ResponseT:
        """Call a unary method of the target within the hop budget."""
        name = self._span_name(method)
        timeout = self._timeout(budget_s, name)
        attributes: dict[str, AttributeValue] = {
            "rpc.system": "grpc",
            "rpc.service": self._service,
            "backbeat.peer.service": self.target,
            "backbeat.breaker.state": self.breaker.current_state,
        }
        if timeout is not None:
            attributes["backbeat.timeout_ms"] = round(timeout * 1000, 1)
        with tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT, attributes=attributes) as span:
            try:
                with self._guard():
                    response = await method(request, timeout=timeout, metadata=outgoing_metadata())
            except pybreaker.CircuitBreakerError:
                raise self._open_circuit(span) from None
            except grpc.aio.AioRpcError as error:
                raise self._failure(span, error) from None
            span.set_attribute("rpc.grpc.status_code", 0)
            return response

    async def stream(
        self,
        method: grpc.aio.UnaryStreamMultiCallable[RequestT, ResponseT],
        request: RequestT,
        *,
        first_message_timeout_s: float,
    ) -> AsyncIterator[ResponseT]:
        """Call a server-streaming method; only the first message has a deadline.

        The stream as a whole has no deadline, so a long audio stream is never
        cut by a budget meant for unary calls.
        """
        name = self._span_name(method)
        span = tracer.start_span(
            name,
            kind=trace.SpanKind.CLIENT,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": self._service,
                "backbeat.peer.service": self.target,
                "backbeat.breaker.state": self.breaker.current_state,
            },
        )
        metadata = outgoing_metadata(trace.set_span_in_context(span))
        call: Any = None
        try:
            with self._guard():
                call = method(request, metadata=metadata)
                first = await asyncio.wait_for(call.read(), timeout=first_message_timeout_s)
            if first is grpc.aio.EOF:
                span.set_attribute("rpc.grpc.status_code", 0)
                return
            yield first
            while (message := await call.read()) is not grpc.aio.EOF:
                yield message
            span.set_attribute("rpc.grpc.status_code", 0)
        except pybreaker.CircuitBreakerError:
            raise self._open_circuit(span) from None
        except TimeoutError:
            span.set_status(trace.StatusCode.ERROR, "first message timed out")
            raise DeadlineExceeded(
                f"{self.target}: no data within {first_message_timeout_s * 1000:.0f} ms"
            ) from None
        except grpc.aio.AioRpcError as error:
            raise self._failure(span, error) from None
        finally:
            if call is not None and not call.done():
                call.cancel()
            span.end()


class Connector:
    """Creates the Downstreams of one calling service over a shared channel pool and breaker registry."""

    def __init__(
        self,
        caller: str,
        breakers: BreakerRegistry,
        margin_s: float,
        *,
        use_breakers: bool = True,
        use_deadlines: bool = True,
    ) -> None:
        self.caller = caller
        self.breakers = breakers
        self._margin_s = margin_s
        self._use_breakers = use_breakers
        self._use_deadlines = use_deadlines
        self._channels = ChannelPool()

    @classmethod
    def from_settings(cls, caller: str, settings: MeshSettings) -> Connector:
        """Return a Connector with the breaker and deadline settings of `settings`."""
        breakers = BreakerRegistry(
            settings.breaker_fail_max,
            settings.breaker_reset_s,
            half_open_trials=settings.breaker_half_open_trials,
            shared_redis_url=settings.redis_url if settings.shared_breakers else None,
            redis_timeout_s=settings.redis_timeout_s,
        )
        return cls(
            caller,
            breakers,
            settings.deadline_margin_s,
            use_breakers=settings.breakers,
            use_deadlines=settings.deadlines,
        )

    def connect(
        self,
        target: str,
        address: str,
        stub_class: Callable[[grpc.aio.Channel], StubT],
        service: proto_descriptor.ServiceDescriptor,
        budget_s: float,
        idempotent_methods: tuple[str, ...] = (),
    ) -> Downstream[StubT]:
        """Return a Downstream for `target` at `address`; idempotent methods retry on UNAVAILABLE."""
        config = (
            retry_service_config(service.full_name, list(idempotent_methods)) if idempotent_methods else None
        )
        return Downstream(
            caller=self.caller,
            target=target,
            stub_class=stub_class,
            service=service,
            channel=self._channels.get(address, config),
            breakers=self.breakers,
            budget_s=budget_s,
            margin_s=self._margin_s,
            use_breaker=self._use_breakers,
            use_deadline=self._use_deadlines,
        )

    async def warm_up(self, timeout_s: float = 2.0) -> None:
        """Connect every channel now, so the first calls do not pay for connection setup."""
        await self._channels.connect_all(timeout_s)

    async def close(self) -> None:
        """Close every channel."""
        await self._channels.close()
