"""Tests for the metadata service: catalog ingest and search, the track cache and the MetadataService API.

The catalog is the one the `state` fixture builds from the real CSV. Cache tests use a MemoryStore
driven by a fake clock. The gRPC tests run MetadataServicer in an in-process server on a free loopback
port, with an in-process cache, except the cache tests, which use the private redis-server of the
`redis_url` fixture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from backbeat.metadata.v1 import metadata_service_pb2 as pb
from backbeat.metadata.v1 import metadata_service_pb2_grpc as pb_grpc
from mesh.errors import InvalidArgument, NotFound
from mesh.kv import MemoryStore, RedisStore
from mesh.server import ServiceDefinition, build_server
from services.metadata.catalog import CATALOG_CSV, Catalog, fts_query, read_catalog_rows
from services.metadata.servicer import MetadataServicer
from services.metadata.tracks import CACHE_KEY, CACHE_TTL_S, MAX_BATCH, TrackLookup, track_to_proto
from services.setup import StatePaths

DISTINCT_TRACKS = 28_356
# "Higher Love" by Kygo is in playlists of four genres.
HIGHER_LOVE = "6oJ6le65B3SEqPwMRNXWjY"
BOHEMIAN_RHAPSODY = "4u7EnebtmKWzUH433cf5Qv"
DONT_STOP_ME_NOW = "5T8EDUDqKcs6OSOwEsfqG7"
# The CSV gives "NA" as this track's name, artist and album name.
UNNAMED_TRACK = "69gRFGOWY9OMpFJgFol1u0"
UNKNOWN_TRACK = "0000000000000000000000"
REDIS_TIMEOUT_S = 2.0


class FakeClock:
    """A clock that moves only when a test advances it, in seconds."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def bad_request_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """Return the field names of the google.rpc.BadRequest details of a failed call."""
    status = rpc_status.from_call(error)
    fields: list[str] = []
    if status is None:
        return fields
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields.extend(violation.field for violation in bad_request.field_violations)
    return fields


@pytest.fixture(scope="module")
def catalog(state: StatePaths) -> Iterator[Catalog]:
    opened = Catalog(state.catalog)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def csv_rows(data_dir: Path) -> dict[str, dict[str, object]]:
    """The CSV rows as read_catalog_rows merges them, keyed by track id."""
    return {str(row["track_id"]): row for row in read_catalog_rows(data_dir / CATALOG_CSV)}


# Catalog ingest


def test_csv_distinct_tracks(csv_rows: dict[str, dict[str, object]]) -> None:
    assert len(csv_rows) == DISTINCT_TRACKS


def test_catalog_track_count(catalog: Catalog) -> None:
    assert sum(1 for _ in catalog.iter_all()) == DISTINCT_TRACKS


def test_csv_genres_merged(csv_rows: dict[str, dict[str, object]]) -> None:
    assert csv_rows[HIGHER_LOVE]["genres"] == {"edm", "latin", "pop", "r&b"}


def test_catalog_genres_merged(catalog: Catalog) -> None:
    track = catalog.get(HIGHER_LOVE)

    assert track is not None
    assert track.genres == ("edm", "latin", "pop", "r&b")
    assert len(track.subgenres) == 8
    assert "tropical" in track.subgenres


def test_catalog_na_names_empty(catalog: Catalog) -> None:
    track = catalog.get(UNNAMED_TRACK)

    assert track is not None
    assert track.name == ""
    assert track.artist == ""
    assert track.album_name == ""


def test_csv_na_names_empty(csv_rows: dict[str, dict[str, object]]) -> None:
    unnamed = sorted(track_id for track_id, row in csv_rows.items() if row["name"] == "")

    assert UNNAMED_TRACK in unnamed
    assert not any(row["name"] == "NA" for row in csv_rows.values())
    assert not any(row["artist"] == "NA" for row in csv_rows.values())


def test_catalog_track_fields(catalog: Catalog) -> None:
    track = catalog.get(HIGHER_LOVE)

    assert track is not None
    assert track.name == "Higher Love"
    assert track.artist == "Kygo"
    assert track.popularity == 87
    assert track.recording_credit
    assert [rendition.bitrate_kbps for rendition in track.renditions] == [64, 128, 320]


def test_catalog_get_unknown(catalog: Catalog) -> None:
    assert catalog.get(UNKNOWN_TRACK) is None


def test_catalog_get_many_skips_unknown(catalog: Catalog) -> None:
    found = catalog.get_many([HIGHER_LOVE, UNKNOWN_TRACK, BOHEMIAN_RHAPSODY])

    assert set(found) == {HIGHER_LOVE, BOHEMIAN_RHAPSODY}


def test_catalog_get_many_empty(catalog: Catalog) -> None:
    assert catalog.get_many([]) == {}


# Search


def test_search_by_title(catalog: Catalog) -> None:
    results = catalog.search("don't stop me now", 5)

    assert results[0].track_id == DONT_STOP_ME_NOW
    assert all("Stop Me Now" in track.name for track in results)


def test_search_by_artist(catalog: Catalog) -> None:
    results = catalog.search("queen", 20)
    popularity = [track.popularity for track in results]

    assert len(results) == 20
    assert results[0].track_id == BOHEMIAN_RHAPSODY
    assert popularity == sorted(popularity, reverse=True)


def test_search_word_prefixes(catalog: Catalog) -> None:
    results = catalog.search("bohem rhaps", 3)

    assert results[0].track_id == BOHEMIAN_RHAPSODY


def test_search_all_words_required(catalog: Catalog) -> None:
    results = catalog.search("queen kygo", 5)

    assert results == []


def test_search_limit(catalog: Catalog) -> None:
    assert len(catalog.search("love", 7)) == 7


def test_fts_query_quotes_words() -> None:
    assert fts_query('Don\'t "Stop" (me) NOW*') == '"don"* "t"* "stop"* "me"* "now"*'


def test_fts_query_operators_as_words() -> None:
    assert fts_query("a AND b OR NOT c NEAR(d)") == '"a"* "and"* "b"* "or"* "not"* "c"* "near"* "d"*'


@pytest.mark.parametrize("text", ['"', "*", "()", "-", ":", "^", '""', "  ", "_"])
def test_search_punctuation_only(catalog: Catalog, text: str) -> None:
    assert catalog.search(text, 5) == []


@pytest.mark.parametrize(
    "text",
    [
        '"queen', 'queen"', "(queen", "queen)", "-queen", "^queen",
        "queen*", "+queen", "queen:", "{queen}", "queen _",
    ],
)
def test_search_ignores_fts_syntax(catalog: Catalog, text: str) -> None:
    expected = [track.track_id for track in catalog.search("queen", 5)]

    assert [track.track_id for track in catalog.search(text, 5)] == expected


def test_search_fts_keyword_as_word(catalog: Catalog) -> None:
    results = catalog.search("NOT", 5)

    assert len(results) == 5


# Track lookups with the cache


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000.0)


@pytest.fixture
def lookup(catalog: Catalog, clock: FakeClock) -> TrackLookup:
    return TrackLookup(catalog, MemoryStore(clock=clock))


async def test_lookup_first_get_misses(lookup: TrackLookup) -> None:
    track, cache_hit = await lookup.get(HIGHER_LOVE)

    assert track.name == "Higher Love"
    assert cache_hit is False


async def test_lookup_second_get_hits(lookup: TrackLookup) -> None:
    first, _ = await lookup.get(HIGHER_LOVE)
    second, cache_hit = await lookup.get(HIGHER_LOVE)

    assert cache_hit is True
    assert second == first
    assert lookup.counters.hits == 1
    assert lookup.counters.misses == 1
    assert lookup.counters.hit_ratio == 0.5


async def test_lookup_cache_live_before_24h(lookup: TrackLookup, clock: FakeClock) -> None:
    await lookup.get(HIGHER_LOVE)
    clock.advance(CACHE_TTL_S - 1)

    _, cache_hit = await lookup.get(HIGHER_LOVE)

    assert cache_hit is True


async def test_lookup_cache_expires_after_24h(lookup: TrackLookup, clock: FakeClock) -> None:
    await lookup.get(HIGHER_LOVE)
    clock.advance(24 * 3600 + 1)

    _, cache_hit = await lookup.get(HIGHER_LOVE)

    assert cache_hit is False
    assert lookup.counters.misses == 2


async def test_lookup_unknown_not_found(lookup: TrackLookup) -> None:
    with pytest.raises(NotFound, match=UNKNOWN_TRACK):
        await lookup.get(UNKNOWN_TRACK)


async def test_lookup_empty_id_invalid(lookup: TrackLookup) -> None:
    with pytest.raises(InvalidArgument) as raised:
        await lookup.get("")

    assert raised.value.field == "track_id"


async def test_lookup_get_many_order(lookup: TrackLookup) -> None:
    await lookup.get(BOHEMIAN_RHAPSODY)

    tracks, missing = await lookup.get_many([HIGHER_LOVE, UNKNOWN_TRACK, BOHEMIAN_RHAPSODY, ""])

    assert [track.track_id for track in tracks] == [HIGHER_LOVE, BOHEMIAN_RHAPSODY]
    assert missing == [UNKNOWN_TRACK, ""]
    assert lookup.counters.hits == 1


async def test_lookup_get_many_fills_cache(lookup: TrackLookup) -> None:
    await lookup.get_many([HIGHER_LOVE])

    _, cache_hit = await lookup.get(HIGHER_LOVE)

    assert cache_hit is True


async def test_lookup_get_many_over_limit(lookup: TrackLookup) -> None:
    with pytest.raises(InvalidArgument) as raised:
        await lookup.get_many([HIGHER_LOVE] * (MAX_BATCH + 1))

    assert raised.value.field == "track_ids"


@pytest.mark.parametrize(("query", "limit", "field"), [("", 5, "query"), ("q" * 201, 5, "query"),
                                                         ("queen", -1, "limit"), ("queen", 51, "limit")])
def test_lookup_search_invalid(lookup: TrackLookup, query: str, limit: int, field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        lookup.search(query, limit)

    assert raised.value.field == field


def test_lookup_search_default_limit(lookup: TrackLookup) -> None:
    assert len(lookup.search("queen", 0)) == 10


def test_track_to_proto(catalog: Catalog) -> None:
    record = catalog.get(HIGHER_LOVE)
    assert record is not None

    track = track_to_proto(record)

    assert list(track.genres) == ["edm", "latin", "pop", "r&b"]
    assert track.features.key == int(record.features["key"])
    assert track.features.tempo == pytest.approx(record.features["tempo"])
    assert [rendition.object_key for rendition in track.renditions] == [
        rendition.object_key for rendition in record.renditions
    ]
    assert track.recording_credit == record.recording_credit


# MetadataService over gRPC


@dataclass
class MetadataApi:
    stub: pb_grpc.MetadataServiceStub
    lookup: TrackLookup


@asynccontextmanager
async def serve_metadata(lookup: TrackLookup) -> AsyncIterator[MetadataApi]:
    """Run MetadataServicer in an in-process server on a free loopback port and return a stub for it."""
    definition = ServiceDefinition.of(
        pb.DESCRIPTOR,
        "MetadataService",
        pb_grpc.add_MetadataServiceServicer_to_server,
        MetadataServicer(lookup),
    )
    built = build_server("metadata", [definition], "127.0.0.1", 0)
    await built.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            yield MetadataApi(pb_grpc.MetadataServiceStub(channel), lookup)
    finally:
        await built.stop(0)


@pytest.fixture
async def metadata_api(catalog: Catalog) -> AsyncIterator[MetadataApi]:
    """The service with an in-process cache, as it runs when REDIS_URL is not set."""
    async with serve_metadata(TrackLookup(catalog, MemoryStore())) as api:
        yield api


@pytest.fixture
async def redis_metadata_api(catalog: Catalog, redis_url: str) -> AsyncIterator[MetadataApi]:
    """The service with its track cache in Redis."""
    cache = RedisStore(redis_url, REDIS_TIMEOUT_S)
    async with serve_metadata(TrackLookup(catalog, cache)) as api:
        yield api
    await cache.close()


async def test_get_track(redis_metadata_api: MetadataApi) -> None:
    response = await redis_metadata_api.stub.GetTrack(pb.GetTrackRequest(track_id=HIGHER_LOVE))

    assert response.track.track_id == HIGHER_LOVE
    assert response.track.name == "Higher Love"
    assert response.track.artist == "Kygo"
    assert list(response.track.genres) == ["edm", "latin", "pop", "r&b"]
    assert len(response.track.renditions) == 3


async def test_get_track_unknown(metadata_api: MetadataApi) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await metadata_api.stub.GetTrack(pb.GetTrackRequest(track_id=UNKNOWN_TRACK))

    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_get_track_empty_id(metadata_api: MetadataApi) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await metadata_api.stub.GetTrack(pb.GetTrackRequest(track_id=""))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) == ["track_id"]


async def test_get_track_cache_hit(redis_metadata_api: MetadataApi) -> None:
    first = await redis_metadata_api.stub.GetTrack(pb.GetTrackRequest(track_id=HIGHER_LOVE))
    second = await redis_metadata_api.stub.GetTrack(pb.GetTrackRequest(track_id=HIGHER_LOVE))

    assert second.track == first.track
    assert redis_metadata_api.lookup.counters.misses == 1
    assert redis_metadata_api.lookup.counters.hits == 1


async def test_get_track_cached_in_redis(redis_metadata_api: MetadataApi, redis_url: str) -> None:
    await redis_metadata_api.stub.GetTrack(pb.GetTrackRequest(track_id=HIGHER_LOVE))

    client = aioredis.Redis.from_url(redis_url)
    ttl_ms = await client.pttl(CACHE_KEY.format(HIGHER_LOVE))
    await client.aclose()

    assert 0 < ttl_ms <= CACHE_TTL_S * 1000


async def test_search_tracks(metadata_api: MetadataApi) -> None:
    response = await metadata_api.stub.SearchTracks(pb.SearchTracksRequest(query="queen", limit=3))

    assert len(response.tracks) == 3
    assert response.tracks[0].track_id == BOHEMIAN_RHAPSODY


async def test_search_tracks_default_limit(metadata_api: MetadataApi) -> None:
    response = await metadata_api.stub.SearchTracks(pb.SearchTracksRequest(query="queen"))

    assert len(response.tracks) == 10


async def test_search_tracks_limit_too_high(metadata_api: MetadataApi) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await metadata_api.stub.SearchTracks(pb.SearchTracksRequest(query="queen", limit=51))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) == ["limit"]


async def test_search_tracks_empty_query(metadata_api: MetadataApi) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await metadata_api.stub.SearchTracks(pb.SearchTracksRequest(query=""))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) == ["query"]


async def test_batch_get_missing_id(metadata_api: MetadataApi) -> None:
    request = pb.BatchGetTracksRequest(track_ids=[BOHEMIAN_RHAPSODY, UNKNOWN_TRACK, HIGHER_LOVE])

    response = await metadata_api.stub.BatchGetTracks(request)

    assert [track.track_id for track in response.tracks] == [BOHEMIAN_RHAPSODY, HIGHER_LOVE]
    assert list(response.missing_track_ids) == [UNKNOWN_TRACK]


async def test_batch_get_over_limit(metadata_api: MetadataApi) -> None:
    request = pb.BatchGetTracksRequest(track_ids=[HIGHER_LOVE] * (MAX_BATCH + 1))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await metadata_api.stub.BatchGetTracks(request)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) == ["track_ids"]
