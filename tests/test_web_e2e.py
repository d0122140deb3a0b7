"""The grpc-web bridge and the web player.

Against the whole mesh (the launcher starts the bridge): the connect-web grpc-web
client in Node, the player in headless Chromium, trace context from the browser
through the bridge to the gateway and the edge, and the bridge's own responses.
Against an in-process gRPC server: messages flushed one by one, metadata,
deadlines, trailers and CORS. Needs scripts/install_web.sh to have run (Chromium,
web/node_modules).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from backbeat.edge.v1 import edge_service_pb2, edge_service_pb2_grpc
from backbeat.gateway.v1 import gateway_service_pb2 as gateway_pb
from backbeat.gateway.v1 import gateway_service_pb2_grpc as gateway_grpc
from mesh.config import REPO_ROOT
from mesh.launcher import Mesh
from services.gateway.client import BackbeatClient
from services.licensing.rights import Rights
from services.setup import StatePaths
from services.webbridge.bridge import EDGE_SERVICE, GATEWAY_SERVICE, GrpcWebBridge
from services.webbridge.framing import (
    Frame,
    FrameDecoder,
    decode_frames,
    decode_grpc_message,
    decode_text,
    encode_frame,
    encode_text,
    parse_trailers,
)
from tests.conftest import OtlpReceiver

WEB = REPO_ROOT / "web"
CHROMIUM = Path("/usr/bin/chromium")
FREE_US = ("free-us@backbeat.test", "listen-free-us")
GATEWAY_PATH = "/backbeat.gateway.v1.GatewayService"
EDGE_PATH = "/backbeat.edge.v1.EdgeService"
BINARY = "application/grpc-web+proto"
TEXT = "application/grpc-web-text"
SERVER_SPAN = 2  # OTLP SPAN_KIND_SERVER


def run_logged(command: list[str], env: dict[str, str], timeout_s: float, cwd: Path = WEB) -> str:
    """Run `command` and return its output. A non-zero exit fails the test with the whole output."""
    try:
        completed = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(
            f"{' '.join(command)} ran longer than {timeout_s:.0f} s:\n{expired.stdout}\n{expired.stderr}"
        )
    output = f"{completed.stdout}\n{completed.stderr}"
    if completed.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited with {completed.returncode}:\n{output}")
    return output


@pytest.fixture(scope="session")
def web_build() -> Path:
    """The web player and the Node test, built from web/src and web/test."""
    if shutil.which("node") is None or not (WEB / "node_modules").is_dir():
        pytest.fail("node or web/node_modules is missing: run scripts/install_web.sh")
    run_logged(["npm", "run", "build"], dict(os.environ), timeout_s=180)
    return WEB / "dist"


@pytest.fixture(scope="session")
def bridge_url(mesh: Mesh) -> str:
    return f"http://{mesh.address('webbridge')}"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    frames: list[Frame]

    @property
    def trailers(self) -> dict[str, str]:
        assert self.frames and self.frames[-1].is_trailer, f"no trailer frame in {self.frames}"
        return dict(parse_trailers(self.frames[-1].payload))

    def message(self, message_class: type[Any], index: int = 0) -> Any:
        return message_class.FromString(self.frames[index].payload)


async def grpc_web(
    url: str,
    path: str,
    request: Message | bytes,
    headers: dict[str, str] | None = None,
    content_type: str = BINARY,
) -> Reply:
    """POST one grpc-web call and read the whole response."""
    payload = request if isinstance(request, bytes) else encode_frame(request.SerializeToString())
    body = encode_text(payload) if content_type.startswith(TEXT) else payload
    all_headers = {"content-type": content_type, "x-grpc-web": "1", **(headers or {})}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.post(url + path, data=body, headers=all_headers) as response,
    ):
        raw = await response.read()
        if response.content_type.startswith("application/grpc-web-text"):
            raw = decode_text(raw)
        frames = decode_frames(raw) if response.content_type.startswith("application/grpc-web") else []
        return Reply(response.status, {key.lower(): value for key, value in response.headers.items()}, frames)


async def access_token(url: str) -> str:
    reply = await grpc_web(
        url, f"{GATEWAY_PATH}/Login", gateway_pb.LoginRequest(email=FREE_US[0], password=FREE_US[1])
    )
    return str(reply.message(gateway_pb.LoginResponse).access_token)


def licensed_and_withheld(mesh: Mesh, state: StatePaths, query: str) -> tuple[str, str]:
    """A track among the results of `query` licensed in US, and a track withheld in US."""

    async def search() -> list[str]:
        client = BackbeatClient(mesh.address("gateway"))
        try:
            await client.login(*FREE_US)
            return [track.track_id for track in await client.search(query, limit=20)]
        finally:
            await client.close()

    found = asyncio.run(search())
    rights = Rights(state.rights)
    try:
        licensed = next(decision.track_id for decision in rights.check_many(found, "US") if decision.allowed)
        withheld = rights.withheld_tracks("US", limit=1)[0]
    finally:
        rights.close()
    return licensed, withheld


@pytest.fixture
def cors_bridge(mesh: Mesh, bridge_url: str, tmp_path: Path) -> Iterator[str]:
    """A second bridge process that lets the mesh bridge's origin call it."""
    port_file = tmp_path / "webbridge-cors.port"
    env = {
        **os.environ,
        "BACKBEAT_GATEWAY_ADDRESS": mesh.address("gateway"),
        "BACKBEAT_EDGE_ADDRESS": mesh.address("edge"),
        "BACKBEAT_HTTP_PORT": "0",
        "BACKBEAT_PORT_FILE": str(port_file),
        "BACKBEAT_CORS_ORIGINS": bridge_url,
        "BACKBEAT_DRAIN_S": "1",
        "OTEL_TRACES_EXPORTER": "none",
    }
    log_path = tmp_path / "webbridge-cors.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.webbridge"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the second bridge did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{int(port_file.read_text())}"
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0, log_path.read_text()


