"""Tests for the mesh runtime: deadlines, breakers, the server, settings, key-value stores and rate limits.

gRPC tests run a real server from mesh.server.build_server on a free loopback port, with a
probe servicer whose behaviour is chosen by the track id of each GetTrack request.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from backbeat.common.v1 import common_pb2
from backbeat.metadata.v1 import metadata_service_pb2 as metadata_pb
from backbeat.metadata.v1 import metadata_service_pb2_grpc as metadata_grpc
from mesh import deadlines
from mesh.breakers import BreakerRegistry
from mesh.client import Connector, Downstream
from mesh.config import MeshSettings, SettingsError, load_settings
from mesh.errors import DeadlineExceeded, DownstreamError, InvalidArgument, ResourceExhausted
from mesh.kv import MemoryStore, RedisStore, StoreUnavailable
from mesh.ratelimit import UserRateLimiter
from mesh.server import BuiltServer, ServiceDefinition, build_server
from tests.conftest import private_redis

METADATA_SERVICE = metadata_pb.DESCRIPTOR.services_by_name["MetadataService"]
SLOW_CALL_S = 0.5


class FakeClock:
    """A monotonic clock that moves only when a test advances it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def in_empty_context(function: Callable[[], Any]) -> Any:
    """Run `function` in a fresh context, so a deadline it sets never leaks into other tests."""
    return contextvars.Context().run(function)


# Deadlines


def test_outgoing_timeout_without_deadline_is_hop_budget() -> None:
    clock = FakeClock()

    timeout = in_empty_context(lambda: deadlines.outgoing_timeout(0.030, 0.002, "probe", clock))

    assert timeout == pytest.approx(0.030)


def test_outgoing_timeout_capped_by_hop_budget() -> None:
    clock = FakeClock()

    def run() -> float:
        deadlines.set_deadline_from_remaining(1.0, clock)
        return deadlines.outgoing_timeout(0.030, 0.002, "probe", clock)

    assert in_empty_context(run) == pytest.approx(0.030)


def test_outgoing_timeout_is_time_left_minus_margin() -> None:
    clock = FakeClock()

    def run() -> float:
        deadlines.set_deadline_from_remaining(1.0, clock)
        clock.advance(0.990)
        return deadlines.outgoing_timeout(0.030, 0.002, "probe", clock)

    assert in_empty_context(run) == pytest.approx(0.008)


def test_time_left_follows_clock() -> None:
    clock = FakeClock()

    def run() -> float | None:
        deadlines.set_deadline_from_remaining(0.5, clock)
        clock.advance(0.2)
        return deadlines.time_left(clock)

    assert in_empty_context(run) == pytest.approx(0.3)


def test_time_left_none_without_deadline() -> None:
    assert in_empty_context(lambda: deadlines.time_left(FakeClock())) is None


def test_outgoing_timeout_raises_when_deadline_passed() -> None:
    clock = FakeClock()

    def run() -> None:
        deadlines.set_deadline_from_remaining(0.1, clock)
        clock.advance(0.2)
        deadlines.outgoing_timeout(0.030, 0.002, "probe", clock)

    with pytest.raises(DeadlineExceeded, match="probe"):
        in_empty_context(run)


def test_outgoing_timeout_raises_within_margin() -> None:
    clock = FakeClock()

    def run() -> None:
        deadlines.set_deadline_from_remaining(0.1, clock)
        clock.advance(0.099)
        deadlines.outgoing_timeout(0.030, 0.002, "probe", clock)

    with pytest.raises(DeadlineExceeded):
        in_empty_context(run)


def test_budget_tightens_deadline() -> None:
    clock = FakeClock()

    def run() -> float | None:
        deadlines.set_deadline_from_remaining(1.0, clock)
        with deadlines.budget(0.050, clock):
            return deadlines.time_left(clock)

    assert in_empty_context(run) == pytest.approx(0.050)


def test_budget_never_extends_deadline() -> None:
    clock = FakeClock()

    def run() -> float | None:
        deadlines.set_deadline_from_remaining(0.1, clock)
        with deadlines.budget(5.0, clock):
            return deadlines.time_left(clock)

    assert in_empty_context(run) == pytest.approx(0.1)


def test_budget_restores_outer_deadline() -> None:
    clock = FakeClock()

    def run() -> float | None:
        deadlines.set_deadline_from_remaining(1.0, clock)
        with deadlines.budget(0.050, clock):
            pass
        return deadlines.time_left(clock)

    assert in_empty_context(run) == pytest.approx(1.0)


