"""LicensingService: thin gRPC layer over rights and the royalty ledger."""

from __future__ import annotations

from typing import Any

import grpc

from backbeat.licensing.v1 import licensing_service_pb2 as pb
from backbeat.licensing.v1 import licensing_service_pb2_grpc as pb_grpc
from mesh.errors import InvalidArgument
from mesh.tracing import annotate
from services.licensing.ledger import Ledger, PlaybackReport
from services.licensing.rights import Rights

REASONS = {
    "licensed": pb.LICENSE_REASON_LICENSED,
    "album_withheld": pb.LICENSE_REASON_ALBUM_WITHHELD,
    "unknown_track": pb.LICENSE_REASON_UNKNOWN_TRACK,
}


class LicensingServicer(pb_grpc.LicensingServiceServicer):
    """Checks rights and records playbacks."""

    def __init__(self, rights: Rights, ledger: Ledger) -> None:
        self._rights = rights
        self._ledger = ledger

    async def CheckLicense(
        self, request: pb.CheckLicenseRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CheckLicenseResponse:
        annotate(track_id=request.track_id, market=request.market)
        decision = self._rights.check(request.track_id, request.market)
        annotate(license_allowed=decision.allowed)
        return pb.CheckLicenseResponse(
            allowed=decision.allowed, reason=REASONS[decision.reason], detail=decision.detail
        )

    async def CheckLicenses(
        self, request: pb.CheckLicensesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CheckLicensesResponse:
        decisions = self._rights.check_many(list(request.track_ids), request.market)
        return pb.CheckLicensesResponse(
            decisions=[
                pb.LicenseDecision(track_id=item.track_id, allowed=item.allowed, reason=REASONS[item.reason])
                for item in decisions
            ]
        )

    async def RecordPlayback(
        self, request: pb.RecordPlaybackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RecordPlaybackResponse:
        annotate(track_id=request.track_id, market=request.market, playback_id=request.playback_id)
        result = self._ledger.record(
            PlaybackReport(
                request.playback_id, request.user_id, request.track_id, request.market, request.played_ms
            )
        )
        annotate(stream_counted=result.counted)
        return pb.RecordPlaybackResponse(counted=result.counted, already_counted=result.already_counted)

    async def GetStreamCount(
        self, request: pb.GetStreamCountRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetStreamCountResponse:
        if not request.track_id:
            raise InvalidArgument("track_id", request.track_id, "a catalog track id")
        return pb.GetStreamCountResponse(stream_count=self._ledger.stream_count(request.track_id))
