"""Server interceptors, one per module, and the order they run in.

The first interceptor in SERVER_ORDER is the outermost: tracing opens the
server span first, so the deadline and error interceptors run inside it and
the span records the final status.
"""

from __future__ import annotations

import grpc

from mesh.interceptors.server_deadline import ServerDeadlineInterceptor
from mesh.interceptors.server_errors import ServerErrorInterceptor
from mesh.interceptors.server_tracing import ServerTracingInterceptor


def server_interceptors(service: str) -> list[grpc.aio.ServerInterceptor]:
    """Return the server interceptors of `service`, outermost first."""
    return [
        ServerTracingInterceptor(service),
        ServerDeadlineInterceptor(),
        ServerErrorInterceptor(),
    ]
