"""The whole mesh with REDIS_URL set: sessions, the metadata cache and rate limits live in Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from mesh.launcher import Mesh
from services.gateway.client import BackbeatClient, PlayResult
from services.licensing.rights import Rights
from services.setup import StatePaths
from tests.conftest import private_redis


@pytest.fixture(scope="module")
def redis_mesh(
    state: StatePaths, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Mesh, str]]:
    folder = tmp_path_factory.mktemp("redis-mesh")
    with private_redis(folder) as url:
        environment = {
            "BACKBEAT_STATE_DIR": str(state.root),
            "BACKBEAT_DATA_DIR": str(data_dir),
            "BACKBEAT_DRAIN_S": "2",
            "REDIS_URL": url,
            "OTEL_TRACES_EXPORTER": "none",
        }
        launched = Mesh(run_dir=folder / "run", base_port=0, environment=environment)
        asyncio.run(launched.start())
        yield launched, url
        codes = launched.stop()
        assert all(code == 0 for code in codes.values()), codes


def first_licensed(state: StatePaths, market: str) -> str:
    rights = Rights(state.rights)
    try:
        rows = rights._db.execute("SELECT track_id FROM track_albums ORDER BY track_id LIMIT 50").fetchall()
        decisions = rights.check_many([row[0] for row in rows], market)
    finally:
        rights.close()
    return next(decision.track_id for decision in decisions if decision.allowed)


async def play_as_free_gb(gateway: str, track_id: str) -> PlayResult:
    client = BackbeatClient(gateway)
    try:
        await client.login("free-gb@backbeat.test", "listen-free-gb")
        return await client.play_and_stream(track_id, None, play_timeout_s=2.0)
    finally:
        await client.close()


@pytest.fixture(scope="module")
def played(redis_mesh: tuple[Mesh, str], state: StatePaths) -> tuple[PlayResult, redis.Redis]:
    mesh, url = redis_mesh
    result = asyncio.run(play_as_free_gb(mesh.address("gateway"), first_licensed(state, "GB")))
    return result, redis.Redis.from_url(url)


def test_redis_mesh_plays_track(played: tuple[PlayResult, redis.Redis]) -> None:
    result, _ = played

    assert result.play.rendition.bitrate_kbps == 128
    assert result.bytes_received == result.play.rendition.size_bytes


def test_redis_mesh_keeps_session(played: tuple[PlayResult, redis.Redis]) -> None:
    _, client = played

    assert len(client.keys("backbeat:user:session:*")) >= 1


def test_redis_mesh_caches_track(played: tuple[PlayResult, redis.Redis]) -> None:
    result, client = played

    assert client.exists(f"backbeat:metadata:track:{result.play.track.track_id}") == 1
    assert client.pttl(f"backbeat:metadata:track:{result.play.track.track_id}") > 23 * 3600 * 1000


def test_redis_mesh_counts_rate_limit(played: tuple[PlayResult, redis.Redis]) -> None:
    _, client = played

    assert client.keys("backbeat:gateway:ratelimit*")
