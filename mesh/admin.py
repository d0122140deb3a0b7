"""AdminService: metrics and fault rules of the process it runs in."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import duration_pb2

from backbeat.admin.v1 import admin_service_pb2 as pb
from backbeat.admin.v1 import admin_service_pb2_grpc as pb_grpc
from mesh.errors import InvalidArgument
from mesh.faults import FaultRegistry, FaultRule
from mesh.metrics import exposition


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def rule_to_proto(rule: FaultRule) -> pb.FaultRule:
    """Convert a fault rule to its message."""
    return pb.FaultRule(
        method=rule.method,
        latency=_duration(rule.latency_s),
        jitter=_duration(rule.jitter_s),
        error_rate=rule.error_rate,
        error_code=rule.error_code.value[0],
    )


def rule_from_proto(message: pb.FaultRule) -> FaultRule:
    """Convert a fault rule message, raising InvalidArgument for an unknown status code."""
    codes = {code.value[0]: code for code in grpc.StatusCode}
    code = message.error_code or grpc.StatusCode.UNAVAILABLE.value[0]
    if code not in codes:
        raise InvalidArgument("rule.error_code", message.error_code, "a gRPC status code from 1 to 16")
    return FaultRule(
        method=message.method,
        latency_s=message.latency.ToNanoseconds() / 1e9,
        jitter_s=message.jitter.ToNanoseconds() / 1e9,
        error_rate=message.error_rate,
        error_code=codes[code],
    )


class AdminServicer(pb_grpc.AdminServiceServicer):
    """Serves the process's metrics and changes its fault rules."""

    def __init__(self, faults: FaultRegistry) -> None:
        self._faults = faults

    async def GetMetrics(
        self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetMetricsResponse:
        return pb.GetMetricsResponse(text=exposition())

    async def SetFault(
        self, request: pb.SetFaultRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SetFaultResponse:
        rules = self._faults.set(rule_from_proto(request.rule))
        return pb.SetFaultResponse(rules=[rule_to_proto(rule) for rule in rules])

    async def ClearFaults(
        self, request: pb.ClearFaultsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ClearFaultsResponse:
        return pb.ClearFaultsResponse(removed=self._faults.clear(request.method))

    async def ListFaults(
        self, request: pb.ListFaultsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListFaultsResponse:
        return pb.ListFaultsResponse(rules=[rule_to_proto(rule) for rule in self._faults.rules()])
