"""One play is one trace: spans of every hop reach a real OTLP receiver with correct parent links."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from backbeat.admin.v1 import admin_service_pb2, admin_service_pb2_grpc
from mesh.launcher import Mesh
from services.gateway.client import BackbeatClient, PlayResult
from services.licensing.rights import Rights
from services.setup import StatePaths
from tests.conftest import OtlpReceiver, ReceivedSpan

SERVER = Span.SpanKind.SPAN_KIND_SERVER
CLIENT = Span.SpanKind.SPAN_KIND_CLIENT
PLAY_PATH_SERVICES = {
    "backbeat-test-client",
    "gateway",
    "user",
    "stream",
    "licensing",
    "metadata",
    "recommendation",
    "edge",
}


@pytest.fixture(scope="module")
def client_tracer_provider(otlp_receiver: OtlpReceiver) -> Iterator[TracerProvider]:
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: "backbeat-test-client"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=otlp_receiver.endpoint, insecure=True))
    )
    trace.set_tracer_provider(provider)
    yield provider
    provider.shutdown()


def licensed_in_us(state: StatePaths, offset: int) -> str:
    rights = Rights(state.rights)
    try:
        rows = rights._db.execute(
            "SELECT track_id FROM track_albums ORDER BY track_id LIMIT 50 OFFSET ?", (offset,)
        ).fetchall()
        decisions = rights.check_many([row[0] for row in rows], "US")
    finally:
        rights.close()
    return next(decision.track_id for decision in decisions if decision.allowed)


async def play_once(gateway: str, track_id: str) -> PlayResult:
    client = BackbeatClient(gateway)
    try:
        await client.login("premium-us@backbeat.test", "listen-premium-us")
        return await client.play_and_stream(track_id, None, play_timeout_s=2.0)
    finally:
        await client.close()


@pytest.fixture(scope="module")
def traced_play(
    mesh: Mesh, state: StatePaths, otlp_receiver: OtlpReceiver, client_tracer_provider: TracerProvider
) -> list[ReceivedSpan]:
    result = asyncio.run(play_once(mesh.address("gateway"), licensed_in_us(state, 7000)))
    client_tracer_provider.force_flush()
    return otlp_receiver.collector.wait_for(result.trace_id, PLAY_PATH_SERVICES)


def by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {span.span_id: span for span in spans}


def test_play_trace_covers_every_hop(traced_play: list[ReceivedSpan]) -> None:
    assert {span.service for span in traced_play} >= PLAY_PATH_SERVICES


def test_play_trace_has_one_root(traced_play: list[ReceivedSpan]) -> None:
    roots = [span for span in traced_play if not span.parent_span_id]

    assert [root.name for root in roots] == ["backbeat.client/play"]


def test_play_trace_parents_exist(traced_play: list[ReceivedSpan]) -> None:
    spans = by_id(traced_play)
    orphans = [span.name for span in traced_play if span.parent_span_id and span.parent_span_id not in spans]

    assert orphans == []


def test_server_spans_are_children_of_client_spans(traced_play: list[ReceivedSpan]) -> None:
    spans = by_id(traced_play)
    server_spans = [span for span in traced_play if span.kind == SERVER]
    parents = [spans[span.parent_span_id] for span in server_spans]

    assert len(server_spans) >= 7
    assert all(parent.kind == CLIENT for parent in parents)
    assert all(
        parent.service != child.service or parent.service == "backbeat-test-client"
        for parent, child in zip(parents, server_spans, strict=True)
    )


def test_stream_hop_is_child_of_gateway(traced_play: list[ReceivedSpan]) -> None:
    spans = by_id(traced_play)
    stream_server = next(
        span
        for span in traced_play
        if span.name == "backbeat.stream.v1.StreamService/AuthorizePlay" and span.service == "stream"
    )
    client_span = spans[stream_server.parent_span_id]
    gateway_server = spans[client_span.parent_span_id]

    assert client_span.service == "gateway"
    assert gateway_server.name == "backbeat.gateway.v1.GatewayService/Play"


def test_play_spans_carry_attributes(traced_play: list[ReceivedSpan]) -> None:
    stream_server = next(
        span for span in traced_play if span.service == "stream" and span.name.endswith("/AuthorizePlay")
    )
    metadata_server = next(
        span for span in traced_play if span.service == "metadata" and span.name.endswith("/GetTrack")
    )
    edge_server = next(span for span in traced_play if span.service == "edge" and span.kind == SERVER)
    gateway_clients = [span for span in traced_play if span.service == "gateway" and span.kind == CLIENT]

    assert stream_server.attributes["backbeat.user_tier"] == "TIER_PREMIUM"
    assert stream_server.attributes["backbeat.market"] == "US"
    assert stream_server.attributes["backbeat.rendition_kbps"] == 320
    assert "backbeat.track_id" in stream_server.attributes
    assert "backbeat.cache_hit" in metadata_server.attributes
    assert "backbeat.cache_hit" in edge_server.attributes
    assert all(span.attributes["backbeat.breaker.state"] == "closed" for span in gateway_clients)
    assert all(
        span.attributes["rpc.grpc.status_code"] == 0
        for span in traced_play
        if "rpc.grpc.status_code" in span.attributes
    )


async def set_metadata_fault(address: str, latency_ms: int) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = admin_service_pb2_grpc.AdminServiceStub(channel)
        if latency_ms:
            rule = admin_service_pb2.FaultRule(method="/backbeat.metadata.v1.MetadataService/GetTrack")
            rule.latency.FromMilliseconds(latency_ms)
            await stub.SetFault(admin_service_pb2.SetFaultRequest(rule=rule), timeout=5)
        else:
            await stub.ClearFaults(admin_service_pb2.ClearFaultsRequest(), timeout=5)


def test_fault_shows_on_span(
    mesh: Mesh, state: StatePaths, otlp_receiver: OtlpReceiver, client_tracer_provider: TracerProvider
) -> None:
    asyncio.run(set_metadata_fault(mesh.address("metadata"), latency_ms=2))
    try:
        result = asyncio.run(play_once(mesh.address("gateway"), licensed_in_us(state, 9000)))
    finally:
        asyncio.run(set_metadata_fault(mesh.address("metadata"), latency_ms=0))
    client_tracer_provider.force_flush()
    spans = otlp_receiver.collector.wait_for(result.trace_id, PLAY_PATH_SERVICES)

    get_track = next(span for span in spans if span.service == "metadata" and span.name.endswith("/GetTrack"))
    assert get_track.attributes["backbeat.fault_delay_ms"] == 2.0
