"""Shared fixtures: the data folder, built stores, a private redis-server, an OTLP receiver and the mesh."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from mesh.config import DEFAULT_DATA_DIR, REPO_ROOT
from mesh.launcher import Mesh
from services.setup import StatePaths, run_setup
from services.stream.audio_ingest import ingest_audio

# Encoded renditions are reused across runs from here; encoding all of them takes about a minute.
RENDITION_CACHE = REPO_ROOT / "var" / "objects"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("BACKBEAT_DATA_DIR", DEFAULT_DATA_DIR))
    if not (path / "catalog" / "spotify_songs.csv").is_file():
        pytest.fail(f"data folder {path} has no catalog; set BACKBEAT_DATA_DIR or run scripts/fetch_data.py")
    return path


@pytest.fixture(scope="session")
def state(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> StatePaths:
    """Every store built from the real data into a fresh folder, renditions shared with later runs."""
    ingest_audio(data_dir, RENDITION_CACHE, progress=False)
    root = tmp_path_factory.mktemp("state")
    (root / "objects").symlink_to(RENDITION_CACHE, target_is_directory=True)
    run_setup(data_dir, root, progress=False)
    return StatePaths(root)


@contextmanager
def private_redis(folder: Path) -> Iterator[str]:
    """Run a redis-server on a Unix socket in `folder`, so no TCP port can clash; yield its URL."""
    socket_path = folder / "redis.sock"
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not socket_path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("redis-server did not start; is the redis-server package installed?")
        time.sleep(0.01)
    try:
        yield f"unix://{socket_path}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A private redis-server for one test."""
    with private_redis(tmp_path) as url:
        yield url


@dataclass(frozen=True)
class ReceivedSpan:
    """A span as an OTLP receiver got it."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, object]


class TraceCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver that keeps every span it is sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            service = next(
                (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"),
                "",
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes: dict[str, object] = {}
                    for attribute in span.attributes:
                        value = attribute.value
                        attributes[attribute.key] = getattr(
                            value, value.WhichOneof("value") or "string_value"
                        )
                    received.append(
                        ReceivedSpan(
                            service,
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.kind,
                            attributes,
                        )
                    )
        with self._lock:
            self._spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self._spans if span.trace_id == trace_id]

    def wait_for(self, trace_id: str, services: set[str], timeout_s: float = 15.0) -> list[ReceivedSpan]:
        """Return the spans of `trace_id` once every service in `services` sent one and no parent is missing.

        Services export in batches at their own pace, so a trace is complete only when each
        span's parent has arrived too.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.spans(trace_id)
            ids = {span.span_id for span in found}
            complete = all(not span.parent_span_id or span.parent_span_id in ids for span in found)
            if (services <= {span.service for span in found} and complete) or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@dataclass(frozen=True)
class OtlpReceiver:
    endpoint: str
    collector: TraceCollector


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    collector = TraceCollector()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield OtlpReceiver(f"http://127.0.0.1:{port}", collector)
    server.stop(grace=None)


@pytest.fixture(scope="session")
def mesh(
    state: StatePaths, data_dir: Path, otlp_receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    """Every service as its own process on free ports, exporting spans to the test's OTLP receiver."""
    run_dir = tmp_path_factory.mktemp("run")
    environment = {
        "BACKBEAT_STATE_DIR": str(state.root),
        "BACKBEAT_DATA_DIR": str(data_dir),
        "BACKBEAT_DRAIN_S": "2",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    launched = Mesh(run_dir=run_dir, base_port=0, environment=environment)
    asyncio.run(launched.start())
    yield launched
    codes = launched.stop()
    if any(code != 0 for code in codes.values()):
        pytest.fail(f"services did not stop cleanly: {codes}; logs in {run_dir}")
