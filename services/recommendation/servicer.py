"""RecommendationService: ranking from the engine, filtered by licensing.

Only tracks that licensing allows in the listener's market are returned.
When licensing cannot answer, the call fails rather than risk listing a
track that is not licensed.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from backbeat.common.v1 import common_pb2
from backbeat.licensing.v1 import licensing_service_pb2 as licensing_pb
from backbeat.licensing.v1 import licensing_service_pb2_grpc as licensing_grpc
from backbeat.recommendation.v1 import recommendation_service_pb2 as pb
from backbeat.recommendation.v1 import recommendation_service_pb2_grpc as pb_grpc
from mesh.client import Downstream
from mesh.errors import InvalidArgument
from mesh.tracing import annotate
from services.markets import require_market
from services.recommendation.engine import Recommender, check_limit

logger = logging.getLogger(__name__)

CANDIDATE_FACTOR = 4
SIGNALS = {
    common_pb2.PLAYBACK_EVENT_TYPE_SKIP: "skip",
    common_pb2.PLAYBACK_EVENT_TYPE_LIKE: "like",
    common_pb2.PLAYBACK_EVENT_TYPE_COMPLETE: "complete",
}


class RecommendationServicer(pb_grpc.RecommendationServiceServicer):
    """Returns licensed next tracks and records feedback."""

    def __init__(
        self, recommender: Recommender, licensing: Downstream[licensing_grpc.LicensingServiceAsyncStub]
    ) -> None:
        self._recommender = recommender
        self._licensing = licensing

    async def _licensed(self, track_ids: list[str], market: str, limit: int) -> list[str]:
        response = await self._licensing.unary(
            self._licensing.stub.CheckLicenses,
            licensing_pb.CheckLicensesRequest(track_ids=track_ids, market=market),
        )
        allowed = [decision.track_id for decision in response.decisions if decision.allowed]
        annotate(candidates=len(track_ids), unlicensed=len(track_ids) - len(allowed))
        return allowed[:limit]

    async def GetRecommendations(
        self, request: pb.GetRecommendationsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetRecommendationsResponse:
        if not request.HasField("user") or not request.user.user_id:
            raise InvalidArgument("user.user_id", request.user.user_id, "the listener's user id")
        market = require_market(request.user.market, "user.market")
        limit = check_limit(request.limit)
        annotate(user_id=request.user.user_id, market=market, seed_track_id=request.seed_track_id)

        candidates = self._recommender.candidates(
            request.user.user_id, request.seed_track_id, limit * CANDIDATE_FACTOR
        )
        licensed = await self._licensed(candidates, market, limit)
        fallback = len(licensed) < limit
        if fallback:
            extra = self._recommender.fallback_for(request.user.user_id, request.seed_track_id, licensed)
            licensed += await self._licensed(extra[: limit * CANDIDATE_FACTOR], market, limit - len(licensed))
        annotate(fallback=fallback, returned=len(licensed))
        return pb.GetRecommendationsResponse(track_ids=licensed, fallback=fallback)

    async def GetFallback(
        self, request: pb.GetFallbackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetFallbackResponse:
        market = require_market(request.market)
        limit = check_limit(request.limit)
        candidates = self._recommender.fallback(request.genre or None)
        return pb.GetFallbackResponse(
            track_ids=await self._licensed(candidates[: limit * CANDIDATE_FACTOR], market, limit)
        )

    async def RecordFeedback(
        self, request: pb.RecordFeedbackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RecordFeedbackResponse:
        signal = SIGNALS.get(request.event_type)
        if signal is None:
            raise InvalidArgument(
                "event_type", common_pb2.PlaybackEventType.Name(request.event_type), "SKIP, LIKE or COMPLETE"
            )
        applied = self._recommender.learn(request.user_id, request.track_id, signal, request.playback_id)
        annotate(user_id=request.user_id, track_id=request.track_id, feedback=signal, applied=applied)
        return pb.RecordFeedbackResponse()
