"""Tests for rendition choice, stream grants, the audio origin, the edge cache and edge delivery.

Edge delivery runs the real edge servicer in process against the real stream servicer as its
origin, reading the renditions of the built object store.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest

from backbeat.common.v1 import common_pb2
from backbeat.edge.v1 import edge_service_pb2 as edge_pb
from backbeat.edge.v1 import edge_service_pb2_grpc as edge_grpc
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
from mesh.errors import InvalidArgument, NotFound, OutOfRange, Unauthenticated
from mesh.server import ServiceDefinition, build_server
from services.edge.cache import DEFAULT_TTL_S, POPULAR_TTL_S, ChunkCache
from services.edge.delivery import AudioDelivery
from services.edge.servicer import EdgeServicer
from services.setup import StatePaths
from services.stream.audio_ingest import RenditionFile, load_manifest, object_key_for
from services.stream.authorize import PlayAuthorizer
from services.stream.grants import GrantSigner
from services.stream.origin import ObjectStore
from services.stream.renditions import choose_rendition
from services.stream.servicer import StreamServicer

OTHER_SECRET = "another-secret-of-at-least-32-characters"
EDGE_CHUNK_BYTES = 16 * 1024


class FakeClock:
    """A clock that moves only when a test advances it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# Rendition choice

LADDER = [
    common_pb2.Rendition(bitrate_kbps=320, object_key="renditions/song/320.mp3"),
    common_pb2.Rendition(bitrate_kbps=64, object_key="renditions/song/64.mp3"),
    common_pb2.Rendition(bitrate_kbps=128, object_key="renditions/song/128.mp3"),
]
FREE = common_pb2.TIER_FREE
PREMIUM = common_pb2.TIER_PREMIUM
QUALITIES = [
    common_pb2.QUALITY_UNSPECIFIED,
    common_pb2.QUALITY_LOW,
    common_pb2.QUALITY_NORMAL,
    common_pb2.QUALITY_HIGH,
]


@pytest.mark.parametrize(
    ("tier", "quality", "slow", "expected_kbps"),
    [
        pytest.param(FREE, common_pb2.QUALITY_UNSPECIFIED, False, 128, id="free-default"),
        pytest.param(FREE, common_pb2.QUALITY_HIGH, False, 128, id="free-high-capped"),
        pytest.param(FREE, common_pb2.QUALITY_NORMAL, False, 128, id="free-normal"),
        pytest.param(FREE, common_pb2.QUALITY_LOW, False, 64, id="free-low"),
        pytest.param(PREMIUM, common_pb2.QUALITY_UNSPECIFIED, False, 320, id="premium-default"),
        pytest.param(PREMIUM, common_pb2.QUALITY_HIGH, False, 320, id="premium-high"),
        pytest.param(PREMIUM, common_pb2.QUALITY_NORMAL, False, 128, id="premium-normal"),
        pytest.param(PREMIUM, common_pb2.QUALITY_LOW, False, 64, id="premium-low"),
        pytest.param(PREMIUM, common_pb2.QUALITY_HIGH, True, 128, id="premium-high-slow"),
        pytest.param(PREMIUM, common_pb2.QUALITY_NORMAL, True, 64, id="premium-normal-slow"),
        pytest.param(FREE, common_pb2.QUALITY_UNSPECIFIED, True, 64, id="free-default-slow"),
        pytest.param(FREE, common_pb2.QUALITY_LOW, True, 64, id="free-low-slow-lowest"),
    ],
)
def test_choose_rendition_table(
    tier: common_pb2.Tier.ValueType, quality: common_pb2.Quality.ValueType, slow: bool, expected_kbps: int
) -> None:
    assert choose_rendition(LADDER, tier, quality, slow).bitrate_kbps == expected_kbps


@pytest.mark.parametrize("slow", [False, True], ids=["fast", "slow"])
@pytest.mark.parametrize("quality", QUALITIES, ids=common_pb2.Quality.Name)
def test_choose_rendition_free_never_above_cap(quality: common_pb2.Quality.ValueType, slow: bool) -> None:
    assert choose_rendition(LADDER, FREE, quality, slow).bitrate_kbps <= 128


