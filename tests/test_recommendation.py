"""Tests for the recommendation service in process: the real model and a real licensing server.

Most tests use the rights built from the catalog. The fallback tests build a second rights store,
with the same rule, that lists only a few of the seed's neighbours, so too few candidates are
licensed and the service has to fill the list from the popular tracks of the seed's genre.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from backbeat.common.v1 import common_pb2
from backbeat.licensing.v1 import licensing_service_pb2 as licensing_pb
from backbeat.licensing.v1 import licensing_service_pb2_grpc as licensing_grpc
from backbeat.recommendation.v1 import recommendation_service_pb2 as pb
from backbeat.recommendation.v1 import recommendation_service_pb2_grpc as pb_grpc
from mesh.breakers import BreakerRegistry
from mesh.client import Connector
from mesh.server import ServiceDefinition, build_server
from services.licensing.ledger import Ledger
from services.licensing.rights import Rights, build_rights
from services.licensing.servicer import LicensingServicer
from services.metadata.catalog import Catalog
from services.recommendation.engine import MAX_PER_ARTIST, Recommender
from services.recommendation.model import Model, load_model
from services.recommendation.servicer import RecommendationServicer
from services.setup import StatePaths

MARKET = "US"
USER = "listener-1"
NEIGHBOURS_LICENSED = 3
CROWDED_LIMIT = 20


@pytest.fixture(scope="module")
def model(state: StatePaths) -> Model:
    return load_model(state.model)


@pytest.fixture(scope="module")
def rights(state: StatePaths) -> Iterator[Rights]:
    rights = Rights(state.rights)
    yield rights
    rights.close()


@pytest.fixture(scope="module")
def seed(model: Model, rights: Rights) -> str:
    """The most popular track of the catalog, which also heads the fallback list of its genre."""
    track_id = str(model.track_ids[model.most_popular(None)[0]])
    assert rights.check(track_id, MARKET).allowed
    return track_id


def artist_of(model: Model, track_id: str) -> str:
    return str(model.artists[model.index_of(track_id)])


def artist_counts(model: Model, track_ids: list[str]) -> Counter[str]:
    return Counter(artist_of(model, track_id) for track_id in track_ids)


@pytest.fixture(scope="module")
def crowded_seed(model: Model) -> str:
    """A popular track of a genre whose first CROWDED_LIMIT popular tracks have one artist too often.

    "Too often" is more than MAX_PER_ARTIST times. The seed itself is by another artist, so
    only the fallback list can break the per-artist cap.
    """
    recommender = Recommender(model)
    for genre in model.genres:
        popular = recommender.fallback(genre)[:CROWDED_LIMIT]
        artist, count = artist_counts(model, popular).most_common(1)[0]
        if count > MAX_PER_ARTIST:
            return next(track_id for track_id in popular if artist_of(model, track_id) != artist)
    pytest.fail(
        f"no genre has more than {MAX_PER_ARTIST} tracks of one artist among its {CROWDED_LIMIT} most popular"
    )


def build_sparse_rights(state: StatePaths, model: Model, seed: str, database: Path) -> Path:
    """Build a rights store with only a few of the seed's neighbours and the popular tracks of its genre."""
    recommender = Recommender(model)
    neighbours = recommender.candidates("nobody", seed, NEIGHBOURS_LICENSED)
    popular = recommender.fallback(recommender.primary_genre(seed))[:80]
    catalog = Catalog(state.catalog)
    try:
        records = catalog.get_many([*neighbours, *popular])
    finally:
        catalog.close()
    build_rights(((track_id, record.album_id) for track_id, record in records.items()), database)
    return database


