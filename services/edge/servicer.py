"""EdgeService: thin gRPC layer over audio delivery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from backbeat.edge.v1 import edge_service_pb2 as pb
from backbeat.edge.v1 import edge_service_pb2_grpc as pb_grpc
from services.edge.delivery import AudioDelivery


class EdgeServicer(pb_grpc.EdgeServiceServicer):
    """Streams audio to clients."""

    def __init__(self, delivery: AudioDelivery) -> None:
        self._delivery = delivery

    async def StreamAudio(
        self, request: pb.StreamAudioRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.StreamAudioResponse]:
        async for chunk in self._delivery.stream(request.stream_grant, request.offset):
            yield pb.StreamAudioResponse(
                offset=chunk.offset,
                data=chunk.data,
                total_size=chunk.total_size,
                content_type=chunk.content_type,
                cache_hit=chunk.cache_hit,
            )