def test_choose_rendition_keeps_object_key() -> None:
    chosen = choose_rendition(LADDER, PREMIUM, common_pb2.QUALITY_NORMAL, False)

    assert chosen.object_key == "renditions/song/128.mp3"


def test_choose_rendition_lowest_when_all_above_cap() -> None:
    ladder = [common_pb2.Rendition(bitrate_kbps=320), common_pb2.Rendition(bitrate_kbps=256)]

    assert choose_rendition(ladder, FREE, common_pb2.QUALITY_HIGH, False).bitrate_kbps == 256


def test_choose_rendition_empty_not_found() -> None:
    with pytest.raises(NotFound):
        choose_rendition([], PREMIUM, common_pb2.QUALITY_HIGH, False)


# Stream grants

GRANT_FIELDS: dict[str, Any] = {
    "user_id": "listener-1",
    "playback_id": "playback-1",
    "track_id": "track-1",
    "object_key": "renditions/song/128.mp3",
    "bitrate_kbps": 128,
    "content_type": "audio/mpeg",
    "popular": True,
}


def signed_claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_grant_round_trip() -> None:
    signer = GrantSigner(DEV_SECRET, ttl_s=7200.0)
    token, _ = signer.sign(**GRANT_FIELDS)

    grant = signer.verify(token)

    assert grant.user_id == "listener-1"
    assert grant.playback_id == "playback-1"
    assert grant.track_id == "track-1"
    assert grant.object_key == "renditions/song/128.mp3"
    assert grant.bitrate_kbps == 128
    assert grant.content_type == "audio/mpeg"
    assert grant.popular is True


def test_grant_expiry_from_clock() -> None:
    issued_at = time.time()
    signer = GrantSigner(DEV_SECRET, ttl_s=7200.0, clock=lambda: issued_at)

    token, expires_at = signer.sign(**GRANT_FIELDS)

    assert expires_at == pytest.approx(issued_at + 7200.0)
    assert signed_claims(token)["exp"] == int(issued_at + 7200.0)
    assert signed_claims(token)["iat"] == int(issued_at)


def test_grant_expired_rejected() -> None:
    # verify() checks exp against the wall clock (PyJWT has no clock hook), so the grant is
    # signed by a clock set two hours and a minute in the past.
    issued_at = time.time() - 7200.0 - 60.0
    signer = GrantSigner(DEV_SECRET, ttl_s=7200.0, clock=lambda: issued_at)
    token, _ = signer.sign(**GRANT_FIELDS)

    with pytest.raises(Unauthenticated, match="expired"):
        signer.verify(token)


def test_grant_within_leeway_accepted() -> None:
    issued_at = time.time() - 7200.0 - 2.0
    signer = GrantSigner(DEV_SECRET, ttl_s=7200.0, leeway_s=5.0, clock=lambda: issued_at)
    token, _ = signer.sign(**GRANT_FIELDS)

    assert signer.verify(token).track_id == "track-1"


def test_grant_tampered_payload_rejected() -> None:
    signer = GrantSigner(DEV_SECRET, ttl_s=7200.0)
    token, _ = signer.sign(**GRANT_FIELDS)
    header, _, signature = token.split(".")
    claims = signed_claims(token) | {"obj": "renditions/other/320.mp3", "kbps": 320}
    forged = f"{header}.{base64url(json.dumps(claims).encode())}.{signature}"

    with pytest.raises(Unauthenticated, match="invalid"):
        signer.verify(forged)


def test_grant_alg_none_rejected() -> None:
    signer = GrantSigner(DEV_SECRET, ttl_s=7200.0)
    token, _ = signer.sign(**GRANT_FIELDS)
    unsigned = jwt.encode(signed_claims(token), None, algorithm="none")

    with pytest.raises(Unauthenticated):
        signer.verify(unsigned)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_grant_other_algorithm_rejected() -> None:
    signer = GrantSigner(DEV_SECRET, ttl_s=7200.0)
    token, _ = signer.sign(**GRANT_FIELDS)
    hs512 = jwt.encode(signed_claims(token), DEV_SECRET, algorithm="HS512")

    with pytest.raises(Unauthenticated):
        signer.verify(hs512)


