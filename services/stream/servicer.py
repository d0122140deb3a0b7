"""StreamService: thin gRPC layer over play authorization and the audio origin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from backbeat.stream.v1 import stream_service_pb2 as pb
from backbeat.stream.v1 import stream_service_pb2_grpc as pb_grpc
from mesh.tracing import annotate
from services.stream.authorize import PlayAuthorizer, PlayRequest
from services.stream.origin import ObjectStore


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    """Convert seconds since the epoch to a Timestamp."""
    value = timestamp_pb2.Timestamp()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


class StreamServicer(pb_grpc.StreamServiceServicer):
    """Authorizes plays and serves renditions to edges."""

    def __init__(self, authorizer: PlayAuthorizer, store: ObjectStore, edge_address: str) -> None:
        self._authorizer = authorizer
        self._store = store
        self._edge_address = edge_address

    async def AuthorizePlay(
        self, request: pb.AuthorizePlayRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AuthorizePlayResponse:
        play = await self._authorizer.authorize(
            PlayRequest(request.user, request.track_id, request.quality, request.slow_connection)
        )
        return pb.AuthorizePlayResponse(
            playback_id=play.playback_id,
            track=play.track,
            rendition=play.rendition,
            stream_grant=play.grant,
            grant_expires_at=timestamp(play.grant_expires_at),
            edge_address=self._edge_address,
            recommendations=play.recommendations,
            recommendations_fallback=play.recommendations_fallback,
        )

    async def ReadRendition(
        self, request: pb.ReadRenditionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ReadRenditionResponse]:
        annotate(object_key=request.object_key, offset=request.offset)
        # NOTE: chunks are read with blocking file calls; each read is one chunk of a local file.
        for offset, data, total in self._store.read_chunks(
            request.object_key, request.offset, request.chunk_size
        ):
            yield pb.ReadRenditionResponse(offset=offset, data=data, total_size=total)
