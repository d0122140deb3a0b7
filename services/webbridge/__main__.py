"""Run the grpc-web bridge: python -m services.webbridge."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated, Any

from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from mesh.channels import ChannelPool
from mesh.config import REPO_ROOT, MeshSettings, load_settings
from mesh.server import run, start_process, write_port_file
from mesh.tracing import shutdown_tracing
from services.webbridge.bridge import EDGE_SERVICE, GATEWAY_SERVICE, SERVICE, GrpcWebBridge

logger = logging.getLogger(__name__)


class WebBridgeSettings(MeshSettings):
    """Settings of the grpc-web bridge."""

    gateway_address: str = Field("127.0.0.1:50051", description="host:port of the gateway.")
    edge_address: str = Field("127.0.0.1:50057", description="host:port of the edge.")
    http_port: int = Field(0, ge=0, le=65535, description="HTTP port; 0 picks a free port.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins besides the bridge's own that may call it from a browser, comma-separated; "
        "* allows any.",
    )
    jaeger_ui_url: str = Field(
        "http://localhost:16686",
        pattern=r"^https?://[^\s\"'<>]+$",
        description="Jaeger UI base URL the web player links trace ids to.",
    )
    static_dir: Path = Field(REPO_ROOT / "web" / "dist", description="Folder of the built web player.")
    max_request_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest grpc-web request body accepted, bytes."
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            scheme, separator, rest = origin.partition("://")
            if origin != "*" and (
                scheme not in ("http", "https") or not separator or not rest or "/" in rest
            ):
                raise ValueError(f"{origin!r} is not an origin such as http://127.0.0.1:5173 or *")
        return value


async def serve_http(
    runner: web.AppRunner,
    *,
    host: str,
    port: int,
    drain_s: float,
    port_file: Path | None,
    cleanups: list[Any],
    tracer_provider: TracerProvider | None,
) -> None:
    """Serve `runner` until SIGTERM or SIGINT. The port file is written once the socket listens."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    if port_file is not None:
        write_port_file(port_file, bound)
    logger.info("%s serving HTTP on %s:%d", SERVICE, host, bound)

    await stop.wait()
    logger.info("%s stopping: draining in-flight calls for up to %.1f s", SERVICE, drain_s)
    await runner.cleanup()
    for cleanup in cleanups:
        await cleanup()
    if tracer_provider is not None:
        shutdown_tracing(tracer_provider)
    logger.info("%s stopped", SERVICE)


async def main() -> None:
    settings = load_settings(WebBridgeSettings)
    provider = start_process(SERVICE, settings)

    pool = ChannelPool()
    channels = {
        GATEWAY_SERVICE.full_name: pool.get(settings.gateway_address),
        EDGE_SERVICE.full_name: pool.get(settings.edge_address),
    }
    bridge = GrpcWebBridge(
        channels,
        cors_origins=settings.cors_origins,
        jaeger_ui_url=settings.jaeger_ui_url,
        static_dir=settings.static_dir,
    )
    if not (settings.static_dir / "index.html").is_file():
        logger.warning("no web player in %s: run scripts/install_web.sh to build it", settings.static_dir)
    await serve_http(
        bridge.runner(client_max_size=settings.max_request_bytes, drain_s=settings.drain_s),
        host=settings.host,
        port=settings.http_port,
        drain_s=settings.drain_s,
        port_file=settings.port_file,
        cleanups=[pool.close],
        tracer_provider=provider,
    )


if __name__ == "__main__":
    run(main)
