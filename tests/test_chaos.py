"""Chaos suite: the real mesh, each service its own process, with its own redis-server, under faults.

Every scenario drives plays through the gateway and the edge while a fault is in force, checks
the status codes and that failures come back within the deadline budget instead of hanging, and
then checks that the playback reports of every successful play were counted for royalties
exactly once, however often a client had to retry them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from backbeat.admin.v1 import admin_service_pb2, admin_service_pb2_grpc
from backbeat.common.v1 import common_pb2
from backbeat.edge.v1 import edge_service_pb2, edge_service_pb2_grpc
from backbeat.gateway.v1 import gateway_service_pb2 as gateway_pb
from backbeat.gateway.v1 import gateway_service_pb2_grpc as gateway_grpc
from mesh.faultctl import full_method
from mesh.launcher import Mesh
from services.licensing.rights import Rights
from services.setup import StatePaths, copy_stores

pytestmark = pytest.mark.chaos

PLAY_TIMEOUT_S = 1.0
# A failing play must come back within the gateway's 200 ms play budget. The bound adds
# room for a loaded two-core machine; a hang would take the fault's full latency (2 s).
FAIL_FAST_S = 0.6
SLOW_S = 2.0
RECOVERY_S = 15.0
GRPC_SERVICES = ("user", "metadata", "licensing", "recommendation", "stream", "edge", "gateway")
OBSERVED = Path(os.environ.get("BACKBEAT_CHAOS_REPORT", "var/chaos-observed.json"))


class RedisProcess:
    """A private redis-server on a Unix socket that a test may pause, kill and start again.

    It appends every write to its AOF file with fsync, so sessions survive a kill.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--dir",
                str(self.folder),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("redis-server did not start")
            time.sleep(0.01)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=10)


@dataclass
class ChaosMesh:
    mesh: Mesh
    redis: RedisProcess
    state: StatePaths
    licensed: dict[str, list[str]]
    observed: dict[str, dict[str, object]] = field(default_factory=dict)
    probes: int = 0

    def probe_track(self) -> str:
        """Return a track that no scenario plays and no earlier probe used, so no stale copy can serve it."""
        self.probes += 1
        return self.licensed["US"][40 + self.probes % 200]


def licensed_tracks(state: StatePaths, market: str, count: int) -> list[str]:
    rights = Rights(state.rights)
    try:
        rows = rights._db.execute("SELECT track_id FROM track_albums ORDER BY track_id LIMIT 400").fetchall()
        ids = [row[0] for row in rows]
        allowed = rights.check_many_unbounded(ids, market)
    finally:
        rights.close()
    return [track_id for track_id, ok in zip(ids, allowed, strict=True) if ok][:count]


@pytest.fixture(scope="module")
def chaos(state: StatePaths, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosMesh]:
    folder = tmp_path_factory.mktemp("chaos")
    own_state = copy_stores(state, folder / "state")
    redis = RedisProcess(folder)
    redis.start()
    environment = {
        "BACKBEAT_STATE_DIR": str(own_state.root),
        "BACKBEAT_DATA_DIR": str(data_dir),
        "REDIS_URL": redis.url,
        "BACKBEAT_DRAIN_S": "3",
        "BACKBEAT_BREAKER_RESET_S": "0.5",
        "BACKBEAT_RATE_LIMIT_PER_MINUTE": "600",
        "BACKBEAT_MAX_IN_FLIGHT": "8",
        "BACKBEAT_FREE_SHARE": "0.5",
        # Every play calls metadata, so a metadata fault exercises the stale-copy path.
        "BACKBEAT_TRACK_CACHE_S": "0",
        # Wider hop budgets than the defaults keep a loaded two-core CI machine from turning
        # queueing delay into failures; the 200 ms play budget stays.
        "BACKBEAT_SESSION_BUDGET_S": "0.08",
        "BACKBEAT_AUTHORIZATION_BUDGET_S": "0.1",
        "OTEL_TRACES_EXPORTER": "none",
    }
    mesh = Mesh(run_dir=folder / "run", base_port=0, environment=environment)
    asyncio.run(mesh.start(only=GRPC_SERVICES))
    found = ChaosMesh(mesh, redis, own_state, {"US": licensed_tracks(own_state, "US", 240)})
    yield found
    mesh.stop()
    redis.stop()
    OBSERVED.parent.mkdir(parents=True, exist_ok=True)
    OBSERVED.write_text(json.dumps(found.observed, indent=2, sort_keys=True))


