"""Server interceptors, one per module, and the order they run in.

The first interceptor in the list is the outermost. Tracing opens the
server span first, so everything inside shows on it; metrics count the final
status; the deadline is recorded before any handler code runs; domain errors
are mapped to statuses; fault injection runs last, right before the handler,
so an injected error or delay looks to every outer layer like the handler's.
"""

from __future__ import annotations

import grpc

from mesh.faults import FaultRegistry
from mesh.interceptors.server_deadline import ServerDeadlineInterceptor
from mesh.interceptors.server_errors import ServerErrorInterceptor
from mesh.interceptors.server_faults import ServerFaultInterceptor
from mesh.interceptors.server_metrics import ServerMetricsInterceptor
from mesh.interceptors.server_tracing import ServerTracingInterceptor


def server_interceptors(
    service: str, faults: FaultRegistry, tracing: bool = True
) -> list[grpc.aio.ServerInterceptor]:
    """Return the server interceptors of `service`, outermost first."""
    interceptors: list[grpc.aio.ServerInterceptor] = [ServerTracingInterceptor(service)] if tracing else []
    interceptors += [
        ServerMetricsInterceptor(service),
        ServerDeadlineInterceptor(),
        ServerErrorInterceptor(),
        ServerFaultInterceptor(faults),
    ]
    return interceptors