def test_grant_other_secret_rejected() -> None:
    token, _ = GrantSigner(OTHER_SECRET, ttl_s=7200.0).sign(**GRANT_FIELDS)

    with pytest.raises(Unauthenticated):
        GrantSigner(DEV_SECRET, ttl_s=7200.0).verify(token)


def test_grant_missing_claim_rejected() -> None:
    signer = GrantSigner(DEV_SECRET, ttl_s=7200.0)
    token, _ = signer.sign(**GRANT_FIELDS)
    claims = signed_claims(token)
    del claims["pop"]

    with pytest.raises(Unauthenticated, match="pop"):
        signer.verify(jwt.encode(claims, DEV_SECRET, algorithm="HS256"))


def test_grant_empty_token_rejected() -> None:
    with pytest.raises(Unauthenticated, match="missing"):
        GrantSigner(DEV_SECRET, ttl_s=7200.0).verify("")


# Audio origin


@pytest.fixture(scope="module")
def smallest_rendition(state: StatePaths) -> RenditionFile:
    """The smallest rendition of the built object store; its size is no multiple of the edge chunk."""
    rendition = min(load_manifest(state.objects).renditions, key=lambda item: item.size_bytes)
    assert rendition.size_bytes % EDGE_CHUNK_BYTES != 0
    return rendition


@pytest.fixture(scope="module")
def rendition_bytes(state: StatePaths, smallest_rendition: RenditionFile) -> bytes:
    return (state.objects / smallest_rendition.object_key).read_bytes()


@pytest.mark.parametrize(
    "object_key",
    [
        "../rights.db",
        "renditions/../../rights.db",
        "renditions/song/../128.mp3",
        "/etc/passwd",
        "renditions/Song/128.mp3",
        "renditions/song/128.wav",
        "renditions/song/high.mp3",
        "renditions/song/128.mp3/",
        "renditions/song/128.mp3\n",
        "",
    ],
)
def test_object_store_rejects_bad_key(state: StatePaths, object_key: str) -> None:
    store = ObjectStore(state.objects)

    with pytest.raises(InvalidArgument) as raised:
        store.path_of(object_key)

    assert raised.value.field == "object_key"


def test_object_store_missing_key_not_found(state: StatePaths) -> None:
    with pytest.raises(NotFound):
        ObjectStore(state.objects).path_of("renditions/no_such_recording/128.mp3")


def test_object_store_accepts_ingest_slug(tmp_path: Path) -> None:
    # Ingest accepts slugs matching [a-z0-9][a-z0-9_-]*, so its object keys may contain hyphens.
    object_key = object_key_for("lo-fi_loop", 128)
    (tmp_path / object_key).parent.mkdir(parents=True)
    (tmp_path / object_key).write_bytes(b"ID3")

    assert ObjectStore(tmp_path).path_of(object_key) == tmp_path / object_key


def test_object_store_reads_whole_file(
    state: StatePaths, smallest_rendition: RenditionFile, rendition_bytes: bytes
) -> None:
    chunks = list(ObjectStore(state.objects).read_chunks(smallest_rendition.object_key, 0, 4096))

    assert b"".join(data for _, data, _ in chunks) == rendition_bytes
    assert [offset for offset, _, _ in chunks] == list(range(0, len(rendition_bytes), 4096))
    assert {total for _, _, total in chunks} == {len(rendition_bytes)}


def test_object_store_offset_past_end_out_of_range(
    state: StatePaths, smallest_rendition: RenditionFile
) -> None:
    chunks = ObjectStore(state.objects).read_chunks(
        smallest_rendition.object_key, smallest_rendition.size_bytes + 1, 0
    )

    with pytest.raises(OutOfRange):
        next(chunks)


