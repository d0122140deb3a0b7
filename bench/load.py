"""Load drivers: closed loop (fixed concurrency) and open loop (fixed arrival rate).

In the open loop each operation is timed from its scheduled start, not from
when the driver got to it, so a slow system cannot hide its queueing delay
(no coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from tqdm import tqdm

from backbeat.bench.v1 import echo_service_pb2, echo_service_pb2_grpc
from backbeat.edge.v1 import edge_service_pb2, edge_service_pb2_grpc
from backbeat.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from bench.stats import Samples
from bench.workload import Listener, TrackPicker
from mesh.channels import CLIENT_OPTIONS

Operation = Callable[[float], Coroutine[Any, Any, None]]


@dataclass
class PhaseResult:
    """Measurements of one load phase: operations, elapsed time, samples and bytes."""

    operations: int = 0
    elapsed_s: float = 0.0
    samples: dict[str, Samples] = field(default_factory=dict)
    bytes_received: int = 0

    def sample(self, name: str) -> Samples:
        return self.samples.setdefault(name, Samples())

    @property
    def per_second(self) -> float:
        return self.operations / self.elapsed_s if self.elapsed_s else 0.0


async def closed_loop(operation: Operation, concurrency: int, duration_s: float, label: str) -> float:
    """Run `operation` back to back in `concurrency` workers for `duration_s`; return the elapsed time."""
    started = time.perf_counter()
    stop_at = started + duration_s
    with tqdm(total=round(duration_s), desc=label, unit="s", leave=False) as progress:

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                await operation(time.perf_counter())

        async def tick() -> None:
            while time.perf_counter() < stop_at:
                await asyncio.sleep(1)
                progress.update(1)

        ticker = asyncio.create_task(tick())
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        ticker.cancel()
    return time.perf_counter() - started


async def open_loop(
    operation: Operation, rate: float, duration_s: float, label: str, max_in_flight: int
) -> float:
    """Start `operation` at `rate` per second for `duration_s`; return the elapsed time including the tail."""
    started = time.perf_counter()
    interval = 1.0 / rate
    tasks: set[asyncio.Task[None]] = set()
    total = int(rate * duration_s)
    with tqdm(total=total, desc=label, unit="op", leave=False) as progress:
        for number in range(total):
            scheduled = started + number * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) >= max_in_flight:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(operation(scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            progress.update(1)
        if tasks:
            await asyncio.wait(tasks)
    return time.perf_counter() - started


def retry_delay(error: grpc.aio.AioRpcError) -> float:
    """Return how long a well-behaved client waits before its next call: RetryInfo, else 50 ms."""
    status = rpc_status.from_call(cast(grpc.Call, error))
    for detail in status.details if status else []:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return float(info.retry_delay.ToNanoseconds()) / 1e9
    return 0.05


class MeshDriver:
    """Logs listeners in and plays tracks through the gateway and the edge."""

    def __init__(self, gateway: str, listeners: list[Listener], picker: TrackPicker) -> None:
        self._channel = grpc.aio.insecure_channel(gateway, options=CLIENT_OPTIONS)
        self._gateway = gateway_service_pb2_grpc.GatewayServiceStub(self._channel)
        self._edges: dict[str, edge_service_pb2_grpc.EdgeServiceAsyncStub] = {}
        self._edge_channels: list[grpc.aio.Channel] = []
        self._listeners = listeners
        self._picker = picker
        self._tokens: list[tuple[Listener, str]] = []
        self._turn = itertools.count()

    async def close(self) -> None:
        await self._channel.close()
        for channel in self._edge_channels:
            await channel.close()

    def _edge(self, address: str) -> edge_service_pb2_grpc.EdgeServiceAsyncStub:
        if address not in self._edges:
            channel = grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS)
            self._edge_channels.append(channel)
            self._edges[address] = edge_service_pb2_grpc.EdgeServiceStub(channel)
        return self._edges[address]

    async def login_all(self, result: PhaseResult) -> None:
        """Log every listener in, timing each login."""
        samples = result.sample("login")
        for listener in tqdm(self._listeners, desc="login", unit="user", leave=False):
            started = time.perf_counter()
            try:
                response = await self._gateway.Login(
                    gateway_service_pb2.LoginRequest(email=listener.email, password=listener.password),
                    timeout=5,
                )
            except grpc.aio.AioRpcError as error:
                samples.errors[error.code().name] += 1
                continue
            samples.latencies_s.append(time.perf_counter() - started)
            self._tokens.append((listener, response.access_token))
        result.operations += len(self._tokens)

    def play_operation(self, result: PhaseResult) -> Operation:
        """Return an operation that plays one popularity-weighted track to its first audio byte."""
        grant_samples = result.sample("play")
        first_byte_samples = result.sample("first_byte")

        async def play(scheduled: float) -> None:
            listener, token = self._tokens[next(self._turn) % len(self._tokens)]
            metadata = (("authorization", f"Bearer {token}"),)
            try:
                response = await self._gateway.Play(
                    gateway_service_pb2.PlayRequest(track_id=self._picker.pick(listener.market)),
                    metadata=metadata,
                    timeout=1.0,
                )
                granted = time.perf_counter()
                call = self._edge(response.edge_address).StreamAudio(
                    edge_service_pb2.StreamAudioRequest(stream_grant=response.stream_grant), timeout=5.0
                )
                chunk = await call.read()
                first_byte = time.perf_counter()
                call.cancel()
            except grpc.aio.AioRpcError as error:
                grant_samples.errors[error.code().name] += 1
                await asyncio.sleep(retry_delay(error))
                return
            if chunk is grpc.aio.EOF:
                first_byte_samples.errors["EMPTY_STREAM"] += 1
                return
            grant_samples.latencies_s.append(granted - scheduled)
            first_byte_samples.latencies_s.append(first_byte - scheduled)
            result.operations += 1

        return play

    async def stream_grant(self) -> tuple[str, str]:
        """Return a grant and edge address for a premium listener's most popular licensed track."""
        listener, token = next((item for item in self._tokens if item[0].tier == "premium"), self._tokens[0])
        deadline = time.monotonic() + 15
        while True:
            try:
                response = await self._gateway.Play(
                    gateway_service_pb2.PlayRequest(track_id=self._picker.pick(listener.market)),
                    metadata=(("authorization", f"Bearer {token}"),),
                    timeout=2.0,
                )
            except grpc.aio.AioRpcError as error:
                # Breakers opened by the previous phase close after their reset time.
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(retry_delay(error))
                continue
            return response.stream_grant, response.edge_address

    def stream_operation(self, result: PhaseResult, grant: str, edge_address: str) -> Operation:
        """Return an operation that streams one whole rendition from the edge."""
        samples = result.sample("edge_stream")

        async def stream(scheduled: float) -> None:
            received = 0
            call = self._edge(edge_address).StreamAudio(
                edge_service_pb2.StreamAudioRequest(stream_grant=grant)
            )
            try:
                while (chunk := await call.read()) is not grpc.aio.EOF:
                    received += len(cast(Any, chunk).data)
            except grpc.aio.AioRpcError as error:
                samples.errors[error.code().name] += 1
                return
            samples.latencies_s.append(time.perf_counter() - scheduled)
            result.bytes_received += received
            result.operations += 1

        return stream