# The whole mesh, through the bridge the launcher started.


def test_generated_web_code_matches_protos() -> None:
    if not (WEB / "node_modules").is_dir():
        pytest.fail("web/node_modules is missing: run scripts/install_web.sh")
    run_logged(["bash", "scripts/generate_web.sh", "--check"], dict(os.environ), timeout_s=120, cwd=REPO_ROOT)


def test_connect_web_client_in_node(bridge_url: str, web_build: Path) -> None:
    env = {**os.environ, "BACKBEAT_BRIDGE_URL": bridge_url}

    output = run_logged(
        ["node", "--test", "test-build/bridge.test.mjs", "test-build/player.test.mjs"], env, timeout_s=180
    )

    assert "# fail 0" in output, output
    assert "# pass 11" in output, output


def test_player_in_chromium(
    mesh: Mesh,
    state: StatePaths,
    bridge_url: str,
    cors_bridge: str,
    web_build: Path,
    otlp_receiver: OtlpReceiver,
    tmp_path: Path,
) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install_web.sh")
    licensed, withheld = licensed_and_withheld(mesh, state, "love")
    env = {
        **os.environ,
        "BACKBEAT_BRIDGE_URL": bridge_url,
        "BACKBEAT_CORS_BRIDGE_URL": cors_bridge,
        "BACKBEAT_PLAY_QUERY": "love",
        "BACKBEAT_LICENSED_TRACK_ID": licensed,
        "BACKBEAT_WITHHELD_TRACK_ID": withheld,
        "BACKBEAT_SCREENSHOT_DIR": str(tmp_path),
        "BACKBEAT_CHROMIUM": str(CHROMIUM),
    }

    output = run_logged(["node", "test/player.e2e.mjs"], env, timeout_s=240)

    result = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
    assert result["ok"], output
    assert result["rendition"] == "128 kbps mp3"
    assert result["recommendations"] > 0
    assert result["blocked"] == []
    assert result["cors"]["allowed"]["grpcStatus"] == "3"
    assert "error" in result["cors"]["refused"]

    # One play is one trace: the page's traceparent is the parent of the bridge's span,
    # and the bridge's spans are the parents of the gateway's and the edge's.
    trace_id = result["traceId"]
    page_span_id = result["traceparent"].split("-")[2]
    spans = otlp_receiver.collector.wait_for(trace_id, {"webbridge", "gateway", "edge"})
    by_name = {(span.service, span.name): span for span in spans}
    bridge_play = by_name[("webbridge", "backbeat.gateway.v1.GatewayService/Play")]
    bridge_stream = by_name[("webbridge", "backbeat.edge.v1.EdgeService/StreamAudio")]
    gateway_play = by_name[("gateway", "backbeat.gateway.v1.GatewayService/Play")]
    edge_stream = by_name[("edge", "backbeat.edge.v1.EdgeService/StreamAudio")]
    assert bridge_play.kind == SERVER_SPAN
    assert bridge_play.parent_span_id == page_span_id
    assert bridge_stream.parent_span_id == page_span_id
    assert gateway_play.parent_span_id == bridge_play.span_id
    assert edge_stream.parent_span_id == bridge_stream.span_id
    assert bridge_stream.attributes["backbeat.messages_sent"] > 1


