"""OpenTelemetry setup and W3C trace context in gRPC metadata.

Export follows the standard OTEL_* variables: OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) selects the OTLP/gRPC collector, and
OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true turns export off. With no
endpoint set, spans go to localhost:4317 when a collector listens there.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.util.types import AttributeValue

logger = logging.getLogger(__name__)

DEFAULT_COLLECTOR = ("localhost", 4317)
Metadata = Sequence[tuple[str, str | bytes]]


def _collector_listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.05):
            return True
    except OSError:
        return False


def configure_tracing(service: str) -> TracerProvider:
    """Install a tracer provider for `service` with OTLP export when a collector is configured or present."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    trace.set_tracer_provider(provider)

    disabled = os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true"
    if disabled or os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none":
        logger.info("span export is off")
        return provider

    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if endpoint is None:
        if not _collector_listening(*DEFAULT_COLLECTOR):
            logger.info(
                "span export off: OTEL_EXPORTER_OTLP_ENDPOINT unset and nothing listens on localhost:4317"
            )
            return provider
        endpoint = "http://localhost:4317"

    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    logger.info("exporting spans over OTLP to %s", endpoint)
    return provider


def shutdown_tracing(provider: TracerProvider, timeout_s: float = 2.0) -> None:
    """Flush pending spans and stop the provider, giving up after `timeout_s` in all.

    The exporter retries an unreachable collector for longer than that, so the
    work runs in a daemon thread that the process does not wait for.
    """

    def flush_and_stop() -> None:
        try:
            if not provider.force_flush(timeout_millis=int(timeout_s * 1000)):
                logger.warning("span flush did not finish in %.1f s; remaining spans are dropped", timeout_s)
            provider.shutdown()
        except Exception:
            logger.exception("span export shutdown failed")

    worker = threading.Thread(target=flush_and_stop, name="span-shutdown", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        logger.warning("span export did not stop within %.1f s; exiting without it", timeout_s)


def extract_context(metadata: Iterable[tuple[str, str | bytes]] | None) -> otel_context.Context:
    """Read W3C trace context from incoming gRPC metadata."""
    carrier = {key: value for key, value in (metadata or ()) if isinstance(value, str)}
    return propagate.extract(carrier)


def outgoing_metadata(
    context: otel_context.Context | None = None, extra: Metadata = ()
) -> tuple[tuple[str, str | bytes], ...]:
    """Return gRPC metadata with the W3C traceparent of `context` (default: the current one)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return (*extra, *carrier.items())


def annotate(**attributes: AttributeValue) -> None:
    """Set attributes on the current span; telemetry never fails a request."""
    try:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        for key, value in attributes.items():
            span.set_attribute(f"backbeat.{key}", value)
    except Exception:
        logger.exception("setting span attributes failed")


def current_trace_id() -> str:
    """Return the current trace id as 32 hex digits, or an empty string outside a trace."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""
