"""Play authorization: licensing and metadata concurrently, then rendition and grant.

The license check and the track lookup run concurrently inside the
authorization budget. Recommendations run alongside them and are optional:
on an error, a timeout or an open breaker the play goes on with the regional
or genre fallback list (see services.stream.fallbacks), or none. When
metadata fails, a track seen before is served from its last good copy.
A license decision of "not allowed" fails the play with PERMISSION_DENIED;
when licensing cannot answer, the play fails too (fail closed).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from backbeat.common.v1 import common_pb2
from backbeat.licensing.v1 import licensing_service_pb2 as licensing_pb
from backbeat.licensing.v1 import licensing_service_pb2_grpc as licensing_grpc
from backbeat.metadata.v1 import metadata_service_pb2 as metadata_pb
from backbeat.metadata.v1 import metadata_service_pb2_grpc as metadata_grpc
from backbeat.recommendation.v1 import recommendation_service_pb2 as recommendation_pb
from backbeat.recommendation.v1 import recommendation_service_pb2_grpc as recommendation_grpc
from mesh import deadlines
from mesh.client import Downstream
from mesh.errors import BackbeatError, DeadlineExceeded, DownstreamError, InvalidArgument, PermissionDenied
from mesh.tracing import annotate
from services.markets import require_market
from services.stream.fallbacks import RegionalRecommendations, StaleTracks
from services.stream.grants import GrantSigner
from services.stream.renditions import choose_rendition

logger = logging.getLogger(__name__)

RECOMMENDATION_COUNT = 10
# Metadata failures that a stale copy covers. NOT_FOUND and other client errors are results, not failures.
STALE_ON = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
# Time kept back from the recommendation steps for signing and sending the response.
RESPONSE_RESERVE_S = 0.003


@dataclass(frozen=True)
class PlayRequest:
    """A play to authorize."""

    user: common_pb2.UserContext
    track_id: str
    quality: common_pb2.Quality.ValueType
    slow_connection: bool


@dataclass(frozen=True)
class AuthorizedPlay:
    """Everything a client needs to start playing."""

    playback_id: str
    track: common_pb2.Track
    rendition: common_pb2.Rendition
    grant: str
    grant_expires_at: float
    recommendations: list[common_pb2.Track]
    recommendations_fallback: bool


def validate_play(request: PlayRequest) -> None:
    """Raise InvalidArgument for the first malformed field of `request`."""
    if not request.user.user_id:
        raise InvalidArgument("user.user_id", request.user.user_id, "the listener's user id")
    if request.user.tier not in (common_pb2.TIER_FREE, common_pb2.TIER_PREMIUM):
        raise InvalidArgument(
            "user.tier", common_pb2.Tier.Name(request.user.tier), "TIER_FREE or TIER_PREMIUM"
        )
    require_market(request.user.market, "user.market")
    if not request.track_id:
        raise InvalidArgument("track_id", request.track_id, "a catalog track id")
    if request.quality not in common_pb2.Quality.values():
        raise InvalidArgument("quality", request.quality, "a Quality value")


class PlayAuthorizer:
    """Authorizes plays for the stream service."""

    def __init__(
        self,
        *,
        licensing: Downstream[licensing_grpc.LicensingServiceAsyncStub],
        metadata: Downstream[metadata_grpc.MetadataServiceAsyncStub],
        recommendation: Downstream[recommendation_grpc.RecommendationServiceAsyncStub],
        signer: GrantSigner,
        popular_threshold: int,
        recommendation_budget_s: float,
        stale: StaleTracks | None = None,
        regional: RegionalRecommendations | None = None,
    ) -> None:
        self._licensing = licensing
        self._metadata = metadata
        self._recommendation = recommendation
        self._signer = signer
        self._popular_threshold = popular_threshold
        self._recommendation_budget_s = recommendation_budget_s
        self._stale = stale or StaleTracks()
        self._regional = regional or RegionalRecommendations()

    async def _check_license(self, track_id: str, market: str) -> None:
        response = await self._licensing.unary(
            self._licensing.stub.CheckLicense,
            licensing_pb.CheckLicenseRequest(track_id=track_id, market=market),
        )
        annotate(license_allowed=response.allowed)
        if not response.allowed:
            raise PermissionDenied(f"track {track_id} is not available in your market: {response.detail}")

    async def _load_track(self, track_id: str) -> common_pb2.Track:
        fresh = self._stale.fresh(track_id)
        if fresh is not None:
            annotate(metadata_local_cache=True)
            return fresh
        try:
            response = await self._metadata.unary(
                self._metadata.stub.GetTrack, metadata_pb.GetTrackRequest(track_id=track_id)
            )
        except (DownstreamError, DeadlineExceeded) as error:
            stale = self._stale.get(track_id)
            if stale is None or (isinstance(error, DownstreamError) and error.code not in STALE_ON):
                raise
            logger.warning("metadata failed for %s (%s); serving the last good copy", track_id, error)
            annotate(metadata_stale=True)
            return stale
        self._stale.remember(response.track)
        return response.track

    async def _recommend(
        self, user: common_pb2.UserContext, track_id: str
    ) -> tuple[list[common_pb2.Track], bool] | None:
        """Return personal recommendations, or None when the recommendation path failed."""
        left = deadlines.time_left()
        allowed_s = self._recommendation_budget_s
        if left is not None:
            allowed_s = min(allowed_s, left - RESPONSE_RESERVE_S)
        try:
            with deadlines.budget(allowed_s):
                ranked, tracks = await self._ranked_tracks(user, track_id)
        except BackbeatError as error:
            logger.info("recommendations for %s failed: %s", track_id, error)
            annotate(recommendations_error=str(error))
            return None
        return list(tracks.tracks), ranked.fallback

    async def _ranked_tracks(
        self, user: common_pb2.UserContext, track_id: str
    ) -> tuple[recommendation_pb.GetRecommendationsResponse, metadata_pb.BatchGetTracksResponse]:
        ranked = await self._recommendation.unary(
            self._recommendation.stub.GetRecommendations,
            recommendation_pb.GetRecommendationsRequest(
                user=user, seed_track_id=track_id, limit=RECOMMENDATION_COUNT
            ),
        )
        known = {track_id: self._stale.fresh(track_id) for track_id in ranked.track_ids}
        missing = [track_id for track_id, track in known.items() if track is None]
        if missing:
            loaded = await self._metadata.unary(
                self._metadata.stub.BatchGetTracks, metadata_pb.BatchGetTracksRequest(track_ids=missing)
            )
            for track in loaded.tracks:
                self._stale.remember(track)
                known[track.track_id] = track
        tracks = metadata_pb.BatchGetTracksResponse(
            tracks=[track for track in known.values() if track is not None]
        )
        return ranked, tracks

    def _next_tracks(
        self, found: tuple[list[common_pb2.Track], bool] | None, market: str, track: common_pb2.Track
    ) -> tuple[list[common_pb2.Track], bool]:
        genre = track.genres[0] if track.genres else ""
        if found is not None:
            tracks, fallback = found
            self._regional.remember(market, genre, tracks)
            return tracks, fallback
        tracks = self._regional.fallback(market, genre, exclude=track.track_id)[:RECOMMENDATION_COUNT]
        annotate(recommendations_fallback=bool(tracks))
        return tracks, bool(tracks)

    async def load_genre_defaults(self, markets: Sequence[str], genres: Sequence[str]) -> int:
        """Fetch the genre default lists for every market and genre; return how many were loaded."""
        loaded = 0
        for market in markets:
            for genre in genres:
                try:
                    ranked = await self._recommendation.unary(
                        self._recommendation.stub.GetFallback,
                        recommendation_pb.GetFallbackRequest(
                            genre=genre, market=market, limit=RECOMMENDATION_COUNT
                        ),
                        budget_s=1.0,
                    )
                    tracks = await self._metadata.unary(
                        self._metadata.stub.BatchGetTracks,
                        metadata_pb.BatchGetTracksRequest(track_ids=ranked.track_ids),
                        budget_s=1.0,
                    )
                except BackbeatError as error:
                    logger.warning("genre default for %s/%s not loaded: %s", market, genre, error)
                    continue
                self._regional.set_default(market, genre, tracks.tracks)
                loaded += 1
        return loaded

    async def authorize(self, request: PlayRequest) -> AuthorizedPlay:
        """Authorize a play, raising a domain error when it may not start."""
        validate_play(request)
        annotate(
            user_id=request.user.user_id,
            user_tier=common_pb2.Tier.Name(request.user.tier),
            market=request.user.market,
            track_id=request.track_id,
        )

        recommendations = asyncio.create_task(self._recommend(request.user, request.track_id))
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._check_license(request.track_id, request.user.market))
                track_task = group.create_task(self._load_track(request.track_id))
        except BaseExceptionGroup as group_error:
            recommendations.cancel()
            raise group_error.exceptions[0] from None
        track = track_task.result()

        rendition = choose_rendition(
            track.renditions, request.user.tier, request.quality, request.slow_connection
        )
        playback_id = str(uuid.uuid4())
        grant, expires_at = self._signer.sign(
            user_id=request.user.user_id,
            playback_id=playback_id,
            track_id=track.track_id,
            object_key=rendition.object_key,
            bitrate_kbps=rendition.bitrate_kbps,
            content_type=rendition.content_type,
            popular=track.popularity >= self._popular_threshold,
        )
        annotate(rendition_kbps=rendition.bitrate_kbps, playback_id=playback_id)

        recommended, fallback = self._next_tracks(await recommendations, request.user.market, track)
        return AuthorizedPlay(playback_id, track, rendition, grant, expires_at, recommended, fallback)