def test_budget_sets_deadline_when_none() -> None:
    clock = FakeClock()

    def run() -> float:
        with deadlines.budget(0.020, clock):
            return deadlines.outgoing_timeout(0.030, 0.002, "probe", clock)

    assert in_empty_context(run) == pytest.approx(0.018)


def test_budget_spent_raises_deadline_exceeded() -> None:
    clock = FakeClock()

    def run() -> None:
        with deadlines.budget(0.020, clock):
            clock.advance(0.025)
            deadlines.outgoing_timeout(0.030, 0.002, "probe", clock)

    with pytest.raises(DeadlineExceeded):
        in_empty_context(run)


# A probe server


class ProbeMetadata(metadata_grpc.MetadataServiceServicer):
    """A servicer whose GetTrack behaviour is chosen by the track id.

    The ids are "abort:<CODE>", "crash", "invalid", "busy" and "slow"; any other id is echoed back.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.slow_started = asyncio.Event()

    async def GetTrack(
        self, request: metadata_pb.GetTrackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> metadata_pb.GetTrackResponse:
        self.calls += 1
        track_id = request.track_id
        if track_id.startswith("abort:"):
            code = grpc.StatusCode[track_id.removeprefix("abort:")]
            await context.abort(code, f"probe aborted with {code.name}")
        if track_id == "crash":
            raise RuntimeError("probe crashed with a secret detail")
        if track_id == "invalid":
            raise InvalidArgument("track_id", track_id, "a catalog track id")
        if track_id == "busy":
            raise ResourceExhausted("probe is busy", retry_after_s=1.5)
        if track_id == "slow":
            self.slow_started.set()
            await asyncio.sleep(SLOW_CALL_S)
        return metadata_pb.GetTrackResponse(track=common_pb2.Track(track_id=track_id))


@pytest.fixture
async def probe() -> AsyncIterator[tuple[BuiltServer, ProbeMetadata]]:
    servicer = ProbeMetadata()
    definition = ServiceDefinition.of(
        metadata_pb.DESCRIPTOR,
        "MetadataService",
        metadata_grpc.add_MetadataServiceServicer_to_server,
        servicer,
    )
    built = build_server("probe", [definition], "127.0.0.1", 0)
    await built.start()
    yield built, servicer
    await built.stop(0)


@pytest.fixture
async def probe_channel(probe: tuple[BuiltServer, ProbeMetadata]) -> AsyncIterator[grpc.aio.Channel]:
    built, _ = probe
    async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
        yield channel


@pytest.fixture
async def connector() -> AsyncIterator[Connector]:
    connector = Connector("caller", BreakerRegistry(fail_max=3, reset_timeout_s=60.0), margin_s=0.002)
    yield connector
    await connector.close()


def probe_downstream(
    connector: Connector, built: BuiltServer
) -> Downstream[metadata_grpc.MetadataServiceStub]:
    return connector.connect(
        "probe", f"127.0.0.1:{built.port}", metadata_grpc.MetadataServiceStub, METADATA_SERVICE, budget_s=5.0
    )


async def call_probe(
    downstream: Downstream[metadata_grpc.MetadataServiceStub], track_id: str
) -> DownstreamError:
    with pytest.raises(DownstreamError) as raised:
        await downstream.unary(downstream.stub.GetTrack, metadata_pb.GetTrackRequest(track_id=track_id))
    return raised.value


# Breakers


@pytest.mark.parametrize("code", ["INVALID_ARGUMENT", "NOT_FOUND"])
async def test_breaker_ignores_client_errors(
    probe: tuple[BuiltServer, ProbeMetadata], connector: Connector, code: str
) -> None:
    built, servicer = probe
    downstream = probe_downstream(connector, built)

    errors = [await call_probe(downstream, f"abort:{code}") for _ in range(10)]

    assert downstream.breaker.current_state == "closed"
    assert servicer.calls == 10
    assert {error.code for error in errors} == {grpc.StatusCode[code]}


async def test_breaker_opens_after_fail_max(
    probe: tuple[BuiltServer, ProbeMetadata], connector: Connector
) -> None:
    built, servicer = probe
    downstream = probe_downstream(connector, built)

    for _ in range(3):
        await call_probe(downstream, "abort:UNAVAILABLE")

    assert downstream.breaker.current_state == "open"
    assert servicer.calls == 3


async def test_open_breaker_fails_fast(
    probe: tuple[BuiltServer, ProbeMetadata], connector: Connector
) -> None:
    built, servicer = probe
    downstream = probe_downstream(connector, built)
    for _ in range(3):
        await call_probe(downstream, "abort:UNAVAILABLE")

    rejected = [await call_probe(downstream, "echo") for _ in range(5)]

    assert servicer.calls == 3
    assert {error.code for error in rejected} == {grpc.StatusCode.UNAVAILABLE}
    assert all("circuit breaker" in error.message for error in rejected)


async def test_breaker_counts_consecutive_failures(
    probe: tuple[BuiltServer, ProbeMetadata], connector: Connector
) -> None:
    built, _ = probe
    downstream = probe_downstream(connector, built)

    for _ in range(2):
        await call_probe(downstream, "abort:UNAVAILABLE")
    await downstream.unary(downstream.stub.GetTrack, metadata_pb.GetTrackRequest(track_id="echo"))
    for _ in range(2):
        await call_probe(downstream, "abort:UNAVAILABLE")

    assert downstream.breaker.current_state == "closed"


async def test_breaker_closes_after_successful_trial(probe: tuple[BuiltServer, ProbeMetadata]) -> None:
    # pybreaker reads the wall clock for its reset timeout, so this test waits it out.
    built, servicer = probe
    connector = Connector("caller", BreakerRegistry(fail_max=2, reset_timeout_s=0.2), margin_s=0.002)
    downstream = probe_downstream(connector, built)
    try:
        for _ in range(2):
            await call_probe(downstream, "abort:UNAVAILABLE")
        await asyncio.sleep(0.3)

        response = await downstream.unary(
            downstream.stub.GetTrack, metadata_pb.GetTrackRequest(track_id="echo")
        )
    finally:
        await connector.close()

    assert response.track.track_id == "echo"
    assert downstream.breaker.current_state == "closed"
    assert servicer.calls == 3


async def test_half_open_admits_one_trial_at_a_time(probe: tuple[BuiltServer, ProbeMetadata]) -> None:
    # pybreaker reads the wall clock for its reset timeout, so this test waits it out.
    built, servicer = probe
    connector = Connector("caller", BreakerRegistry(fail_max=2, reset_timeout_s=0.2), margin_s=0.002)
    downstream = probe_downstream(connector, built)
    try:
        for _ in range(2):
            await call_probe(downstream, "abort:UNAVAILABLE")
        await asyncio.sleep(0.3)
        calls_before = servicer.calls

        results = await asyncio.gather(
            *(
                downstream.unary(downstream.stub.GetTrack, metadata_pb.GetTrackRequest(track_id="slow"))
                for _ in range(10)
            ),
            return_exceptions=True,
        )
    finally:
        await connector.close()

    rejected = [result for result in results if isinstance(result, DownstreamError)]
    assert servicer.calls - calls_before == 1
    assert len(rejected) == 9
    assert {error.code for error in rejected} == {grpc.StatusCode.UNAVAILABLE}


async def test_shared_breaker_opens_for_every_replica(
    probe: tuple[BuiltServer, ProbeMetadata], redis_url: str
) -> None:
    built, servicer = probe
    first = Connector(
        "caller", BreakerRegistry(3, 60.0, shared_redis_url=redis_url, redis_timeout_s=1.0), 0.002
    )
    second = Connector(
        "caller", BreakerRegistry(3, 60.0, shared_redis_url=redis_url, redis_timeout_s=1.0), 0.002
    )
    try:
        for _ in range(3):
            await call_probe(probe_downstream(first, built), "abort:UNAVAILABLE")
        other_replica = probe_downstream(second, built)

        rejected = await call_probe(other_replica, "echo")
    finally:
        await first.close()
        await second.close()

    assert other_replica.breaker.current_state == "open"
    assert rejected.code == grpc.StatusCode.UNAVAILABLE
    assert servicer.calls == 3


async def test_downstream_spent_deadline_skips_call(
    probe: tuple[BuiltServer, ProbeMetadata], connector: Connector
) -> None:
    built, servicer = probe
    downstream = probe_downstream(connector, built)

    async def call_with_spent_deadline() -> None:
        deadlines.set_deadline_from_remaining(-0.001)
        await downstream.unary(downstream.stub.GetTrack, metadata_pb.GetTrackRequest(track_id="echo"))

    with pytest.raises(DeadlineExceeded):
        await asyncio.create_task(call_with_spent_deadline(), context=contextvars.Context())
    assert servicer.calls == 0


# Error interceptor


async def test_unexpected_error_is_internal(probe_channel: grpc.aio.Channel) -> None:
    stub = metadata_grpc.MetadataServiceStub(probe_channel)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetTrack(metadata_pb.GetTrackRequest(track_id="crash"))

    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert raised.value.details() == "internal error"


async def test_server_serves_after_unexpected_error(probe_channel: grpc.aio.Channel) -> None:
    stub = metadata_grpc.MetadataServiceStub(probe_channel)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetTrack(metadata_pb.GetTrackRequest(track_id="crash"))

    response = await stub.GetTrack(metadata_pb.GetTrackRequest(track_id="after"))

    assert response.track.track_id == "after"


async def test_invalid_argument_has_field_violation(probe_channel: grpc.aio.Channel) -> None:
    stub = metadata_grpc.MetadataServiceStub(probe_channel)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetTrack(metadata_pb.GetTrackRequest(track_id="invalid"))
    status = rpc_status.from_call(raised.value)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert [violation.field for violation in bad_request.field_violations] == ["track_id"]


async def test_resource_exhausted_has_retry_info(probe_channel: grpc.aio.Channel) -> None:
    stub = metadata_grpc.MetadataServiceStub(probe_channel)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetTrack(metadata_pb.GetTrackRequest(track_id="busy"))
    status = rpc_status.from_call(raised.value)

    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status is not None
    retry_info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry_info)
    assert retry_info.retry_delay.ToMilliseconds() == 1500


# Health, drain and reflection


async def test_health_serving_after_start(
    probe: tuple[BuiltServer, ProbeMetadata], probe_channel: grpc.aio.Channel
) -> None:
    health = health_pb2_grpc.HealthStub(probe_channel)

    overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
    service = await health.Check(health_pb2.HealthCheckRequest(service=METADATA_SERVICE.full_name))

    assert overall.status == health_pb2.HealthCheckResponse.SERVING
    assert service.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_not_serving_during_stop(
    probe: tuple[BuiltServer, ProbeMetadata], probe_channel: grpc.aio.Channel
) -> None:
    built, servicer = probe
    stub = metadata_grpc.MetadataServiceStub(probe_channel)
    slow_call = asyncio.ensure_future(stub.GetTrack(metadata_pb.GetTrackRequest(track_id="slow")))
    await servicer.slow_started.wait()

    # A stopping server rejects new calls, so the health servicer is asked in process.
    request = health_pb2.HealthCheckRequest(service=METADATA_SERVICE.full_name)
    stopping = asyncio.create_task(built.stop(2.0))
    during = await built.health.Check(request, None)
    for _ in range(200):
        if during.status != health_pb2.HealthCheckResponse.SERVING:
            break
        await asyncio.sleep(0.01)
        during = await built.health.Check(request, None)
    overall = await built.health.Check(health_pb2.HealthCheckRequest(service=""), None)
    drained_before_check = slow_call.done()
    await slow_call
    await stopping

    assert drained_before_check is False
    assert during.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert overall.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_health_watch_streams_status(
    probe: tuple[BuiltServer, ProbeMetadata], probe_channel: grpc.aio.Channel
) -> None:
    health = health_pb2_grpc.HealthStub(probe_channel)

    watch = health.Watch(health_pb2.HealthCheckRequest(service=METADATA_SERVICE.full_name))
    first = await watch.read()
    watch.cancel()

    assert first.status == health_pb2.HealthCheckResponse.SERVING


async def test_stop_drains_in_flight_call(
    probe: tuple[BuiltServer, ProbeMetadata], probe_channel: grpc.aio.Channel
) -> None:
    built, servicer = probe
    stub = metadata_grpc.MetadataServiceStub(probe_channel)
    slow_call = asyncio.ensure_future(stub.GetTrack(metadata_pb.GetTrackRequest(track_id="slow")))
    await servicer.slow_started.wait()

    await asyncio.gather(built.stop(2.0), slow_call)

    assert slow_call.result().track.track_id == "slow"


async def test_reflection_lists_service(probe_channel: grpc.aio.Channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(probe_channel)

    call = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    response = await call.read()
    call.cancel()
    names = {service.name for service in response.list_services_response.service}

    assert METADATA_SERVICE.full_name in names
    assert "grpc.health.v1.Health" in names


# Settings


def test_settings_reject_bad_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKBEAT_PORT", "abc")

    with pytest.raises(SettingsError, match="BACKBEAT_PORT"):
        load_settings(MeshSettings)


def test_settings_reject_out_of_range_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKBEAT_PORT", "70000")

    with pytest.raises(SettingsError, match="BACKBEAT_PORT"):
        load_settings(MeshSettings)


def test_settings_read_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKBEAT_PORT", "50099")
    monkeypatch.setenv("BACKBEAT_BREAKER_FAIL_MAX", "7")

    settings = load_settings(MeshSettings)

    assert settings.port == 50099
    assert settings.breaker_fail_max == 7


# Key-value stores


async def test_memory_store_keeps_value_before_ttl() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    await store.set("backbeat:test:key", b"value", ttl_s=10.0)

    clock.advance(9.9)

    assert await store.get("backbeat:test:key") == b"value"


async def test_memory_store_expires_after_ttl() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    await store.set("backbeat:test:key", b"value", ttl_s=10.0)

    clock.advance(10.1)

    assert await store.get("backbeat:test:key") is None


async def test_memory_store_delete_reports_existence() -> None:
    store = MemoryStore(clock=FakeClock())
    await store.set("backbeat:test:key", b"value", ttl_s=10.0)

    assert await store.delete("backbeat:test:key") is True
    assert await store.delete("backbeat:test:key") is False
    assert await store.get("backbeat:test:key") is None


async def test_memory_store_evicts_least_recently_used() -> None:
    store = MemoryStore(max_entries=2, clock=FakeClock())
    await store.set("a", b"1", ttl_s=10.0)
    await store.set("b", b"2", ttl_s=10.0)
    await store.get("a")

    await store.set("c", b"3", ttl_s=10.0)

    assert await store.get("a") == b"1"
    assert await store.get("b") is None
    assert await store.get("c") == b"3"


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url, timeout_s=1.0)
    yield store
    await store.close()


async def test_redis_store_set_then_get(redis_store: RedisStore) -> None:
    await redis_store.set("backbeat:test:key", b"\x00value\xff", ttl_s=60.0)

    assert await redis_store.get("backbeat:test:key") == b"\x00value\xff"


async def test_redis_store_get_missing_is_none(redis_store: RedisStore) -> None:
    assert await redis_store.get("backbeat:test:missing") is None


async def test_redis_store_delete_reports_existence(redis_store: RedisStore) -> None:
    await redis_store.set("backbeat:test:key", b"value", ttl_s=60.0)

    assert await redis_store.delete("backbeat:test:key") is True
    assert await redis_store.delete("backbeat:test:key") is False
    assert await redis_store.get("backbeat:test:key") is None


async def test_redis_store_sets_ttl(redis_store: RedisStore, redis_url: str) -> None:
    await redis_store.set("backbeat:test:key", b"value", ttl_s=60.0)

    client = aioredis.from_url(redis_url)
    try:
        ttl_ms = await client.pttl("backbeat:test:key")
    finally:
        await client.aclose()

    assert 0 < ttl_ms <= 60_000


async def test_redis_store_close_disconnects(redis_url: str) -> None:
    store = RedisStore(redis_url, timeout_s=1.0)
    observer = aioredis.from_url(redis_url)
    try:
        await store.set("backbeat:test:key", b"value", ttl_s=60.0)
        await store.close()
        clients = await observer.client_list()
        deadline = time.monotonic() + 1.0
        while len(clients) > 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            clients = await observer.client_list()
    finally:
        # Should close() leave connections open, they are closed here so that no later test
        # fails on their ResourceWarning.
        await store._redis.connection_pool.aclose()
        await observer.aclose()

    assert len(clients) == 1


async def test_redis_store_get_unavailable_when_redis_gone(tmp_path: Path) -> None:
    with private_redis(tmp_path) as url:
        store = RedisStore(url, timeout_s=0.5)
        await store.set("backbeat:test:key", b"value", ttl_s=60.0)
    try:
        with pytest.raises(StoreUnavailable) as raised:
            await store.get("backbeat:test:key")
    finally:
        await store.close()

    assert raised.value.code == grpc.StatusCode.UNAVAILABLE


async def test_redis_store_set_unavailable_when_redis_gone(tmp_path: Path) -> None:
    with private_redis(tmp_path) as url:
        store = RedisStore(url, timeout_s=0.5)
        await store.set("backbeat:test:key", b"value", ttl_s=60.0)
    try:
        with pytest.raises(StoreUnavailable) as raised:
            await store.set("backbeat:test:key", b"other", ttl_s=60.0)
    finally:
        await store.close()

    assert raised.value.code == grpc.StatusCode.UNAVAILABLE


async def test_redis_pool_exhaustion_is_unavailable(tmp_path: Path) -> None:
    with private_redis(tmp_path) as url:
        client = aioredis.Redis.from_url(url)
        pid = int((await client.info("server"))["process_id"])
        await client.aclose()
        store = RedisStore(url, timeout_s=0.2, max_connections=1)
        os.kill(pid, signal.SIGSTOP)
        try:
            results = await asyncio.gather(
                *(store.get(f"backbeat:test:{number}") for number in range(5)), return_exceptions=True
            )
        finally:
            os.kill(pid, signal.SIGCONT)
            await store.close()

    assert all(isinstance(result, StoreUnavailable) for result in results)
    assert all(
        result.code == grpc.StatusCode.UNAVAILABLE
        for result in results
        if isinstance(result, StoreUnavailable)
    )


async def test_redis_store_delete_unavailable_when_redis_gone(tmp_path: Path) -> None:
    with private_redis(tmp_path) as url:
        store = RedisStore(url, timeout_s=0.5)
        await store.set("backbeat:test:key", b"value", ttl_s=60.0)
    try:
        with pytest.raises(StoreUnavailable) as raised:
            await store.delete("backbeat:test:key")
    finally:
        await store.close()

    assert raised.value.code == grpc.StatusCode.UNAVAILABLE


# Rate limits

# Users that each send one request over a limit of one per minute. With Redis the reported
# retry delay depends on the millisecond at which the window key was read, so one user is not
# enough to show whether the delay is ever zero.
RETRY_USERS = 20


async def exhaust(limiter: UserRateLimiter, user_id: str, allowed: int) -> ResourceExhausted:
    for _ in range(allowed):
        await limiter.check(user_id)
    with pytest.raises(ResourceExhausted) as raised:
        await limiter.check(user_id)
    return raised.value


async def retry_delays(limiter: UserRateLimiter) -> list[float]:
    """Return the retry delay each of RETRY_USERS users gets for a second request in a minute."""
    errors = [await exhaust(limiter, f"listener-{number}", 1) for number in range(RETRY_USERS)]
    return [error.retry_after_s for error in errors]


async def test_rate_limit_memory_rejects_after_limit() -> None:
    limiter = UserRateLimiter(per_minute=3)

    error = await exhaust(limiter, "listener-1", 3)

    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_rate_limit_memory_retry_after_positive() -> None:
    delays = await retry_delays(UserRateLimiter(per_minute=1))

    assert min(delays) > 0
    assert max(delays) <= 60


async def test_rate_limit_memory_counts_each_user() -> None:
    limiter = UserRateLimiter(per_minute=3)
    await exhaust(limiter, "listener-1", 3)

    await limiter.check("listener-2")


@pytest.fixture
async def redis_limiters(redis_url: str) -> AsyncIterator[Callable[[int], UserRateLimiter]]:
    """Yield a factory of Redis-backed limiters and close them after the test."""
    limiters: list[UserRateLimiter] = []

    def make(per_minute: int) -> UserRateLimiter:
        limiters.append(UserRateLimiter(per_minute=per_minute, redis_url=redis_url, redis_timeout_s=1.0))
        return limiters[-1]

    yield make
    for limiter in limiters:
        await limiter.close()


async def test_rate_limit_redis_rejects_after_limit(redis_limiters: Callable[[int], UserRateLimiter]) -> None:
    limiter = redis_limiters(3)

    error = await exhaust(limiter, "listener-1", 3)

    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_rate_limit_redis_retry_after_positive(
    redis_limiters: Callable[[int], UserRateLimiter],
) -> None:
    delays = await retry_delays(redis_limiters(1))

    assert min(delays) > 0
    assert max(delays) <= 60


async def test_rate_limit_redis_shared_between_limiters(
    redis_limiters: Callable[[int], UserRateLimiter],
) -> None:
    first = redis_limiters(3)
    second = redis_limiters(3)
    for _ in range(3):
        await first.check("listener-1")

    with pytest.raises(ResourceExhausted):
        await second.check("listener-1")