@pytest.fixture(scope="module")
def sparse_rights(
    state: StatePaths, model: Model, seed: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return build_sparse_rights(state, model, seed, tmp_path_factory.mktemp("sparse-rights") / "rights.db")


@pytest.fixture(scope="module")
def crowded_rights(
    state: StatePaths, model: Model, crowded_seed: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return build_sparse_rights(
        state, model, crowded_seed, tmp_path_factory.mktemp("crowded-rights") / "rights.db"
    )


@dataclass
class RecommendationUnderTest:
    stub: pb_grpc.RecommendationServiceStub
    recommender: Recommender


class Servers:
    """Starts a licensing server on a rights store and a recommendation server that calls it."""

    def __init__(self, model: Model, tmp_path: Path, stack: AsyncExitStack) -> None:
        self._model = model
        self._tmp_path = tmp_path
        self._stack = stack

    async def start(self, rights_path: Path) -> RecommendationUnderTest:
        rights = Rights(rights_path)
        ledger = Ledger(self._tmp_path / "ledger.db")
        self._stack.callback(rights.close)
        self._stack.callback(ledger.close)
        licensing_server = build_server(
            "licensing",
            [
                ServiceDefinition.of(
                    licensing_pb.DESCRIPTOR,
                    "LicensingService",
                    licensing_grpc.add_LicensingServiceServicer_to_server,
                    LicensingServicer(rights, ledger),
                )
            ],
        )
        await licensing_server.start()
        self._stack.push_async_callback(licensing_server.stop, 0)

        connector = Connector(
            "recommendation", BreakerRegistry(fail_max=5, reset_timeout_s=5.0), margin_s=0.002
        )
        self._stack.push_async_callback(connector.close)
        licensing = connector.connect(
            "licensing",
            f"127.0.0.1:{licensing_server.port}",
            licensing_grpc.LicensingServiceStub,
            licensing_pb.DESCRIPTOR.services_by_name["LicensingService"],
            budget_s=1.0,
        )
        recommender = Recommender(self._model)
        recommendation_server = build_server(
            "recommendation",
            [
                ServiceDefinition.of(
                    pb.DESCRIPTOR,
                    "RecommendationService",
                    pb_grpc.add_RecommendationServiceServicer_to_server,
                    RecommendationServicer(recommender, licensing),
                )
            ],
        )
        await recommendation_server.start()
        self._stack.push_async_callback(recommendation_server.stop, 0)

        channel = grpc.aio.insecure_channel(f"127.0.0.1:{recommendation_server.port}")
        self._stack.push_async_callback(channel.close)
        return RecommendationUnderTest(pb_grpc.RecommendationServiceStub(channel), recommender)


@pytest.fixture
async def servers(model: Model, tmp_path: Path) -> AsyncIterator[Servers]:
    async with AsyncExitStack() as stack:
        yield Servers(model, tmp_path, stack)


@pytest.fixture
async def service(servers: Servers, state: StatePaths) -> RecommendationUnderTest:
    return await servers.start(state.rights)


@pytest.fixture
async def sparse_service(servers: Servers, sparse_rights: Path) -> RecommendationUnderTest:
    return await servers.start(sparse_rights)


@pytest.fixture
async def crowded_service(servers: Servers, crowded_rights: Path) -> RecommendationUnderTest:
    return await servers.start(crowded_rights)


def user(market: str = MARKET) -> common_pb2.UserContext:
    return common_pb2.UserContext(user_id=USER, tier=common_pb2.TIER_PREMIUM, market=market)


async def recommend(
    service: RecommendationUnderTest, seed: str, limit: int = 10
) -> pb.GetRecommendationsResponse:
    return await service.stub.GetRecommendations(
        pb.GetRecommendationsRequest(user=user(), seed_track_id=seed, limit=limit), timeout=5.0
    )


async def feedback(
    service: RecommendationUnderTest, track_id: str, event_type: common_pb2.PlaybackEventType.ValueType
) -> None:
    await service.stub.RecordFeedback(
        pb.RecordFeedbackRequest(user_id=USER, track_id=track_id, event_type=event_type), timeout=5.0
    )


async def expect_rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


def violated_fields(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    return [violation.field for violation in bad_request.field_violations]


# Ranking with the built rights


async def test_recommendations_count(service: RecommendationUnderTest, seed: str) -> None:
    response = await recommend(service, seed)

    assert len(response.track_ids) == 10
    assert response.fallback is False


async def test_recommendations_licensed_in_market(
    service: RecommendationUnderTest, seed: str, rights: Rights
) -> None:
    response = await recommend(service, seed)

    decisions = rights.check_many(list(response.track_ids), MARKET)

    assert [decision.track_id for decision in decisions if not decision.allowed] == []


async def test_recommendations_exclude_seed(service: RecommendationUnderTest, seed: str) -> None:
    response = await recommend(service, seed)

    assert seed not in response.track_ids


async def test_recommendations_unique(service: RecommendationUnderTest, seed: str) -> None:
    response = await recommend(service, seed)

    assert len(set(response.track_ids)) == len(response.track_ids)


async def test_recommendations_cap_per_artist(
    service: RecommendationUnderTest, seed: str, model: Model
) -> None:
    response = await recommend(service, seed, limit=50)

    assert max(artist_counts(model, list(response.track_ids)).values()) <= MAX_PER_ARTIST


async def test_recommendations_skip_removes_track(service: RecommendationUnderTest, seed: str) -> None:
    before = await recommend(service, seed)
    skipped = before.track_ids[0]

    await feedback(service, skipped, common_pb2.PLAYBACK_EVENT_TYPE_SKIP)
    after = await recommend(service, seed)

    assert skipped not in after.track_ids
    assert len(after.track_ids) == 10


async def test_recommendations_likes_change_ranking(
    service: RecommendationUnderTest, seed: str, model: Model
) -> None:
    before = await recommend(service, seed)
    liked = str(model.track_ids[model.most_popular("rock")[0]])

    await feedback(service, liked, common_pb2.PLAYBACK_EVENT_TYPE_LIKE)
    after = await recommend(service, seed)

    assert list(after.track_ids) != list(before.track_ids)


async def test_recommendations_other_listener_unaffected(service: RecommendationUnderTest, seed: str) -> None:
    before = await recommend(service, seed)

    await service.stub.RecordFeedback(
        pb.RecordFeedbackRequest(
            user_id="listener-2", track_id=before.track_ids[0], event_type=common_pb2.PLAYBACK_EVENT_TYPE_SKIP
        )
    )
    after = await recommend(service, seed)

    assert list(after.track_ids) == list(before.track_ids)


# Fallback when too few candidates are licensed


async def test_fallback_flag_when_too_few(sparse_service: RecommendationUnderTest, seed: str) -> None:
    response = await recommend(sparse_service, seed)

    assert response.fallback is True
    assert len(response.track_ids) == 10


async def test_fallback_tracks_licensed(
    sparse_service: RecommendationUnderTest, seed: str, sparse_rights: Path
) -> None:
    response = await recommend(sparse_service, seed)

    rights = Rights(sparse_rights)
    try:
        decisions = rights.check_many(list(response.track_ids), MARKET)
    finally:
        rights.close()

    assert [decision.track_id for decision in decisions if not decision.allowed] == []


async def test_fallback_keeps_licensed_neighbours_first(
    sparse_service: RecommendationUnderTest, seed: str, sparse_rights: Path
) -> None:
    neighbours = sparse_service.recommender.candidates(USER, seed, NEIGHBOURS_LICENSED)
    rights = Rights(sparse_rights)
    try:
        licensed_neighbours = [d.track_id for d in rights.check_many(neighbours, MARKET) if d.allowed]
    finally:
        rights.close()

    response = await recommend(sparse_service, seed)

    assert list(response.track_ids[: len(licensed_neighbours)]) == licensed_neighbours


async def test_fallback_excludes_seed(sparse_service: RecommendationUnderTest, seed: str) -> None:
    response = await recommend(sparse_service, seed)

    assert seed not in response.track_ids


async def test_fallback_excludes_skipped_track(sparse_service: RecommendationUnderTest, seed: str) -> None:
    before = await recommend(sparse_service, seed)
    skipped = before.track_ids[-1]

    await feedback(sparse_service, skipped, common_pb2.PLAYBACK_EVENT_TYPE_SKIP)
    after = await recommend(sparse_service, seed)

    assert skipped not in after.track_ids


async def test_fallback_cap_per_artist(
    crowded_service: RecommendationUnderTest, crowded_seed: str, model: Model
) -> None:
    response = await recommend(crowded_service, crowded_seed, limit=CROWDED_LIMIT)

    assert response.fallback is True
    assert max(artist_counts(model, list(response.track_ids)).values()) <= MAX_PER_ARTIST


# Bad requests


async def test_feedback_start_invalid(service: RecommendationUnderTest, seed: str) -> None:
    error = await expect_rpc_error(
        service.stub.RecordFeedback(
            pb.RecordFeedbackRequest(
                user_id=USER, track_id=seed, event_type=common_pb2.PLAYBACK_EVENT_TYPE_START
            )
        )
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(error) == ["event_type"]


async def test_feedback_unknown_track_not_found(service: RecommendationUnderTest) -> None:
    error = await expect_rpc_error(
        service.stub.RecordFeedback(
            pb.RecordFeedbackRequest(
                user_id=USER, track_id="no-such-track", event_type=common_pb2.PLAYBACK_EVENT_TYPE_LIKE
            )
        )
    )

    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_feedback_missing_user_invalid(service: RecommendationUnderTest, seed: str) -> None:
    error = await expect_rpc_error(
        service.stub.RecordFeedback(
            pb.RecordFeedbackRequest(
                user_id="", track_id=seed, event_type=common_pb2.PLAYBACK_EVENT_TYPE_LIKE
            )
        )
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(error) == ["user_id"]


async def test_unknown_seed_not_found(service: RecommendationUnderTest) -> None:
    error = await expect_rpc_error(recommend(service, "no-such-track"))

    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_unknown_market_invalid(service: RecommendationUnderTest, seed: str) -> None:
    error = await expect_rpc_error(
        service.stub.GetRecommendations(pb.GetRecommendationsRequest(user=user("XX"), seed_track_id=seed))
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(error) == ["user.market"]


async def test_limit_above_max_invalid(service: RecommendationUnderTest, seed: str) -> None:
    error = await expect_rpc_error(recommend(service, seed, limit=51))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(error) == ["limit"]


# Popular tracks per genre


async def test_get_fallback_licensed_in_genre(
    service: RecommendationUnderTest, model: Model, rights: Rights
) -> None:
    response = await service.stub.GetFallback(pb.GetFallbackRequest(genre="rock", market=MARKET, limit=10))

    genres = {str(model.primary_genres[model.index_of(track_id)]) for track_id in response.track_ids}
    decisions = rights.check_many(list(response.track_ids), MARKET)

    assert len(response.track_ids) == 10
    assert genres == {"rock"}
    assert all(decision.allowed for decision in decisions)


async def test_get_fallback_unknown_genre_invalid(service: RecommendationUnderTest) -> None:
    error = await expect_rpc_error(
        service.stub.GetFallback(pb.GetFallbackRequest(genre="polka", market=MARKET, limit=10))
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(error) == ["genre"]


def test_recommendations_skip_same_song_other_ids(model: Model) -> None:
    ids_by_song: dict[str, list[str]] = {}
    for track_id, song in zip(model.track_ids, model.song_keys, strict=True):
        ids_by_song.setdefault(str(song), []).append(str(track_id))
    seed, *other_ids = next(ids for ids in ids_by_song.values() if len(ids) >= 2)

    picked = Recommender(model).candidates("listener-dup", seed, 20)

    assert not set(other_ids) & set(picked)
    assert len({str(model.song_keys[model.index_of(track_id)]) for track_id in picked}) == len(picked)
