"""A thin Python client of the public API: log in, play, stream audio, report playback.

One play is one trace: play_and_stream() opens a root span and sends its
traceparent with the gateway's Play and the edge's StreamAudio calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

import grpc
from opentelemetry import trace

from backbeat.common.v1 import common_pb2
from backbeat.edge.v1 import edge_service_pb2, edge_service_pb2_grpc
from backbeat.gateway.v1 import gateway_service_pb2 as pb
from backbeat.gateway.v1 import gateway_service_pb2_grpc as pb_grpc
from mesh.channels import CLIENT_OPTIONS
from mesh.tracing import outgoing_metadata

tracer = trace.get_tracer(__name__)


@dataclass
class PlayResult:
    """Outcome of one play, with its timings in seconds."""

    play: pb.PlayResponse
    trace_id: str
    bytes_received: int = 0
    chunks: int = 0
    time_to_grant_s: float = 0.0
    time_to_first_byte_s: float | None = None
    cache_hits: int = 0
    content_type: str = ""
    total_size: int = 0
    errors: list[str] = field(default_factory=list)


class BackbeatClient:
    """Calls the gateway and the edge for one signed-in listener."""

    def __init__(self, gateway_address: str, clock: Callable[[], float] = time.perf_counter) -> None:
        self._gateway_channel = grpc.aio.insecure_channel(gateway_address, options=CLIENT_OPTIONS)
        self.gateway = pb_grpc.GatewayServiceStub(self._gateway_channel)
        self._edge_channels: dict[str, grpc.aio.Channel] = {}
        self._token = ""
        self._clock = clock
        self.user: common_pb2.UserContext | None = None

    async def close(self) -> None:
        """Close every channel."""
        await self._gateway_channel.close()
        for channel in self._edge_channels.values():
            await channel.close()

    def _metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return outgoing_metadata(extra=[("authorization", f"Bearer {self._token}")])

    def _edge(self, address: str) -> edge_service_pb2_grpc.EdgeServiceAsyncStub:
        channel = self._edge_channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS)
            self._edge_channels[address] = channel
        return edge_service_pb2_grpc.EdgeServiceStub(channel)

    async def login(self, email: str, password: str, timeout_s: float = 5.0) -> pb.LoginResponse:
        """Sign in and keep the access token for later calls."""
        response = await self.gateway.Login(
            pb.LoginRequest(email=email, password=password), timeout=timeout_s
        )
        self._token = response.access_token
        self.user = response.user
        return response

    async def search(self, query: str, limit: int = 10, timeout_s: float = 2.0) -> list[common_pb2.Track]:
        """Return tracks matching `query`."""
        response = await self.gateway.Search(
            pb.SearchRequest(query=query, limit=limit), metadata=self._metadata(), timeout=timeout_s
        )
        return list(response.tracks)

    async def search_marked(
        self, query: str, limit: int = 10, timeout_s: float = 2.0
    ) -> tuple[list[common_pb2.Track], set[str]]:
        """Return tracks matching `query` and the ids of those not available in the listener's market."""
        response = await self.gateway.Search(
            pb.SearchRequest(query=query, limit=limit), metadata=self._metadata(), timeout=timeout_s
        )
        return list(response.tracks), set(response.unavailable_track_ids)

    async def report(
        self, play: pb.PlayResponse, event: common_pb2.PlaybackEventType.ValueType, played_ms: int
    ) -> pb.ReportPlaybackResponse:
        """Report a playback event of `play`."""
        request = pb.ReportPlaybackRequest(
            playback_id=play.playback_id, track_id=play.track.track_id, event_type=event, played_ms=played_ms
        )
        return await self.gateway.ReportPlayback(request, metadata=self._metadata(), timeout=2.0)

    async def play_and_stream(
        self,
        track_id: str,
        sink: BinaryIO | None,
        *,
        quality: common_pb2.Quality.ValueType = common_pb2.QUALITY_UNSPECIFIED,
        slow_connection: bool = False,
        play_timeout_s: float = 0.2,
        max_bytes: int | None = None,
    ) -> PlayResult:
        """Play a track: Play at the gateway, then stream its audio from the edge into `sink`."""
        with tracer.start_as_current_span("backbeat.client/play", kind=trace.SpanKind.CLIENT) as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            started = self._clock()
            play = await self.gateway.Play(
                pb.PlayRequest(track_id=track_id, quality=quality, slow_connection=slow_connection),
                metadata=self._metadata(),
                timeout=play_timeout_s,
            )
            result = PlayResult(play=play, trace_id=trace_id, time_to_grant_s=self._clock() - started)
            span.set_attribute("backbeat.track_id", track_id)
            span.set_attribute("backbeat.rendition_kbps", play.rendition.bitrate_kbps)

            edge = self._edge(play.edge_address)
            call = edge.StreamAudio(
                edge_service_pb2.StreamAudioRequest(stream_grant=play.stream_grant, offset=0),
                metadata=outgoing_metadata(),
            )
            async for chunk in call:
                if result.time_to_first_byte_s is None:
                    result.time_to_first_byte_s = self._clock() - started
                result.chunks += 1
                result.bytes_received += len(chunk.data)
                result.cache_hits += int(chunk.cache_hit)
                result.content_type = chunk.content_type
                result.total_size = chunk.total_size
                if sink is not None:
                    sink.write(chunk.data)
                if max_bytes is not None and result.bytes_received >= max_bytes:
                    call.cancel()
                    break
            span.set_attribute("backbeat.bytes_received", result.bytes_received)
            return result
