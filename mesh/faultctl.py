"""Client side of fault injection: parse `backbeat fault` arguments and call AdminService."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
from google.protobuf import descriptor_pool, duration_pb2

from backbeat.admin.v1 import admin_service_pb2 as pb
from backbeat.admin.v1 import admin_service_pb2_grpc as pb_grpc
from backbeat.edge.v1 import edge_service_pb2  # noqa: F401 (registers the service descriptors)
from backbeat.gateway.v1 import gateway_service_pb2  # noqa: F401
from backbeat.licensing.v1 import licensing_service_pb2  # noqa: F401
from backbeat.metadata.v1 import metadata_service_pb2  # noqa: F401
from backbeat.recommendation.v1 import recommendation_service_pb2  # noqa: F401
from backbeat.stream.v1 import stream_service_pb2  # noqa: F401
from backbeat.user.v1 import user_service_pb2  # noqa: F401

DURATION = re.compile(r"(?P<value>\d+(?:\.\d+)?)(?P<unit>ms|s)")
SERVICE_NAMES = {
    "gateway": "backbeat.gateway.v1.GatewayService",
    "user": "backbeat.user.v1.UserService",
    "metadata": "backbeat.metadata.v1.MetadataService",
    "licensing": "backbeat.licensing.v1.LicensingService",
    "recommendation": "backbeat.recommendation.v1.RecommendationService",
    "stream": "backbeat.stream.v1.StreamService",
    "edge": "backbeat.edge.v1.EdgeService",
}


class FaultSpecError(ValueError):
    """Raised for a fault argument that cannot be parsed; the message names it."""


def parse_duration(text: str, name: str) -> duration_pb2.Duration:
    """Parse "300ms" or "1.5s" into a Duration."""
    match = DURATION.fullmatch(text)
    if match is None:
        raise FaultSpecError(f"invalid {name} {text!r}: expected a number with ms or s, such as 300ms")
    seconds = float(match["value"]) / (1000 if match["unit"] == "ms" else 1)
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def full_method(service: str, method: str) -> str:
    """Expand a method name such as GetTrack to /backbeat.metadata.v1.MetadataService/GetTrack; "*" stays.

    Raises FaultSpecError for a method the service does not have.
    """
    if method in ("", "*"):
        return "*"
    name = method.rsplit("/", 1)[-1]
    known = [
        method.name for method in descriptor_pool.Default().FindServiceByName(SERVICE_NAMES[service]).methods
    ]
    if name not in known:
        raise FaultSpecError(f"unknown method {method!r} of {service}: expected one of {', '.join(known)}")
    return f"/{SERVICE_NAMES[service]}/{name}"


def parse_rule(service: str, method: str, settings: list[str]) -> pb.FaultRule:
    """Build a FaultRule from key=value settings: latency, jitter, error-rate and code."""
    rule = pb.FaultRule(method=full_method(service, method))
    for setting in settings:
        key, separator, value = setting.partition("=")
        if not separator:
            raise FaultSpecError(f"invalid setting {setting!r}: expected key=value")
        if key == "latency":
            rule.latency.CopyFrom(parse_duration(value, "latency"))
        elif key == "jitter":
            rule.jitter.CopyFrom(parse_duration(value, "jitter"))
        elif key == "error-rate":
            try:
                rate = float(value)
            except ValueError:
                rate = -1.0
            if not 0.0 <= rate <= 1.0:
                raise FaultSpecError(f"invalid error-rate {value!r}: expected a number from 0 to 1")
            rule.error_rate = rate
        elif key == "code":
            try:
                rule.error_code = grpc.StatusCode[value.upper()].value[0]
            except KeyError:
                raise FaultSpecError(
                    f"invalid code {value!r}: expected a gRPC status name such as UNAVAILABLE"
                ) from None
        else:
            raise FaultSpecError(f"unknown setting {key!r}: expected latency, jitter, error-rate or code")
    return rule


def service_address(service: str, run_dir: Path) -> str:
    """Return host:port of a service started by `backbeat up`, from its port file in `run_dir`."""
    if service not in SERVICE_NAMES:
        raise FaultSpecError(f"unknown service {service!r}: expected one of {', '.join(SERVICE_NAMES)}")
    port_file = run_dir / f"{service}.port"
    if not port_file.exists():
        raise FaultSpecError(f"{port_file} not found: is the mesh running (backbeat up --run-dir {run_dir})?")
    return f"127.0.0.1:{port_file.read_text().strip()}"


def describe(rule: pb.FaultRule) -> str:
    """Return one line describing a rule."""
    latency_ms = rule.latency.ToNanoseconds() / 1e6
    jitter_ms = rule.jitter.ToNanoseconds() / 1e6
    code = grpc.StatusCode.UNAVAILABLE.name
    for status in grpc.StatusCode:
        if status.value[0] == rule.error_code:
            code = status.name
    return (
        f"{rule.method}: latency {latency_ms:g} ms + up to {jitter_ms:g} ms, "
        f"errors {rule.error_rate:.0%} with {code}"
    )


async def call_admin(address: str, request: object) -> object:
    """Send one admin request to `address` and return the response."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.AdminServiceStub(channel)
        if isinstance(request, pb.SetFaultRequest):
            return await stub.SetFault(request, timeout=5)
        if isinstance(request, pb.ClearFaultsRequest):
            return await stub.ClearFaults(request, timeout=5)
        return await stub.ListFaults(pb.ListFaultsRequest(), timeout=5)
