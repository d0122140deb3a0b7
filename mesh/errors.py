"""Domain errors and the one table that maps them to gRPC status codes.

Hierarchy:

    BackbeatError                 base; never raised itself
    +-- InvalidArgument           a request field is missing or malformed
    +-- NotFound                  a named entity does not exist
    +-- PermissionDenied          the caller may not do this (for example, unlicensed)
    +-- Unauthenticated           missing, bad, expired or revoked credentials
    +-- OutOfRange                an offset past the end of a resource
    +-- ResourceExhausted         a rate limit or quota was hit; carries retry_after_s
    +-- Unavailable               a dependency cannot serve now
    +-- DownstreamError           a downstream call failed with a gRPC status
    +-- DeadlineExceeded          the time left ran out before a step could start

Domain code raises these and never sees a gRPC context; the server error
interceptor turns them into a status with google.rpc details.
"""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2


class BackbeatError(Exception):
    """Base of every domain error; `code` is the gRPC status it maps to."""

    code = grpc.StatusCode.UNKNOWN

    def details(self) -> list[error_details_pb2.BadRequest | error_details_pb2.RetryInfo]:
        """Return the google.rpc detail messages a client can act on."""
        return []


class InvalidArgument(BackbeatError):
    """Raised when a request field is missing or malformed."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, value: object, expected: str) -> None:
        super().__init__(f"invalid {field}: got {value!r}, expected {expected}")
        self.field = field
        self.description = f"expected {expected}"

    def details(self) -> list[error_details_pb2.BadRequest | error_details_pb2.RetryInfo]:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=self.field, description=self.description
        )
        return [error_details_pb2.BadRequest(field_violations=[violation])]


class NotFound(BackbeatError):
    """Raised when a named entity does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class PermissionDenied(BackbeatError):
    """Raised when the caller may not do what it asked."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(BackbeatError):
    """Raised for missing, malformed, expired or revoked credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(BackbeatError):
    """Raised when a rate limit or quota is hit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def details(self) -> list[error_details_pb2.BadRequest | error_details_pb2.RetryInfo]:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(self.retry_after_s * 1e9))
        return [error_details_pb2.RetryInfo(retry_delay=delay)]


class OutOfRange(BackbeatError):
    """Raised for an offset or position past the end of a resource."""

    code = grpc.StatusCode.OUT_OF_RANGE


class Unavailable(BackbeatError):
    """Raised when a dependency cannot serve the request now."""

    code = grpc.StatusCode.UNAVAILABLE


class DownstreamError(BackbeatError):
    """Raised when a call to another service fails; keeps that call's status code."""

    def __init__(self, target: str, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{target}: {message}")
        self.target = target
        self.code = code
        self.message = message


def to_rpc_status(error: BackbeatError) -> status_pb2.Status:
    """Build the google.rpc.Status for a domain error, details included."""
    code = error.code.value[0]
    if isinstance(error, DownstreamError) and error.code in (
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    ):
        code = code_pb2.INTERNAL
    status = status_pb2.Status(code=code, message=str(error))
    for detail in error.details():
        status.details.add().Pack(detail)
    return status


class DeadlineExceeded(BackbeatError):
    """Raised when the time left for a request is spent before a step starts."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
