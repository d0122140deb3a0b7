"""GatewayService: the public API, composed from the internal services."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import grpc

from backbeat.common.v1 import common_pb2
from backbeat.gateway.v1 import gateway_service_pb2 as pb
from backbeat.gateway.v1 import gateway_service_pb2_grpc as pb_grpc
from backbeat.licensing.v1 import licensing_service_pb2 as licensing_pb
from backbeat.licensing.v1 import licensing_service_pb2_grpc as licensing_grpc
from backbeat.metadata.v1 import metadata_service_pb2 as metadata_pb
from backbeat.metadata.v1 import metadata_service_pb2_grpc as metadata_grpc
from backbeat.recommendation.v1 import recommendation_service_pb2 as recommendation_pb
from backbeat.recommendation.v1 import recommendation_service_pb2_grpc as recommendation_grpc
from backbeat.stream.v1 import stream_service_pb2 as stream_pb
from backbeat.stream.v1 import stream_service_pb2_grpc as stream_grpc
from backbeat.user.v1 import user_service_pb2 as user_pb
from backbeat.user.v1 import user_service_pb2_grpc as user_grpc
from mesh import deadlines
from mesh.client import Downstream
from mesh.errors import DeadlineExceeded, DownstreamError, InvalidArgument, Unauthenticated
from mesh.tracing import annotate, current_trace_id
from services.gateway.admission import PriorityAdmission, token_tier
from services.gateway.auth import Authenticator, bearer_token
from services.gateway.feedback import FeedbackOutbox

logger = logging.getLogger(__name__)

FEEDBACK_EVENTS = frozenset(
    {
        common_pb2.PLAYBACK_EVENT_TYPE_SKIP,
        common_pb2.PLAYBACK_EVENT_TYPE_LIKE,
        common_pb2.PLAYBACK_EVENT_TYPE_COMPLETE,
    }
)


@dataclass(frozen=True)
class Backends:
    """The internal services the gateway calls."""

    users: Downstream[user_grpc.UserServiceAsyncStub]
    stream: Downstream[stream_grpc.StreamServiceAsyncStub]
    metadata: Downstream[metadata_grpc.MetadataServiceAsyncStub]
    recommendation: Downstream[recommendation_grpc.RecommendationServiceAsyncStub]
    licensing: Downstream[licensing_grpc.LicensingServiceAsyncStub]


class GatewayServicer(pb_grpc.GatewayServiceServicer):
    """Authenticates callers and forwards each call within its deadline budget."""

    def __init__(
        self,
        backends: Backends,
        authenticator: Authenticator,
        *,
        play_budget_s: float,
        login_budget_s: float,
        search_budget_s: float,
        edge_address: str,
        admission: PriorityAdmission,
        feedback: FeedbackOutbox,
    ) -> None:
        self._backends = backends
        self._auth = authenticator
        self._play_budget_s = play_budget_s
        self._login_budget_s = login_budget_s
        self._search_budget_s = search_budget_s
        self._edge_address = edge_address
        self._admission = admission
        self._feedback = feedback

    def _tier(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        try:
            return token_tier(bearer_token(context.invocation_metadata()))
        except Unauthenticated:
            return "free"

    async def Login(
        self, request: pb.LoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.LoginResponse:
        with self._admission.admit("free"):
            users = self._backends.users
            response = await users.unary(
                users.stub.Login,
                user_pb.LoginRequest(email=request.email, password=request.password),
                budget_s=self._login_budget_s,
            )
            return pb.LoginResponse(
                access_token=response.access_token, expires_at=response.expires_at, user=response.user
            )

    async def Play(
        self, request: pb.PlayRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PlayResponse:
        with self._admission.admit(self._tier(context)):
            with deadlines.budget(self._play_budget_s):
                user = await self._auth.user(context.invocation_metadata())
                if not request.track_id:
                    raise InvalidArgument("track_id", request.track_id, "a catalog track id")
                stream = self._backends.stream
                play = await stream.unary(
                    stream.stub.AuthorizePlay,
                    stream_pb.AuthorizePlayRequest(
                        user=user,
                        track_id=request.track_id,
                        quality=request.quality,
                        slow_connection=request.slow_connection,
                    ),
                )
            annotate(
                track_id=play.track.track_id,
                rendition_kbps=play.rendition.bitrate_kbps,
                playback_id=play.playback_id,
                recommendations=len(play.recommendations),
            )
            return pb.PlayResponse(
                playback_id=play.playback_id,
                track=play.track,
                rendition=play.rendition,
                stream_grant=play.stream_grant,
                grant_expires_at=play.grant_expires_at,
                edge_address=self._edge_address or play.edge_address,
                recommendations=play.recommendations,
                recommendations_fallback=play.recommendations_fallback,
                trace_id=current_trace_id(),
            )

    async def GetTrack(
        self, request: pb.GetTrackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetTrackResponse:
        with self._admission.admit(self._tier(context)):
            await self._auth.user(context.invocation_metadata())
            if not request.track_id:
                raise InvalidArgument("track_id", request.track_id, "a catalog track id")
            metadata = self._backends.metadata
            response = await metadata.unary(
                metadata.stub.GetTrack, metadata_pb.GetTrackRequest(track_id=request.track_id)
            )
            return pb.GetTrackResponse(track=response.track)

    async def Search(
        self, request: pb.SearchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SearchResponse:
        with self._admission.admit(self._tier(context)):
            user = await self._auth.user(context.invocation_metadata())
            metadata = self._backends.metadata
            response = await metadata.unary(
                metadata.stub.SearchTracks,
                metadata_pb.SearchTracksRequest(query=request.query, limit=request.limit),
                budget_s=self._search_budget_s,
            )
            unavailable = await self._unavailable([track.track_id for track in response.tracks], user.market)
            return pb.SearchResponse(tracks=response.tracks, unavailable_track_ids=unavailable)

    async def _unavailable(self, track_ids: list[str], market: str) -> list[str]:
        """Return the ids among `track_ids` not licensed in `market`; none when licensing fails.

        Availability only marks results, and Play checks the license itself, so a
        licensing failure leaves the results unmarked instead of failing the search.
        """
        if not track_ids:
            return []
        licensing = self._backends.licensing
        try:
            decisions = await licensing.unary(
                licensing.stub.CheckLicenses,
                licensing_pb.CheckLicensesRequest(track_ids=track_ids, market=market),
                budget_s=self._search_budget_s,
            )
        except (DownstreamError, DeadlineExceeded) as error:
            logger.info("search results left unmarked: licensing failed: %s", error)
            return []
        return [decision.track_id for decision in decisions.decisions if not decision.allowed]

    async def GetRecommendations(
        self, request: pb.GetRecommendationsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetRecommendationsResponse:
        with self._admission.admit(self._tier(context)):
            user = await self._auth.user(context.invocation_metadata())
            recommendation = self._backends.recommendation
            ranked = await recommendation.unary(
                recommendation.stub.GetRecommendations,
                recommendation_pb.GetRecommendationsRequest(
                    user=user, seed_track_id=request.seed_track_id, limit=request.limit
                ),
            )
            metadata = self._backends.metadata
            tracks = await metadata.unary(
                metadata.stub.BatchGetTracks, metadata_pb.BatchGetTracksRequest(track_ids=ranked.track_ids)
            )
            return pb.GetRecommendationsResponse(tracks=tracks.tracks, fallback=ranked.fallback)

    async def ReportPlayback(
        self, request: pb.ReportPlaybackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReportPlaybackResponse:
        with self._admission.admit(self._tier(context)):
            user = await self._auth.user(context.invocation_metadata())
            validate_report(request)
            annotate(
                track_id=request.track_id,
                playback_id=request.playback_id,
                playback_event=common_pb2.PlaybackEventType.Name(request.event_type),
            )

            licensing = self._backends.licensing
            recorded = await licensing.unary(
                licensing.stub.RecordPlayback,
                licensing_pb.RecordPlaybackRequest(
                    playback_id=request.playback_id,
                    user_id=user.user_id,
                    track_id=request.track_id,
                    market=user.market,
                    played_ms=request.played_ms,
                ),
            )
            # Royalties are recorded first and must succeed; feedback is retried later if needed.
            if request.event_type in FEEDBACK_EVENTS:
                delivered = await self._feedback.deliver(
                    recommendation_pb.RecordFeedbackRequest(
                        user_id=user.user_id,
                        track_id=request.track_id,
                        event_type=request.event_type,
                        playback_id=request.playback_id,
                    )
                )
                annotate(feedback_delivered=delivered)
            return pb.ReportPlaybackResponse(counted_as_stream=recorded.counted)


def validate_report(request: pb.ReportPlaybackRequest) -> None:
    """Raise InvalidArgument for the first malformed field of a playback report."""
    if not request.playback_id:
        raise InvalidArgument("playback_id", request.playback_id, "the playback id returned by Play")
    if not request.track_id:
        raise InvalidArgument("track_id", request.track_id, "a catalog track id")
    if request.event_type == common_pb2.PLAYBACK_EVENT_TYPE_UNSPECIFIED or (
        request.event_type not in common_pb2.PlaybackEventType.values()
    ):
        raise InvalidArgument("event_type", request.event_type, "START, PROGRESS, SKIP, COMPLETE or LIKE")
    if request.played_ms < 0:
        raise InvalidArgument("played_ms", request.played_ms, "milliseconds played, 0 or more")
