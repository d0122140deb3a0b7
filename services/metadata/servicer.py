"""MetadataService: thin gRPC layer over track lookups."""

from __future__ import annotations

from typing import Any

import grpc

from backbeat.metadata.v1 import metadata_service_pb2 as pb
from backbeat.metadata.v1 import metadata_service_pb2_grpc as pb_grpc
from mesh.tracing import annotate
from services.metadata.tracks import TrackLookup


class MetadataServicer(pb_grpc.MetadataServiceServicer):
    """Serves tracks and search from the catalog."""

    def __init__(self, tracks: TrackLookup) -> None:
        self._tracks = tracks

    async def GetTrack(
        self, request: pb.GetTrackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetTrackResponse:
        annotate(track_id=request.track_id)
        track, cache_hit = await self._tracks.get(request.track_id)
        annotate(cache_hit=cache_hit)
        return pb.GetTrackResponse(track=track)

    async def BatchGetTracks(
        self, request: pb.BatchGetTracksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.BatchGetTracksResponse:
        tracks, missing = await self._tracks.get_many(list(request.track_ids))
        annotate(requested=len(request.track_ids), missing=len(missing))
        return pb.BatchGetTracksResponse(tracks=tracks, missing_track_ids=missing)

    async def SearchTracks(
        self, request: pb.SearchTracksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SearchTracksResponse:
        tracks = self._tracks.search(request.query, request.limit)
        annotate(results=len(tracks))
        return pb.SearchTracksResponse(tracks=tracks)