async def test_static_player_config_and_health(bridge_url: str, web_build: Path) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{bridge_url}/healthz") as health:
            assert health.status == 200
        async with session.get(f"{bridge_url}/config.json") as config:
            assert await config.json() == {"jaegerUiUrl": "http://localhost:16686"}
        async with session.get(f"{bridge_url}/") as index:
            assert index.status == 200
            assert "<audio" in await index.text()
        async with session.get(f"{bridge_url}/app.js") as script:
            assert script.status == 200
            assert "javascript" in script.content_type
        async with session.get(f"{bridge_url}/%2e%2e/pyproject.toml") as escape:
            assert escape.status == 404
        async with session.get(f"{bridge_url}/nothing-here.js") as missing:
            assert missing.status == 404


async def test_error_details_reach_the_browser(bridge_url: str) -> None:
    token = await access_token(bridge_url)

    reply = await grpc_web(
        bridge_url,
        f"{GATEWAY_PATH}/Play",
        gateway_pb.PlayRequest(track_id=""),
        {"authorization": f"Bearer {token}"},
    )

    assert reply.status == 200
    assert reply.headers["grpc-status"] == str(grpc.StatusCode.INVALID_ARGUMENT.value[0])
    assert len(reply.frames) == 1
    trailers = reply.trailers
    assert trailers["grpc-status"] == reply.headers["grpc-status"]
    status = status_pb2.Status.FromString(base64.b64decode(trailers["grpc-status-details-bin"]))
    bad_request = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad_request) for detail in status.details)
    assert [violation.field for violation in bad_request.field_violations] == ["track_id"]


async def test_unknown_method_is_unimplemented(bridge_url: str) -> None:
    reply = await grpc_web(bridge_url, f"{GATEWAY_PATH}/Rewind", b"\x00\x00\x00\x00\x00")

    assert reply.headers["grpc-status"] == str(grpc.StatusCode.UNIMPLEMENTED.value[0])
    assert reply.trailers["grpc-status"] == reply.headers["grpc-status"]


async def test_not_grpc_web_is_unsupported_media_type(bridge_url: str) -> None:
    reply = await grpc_web(bridge_url, f"{GATEWAY_PATH}/Login", b"{}", content_type="application/json")

    assert reply.status == 415


@pytest.mark.parametrize(
    ("body", "headers", "code", "message"),
    [
        (encode_frame(b"\x0a\x03abc")[:-1], {}, grpc.StatusCode.INVALID_ARGUMENT, "ends inside a frame"),
        (encode_frame(b"") + encode_frame(b""), {}, grpc.StatusCode.INVALID_ARGUMENT, "one request message"),
        (encode_frame(b"", 0x01), {}, grpc.StatusCode.UNIMPLEMENTED, "compressed"),
        (encode_frame(b""), {"grpc-timeout": "soon"}, grpc.StatusCode.INVALID_ARGUMENT, "grpc-timeout"),
        (encode_frame(b""), {"x-note": "caf\u00e9"}, grpc.StatusCode.INVALID_ARGUMENT, "x-note"),
    ],
    ids=["truncated", "two-messages", "compressed", "bad-timeout", "non-ascii-header"],
)
async def test_malformed_requests_get_a_status(
    bridge_url: str, body: bytes, headers: dict[str, str], code: grpc.StatusCode, message: str
) -> None:
    reply = await grpc_web(bridge_url, f"{GATEWAY_PATH}/Login", body, headers)

    assert reply.status == 200
    assert reply.headers["grpc-status"] == str(code.value[0])
    assert message in decode_grpc_message(reply.trailers["grpc-message"])