def test_object_store_offset_at_end_is_empty(state: StatePaths, smallest_rendition: RenditionFile) -> None:
    chunks = ObjectStore(state.objects).read_chunks(
        smallest_rendition.object_key, smallest_rendition.size_bytes, 0
    )

    assert list(chunks) == []


def test_object_store_negative_offset_invalid(state: StatePaths, smallest_rendition: RenditionFile) -> None:
    with pytest.raises(InvalidArgument) as raised:
        next(ObjectStore(state.objects).read_chunks(smallest_rendition.object_key, -1, 0))

    assert raised.value.field == "offset"


def test_object_store_oversized_chunk_invalid(state: StatePaths, smallest_rendition: RenditionFile) -> None:
    with pytest.raises(InvalidArgument) as raised:
        next(ObjectStore(state.objects).read_chunks(smallest_rendition.object_key, 0, 2 * 1024 * 1024))

    assert raised.value.field == "chunk_size"


# Edge cache


def test_chunk_cache_stays_within_bytes() -> None:
    cache = ChunkCache(max_bytes=100, clock=FakeClock())

    for index in range(4):
        cache.put("renditions/song/64.mp3", index, bytes(40), total_size=160, popular=False)

    assert cache.size_bytes <= 100
    assert cache.get("renditions/song/64.mp3", 0) is None
    assert cache.get("renditions/song/64.mp3", 3) is not None


def test_chunk_cache_evicts_least_recently_used() -> None:
    cache = ChunkCache(max_bytes=100, clock=FakeClock())
    cache.put("renditions/song/64.mp3", 0, bytes(40), total_size=120, popular=False)
    cache.put("renditions/song/64.mp3", 1, bytes(40), total_size=120, popular=False)
    cache.get("renditions/song/64.mp3", 0)

    cache.put("renditions/song/64.mp3", 2, bytes(40), total_size=120, popular=False)

    assert cache.get("renditions/song/64.mp3", 0) is not None
    assert cache.get("renditions/song/64.mp3", 1) is None


def test_chunk_cache_skips_chunk_larger_than_budget() -> None:
    cache = ChunkCache(max_bytes=100, clock=FakeClock())

    cache.put("renditions/song/64.mp3", 0, bytes(101), total_size=101, popular=False)

    assert cache.get("renditions/song/64.mp3", 0) is None
    assert cache.size_bytes == 0


def test_chunk_cache_counts_hits_and_misses() -> None:
    cache = ChunkCache(max_bytes=100, clock=FakeClock())
    cache.put("renditions/song/64.mp3", 0, b"data", total_size=4, popular=False)

    cache.get("renditions/song/64.mp3", 0)
    cache.get("renditions/song/64.mp3", 1)

    assert cache.stats.hits == 1
    assert cache.stats.misses == 1
    assert cache.stats.hit_ratio == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("popular", "age_s", "kept"),
    [
        pytest.param(False, DEFAULT_TTL_S - 1, True, id="regular-before-24h"),
        pytest.param(False, DEFAULT_TTL_S + 1, False, id="regular-after-24h"),
        pytest.param(True, DEFAULT_TTL_S + 1, True, id="popular-after-24h"),
        pytest.param(True, POPULAR_TTL_S - 1, True, id="popular-before-7d"),
        pytest.param(True, POPULAR_TTL_S + 1, False, id="popular-after-7d"),
    ],
)
def test_chunk_cache_ttl(popular: bool, age_s: float, kept: bool) -> None:
    clock = FakeClock()
    cache = ChunkCache(max_bytes=1000, clock=clock)
    cache.put("renditions/song/64.mp3", 0, b"data", total_size=4, popular=popular)

    clock.advance(age_s)

    assert (cache.get("renditions/song/64.mp3", 0) is not None) is kept


def test_cache_ttls_are_seven_days_and_one_day() -> None:
    assert POPULAR_TTL_S == 7 * 24 * 3600
    assert DEFAULT_TTL_S == 24 * 3600


# Edge delivery


