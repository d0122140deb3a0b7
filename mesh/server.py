"""Server bootstrap shared by every service.

build_server() assembles a grpc.aio server with the mesh interceptors, the
grpc.health.v1 health service and server reflection, and binds it; it
returns the server and its bound port without starting it. serve() starts
it, reports SERVING, and on SIGTERM or SIGINT reports NOT_SERVING, lets
in-flight calls drain, runs the cleanup steps and flushes spans.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import start_http_server

from backbeat.admin.v1 import admin_service_pb2, admin_service_pb2_grpc
from mesh.admin import AdminServicer
from mesh.config import MeshSettings, SettingsError
from mesh.faults import FaultRegistry
from mesh.interceptors import server_interceptors
from mesh.logs import configure_logging
from mesh.metrics import REGISTRY
from mesh.tracing import configure_tracing, shutdown_tracing

logger = logging.getLogger(__name__)

SERVER_OPTIONS: list[tuple[str, Any]] = [
    # gRPC turns SO_REUSEPORT on by default, which lets a second mesh bind the same ports
    # and silently share the traffic. A port in use must fail the start instead.
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
    ("grpc.http2.max_ping_strikes", 2),
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
]

Cleanup = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class ServiceDefinition:
    """A servicer to register: its full proto service name and its add-to-server function."""

    name: str
    register: Callable[[grpc.aio.Server], None]

    @classmethod
    def of(
        cls,
        file_descriptor: Any,
        service_name: str,
        add_to_server: Callable[[Any, grpc.aio.Server], None],
        servicer: object,
    ) -> ServiceDefinition:
        """Describe `servicer` as the implementation of `service_name` from a generated _pb2 module."""
        full_name = file_descriptor.services_by_name[service_name].full_name
        return cls(full_name, lambda server: add_to_server(servicer, server))


@dataclass
class BuiltServer:
    """A bound, not yet started server with its health servicer."""

    service: str
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: list[str]
    cleanups: list[Cleanup] = field(default_factory=list)

    async def start(self) -> None:
        """Start serving and report SERVING for the server and each service."""
        await self.server.start()
        for name in ["", *self.service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, drain_s: float, unready_s: float = 0.0) -> None:
        """Report NOT_SERVING, keep serving for `unready_s`, give in-flight calls `drain_s`, then clean up.

        The unready period lets health checkers and load balancers see NOT_SERVING and
        move traffic away before the server stops taking new calls.
        """
        await self.health.enter_graceful_shutdown()
        if unready_s > 0:
            await asyncio.sleep(unready_s)
        await self.server.stop(drain_s)
        for cleanup in self.cleanups:
            try:
                await cleanup()
            except Exception:
                logger.exception("cleanup step of %s failed during shutdown", self.service)


def build_server(
    service: str,
    definitions: Sequence[ServiceDefinition],
    host: str = "127.0.0.1",
    port: int = 0,
    cleanups: Sequence[Cleanup] = (),
    *,
    faults: FaultRegistry | None = None,
    tracing: bool = True,
) -> BuiltServer:
    """Assemble and bind a server for `service` with its admin service; port 0 binds a free port."""
    faults = faults or FaultRegistry()
    server = grpc.aio.server(
        interceptors=server_interceptors(service, faults, tracing), options=SERVER_OPTIONS
    )
    definitions = [
        *definitions,
        ServiceDefinition.of(
            admin_service_pb2.DESCRIPTOR,
            "AdminService",
            admin_service_pb2_grpc.add_AdminServiceServicer_to_server,
            AdminServicer(faults),
        ),
    ]
    for definition in definitions:
        definition.register(server)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [definition.name for definition in definitions]
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )

    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(
            f"cannot bind {service} to {host}:{port}: the port is in use; pick another, or 0 for a free one"
        )
    return BuiltServer(service, server, bound, health_servicer, names, list(cleanups))


def write_port_file(path: Path, port: int) -> None:
    """Write the bound port to `path` atomically, for launchers waiting on it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(path.suffix + ".tmp")
    scratch.write_text(f"{port}\n")
    os.replace(scratch, path)


async def serve(
    built: BuiltServer,
    *,
    host: str,
    drain_s: float,
    unready_s: float = 0.0,
    port_file: Path | None = None,
    tracer_provider: TracerProvider | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    await built.start()
    if port_file is not None:
        write_port_file(port_file, built.port)
    logger.info("%s serving on %s:%d", built.service, host, built.port)

    await stop.wait()
    logger.info("%s stopping: NOT_SERVING, draining in-flight calls for up to %.1f s", built.service, drain_s)
    await built.stop(drain_s, unready_s)
    if tracer_provider is not None:
        shutdown_tracing(tracer_provider)
    logger.info("%s stopped", built.service)


async def serve_service(
    service: str,
    settings: MeshSettings,
    definitions: Sequence[ServiceDefinition],
    *,
    cleanups: Sequence[Cleanup] = (),
    tracer_provider: TracerProvider | None = None,
) -> None:
    """Build, bind and serve `definitions` with the host, port and drain time from `settings`."""
    built = build_server(
        service, definitions, settings.host, settings.port, cleanups, tracing=settings.tracing
    )
    if settings.metrics_port is not None:
        start_http_server(settings.metrics_port, addr=settings.host, registry=REGISTRY)
        logger.info("%s metrics at http://%s:%d/metrics", service, settings.host, settings.metrics_port)
    await serve(
        built,
        host=settings.host,
        drain_s=settings.drain_s,
        unready_s=settings.unready_s,
        port_file=settings.port_file,
        tracer_provider=tracer_provider,
    )


def start_process(service: str, settings: MeshSettings) -> TracerProvider | None:
    """Configure JSON logging and, unless switched off, tracing; return the tracer provider."""
    configure_logging(service, settings.log_level)
    return configure_tracing(service) if settings.tracing else None


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a service's async main; a settings or bind error exits with status 2 and its message."""
    try:
        asyncio.run(main())
    except (SettingsError, OSError) as error:
        print(error, file=sys.stderr)
        raise SystemExit(2) from None