async def test_grpc_timeout_becomes_the_call_deadline(bridge_url: str) -> None:
    # Login hashes the password, which takes far longer than a microsecond.
    reply = await grpc_web(
        bridge_url,
        f"{GATEWAY_PATH}/Login",
        gateway_pb.LoginRequest(email=FREE_US[0], password=FREE_US[1]),
        {"grpc-timeout": "1u"},
    )

    assert reply.headers["grpc-status"] == str(grpc.StatusCode.DEADLINE_EXCEEDED.value[0])


async def test_text_mode_stream_through_the_mesh(bridge_url: str, mesh: Mesh, state: StatePaths) -> None:
    token = await access_token(bridge_url)
    licensed, _ = await asyncio.to_thread(licensed_and_withheld, mesh, state, "night")
    auth = {"authorization": f"Bearer {token}"}
    play = (
        await grpc_web(bridge_url, f"{GATEWAY_PATH}/Play", gateway_pb.PlayRequest(track_id=licensed), auth)
    ).message(gateway_pb.PlayResponse)

    reply = await grpc_web(
        bridge_url,
        f"{EDGE_PATH}/StreamAudio",
        edge_service_pb2.StreamAudioRequest(stream_grant=play.stream_grant),
        content_type=TEXT,
    )

    chunks = [edge_service_pb2.StreamAudioResponse.FromString(frame.payload) for frame in reply.frames[:-1]]
    assert reply.headers["content-type"] == "application/grpc-web-text+proto"
    assert reply.trailers["grpc-status"] == "0"
    assert sum(len(chunk.data) for chunk in chunks) == play.rendition.size_bytes
    assert [chunk.offset for chunk in chunks] == sorted(chunk.offset for chunk in chunks)


async def test_bridge_span_joins_the_callers_trace(bridge_url: str, otlp_receiver: OtlpReceiver) -> None:
    trace_id, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    token = await access_token(bridge_url)

    reply = await grpc_web(
        bridge_url,
        f"{GATEWAY_PATH}/Search",
        gateway_pb.SearchRequest(query="love", limit=3),
        {
            "authorization": f"Bearer {token}",
            "traceparent": f"00-{trace_id}-{caller_span}-01",
            "tracestate": "backbeat=test",
        },
    )

    assert reply.trailers["grpc-status"] == "0"
    spans = await asyncio.to_thread(otlp_receiver.collector.wait_for, trace_id, {"webbridge", "gateway"})
    bridge = next(span for span in spans if span.service == "webbridge")
    gateway = next(span for span in spans if span.service == "gateway" and span.kind == SERVER_SPAN)
    assert bridge.parent_span_id == caller_span
    assert bridge.attributes["rpc.method"] == "Search"
    assert gateway.parent_span_id == bridge.span_id


# An in-process bridge in front of an in-process gRPC server.


@dataclass
class FakeBackend:
    """Gateway and edge servicers that record what reaches them and stream on cue."""

    metadata: list[tuple[str, str | bytes]] = field(default_factory=list)
    time_remaining: float | None = None
    release_second_chunk: asyncio.Event = field(default_factory=asyncio.Event)
    stream_cancelled: asyncio.Event = field(default_factory=asyncio.Event)


