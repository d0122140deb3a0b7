"""Starting the whole mesh: every service as its own process, in dependency order.

Each service binds its own port (a fixed one from a base port, or a free one
with base port 0), writes it to a port file once it serves, and is checked
with grpc.health.v1 before the services that call it start. The services in
HTTP_SERVICES serve HTTP instead: they get their port as BACKBEAT_HTTP_PORT
and are checked with GET /healthz. Stopping sends SIGTERM to callers before
the services they call; each service then drains its own in-flight calls.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

logger = logging.getLogger(__name__)

# Each service with the services it calls, in an order where callees come first.
TOPOLOGY: dict[str, tuple[str, ...]] = {
    "user": (),
    "metadata": (),
    "licensing": (),
    "recommendation": ("licensing",),
    "stream": ("licensing", "metadata", "recommendation"),
    "edge": ("stream",),
    "gateway": ("user", "stream", "metadata", "recommendation", "licensing", "edge"),
    "webbridge": ("gateway", "edge"),
}
PORT_OFFSETS = {
    "gateway": 0,
    "user": 1,
    "metadata": 2,
    "licensing": 3,
    "recommendation": 4,
    "stream": 5,
    "edge": 6,
    "webbridge": 7,
}
# Services that serve HTTP, not gRPC. The launcher checks them with GET /healthz, which returns 200.
HTTP_SERVICES = frozenset({"webbridge"})


class LaunchError(RuntimeError):
    """Raised when a service fails to start; the message includes the end of its log."""


@dataclass
class ServiceProcess:
    """A running service process and where it listens."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def wait_serving(address: str, timeout_s: float) -> None:
    """Poll grpc.health.v1 at `address` until it reports SERVING or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise LaunchError(f"{address} did not report SERVING within {timeout_s:.0f} s")
            await asyncio.sleep(0.05)


async def wait_http_ready(url: str, timeout_s: float) -> None:
    """Poll GET `url` until the response status is 200 or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise LaunchError(f"GET {url} did not return 200 within {timeout_s:.0f} s")
            await asyncio.sleep(0.05)


@dataclass
class Mesh:
    """Starts and stops the services of one mesh."""

    run_dir: Path
    base_port: int = 0
    environment: Mapping[str, str] = field(default_factory=dict)
    start_timeout_s: float = 60.0
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def address(self, name: str) -> str:
        """Return host:port of a running service."""
        return self.processes[name].address

    def _spawn(self, name: str, port: int | None = None) -> ServiceProcess:
        port_file = self.run_dir / f"{name}.port"
        port_file.unlink(missing_ok=True)
        env = {**os.environ, **self.environment}
        port_variable = "BACKBEAT_HTTP_PORT" if name in HTTP_SERVICES else "BACKBEAT_PORT"
        if port is None:
            port = self.base_port + PORT_OFFSETS[name] if self.base_port else 0
        env[port_variable] = str(port)
        env["BACKBEAT_PORT_FILE"] = str(port_file)
        for dependency in TOPOLOGY[name]:
            env[f"BACKBEAT_{dependency.upper()}_ADDRESS"] = self.address(dependency)
        log_path = self.run_dir / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        return ServiceProcess(name, process, log_path)

    async def _await_port(self, service: ServiceProcess) -> None:
        port_file = self.run_dir / f"{service.name}.port"
        deadline = time.monotonic() + self.start_timeout_s
        while not port_file.exists():
            if service.process.poll() is not None:
                raise LaunchError(
                    f"{service.name} exited with status {service.process.returncode} while starting:\n"
                    f"{_log_tail(service.log_path)}"
                )
            if time.monotonic() > deadline:
                raise LaunchError(f"{service.name} did not start within {self.start_timeout_s:.0f} s")
            await asyncio.sleep(0.05)
        service.port = int(port_file.read_text())
        if service.name in HTTP_SERVICES:
            await wait_http_ready(f"http://{service.address}/healthz", self.start_timeout_s)
        else:
            await wait_serving(service.address, self.start_timeout_s)

    async def start(self, only: tuple[str, ...] | None = None) -> None:
        """Start the services (all, or `only` those) in dependency order and wait until each serves."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        pending = [name for name in TOPOLOGY if only is None or name in only]
        try:
            while pending:
                ready = [name for name in pending if all(dep in self.processes for dep in TOPOLOGY[name])]
                if not ready:
                    raise LaunchError(
                        f"cannot start {', '.join(pending)}: their dependencies are not running"
                    )
                started = [self._spawn(name) for name in ready]
                for service in started:
                    self.processes[service.name] = service
                await asyncio.gather(*(self._await_port(service) for service in started))
                pending = [name for name in pending if name not in ready]
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_s: float = 15.0) -> dict[str, int | None]:
        """Send SIGTERM to every service, callers first; kill those still running after `timeout_s`."""
        for name in reversed(list(self.processes)):
            process = self.processes[name].process
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for service in self.processes.values():
            try:
                service.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s; killing it", service.name, timeout_s)
                service.process.kill()
                service.process.wait()
        return {name: service.process.returncode for name, service in self.processes.items()}

    def kill(self, name: str) -> None:
        """Kill one service with SIGKILL, as a crash would, and wait for it to exit."""
        process = self.processes[name].process
        process.kill()
        process.wait(timeout=10)

    def terminate(self, name: str) -> None:
        """Send SIGTERM to one service without waiting: it drains, then exits."""
        self.processes[name].process.send_signal(signal.SIGTERM)

    async def restart(self, name: str) -> None:
        """Start a stopped service again on the same port, so its callers reconnect to it."""
        previous = self.processes[name]
        if previous.process.poll() is None:
            raise LaunchError(f"{name} is still running; stop it before restarting")
        service = self._spawn(name, port=previous.port)
        self.processes[name] = service
        await self._await_port(service)

    def exited(self) -> dict[str, int]:
        """Return the services that have exited, with their exit status."""
        return {
            name: code
            for name, service in self.processes.items()
            if (code := service.process.poll()) is not None
        }