@dataclass
class Outcome:
    code: str
    elapsed_s: float
    play: gateway_pb.PlayResponse | None = None


class Listener:
    """One signed-in listener talking to the gateway and the edge."""

    def __init__(self, gateway: str) -> None:
        self.channel = grpc.aio.insecure_channel(gateway)
        self.gateway = gateway_grpc.GatewayServiceStub(self.channel)
        self.token = ""

    async def login(self, email: str, password: str) -> None:
        response = await self.gateway.Login(
            gateway_pb.LoginRequest(email=email, password=password), timeout=5
        )
        self.token = response.access_token

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    async def play(self, track_id: str) -> Outcome:
        started = time.perf_counter()
        try:
            response = await self.gateway.Play(
                gateway_pb.PlayRequest(track_id=track_id), metadata=self.metadata, timeout=PLAY_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            return Outcome(error.code().name, time.perf_counter() - started)
        return Outcome("OK", time.perf_counter() - started, response)

    async def report(self, play: gateway_pb.PlayResponse, played_ms: int = 31_000) -> str:
        try:
            await self.gateway.ReportPlayback(
                gateway_pb.ReportPlaybackRequest(
                    playback_id=play.playback_id,
                    track_id=play.track.track_id,
                    event_type=common_pb2.PLAYBACK_EVENT_TYPE_COMPLETE,
                    played_ms=played_ms,
                ),
                metadata=self.metadata,
                timeout=PLAY_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as error:
            return error.code().name
        return "OK"

    async def report_until_accepted(self, play: gateway_pb.PlayResponse) -> None:
        """Retry the report, as a client with an outbox would, until the mesh accepts it."""
        deadline = time.monotonic() + RECOVERY_S
        while await self.report(play) != "OK":
            assert time.monotonic() < deadline, f"report of {play.playback_id} never accepted"
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        await self.channel.close()


@pytest.fixture
async def listener(chaos: ChaosMesh) -> AsyncIterator[Listener]:
    client = Listener(chaos.mesh.address("gateway"))
    await client.login("premium-us@backbeat.test", "listen-premium-us")
    yield client
    await client.close()


async def admin(chaos: ChaosMesh, service: str, request: object) -> None:
    async with grpc.aio.insecure_channel(chaos.mesh.address(service)) as channel:
        stub = admin_service_pb2_grpc.AdminServiceStub(channel)
        if isinstance(request, admin_service_pb2.SetFaultRequest):
            await stub.SetFault(request, timeout=5)
        else:
            await stub.ClearFaults(admin_service_pb2.ClearFaultsRequest(), timeout=5)


async def set_fault(
    chaos: ChaosMesh, service: str, *, latency_s: float = 0.0, error_rate: float = 0.0
) -> None:
    rule = admin_service_pb2.FaultRule(
        method="*", error_rate=error_rate, error_code=grpc.StatusCode.UNAVAILABLE.value[0]
    )
    rule.latency.FromNanoseconds(int(latency_s * 1e9))
    await admin(chaos, service, admin_service_pb2.SetFaultRequest(rule=rule))


@pytest.fixture(autouse=True)
async def healthy_mesh(chaos: ChaosMesh) -> AsyncIterator[None]:
    """Start each scenario and leave it with every service and Redis up and no faults."""
    yield
    if chaos.redis.process is not None and chaos.redis.process.poll() is not None:
        chaos.redis.start()
    chaos.redis.signal(signal.SIGCONT)
    for name in GRPC_SERVICES:
        if chaos.mesh.processes[name].process.poll() is not None:
            await chaos.mesh.restart(name)
        await admin(chaos, name, admin_service_pb2.ClearFaultsRequest())
    probe = Listener(chaos.mesh.address("gateway"))
    await probe.login("free-us@backbeat.test", "listen-free-us")
    await wait_until_playing(probe, chaos)
    await probe.close()


async def plays(listener: Listener, tracks: list[str]) -> list[Outcome]:
    return [await listener.play(track_id) for track_id in tracks]


async def warm(listener: Listener, tracks: list[str]) -> list[Outcome]:
    """Play each track until it succeeds once, so the stream service has seen it."""
    outcomes = []
    for track_id in tracks:
        deadline = time.monotonic() + RECOVERY_S
        while (outcome := await listener.play(track_id)).code != "OK":
            assert time.monotonic() < deadline, f"warm-up play of {track_id} kept failing: {outcome.code}"
        outcomes.append(outcome)
    return outcomes


async def settle(listener: Listener, chaos: ChaosMesh, outcomes: list[Outcome]) -> None:
    """Report each successful play during the fault and again until accepted; check the ledger."""
    played = [outcome.play for outcome in outcomes if outcome.play is not None]
    for play in played:
        await listener.report(play)
    for name in GRPC_SERVICES:
        if chaos.mesh.processes[name].process.poll() is None:
            await admin(chaos, name, admin_service_pb2.ClearFaultsRequest())
    await wait_until_playing(listener, chaos)
    for play in played:
        await listener.report_until_accepted(play)
        await listener.report_until_accepted(play)
    assert_counted_once(chaos, [play.playback_id for play in played])


def assert_counted_once(chaos: ChaosMesh, playback_ids: list[str]) -> None:
    if not playback_ids:
        return
    ledger = sqlite3.connect(chaos.state.root / "ledger.db")
    try:
        placeholders = ", ".join("?" * len(playback_ids))
        rows = ledger.execute(
            f"SELECT playback_id, COUNT(*) FROM counted_streams WHERE playback_id IN ({placeholders}) "
            "GROUP BY playback_id",
            playback_ids,
        ).fetchall()
    finally:
        ledger.close()
    assert sorted(playback_id for playback_id, _ in rows) == sorted(playback_ids)
    assert all(count == 1 for _, count in rows)


async def wait_until_playing(listener: Listener, chaos: ChaosMesh) -> float:
    """Play tracks not played before until one succeeds; return how long recovery took."""
    started = time.monotonic()
    while True:
        outcome = await listener.play(chaos.probe_track())
        if outcome.code == "OK":
            return time.monotonic() - started
        assert time.monotonic() - started < RECOVERY_S, f"mesh did not recover: last status {outcome.code}"
        await asyncio.sleep(0.2)


def record(chaos: ChaosMesh, scenario: str, outcomes: list[Outcome], **extra: object) -> None:
    codes: dict[str, int] = {}
    for outcome in outcomes:
        codes[outcome.code] = codes.get(outcome.code, 0) + 1
    slowest = max((outcome.elapsed_s for outcome in outcomes if outcome.code != "OK"), default=0.0)
    chaos.observed[scenario] = {"codes": codes, "slowest_failure_ms": round(slowest * 1000, 1), **extra}


def failed_fast(outcomes: list[Outcome]) -> bool:
    return all(outcome.elapsed_s < FAIL_FAST_S for outcome in outcomes if outcome.code != "OK")


FAIL_CLOSED = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}


@pytest.mark.parametrize("service", ["user", "licensing", "stream"])
@pytest.mark.parametrize("fault", ["slow", "errors"])
async def test_required_hop_fault_fails_fast(
    chaos: ChaosMesh, listener: Listener, service: str, fault: str
) -> None:
    tracks = chaos.licensed["US"][:6]
    if fault == "slow":
        await set_fault(chaos, service, latency_s=SLOW_S)
    else:
        await set_fault(chaos, service, error_rate=1.0)

    outcomes = await plays(listener, tracks)
    record(chaos, f"{service} {fault}", outcomes)

    assert {outcome.code for outcome in outcomes} <= FAIL_CLOSED
    assert failed_fast(outcomes)
    if service == "user":
        assert {outcome.code for outcome in outcomes} == {"UNAVAILABLE"}
    await admin(chaos, service, admin_service_pb2.ClearFaultsRequest())
    await settle(listener, chaos, outcomes)


@pytest.mark.parametrize("fault", ["slow", "errors"])
async def test_recommendation_fault_keeps_playing(chaos: ChaosMesh, listener: Listener, fault: str) -> None:
    tracks = chaos.licensed["US"][6:12]
    warmed = await warm(listener, tracks)
    if fault == "slow":
        await set_fault(chaos, "recommendation", latency_s=SLOW_S)
    else:
        await set_fault(chaos, "recommendation", error_rate=1.0)

    outcomes = await plays(listener, tracks)
    record(
        chaos,
        f"recommendation {fault}",
        outcomes,
        fallback_lists=sum(1 for o in outcomes if o.play and o.play.recommendations_fallback),
    )

    assert [outcome.code for outcome in outcomes] == ["OK"] * len(tracks)
    assert all(outcome.play is not None and outcome.play.recommendations_fallback for outcome in outcomes)
    assert all(outcome.play is not None and len(outcome.play.recommendations) > 0 for outcome in outcomes)
    await settle(listener, chaos, warmed + outcomes)


@pytest.mark.parametrize("fault", ["slow", "errors"])
async def test_metadata_fault_serves_stale_tracks(chaos: ChaosMesh, listener: Listener, fault: str) -> None:
    seen = chaos.licensed["US"][12:16]
    unseen = chaos.licensed["US"][16:20]
    warmed = await warm(listener, seen)
    if fault == "slow":
        await set_fault(chaos, "metadata", latency_s=SLOW_S)
    else:
        await set_fault(chaos, "metadata", error_rate=1.0)

    stale = await plays(listener, seen)
    fresh = await plays(listener, unseen)
    record(chaos, f"metadata {fault}", stale + fresh)

    assert [outcome.code for outcome in stale] == ["OK"] * len(seen)
    assert {outcome.code for outcome in fresh} <= FAIL_CLOSED
    assert failed_fast(stale + fresh)
    await settle(listener, chaos, warmed + stale + fresh)


async def first_audio(edge: str, grant: str, timeout_s: float) -> tuple[str, int]:
    async with grpc.aio.insecure_channel(edge) as channel:
        call = edge_service_pb2_grpc.EdgeServiceStub(channel).StreamAudio(
            edge_service_pb2.StreamAudioRequest(stream_grant=grant), timeout=timeout_s
        )
        received = 0
        try:
            async for chunk in call:
                received += len(chunk.data)
        except grpc.aio.AioRpcError as error:
            return error.code().name, received
        return "OK", received


async def health_after_sigterm(channel: grpc.aio.Channel) -> int:
    """Poll health until it leaves SERVING; return the status seen."""
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 2
    while True:
        response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
        if response.status != health_pb2.HealthCheckResponse.SERVING or time.monotonic() > deadline:
            return int(response.status)
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("fault", ["slow", "errors"])
async def test_edge_fault(chaos: ChaosMesh, listener: Listener, fault: str) -> None:
    [outcome] = await warm(listener, [chaos.licensed["US"][20]])
    assert outcome.play is not None
    if fault == "slow":
        await set_fault(chaos, "edge", latency_s=1.0)
    else:
        await set_fault(chaos, "edge", error_rate=1.0)

    code, received = await first_audio(chaos.mesh.address("edge"), outcome.play.stream_grant, timeout_s=10)
    chaos.observed[f"edge {fault}"] = {"stream": code, "bytes": received}

    if fault == "slow":
        assert code == "OK"
        assert received == outcome.play.rendition.size_bytes
    else:
        assert code == "UNAVAILABLE"
    await settle(listener, chaos, [outcome])


@pytest.mark.parametrize("fault", ["slow", "errors"])
async def test_gateway_fault(chaos: ChaosMesh, listener: Listener, fault: str) -> None:
    if fault == "slow":
        await set_fault(chaos, "gateway", latency_s=SLOW_S)
    else:
        await set_fault(chaos, "gateway", error_rate=1.0)

    outcomes = await plays(listener, chaos.licensed["US"][:3])
    record(chaos, f"gateway {fault}", outcomes)

    expected = "DEADLINE_EXCEEDED" if fault == "slow" else "UNAVAILABLE"
    assert [outcome.code for outcome in outcomes] == [expected] * 3
    assert all(outcome.elapsed_s < PLAY_TIMEOUT_S + 0.5 for outcome in outcomes)


@pytest.mark.parametrize("service", GRPC_SERVICES)
async def test_killed_service_recovers_after_restart(
    chaos: ChaosMesh, listener: Listener, service: str
) -> None:
    tracks = chaos.licensed["US"][22:26]
    warmed = await warm(listener, tracks)
    chaos.mesh.kill(service)

    during = await plays(listener, tracks)
    await chaos.mesh.restart(service)
    recovery_s = await wait_until_playing(listener, chaos)
    record(chaos, f"{service} killed", during, recovery_s=round(recovery_s, 2))

    if service in ("recommendation", "edge"):
        assert [outcome.code for outcome in during] == ["OK"] * len(tracks)
    elif service == "metadata":
        assert [outcome.code for outcome in during] == ["OK"] * len(tracks)
    else:
        assert {outcome.code for outcome in during} <= FAIL_CLOSED
        assert failed_fast(during)
    await settle(listener, chaos, warmed + during)


async def test_redis_paused_fails_closed_and_recovers(chaos: ChaosMesh, listener: Listener) -> None:
    tracks = chaos.licensed["US"][26:30]
    chaos.redis.signal(signal.SIGSTOP)

    during = await plays(listener, tracks)
    chaos.redis.signal(signal.SIGCONT)
    recovery_s = await wait_until_playing(listener, chaos)
    record(chaos, "redis paused", during, recovery_s=round(recovery_s, 2))

    assert {outcome.code for outcome in during} == {"UNAVAILABLE"}
    assert failed_fast(during)
    await settle(listener, chaos, during)


async def test_redis_killed_recovers_with_sessions(chaos: ChaosMesh, listener: Listener) -> None:
    tracks = chaos.licensed["US"][30:34]
    before = await plays(listener, tracks)
    chaos.redis.kill()

    during = await plays(listener, tracks)
    chaos.redis.start()
    recovery_s = await wait_until_playing(listener, chaos)
    record(chaos, "redis killed", during, recovery_s=round(recovery_s, 2))

    assert {outcome.code for outcome in during} == {"UNAVAILABLE"}
    assert failed_fast(during)
    await settle(listener, chaos, before + during)


def listener_was_never_limited(chaos: ChaosMesh) -> bool:
    """Return True when the gateway logged no rate-limit rejection for the premium US listener."""
    log = (chaos.mesh.run_dir / "gateway.log").read_text()
    return "user u-premium-us is over" not in log


async def test_flooding_user_is_limited_alone(chaos: ChaosMesh, listener: Listener) -> None:
    flooder = Listener(chaos.mesh.address("gateway"))
    await flooder.login("free-gb@backbeat.test", "listen-free-gb")
    codes: dict[str, int] = {}
    retry_delays: list[float] = []
    try:
        for _ in range(640):
            try:
                await flooder.gateway.Search(
                    gateway_pb.SearchRequest(query="love", limit=1), metadata=flooder.metadata, timeout=1
                )
                codes["OK"] = codes.get("OK", 0) + 1
            except grpc.aio.AioRpcError as error:
                codes[error.code().name] = codes.get(error.code().name, 0) + 1
                status = rpc_status.from_call(error)
                for detail in status.details if status else []:
                    retry = error_details_pb2.RetryInfo()
                    if detail.Unpack(retry):
                        retry_delays.append(retry.retry_delay.ToNanoseconds() / 1e9)
        others = await warm(listener, chaos.licensed["US"][34:38])
    finally:
        await flooder.close()
    chaos.observed["one user flooding"] = {"flooder": codes, "other listener": [o.code for o in others]}

    assert codes.get("RESOURCE_EXHAUSTED", 0) >= 20
    assert retry_delays and min(retry_delays) > 0
    assert [outcome.code for outcome in others] == ["OK"] * 4
    assert listener_was_never_limited(chaos)
    await settle(listener, chaos, others)


async def recommendations(listener: Listener, seed: str) -> Outcome:
    started = time.perf_counter()
    try:
        await listener.gateway.GetRecommendations(
            gateway_pb.GetRecommendationsRequest(seed_track_id=seed, limit=5),
            metadata=listener.metadata,
            timeout=PLAY_TIMEOUT_S,
        )
    except grpc.aio.AioRpcError as error:
        return Outcome(error.code().name, time.perf_counter() - started)
    return Outcome("OK", time.perf_counter() - started)


async def test_overload_sheds_free_tier_first(chaos: ChaosMesh) -> None:
    free = Listener(chaos.mesh.address("gateway"))
    premium = Listener(chaos.mesh.address("gateway"))
    await free.login("free-us@backbeat.test", "listen-free-us")
    await premium.login("premium-us@backbeat.test", "listen-premium-us")
    # Slow recommendations keep free listeners' calls in flight at the gateway; premium plays
    # go on, because a play does not wait for recommendations past its own small budget.
    await set_fault(chaos, "recommendation", latency_s=0.04)
    tracks = chaos.licensed["US"]
    try:
        free_calls = [asyncio.create_task(recommendations(free, tracks[number])) for number in range(12)]
        await asyncio.sleep(0.01)
        premium_calls = [premium.play(tracks[number]) for number in range(3)]
        outcomes = await asyncio.gather(*free_calls, *premium_calls)
    finally:
        await admin(chaos, "recommendation", admin_service_pb2.ClearFaultsRequest())
        await free.close()
    free_outcomes, premium_outcomes = outcomes[:12], outcomes[12:]
    chaos.observed["overload"] = {
        "free": [o.code for o in free_outcomes],
        "premium": [o.code for o in premium_outcomes],
    }

    assert sum(outcome.code == "RESOURCE_EXHAUSTED" for outcome in free_outcomes) >= 4
    assert all(outcome.code != "RESOURCE_EXHAUSTED" for outcome in premium_outcomes)
    assert any(outcome.code == "OK" for outcome in premium_outcomes)
    await settle(premium, chaos, list(premium_outcomes))
    await premium.close()


async def test_sigterm_edge_finishes_open_stream(chaos: ChaosMesh, listener: Listener) -> None:
    [outcome] = await warm(listener, [chaos.licensed["US"][38]])
    assert outcome.play is not None
    edge = chaos.mesh.address("edge")
    received = 0
    statuses: list[int] = []
    async with grpc.aio.insecure_channel(edge) as channel:
        call = edge_service_pb2_grpc.EdgeServiceStub(channel).StreamAudio(
            edge_service_pb2.StreamAudioRequest(stream_grant=outcome.play.stream_grant)
        )
        first = await call.read()
        assert first is not grpc.aio.EOF
        received += len(first.data)
        chaos.mesh.terminate("edge")
        statuses.append(await health_after_sigterm(channel))
        while (chunk := await call.read()) is not grpc.aio.EOF:
            received += len(chunk.data)
            await asyncio.sleep(0.01)
        code = await call.code()
    chaos.mesh.processes["edge"].process.wait(timeout=15)
    chaos.observed["SIGTERM edge during stream"] = {"stream": code.name, "bytes": received}

    assert statuses == [health_pb2.HealthCheckResponse.NOT_SERVING]
    assert code == grpc.StatusCode.OK
    assert received == outcome.play.rendition.size_bytes
    assert chaos.mesh.processes["edge"].process.returncode == 0
    await chaos.mesh.restart("edge")
    await settle(listener, chaos, [outcome])


def test_fault_method_names_expand() -> None:
    assert full_method("metadata", "GetTrack") == "/backbeat.metadata.v1.MetadataService/GetTrack"