class EchoDriver:
    """Calls the bare echo server."""

    def __init__(self, address: str) -> None:
        self._channel = grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS)
        self._stub = echo_service_pb2_grpc.EchoServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    def unary_operation(self, result: PhaseResult, payload_bytes: int = 64) -> Operation:
        """Return an operation that makes one Echo call."""
        samples = result.sample("echo")
        request = echo_service_pb2.EchoRequest(payload=bytes(payload_bytes))

        async def echo(scheduled: float) -> None:
            try:
                await self._stub.Echo(request, timeout=1.0)
            except grpc.aio.AioRpcError as error:
                samples.errors[error.code().name] += 1
                return
            samples.latencies_s.append(time.perf_counter() - scheduled)
            result.operations += 1

        return echo

    def stream_operation(self, result: PhaseResult, total_bytes: int, chunk_bytes: int) -> Operation:
        """Return an operation that streams `total_bytes` in `chunk_bytes` messages."""
        samples = result.sample("echo_stream")
        request = echo_service_pb2.StreamBytesRequest(total_bytes=total_bytes, chunk_bytes=chunk_bytes)

        async def stream(scheduled: float) -> None:
            received = 0
            call = self._stub.StreamBytes(request)
            try:
                while (chunk := await call.read()) is not grpc.aio.EOF:
                    received += len(cast(Any, chunk).data)
            except grpc.aio.AioRpcError as error:
                samples.errors[error.code().name] += 1
                return
            samples.latencies_s.append(time.perf_counter() - scheduled)
            result.bytes_received += received
            result.operations += 1

        return stream