class CountingOrigin(StreamServicer):
    """The real stream servicer, counting ReadRendition calls."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.reads = 0

    async def ReadRendition(
        self, request: stream_pb.ReadRenditionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[stream_pb.ReadRenditionResponse]:
        self.reads += 1
        async for message in super().ReadRendition(request, context):
            yield message


def unused_authorizer(connector: Connector) -> PlayAuthorizer:
    """Return a PlayAuthorizer for the origin servicer.

    ReadRendition never calls the authorizer, so its channels never connect.
    """
    nowhere = "127.0.0.1:1"
    return PlayAuthorizer(
        licensing=connector.connect(
            "licensing",
            nowhere,
            licensing_grpc.LicensingServiceStub,
            licensing_pb.DESCRIPTOR.services_by_name["LicensingService"],
            0.030,
        ),
        metadata=connector.connect(
            "metadata",
            nowhere,
            metadata_grpc.MetadataServiceStub,
            metadata_pb.DESCRIPTOR.services_by_name["MetadataService"],
            0.015,
        ),
        recommendation=connector.connect(
            "recommendation",
            nowhere,
            recommendation_grpc.RecommendationServiceStub,
            recommendation_pb.DESCRIPTOR.services_by_name["RecommendationService"],
            0.020,
        ),
        signer=GrantSigner(DEV_SECRET, ttl_s=7200.0),
        popular_threshold=70,
        recommendation_budget_s=0.020,
    )


@dataclass
class EdgeUnderTest:
    stub: edge_grpc.EdgeServiceStub
    origin: CountingOrigin
    cache: ChunkCache


@pytest.fixture
async def edge(state: StatePaths) -> AsyncIterator[EdgeUnderTest]:
    stream_connector = Connector("stream", BreakerRegistry(fail_max=5, reset_timeout_s=5.0), margin_s=0.002)
    origin = CountingOrigin(unused_authorizer(stream_connector), ObjectStore(state.objects), "")
    origin_server = build_server(
        "stream",
        [
            ServiceDefinition.of(
                stream_pb.DESCRIPTOR, "StreamService", stream_grpc.add_StreamServiceServicer_to_server, origin
            )
        ],
    )
    await origin_server.start()

    edge_connector = Connector("edge", BreakerRegistry(fail_max=5, reset_timeout_s=5.0), margin_s=0.002)
    cache = ChunkCache(64 * 1024 * 1024)
    delivery = AudioDelivery(
        signer=GrantSigner(DEV_SECRET, ttl_s=0.0),
        cache=cache,
        origin=edge_connector.connect(
            "stream",
            f"127.0.0.1:{origin_server.port}",
            stream_grpc.StreamServiceStub,
            stream_pb.DESCRIPTOR.services_by_name["StreamService"],
            1.0,
        ),
        chunk_bytes=EDGE_CHUNK_BYTES,
        storage_budget_s=1.0,
    )
    edge_server = build_server(
        "edge",
        [
            ServiceDefinition.of(
                edge_pb.DESCRIPTOR,
                "EdgeService",
                edge_grpc.add_EdgeServiceServicer_to_server,
                EdgeServicer(delivery),
            )
        ],
    )
    await edge_server.start()

    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge_server.port}") as channel:
        yield EdgeUnderTest(edge_grpc.EdgeServiceStub(channel), origin, cache)

    await edge_server.stop(0)
    await edge_connector.close()
    await origin_server.stop(0)
    await stream_connector.close()


def grant_for(rendition: RenditionFile, secret: str = DEV_SECRET) -> str:
    token, _ = GrantSigner(secret, ttl_s=7200.0).sign(
        user_id="listener-1",
        playback_id="playback-1",
        track_id="track-1",
        object_key=rendition.object_key,
        bitrate_kbps=rendition.bitrate_kbps,
        content_type=rendition.content_type,
        popular=False,
    )
    return token


async def stream_audio(edge: EdgeUnderTest, grant: str, offset: int = 0) -> list[edge_pb.StreamAudioResponse]:
    call = edge.stub.StreamAudio(edge_pb.StreamAudioRequest(stream_grant=grant, offset=offset))
    return [message async for message in call]


async def stream_error(edge: EdgeUnderTest, grant: str, offset: int = 0) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stream_audio(edge, grant, offset)
    return raised.value


def joined(messages: list[edge_pb.StreamAudioResponse]) -> bytes:
    return b"".join(message.data for message in messages)


async def test_edge_first_stream_is_whole_file(
    edge: EdgeUnderTest, smallest_rendition: RenditionFile, rendition_bytes: bytes
) -> None:
    messages = await stream_audio(edge, grant_for(smallest_rendition))

    assert joined(messages) == rendition_bytes
    assert {message.cache_hit for message in messages} == {False}
    assert {message.total_size for message in messages} == {len(rendition_bytes)}
    assert {message.content_type for message in messages} == {"audio/mpeg"}
    assert edge.origin.reads == 1


async def test_edge_second_stream_from_cache(
    edge: EdgeUnderTest, smallest_rendition: RenditionFile, rendition_bytes: bytes
) -> None:
    grant = grant_for(smallest_rendition)
    await stream_audio(edge, grant)
    misses_after_first = edge.cache.stats.misses

    messages = await stream_audio(edge, grant)

    assert joined(messages) == rendition_bytes
    assert {message.cache_hit for message in messages} == {True}
    assert edge.origin.reads == 1
    assert edge.cache.stats.misses == misses_after_first
    assert edge.cache.stats.hits == len(messages)


async def test_edge_mid_file_offset_from_origin(
    edge: EdgeUnderTest, smallest_rendition: RenditionFile, rendition_bytes: bytes
) -> None:
    offset = 2 * EDGE_CHUNK_BYTES + 123

    messages = await stream_audio(edge, grant_for(smallest_rendition), offset)

    assert joined(messages) == rendition_bytes[offset:]
    assert messages[0].offset == offset


async def test_edge_mid_file_offset_from_cache(
    edge: EdgeUnderTest, smallest_rendition: RenditionFile, rendition_bytes: bytes
) -> None:
    grant = grant_for(smallest_rendition)
    await stream_audio(edge, grant)
    offset = 2 * EDGE_CHUNK_BYTES + 123

    messages = await stream_audio(edge, grant, offset)

    assert joined(messages) == rendition_bytes[offset:]
    assert messages[0].offset == offset
    assert {message.cache_hit for message in messages} == {True}
    assert edge.origin.reads == 1


async def test_edge_bad_grant_unauthenticated(edge: EdgeUnderTest) -> None:
    error = await stream_error(edge, "not.a.grant")

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert edge.origin.reads == 0


async def test_edge_other_secret_unauthenticated(
    edge: EdgeUnderTest, smallest_rendition: RenditionFile
) -> None:
    error = await stream_error(edge, grant_for(smallest_rendition, OTHER_SECRET))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert edge.origin.reads == 0


async def test_edge_negative_offset_invalid(edge: EdgeUnderTest, smallest_rendition: RenditionFile) -> None:
    error = await stream_error(edge, grant_for(smallest_rendition), -1)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_edge_offset_far_past_end_out_of_range(
    edge: EdgeUnderTest, smallest_rendition: RenditionFile
) -> None:
    error = await stream_error(edge, grant_for(smallest_rendition), 2 * smallest_rendition.size_bytes)

    assert error.code() == grpc.StatusCode.OUT_OF_RANGE


async def test_edge_offset_past_end_warm_out_of_range(
    edge: EdgeUnderTest, smallest_rendition: RenditionFile
) -> None:
    grant = grant_for(smallest_rendition)
    await stream_audio(edge, grant)

    error = await stream_error(edge, grant, smallest_rendition.size_bytes + 10)

    assert error.code() == grpc.StatusCode.OUT_OF_RANGE


async def test_edge_offset_past_end_cold_out_of_range(
    edge: EdgeUnderTest, smallest_rendition: RenditionFile
) -> None:
    # The offset lies past the end but inside the span of the last, partial chunk.
    error = await stream_error(edge, grant_for(smallest_rendition), smallest_rendition.size_bytes + 10)

    assert error.code() == grpc.StatusCode.OUT_OF_RANGE
