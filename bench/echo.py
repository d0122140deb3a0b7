"""The floor: a bare grpc.aio echo server with no interceptors, tracing, breakers or deadlines."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from backbeat.bench.v1 import echo_service_pb2 as pb
from backbeat.bench.v1 import echo_service_pb2_grpc as pb_grpc
from mesh.server import write_port_file


class EchoServicer(pb_grpc.EchoServiceServicer):
    """Returns what it is sent, and streams bytes on request."""

    async def Echo(
        self, request: pb.EchoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EchoResponse:
        return pb.EchoResponse(payload=request.payload)

    async def StreamBytes(
        self, request: pb.StreamBytesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.StreamBytesResponse]:
        chunk = bytes(request.chunk_bytes)
        sent = 0
        while sent < request.total_bytes:
            yield pb.StreamBytesResponse(data=chunk)
            sent += len(chunk)


async def serve(port_file: Path) -> None:
    """Serve the echo service on a free loopback port until cancelled, writing the port to `port_file`."""
    server = grpc.aio.server()
    pb_grpc.add_EchoServiceServicer_to_server(EchoServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    write_port_file(port_file, port)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1])))