class FakeGateway(gateway_grpc.GatewayServiceServicer):
    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend

    async def Login(
        self, request: gateway_pb.LoginRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gateway_pb.LoginResponse:
        self.backend.metadata = list(context.invocation_metadata() or ())
        self.backend.time_remaining = context.time_remaining()
        await context.send_initial_metadata([("x-served-by", "fake-gateway")])
        context.set_trailing_metadata([("x-app-trailer", "kept"), ("x-blob-bin", b"\x00\xff")])
        return gateway_pb.LoginResponse(access_token="token-" + request.email)

    async def Search(
        self, request: gateway_pb.SearchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gateway_pb.SearchResponse:
        context.set_trailing_metadata([("x-retry-after-ms", "1500")])
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limit: 10 per minute, über")


class FakeEdge(edge_service_pb2_grpc.EdgeServiceServicer):
    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend

    async def StreamAudio(
        self, request: edge_service_pb2.StreamAudioRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[edge_service_pb2.StreamAudioResponse]:
        try:
            yield edge_service_pb2.StreamAudioResponse(offset=0, data=b"first", total_size=10)
            await self.backend.release_second_chunk.wait()
            yield edge_service_pb2.StreamAudioResponse(offset=5, data=b"later", total_size=10)
        except asyncio.CancelledError:
            self.backend.stream_cancelled.set()
            raise


@dataclass
class LocalBridge:
    url: str
    backend: FakeBackend


@pytest.fixture
async def local_bridge(tmp_path: Path) -> AsyncIterator[LocalBridge]:
    backend = FakeBackend()
    server = grpc.aio.server()
    gateway_grpc.add_GatewayServiceServicer_to_server(FakeGateway(backend), server)
    edge_service_pb2_grpc.add_EdgeServiceServicer_to_server(FakeEdge(backend), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    (tmp_path / "index.html").write_text("<!doctype html><title>player</title>")
    bridge = GrpcWebBridge(
        {GATEWAY_SERVICE.full_name: channel, EDGE_SERVICE.full_name: channel},
        cors_origins=["http://player.test:8080"],
        jaeger_ui_url="http://127.0.0.1:16686/",
        static_dir=tmp_path,
    )
    runner = bridge.runner(drain_s=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield LocalBridge(f"http://127.0.0.1:{runner.addresses[0][1]}", backend)
    finally:
        await runner.cleanup()
        await channel.close()
        await server.stop(None)


async def test_stream_messages_are_flushed_one_by_one(local_bridge: LocalBridge) -> None:
    request = encode_frame(edge_service_pb2.StreamAudioRequest(stream_grant="g").SerializeToString())
    decoder = FrameDecoder()
    frames: list[Frame] = []

    async def read_until(count: int, content: aiohttp.StreamReader) -> None:
        while len(frames) < count:
            data = await content.readany()
            assert data, "the response ended early"
            frames.extend(decoder.feed(data))

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{local_bridge.url}{EDGE_PATH}/StreamAudio", data=request, headers={"content-type": BINARY}
        ) as response,
    ):
        # The second chunk is only sent once the first has reached this client.
        await asyncio.wait_for(read_until(1, response.content), timeout=10)
        local_bridge.backend.release_second_chunk.set()
        await asyncio.wait_for(read_until(3, response.content), timeout=10)

    chunks = [edge_service_pb2.StreamAudioResponse.FromString(frame.payload).data for frame in frames[:2]]
    assert chunks == [b"first", b"later"]
    assert dict(parse_trailers(frames[2].payload))["grpc-status"] == "0"


async def test_browser_leaving_cancels_the_stream(local_bridge: LocalBridge) -> None:
    request = encode_frame(edge_service_pb2.StreamAudioRequest(stream_grant="g").SerializeToString())
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{local_bridge.url}{EDGE_PATH}/StreamAudio", data=request, headers={"content-type": BINARY}
        ) as response,
    ):
        first = await response.content.readany()
        assert first
        response.close()

    await asyncio.wait_for(local_bridge.backend.stream_cancelled.wait(), timeout=10)


async def test_metadata_deadline_and_trailers_pass_through(local_bridge: LocalBridge) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"

    reply = await grpc_web(
        local_bridge.url,
        f"{GATEWAY_PATH}/Login",
        gateway_pb.LoginRequest(email="a@b.test", password="p"),
        {
            "authorization": "Bearer abc",
            "traceparent": f"00-{trace_id}-b7ad6b7169203331-01",
            "tracestate": "backbeat=test",
            "x-client-note": "hello",
            "x-ctx-bin": base64.b64encode(b"\x01\x02").decode(),
            "grpc-timeout": "3S",
            "x-user-agent": "connect-es/2.3.0",
            "cookie": "session=1",
            "origin": local_bridge.url,
        },
    )

    received = dict(local_bridge.backend.metadata)
    assert received["authorization"] == "Bearer abc"
    assert received["x-client-note"] == "hello"
    assert received["x-ctx-bin"] == b"\x01\x02"
    assert str(received["traceparent"]).split("-")[1] == trace_id
    assert received["tracestate"] == "backbeat=test"
    for dropped in ("cookie", "origin", "x-user-agent", "x-grpc-web", "grpc-timeout", "content-type"):
        assert dropped not in received
    # time_remaining() was seen up to 10 ms above the 3 s sent, so allow 0.1 s more.
    remaining = local_bridge.backend.time_remaining
    assert remaining is not None
    assert 0 < remaining <= 3.1

    assert reply.message(gateway_pb.LoginResponse).access_token == "token-a@b.test"
    assert reply.headers["x-served-by"] == "fake-gateway"
    assert "access-control-allow-origin" not in reply.headers
    assert reply.trailers["grpc-status"] == "0"
    assert reply.trailers["x-app-trailer"] == "kept"
    assert base64.b64decode(reply.trailers["x-blob-bin"]) == b"\x00\xff"


async def test_error_with_trailers_is_trailers_only_in_text_mode(local_bridge: LocalBridge) -> None:
    reply = await grpc_web(
        local_bridge.url,
        f"{GATEWAY_PATH}/Search",
        gateway_pb.SearchRequest(query="x"),
        {"origin": "http://player.test:8080"},
        content_type=TEXT,
    )

    code = str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
    assert reply.headers["content-type"] == "application/grpc-web-text+proto"
    assert reply.headers["grpc-status"] == code
    assert decode_grpc_message(reply.headers["grpc-message"]) == "rate limit: 10 per minute, über"
    assert reply.headers["x-retry-after-ms"] == "1500"
    assert len(reply.frames) == 1
    assert reply.trailers == {
        "grpc-status": code,
        "grpc-message": reply.headers["grpc-message"],
        "x-retry-after-ms": "1500",
    }
    assert reply.headers["access-control-allow-origin"] == "http://player.test:8080"
    exposed = {name.strip() for name in reply.headers["access-control-expose-headers"].split(",")}
    assert {"grpc-status", "grpc-message", "grpc-status-details-bin", "x-retry-after-ms"} <= exposed


async def test_unreachable_service_is_unavailable(tmp_path: Path) -> None:
    # Nothing listens on port 1 of the loopback address, so every call fails to connect.
    channel = grpc.aio.insecure_channel("127.0.0.1:1")
    bridge = GrpcWebBridge({GATEWAY_SERVICE.full_name: channel})
    runner = bridge.runner(drain_s=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        reply = await grpc_web(
            f"http://127.0.0.1:{runner.addresses[0][1]}",
            f"{GATEWAY_PATH}/Search",
            gateway_pb.SearchRequest(query="x"),
            {"grpc-timeout": "5S"},
        )
    finally:
        await runner.cleanup()
        await channel.close()

    assert reply.headers["grpc-status"] == str(grpc.StatusCode.UNAVAILABLE.value[0])
    assert reply.trailers["grpc-status"] == reply.headers["grpc-status"]


async def test_cors_preflight(local_bridge: LocalBridge) -> None:
    url = f"{local_bridge.url}{GATEWAY_PATH}/Login"
    asked = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,grpc-timeout,traceparent,x-grpc-web",
    }
    async with aiohttp.ClientSession() as session:
        async with session.options(url, headers={"Origin": "http://player.test:8080", **asked}) as allowed:
            assert allowed.status == 204
            assert allowed.headers["Access-Control-Allow-Origin"] == "http://player.test:8080"
            assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
            allowed_headers = {h.strip() for h in allowed.headers["Access-Control-Allow-Headers"].split(",")}
            assert {
                "x-grpc-web",
                "x-user-agent",
                "grpc-timeout",
                "authorization",
                "traceparent",
                "content-type",
            } <= allowed_headers
        async with session.options(url, headers={"Origin": "http://elsewhere.test", **asked}) as refused:
            assert refused.status == 403
            assert "Access-Control-Allow-Origin" not in refused.headers
        async with session.post(
            url,
            data=encode_frame(b""),
            headers={"content-type": BINARY, "Origin": "http://elsewhere.test"},
        ) as post:
            assert post.status == 403
        async with session.get(f"{local_bridge.url}/config.json") as config:
            assert await config.json() == {"jaegerUiUrl": "http://127.0.0.1:16686"}
