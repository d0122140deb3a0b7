"""End to end: the whole mesh, each service its own process, plays real catalog tracks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import mutagen.mp3
import numpy as np
import pytest
import soundfile
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from backbeat.common.v1 import common_pb2
from backbeat.gateway.v1 import gateway_service_pb2 as gateway_pb
from backbeat.licensing.v1 import licensing_service_pb2 as licensing_pb
from backbeat.licensing.v1 import licensing_service_pb2_grpc as licensing_grpc
from mesh.launcher import HTTP_SERVICES, TOPOLOGY, Mesh
from services.gateway.client import BackbeatClient
from services.licensing.rights import Rights
from services.metadata.catalog import Catalog
from services.setup import StatePaths

FREE_US = ("free-us@backbeat.test", "listen-free-us")
PREMIUM_US = ("premium-us@backbeat.test", "listen-premium-us")
PLAY_TIMEOUT_S = 2.0


async def signed_in(mesh: Mesh, account: tuple[str, str]) -> AsyncIterator[BackbeatClient]:
    client = BackbeatClient(mesh.address("gateway"))
    await client.login(*account)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def free_client(mesh: Mesh) -> AsyncIterator[BackbeatClient]:
    async for client in signed_in(mesh, FREE_US):
        yield client


@pytest.fixture
async def premium_client(mesh: Mesh) -> AsyncIterator[BackbeatClient]:
    async for client in signed_in(mesh, PREMIUM_US):
        yield client


def licensed_track(state: StatePaths, client: BackbeatClient, tracks: list[common_pb2.Track]) -> str:
    rights = Rights(state.rights)
    try:
        market = client.user.market if client.user else "US"
        decisions = rights.check_many([track.track_id for track in tracks], market)
    finally:
        rights.close()
    return next(decision.track_id for decision in decisions if decision.allowed)


def decoded_mp3(path: Path) -> tuple[int, float, float]:
    """Return the bitrate mutagen reads, the decoded duration in seconds and the peak sample."""
    audio = mutagen.mp3.MP3(path)
    samples, rate = soundfile.read(path)
    return int(audio.info.bitrate), len(samples) / rate, float(np.abs(samples).max())


def bad_request_fields(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    fields = []
    for detail in status.details if status else []:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            fields += [violation.field for violation in bad_request.field_violations]
    return fields


@pytest.mark.parametrize(
    ("account", "expected_kbps"), [(FREE_US, 128), (PREMIUM_US, 320)], ids=["free", "premium"]
)
async def test_play_streams_decodable_audio(
    mesh: Mesh, state: StatePaths, tmp_path: Path, account: tuple[str, str], expected_kbps: int
) -> None:
    async for client in signed_in(mesh, account):
        found = await client.search("love", limit=20)
        track_id = licensed_track(state, client, found)
        out = tmp_path / "play.mp3"
        with out.open("wb") as sink:
            result = await client.play_and_stream(track_id, sink, play_timeout_s=PLAY_TIMEOUT_S)

    bitrate, duration_s, peak = decoded_mp3(out)
    assert result.play.rendition.bitrate_kbps == expected_kbps
    assert abs(bitrate - expected_kbps * 1000) <= expected_kbps
    assert result.bytes_received == result.play.rendition.size_bytes
    assert result.content_type == "audio/mpeg"
    assert duration_s > 1.0
    assert peak > 0.01
    assert len(result.play.recommendations) == 10
    assert len(result.play.trace_id) == 32


async def test_play_slow_connection_picks_lower_rung(
    premium_client: BackbeatClient, state: StatePaths
) -> None:
    found = await premium_client.search("dance", limit=20)
    track_id = licensed_track(state, premium_client, found)

    result = await premium_client.play_and_stream(
        track_id, None, slow_connection=True, play_timeout_s=PLAY_TIMEOUT_S, max_bytes=1
    )

    assert result.play.rendition.bitrate_kbps == 128


async def test_play_unlicensed_track_permission_denied(
    free_client: BackbeatClient, state: StatePaths
) -> None:
    rights = Rights(state.rights)
    withheld = rights.withheld_tracks("US", limit=1)[0]
    rights.close()

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await free_client.play_and_stream(withheld, None, play_timeout_s=PLAY_TIMEOUT_S)

    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not available in your market" in (raised.value.details() or "")


async def test_play_unknown_track_not_found(free_client: BackbeatClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await free_client.play_and_stream("0" * 22, None, play_timeout_s=PLAY_TIMEOUT_S)

    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_play_empty_track_id_invalid_argument(free_client: BackbeatClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await free_client.play_and_stream("", None, play_timeout_s=PLAY_TIMEOUT_S)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) == ["track_id"]


async def test_play_bad_token_unauthenticated(mesh: Mesh) -> None:
    client = BackbeatClient(mesh.address("gateway"))
    client._token = "not-a-token"
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.play_and_stream("0" * 22, None, play_timeout_s=PLAY_TIMEOUT_S)
    finally:
        await client.close()

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_play_missing_token_unauthenticated(mesh: Mesh) -> None:
    async with grpc.aio.insecure_channel(mesh.address("gateway")) as channel:
        from backbeat.gateway.v1 import gateway_service_pb2_grpc

        stub = gateway_service_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Play(gateway_pb.PlayRequest(track_id="0" * 22), timeout=PLAY_TIMEOUT_S)

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization" in (raised.value.details() or "")


async def test_login_wrong_password_unauthenticated(mesh: Mesh) -> None:
    client = BackbeatClient(mesh.address("gateway"))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.login(FREE_US[0], "wrong password")
    finally:
        await client.close()

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_second_play_served_from_edge_cache(premium_client: BackbeatClient, state: StatePaths) -> None:
    found = await premium_client.search("night", limit=20)
    track_id = licensed_track(state, premium_client, found)

    first = await premium_client.play_and_stream(track_id, None, play_timeout_s=PLAY_TIMEOUT_S)
    second = await premium_client.play_and_stream(track_id, None, play_timeout_s=PLAY_TIMEOUT_S)

    assert second.cache_hits == second.chunks
    assert second.bytes_received == first.bytes_received


async def test_report_playback_counts_stream_once(
    mesh: Mesh, premium_client: BackbeatClient, state: StatePaths
) -> None:
    found = await premium_client.search("summer", limit=20)
    track_id = licensing_target = licensed_track(state, premium_client, found)
    result = await premium_client.play_and_stream(track_id, None, play_timeout_s=PLAY_TIMEOUT_S, max_bytes=1)
    async with grpc.aio.insecure_channel(mesh.address("licensing")) as channel:
        licensing = licensing_grpc.LicensingServiceStub(channel)
        before = await licensing.GetStreamCount(licensing_pb.GetStreamCountRequest(track_id=licensing_target))

        progress = await premium_client.report(result.play, common_pb2.PLAYBACK_EVENT_TYPE_PROGRESS, 10_000)
        complete = await premium_client.report(result.play, common_pb2.PLAYBACK_EVENT_TYPE_COMPLETE, 31_000)
        repeated = await premium_client.report(result.play, common_pb2.PLAYBACK_EVENT_TYPE_COMPLETE, 31_000)
        after = await licensing.GetStreamCount(licensing_pb.GetStreamCountRequest(track_id=licensing_target))

    assert not progress.counted_as_stream
    assert complete.counted_as_stream
    assert repeated.counted_as_stream
    assert after.stream_count == before.stream_count + 1


async def test_skip_removes_track_from_recommendations(
    premium_client: BackbeatClient, state: StatePaths
) -> None:
    found = await premium_client.search("rock", limit=20)
    seed = licensed_track(state, premium_client, found)
    first = await premium_client.play_and_stream(seed, None, play_timeout_s=PLAY_TIMEOUT_S, max_bytes=1)
    skipped = first.play.recommendations[0].track_id
    skipped_play = await premium_client.play_and_stream(
        skipped, None, play_timeout_s=PLAY_TIMEOUT_S, max_bytes=1
    )

    await premium_client.report(skipped_play.play, common_pb2.PLAYBACK_EVENT_TYPE_SKIP, 3_000)
    again = await premium_client.gateway.GetRecommendations(
        gateway_pb.GetRecommendationsRequest(seed_track_id=seed, limit=10),
        metadata=premium_client._metadata(),
        timeout=PLAY_TIMEOUT_S,
    )

    assert skipped not in [track.track_id for track in again.tracks]


async def test_report_without_event_type_invalid_argument(premium_client: BackbeatClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await premium_client.gateway.ReportPlayback(
            gateway_pb.ReportPlaybackRequest(playback_id="p-1", track_id="0" * 22),
            metadata=premium_client._metadata(),
            timeout=PLAY_TIMEOUT_S,
        )

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) == ["event_type"]


@pytest.mark.parametrize("service", [name for name in TOPOLOGY if name not in HTTP_SERVICES])
async def test_service_health_and_reflection(mesh: Mesh, service: str) -> None:
    async with grpc.aio.insecure_channel(mesh.address(service)) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = [
            item.name async for response in responses for item in response.list_services_response.service
        ]

    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert f"backbeat.{service}.v1.{service.title()}Service" in names


async def test_search_marks_tracks_unavailable_in_market(
    free_client: BackbeatClient, state: StatePaths
) -> None:
    rights = Rights(state.rights)
    catalog = Catalog(state.catalog)
    try:
        withheld = next(
            track_id
            for track_id in rights.withheld_tracks("US", limit=200)
            if (record := catalog.get(track_id)) is not None and len(record.name) >= 4
        )
        name = catalog.get(withheld).name  # type: ignore[union-attr]
    finally:
        rights.close()
        catalog.close()

    tracks, unavailable = await free_client.search_marked(name, limit=50)
    found_ids = [track.track_id for track in tracks]
    rights = Rights(state.rights)
    try:
        expected = {
            decision.track_id for decision in rights.check_many(found_ids, "US") if not decision.allowed
        }
    finally:
        rights.close()

    assert withheld in found_ids
    assert unavailable == expected
