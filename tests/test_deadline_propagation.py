"""Deadline propagation through the stream service's AuthorizePlay, with every server in process.

Licensing and recommendation are the real servicers on the built stores. Metadata is the real
servicer too, except where a test swaps in a subclass whose handler sleeps far past its budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest

from backbeat.common.v1 import common_pb2
from backbeat.licensing.v1 import licensing_service_pb2 as licensing_pb
from backbeat.licensing.v1 import licensing_service_pb2_grpc as licensing_grpc
from backbeat.metadata.v1 import metadata_service_pb2 as metadata_pb
from backbeat.metadata.v1 import metadata_service_pb2_grpc as metadata_grpc
from backbeat.recommendation.v1 import recommendation_service_pb2 as recommendation_pb
from backbeat.recommendation.v1 import recommendation_service_pb2_grpc as recommendation_grpc
from backbeat.stream.v1 import stream_service_pb2 as stream_pb
from backbeat.stream.v1 import stream_service_pb2_grpc as stream_grpc
from mesh.breakers import BreakerRegistry
from mesh.client import Connector
from mesh.config import DEV_SECRET
from mesh.kv import MemoryStore
from mesh.server import ServiceDefinition, build_server
from services.licensing.ledger import Ledger
from services.licensing.rights import Rights
from services.licensing.servicer import LicensingServicer
from services.metadata.catalog import Catalog
from services.metadata.servicer import MetadataServicer
from services.metadata.tracks import TrackLookup
from services.recommendation.engine import Recommender
from services.recommendation.model import Model, load_model
from services.recommendation.servicer import RecommendationServicer
from services.setup import StatePaths
from services.stream.authorize import PlayAuthorizer
from services.stream.grants import GrantSigner
from services.stream.origin import ObjectStore
from services.stream.servicer import StreamServicer

MARKET = "US"
HANDLER_SLEEP_S = 5.0
GENEROUS_BUDGET_S = 1.0


class SlowMetadata(MetadataServicer):
    """The real metadata servicer, except that GetTrack sleeps far past any budget first."""

    def __init__(self, tracks: TrackLookup) -> None:
        super().__init__(tracks)
        self.cancelled = asyncio.Event()
        self.completed_sleep = False

    async def GetTrack(
        self, request: metadata_pb.GetTrackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> metadata_pb.GetTrackResponse:
        try:
            await asyncio.sleep(HANDLER_SLEEP_S)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        self.completed_sleep = True
        return await super().GetTrack(request, context)


class SlowRecommendation(RecommendationServicer):
    """The real recommendation servicer, except that GetRecommendations sleeps far past any budget first."""

    def __init__(self, recommender: Recommender, licensing: Any) -> None:
        super().__init__(recommender, licensing)
        self.cancelled = asyncio.Event()

    async def GetRecommendations(
        self,
        request: recommendation_pb.GetRecommendationsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> recommendation_pb.GetRecommendationsResponse:
        try:
            await asyncio.sleep(HANDLER_SLEEP_S)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return await super().GetRecommendations(request, context)


@pytest.fixture(scope="module")
def model(state: StatePaths) -> Model:
    return load_model(state.model)


@pytest.fixture(scope="module")
def licensed_track(state: StatePaths) -> str:
    """A catalog track that is licensed in MARKET."""
    catalog = Catalog(state.catalog)
    rights = Rights(state.rights)
    try:
        for record in catalog.iter_all():
            if rights.check(record.track_id, MARKET).allowed:
                return record.track_id
    finally:
        rights.close()
        catalog.close()
    pytest.fail(f"no catalog track is licensed in {MARKET}")


class InProcessMesh:
    """Starts licensing, metadata, recommendation and stream servers on free loopback ports."""

    def __init__(self, state: StatePaths, model: Model, tmp_path: Path, stack: AsyncExitStack) -> None:
        self._state = state
        self._model = model
        self._tmp_path = tmp_path
        self._stack = stack

    async def _serve(self, name: str, descriptor: Any, service: str, add: Any, servicer: object) -> str:
        built = build_server(name, [ServiceDefinition.of(descriptor, service, add, servicer)], "127.0.0.1", 0)
        await built.start()
        self._stack.push_async_callback(built.stop, 0)
        return f"127.0.0.1:{built.port}"

    def _connector(self, caller: str) -> Connector:
        connector = Connector(caller, BreakerRegistry(fail_max=5, reset_timeout_s=5.0), margin_s=0.002)
        self._stack.push_async_callback(connector.close)
        return connector

    def track_lookup(self) -> TrackLookup:
        """Return a track lookup on the real catalog with an in-process cache."""
        catalog = Catalog(self._state.catalog)
        self._stack.callback(catalog.close)
        return TrackLookup(catalog, MemoryStore())

    def recommender(self) -> Recommender:
        return Recommender(self._model)

    async def start(
        self,
        *,
        metadata: MetadataServicer,
        recommendation: Callable[[Any], RecommendationServicer],
        metadata_budget_s: float,
        recommendation_budget_s: float,
    ) -> stream_grpc.StreamServiceStub:
        """Start every server and return a stub of the stream service.

        `recommendation` receives the recommendation service's licensing Downstream.
        """
        rights = Rights(self._state.rights)
        ledger = Ledger(self._tmp_path / "ledger.db")
        self._stack.callback(rights.close)
        self._stack.callback(ledger.close)
        licensing_address = await self._serve(
            "licensing",
            licensing_pb.DESCRIPTOR,
            "LicensingService",
            licensing_grpc.add_LicensingServiceServicer_to_server,
            LicensingServicer(rights, ledger),
        )
        metadata_address = await self._serve(
            "metadata",
            metadata_pb.DESCRIPTOR,
            "MetadataService",
            metadata_grpc.add_MetadataServiceServicer_to_server,
            metadata,
        )

        licensing_for_recommendation = self._connector("recommendation").connect(
            "licensing",
            licensing_address,
            licensing_grpc.LicensingServiceStub,
            licensing_pb.DESCRIPTOR.services_by_name["LicensingService"],
            GENEROUS_BUDGET_S,
        )
        recommendation_address = await self._serve(
            "recommendation",
            recommendation_pb.DESCRIPTOR,
            "RecommendationService",
            recommendation_grpc.add_RecommendationServiceServicer_to_server,
            recommendation(licensing_for_recommendation),
        )

        stream_connector = self._connector("stream")
        authorizer = PlayAuthorizer(
            licensing=stream_connector.connect(
                "licensing",
                licensing_address,
                licensing_grpc.LicensingServiceStub,
                licensing_pb.DESCRIPTOR.services_by_name["LicensingService"],
                GENEROUS_BUDGET_S,
            ),
            metadata=stream_connector.connect(
                "metadata",
                metadata_address,
                metadata_grpc.MetadataServiceStub,
                metadata_pb.DESCRIPTOR.services_by_name["MetadataService"],
                metadata_budget_s,
            ),
            recommendation=stream_connector.connect(
                "recommendation",
                recommendation_address,
                recommendation_grpc.RecommendationServiceStub,
                recommendation_pb.DESCRIPTOR.services_by_name["RecommendationService"],
                recommendation_budget_s,
            ),
            signer=GrantSigner(DEV_SECRET, ttl_s=7200.0),
            popular_threshold=70,
            recommendation_budget_s=recommendation_budget_s,
        )
        stream_address = await self._serve(
            "stream",
            stream_pb.DESCRIPTOR,
            "StreamService",
            stream_grpc.add_StreamServiceServicer_to_server,
            StreamServicer(authorizer, ObjectStore(self._state.objects), "127.0.0.1:1"),
        )

        channel = grpc.aio.insecure_channel(stream_address)
        self._stack.push_async_callback(channel.close)
        return stream_grpc.StreamServiceStub(channel)


@pytest.fixture
async def mesh_in_process(state: StatePaths, model: Model, tmp_path: Path) -> AsyncIterator[InProcessMesh]:
    async with AsyncExitStack() as stack:
        yield InProcessMesh(state, model, tmp_path, stack)


def play_request(track_id: str) -> stream_pb.AuthorizePlayRequest:
    user = common_pb2.UserContext(user_id="listener-1", tier=common_pb2.TIER_PREMIUM, market=MARKET)
    return stream_pb.AuthorizePlayRequest(user=user, track_id=track_id, quality=common_pb2.QUALITY_HIGH)


async def wait_for(event: asyncio.Event, timeout_s: float) -> bool:
    """Return True once `event` is set, or False after `timeout_s`."""
    try:
        await asyncio.wait_for(event.wait(), timeout_s)
    except TimeoutError:
        return False
    return True


async def expect_rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


async def test_slow_metadata_fails_play_with_deadline_exceeded(
    mesh_in_process: InProcessMesh, licensed_track: str
) -> None:
    metadata = SlowMetadata(mesh_in_process.track_lookup())
    stub = await mesh_in_process.start(
        metadata=metadata,
        recommendation=lambda licensing: RecommendationServicer(mesh_in_process.recommender(), licensing),
        metadata_budget_s=0.015,
        recommendation_budget_s=0.020,
    )

    started = time.monotonic()
    error = await expect_rpc_error(stub.AuthorizePlay(play_request(licensed_track), timeout=1.0))
    elapsed_s = time.monotonic() - started

    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.details().startswith("metadata:")
    assert elapsed_s < HANDLER_SLEEP_S


async def test_slow_metadata_handler_is_cancelled(
    mesh_in_process: InProcessMesh, licensed_track: str
) -> None:
    metadata = SlowMetadata(mesh_in_process.track_lookup())
    stub = await mesh_in_process.start(
        metadata=metadata,
        recommendation=lambda licensing: RecommendationServicer(mesh_in_process.recommender(), licensing),
        metadata_budget_s=0.015,
        recommendation_budget_s=0.020,
    )

    await expect_rpc_error(stub.AuthorizePlay(play_request(licensed_track), timeout=1.0))

    assert await wait_for(metadata.cancelled, timeout_s=2.0)
    assert metadata.completed_sleep is False


async def test_play_succeeds_with_real_recommendations(
    mesh_in_process: InProcessMesh, licensed_track: str
) -> None:
    stub = await mesh_in_process.start(
        metadata=MetadataServicer(mesh_in_process.track_lookup()),
        recommendation=lambda licensing: RecommendationServicer(mesh_in_process.recommender(), licensing),
        metadata_budget_s=GENEROUS_BUDGET_S,
        recommendation_budget_s=GENEROUS_BUDGET_S,
    )

    response = await stub.AuthorizePlay(play_request(licensed_track), timeout=5.0)

    assert response.track.track_id == licensed_track
    assert len(response.recommendations) == 10


async def test_slow_recommendation_gives_empty_list(
    mesh_in_process: InProcessMesh, licensed_track: str
) -> None:
    slow: list[SlowRecommendation] = []

    def slow_recommendation(licensing: Any) -> RecommendationServicer:
        slow.append(SlowRecommendation(mesh_in_process.recommender(), licensing))
        return slow[0]

    stub = await mesh_in_process.start(
        metadata=MetadataServicer(mesh_in_process.track_lookup()),
        recommendation=slow_recommendation,
        metadata_budget_s=GENEROUS_BUDGET_S,
        recommendation_budget_s=0.020,
    )

    response = await stub.AuthorizePlay(play_request(licensed_track), timeout=5.0)

    assert response.track.track_id == licensed_track
    assert response.stream_grant != ""
    assert list(response.recommendations) == []
    assert response.recommendations_fallback is False
    assert await wait_for(slow[0].cancelled, timeout_s=2.0)
