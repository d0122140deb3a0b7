"""An OTLP trace receiver that counts spans and drops them, so tracing costs include export."""

from __future__ import annotations

import sys
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from mesh.server import write_port_file


class CountingReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Accepts every export and counts the spans."""

    def __init__(self) -> None:
        self.spans = 0

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.spans += len(scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


def serve(port_file: Path) -> None:
    """Serve until killed, writing the bound port to `port_file`."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    register: Any = trace_service_pb2_grpc.add_TraceServiceServicer_to_server
    register(CountingReceiver(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    write_port_file(port_file, port)
    server.wait_for_termination()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
