"""The grpc-web bridge: HTTP/1.1 grpc-web calls from browsers become native gRPC calls.

The bridge reads each POST to /<service>/<method> of a routed service as one
grpc-web request frame (binary or base64 text) and sends it to the service's
channel as a generic gRPC call with raw bytes. The HTTP response carries the
response messages as frames, then a trailer frame with grpc-status,
grpc-message and the trailing metadata. A call that fails before its first
message gets a trailers-only response: the status is in the HTTP headers and
in a trailer frame. Server-streamed messages are written to the browser one
frame at a time as they arrive.

Every call gets a SERVER span whose parent is the browser's traceparent. The
gRPC call carries that span's context, so the services' spans are its children.
The bridge also serves the built web player at / and /config.json.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import descriptor as proto_descriptor
from multidict import CIMultiDict
from opentelemetry import propagate, trace

from backbeat.edge.v1 import edge_service_pb2
from backbeat.gateway.v1 import gateway_service_pb2
from mesh.tracing import outgoing_metadata
from services.webbridge.framing import (
    FramingError,
    WireFormat,
    decode_frames,
    decode_text,
    encode_frame,
    encode_text,
    encode_trailers,
    metadata_value,
    parse_timeout,
    status_trailers,
    wire_format,
)

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

SERVICE = "webbridge"
GATEWAY_SERVICE = gateway_service_pb2.DESCRIPTOR.services_by_name["GatewayService"]
EDGE_SERVICE = edge_service_pb2.DESCRIPTOR.services_by_name["EdgeService"]

# Request headers a cross-origin page may send, as listed in CORS preflight responses.
ALLOWED_REQUEST_HEADERS = (
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "authorization",
    "traceparent",
    "tracestate",
)
# Response headers a cross-origin page may always read, besides the response's own metadata.
STATUS_HEADERS = ("grpc-status", "grpc-message", "grpc-status-details-bin")

# Request headers that belong to the HTTP/1.1 connection, the browser or the
# grpc-web encoding, and so are not passed on as gRPC metadata. The trace
# context headers are replaced by the bridge's own span context.
_NOT_FORWARDED = frozenset(
    {
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "baggage",
        "cache-control",
        "connection",
        "content-length",
        "content-type",
        "cookie",
        "dnt",
        "expect",
        "host",
        "keep-alive",
        "origin",
        "pragma",
        "priority",
        "referer",
        "te",
        "trailer",
        "traceparent",
        "tracestate",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "via",
        "x-grpc-web",
        "x-user-agent",
    }
)
_NOT_FORWARDED_PREFIXES = ("sec-", "proxy-", "access-control-", "grpc-", ":")
_METADATA_KEY = re.compile(r"[0-9a-z_.\-]+")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
# Codes that mean the call failed on the server side, so the span is marked as an error.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.CANCELLED,
    }
)

Metadata = Sequence[tuple[str, str | bytes]]


class CallRejected(Exception):
    """A request that the bridge rejects with a gRPC status before calling a service."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Route:
    """A method the bridge forwards and how its responses arrive."""

    path: str
    service: str
    method: str
    server_streaming: bool


def routes_of(services: Iterable[proto_descriptor.ServiceDescriptor]) -> dict[str, Route]:
    """Return the unary and server-streaming methods of `services` by request path."""
    found = {}
    for service in services:
        for method in service.methods:
            if method.client_streaming:
                continue
            path = f"/{service.full_name}/{method.name}"
            found[path] = Route(path, service.full_name, method.name, method.server_streaming)
    return found


def forwarded_metadata(headers: Mapping[str, str]) -> list[tuple[str, str | bytes]]:
    """Return the request headers that become gRPC metadata, with -bin values base64-decoded."""
    connection_tokens = {
        token.strip().lower() for token in headers.get("connection", "").split(",") if token.strip()
    }
    metadata: list[tuple[str, str | bytes]] = []
    for name, value in headers.items():
        key = name.lower()
        if key in _NOT_FORWARDED or key in connection_tokens or key.startswith(_NOT_FORWARDED_PREFIXES):
            continue
        if not _METADATA_KEY.fullmatch(key):
            raise CallRejected(
                grpc.StatusCode.INVALID_ARGUMENT, f"header {name!r} is not a valid metadata key"
            )
        if key.endswith("-bin"):
            try:
                metadata.append((key, base64.b64decode(value + "=" * (-len(value) % 4), validate=True)))
            except binascii.Error:
                raise CallRejected(
                    grpc.StatusCode.INVALID_ARGUMENT, f"header {name!r} is not valid base64"
                ) from None
        elif _PRINTABLE_ASCII.fullmatch(value):
            metadata.append((key, value))
        else:
            raise CallRejected(
                grpc.StatusCode.INVALID_ARGUMENT, f"header {name!r} has characters gRPC metadata cannot carry"
            )
    return metadata


class CorsPolicy:
    """The origins, besides the bridge's own, whose pages may call the bridge."""

    def __init__(self, origins: Iterable[str]) -> None:
        normalized = {origin.strip().rstrip("/").lower() for origin in origins if origin.strip()}
        self.any_origin = "*" in normalized
        self.origins = frozenset(normalized - {"*"})

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin.rstrip("/").lower() in self.origins


def _same_origin(request: web.BaseRequest, origin: str) -> bool:
    return origin.rstrip("/").lower() == f"{request.scheme}://{request.host}".lower()


def _status_number(code: grpc.StatusCode) -> int:
    number: int = code.value[0]
    return number


def _finish_call(span: trace.Span, route: Route, code: grpc.StatusCode, details: str, messages: int) -> None:
    """Record the outcome of a forwarded call on its span, and log server-side failures."""
    span.set_attribute("rpc.grpc.status_code", _status_number(code))
    span.set_attribute("backbeat.messages_sent", messages)
    if code in _SERVER_ERRORS:
        span.set_status(trace.StatusCode.ERROR, code.name)
    if code is grpc.StatusCode.CANCELLED:
        logger.info("%s cancelled after %d messages: %s", route.path, messages, details)
    elif code in _SERVER_ERRORS:
        logger.warning("%s failed after %d messages: %s %s", route.path, messages, code.name, details)
    elif code is not grpc.StatusCode.OK:
        logger.debug("%s returned %s %s", route.path, code.name, details)


class GrpcWebBridge:
    """The HTTP application: grpc-web calls, CORS, the web player's files, /config.json and /healthz."""

    def __init__(
        self,
        channels: Mapping[str, grpc.aio.Channel],
        *,
        cors_origins: Iterable[str] = (),
        jaeger_ui_url: str = "http://localhost:16686",
        static_dir: Path | None = None,
        services: Sequence[proto_descriptor.ServiceDescriptor] = (GATEWAY_SERVICE, EDGE_SERVICE),
    ) -> None:
        self._channels = dict(channels)
        self._services = [service for service in services if service.full_name in self._channels]
        self._routes = routes_of(self._services)
        self._cors = CorsPolicy(cors_origins)
        self._config = {"jaegerUiUrl": jaeger_ui_url.rstrip("/")}
        self._static_dir = static_dir

    def application(self, client_max_size: int = 1024 * 1024) -> web.Application:
        """Build the aiohttp application."""
        app = web.Application(client_max_size=client_max_size)
        for service in self._services:
            app.router.add_post(f"/{service.full_name}/{{method}}", self.call)
            app.router.add_route("OPTIONS", f"/{service.full_name}/{{method}}", self.preflight)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/config.json", self.config)
        app.router.add_get("/", self.index)
        app.router.add_get("/{path:.+}", self.static)
        return app

    def runner(self, *, client_max_size: int = 1024 * 1024, drain_s: float = 5.0) -> web.AppRunner:
        """Return a runner for the application. A browser that disconnects cancels its handler,
        which cancels the gRPC call it is waiting on."""
        return web.AppRunner(
            self.application(client_max_size),
            access_log=None,
            shutdown_timeout=drain_s,
            handler_cancellation=True,
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response(self._config, headers={"Cache-Control": "no-store"})

    async def index(self, request: web.Request) -> web.StreamResponse:
        index = self._static_dir / "index.html" if self._static_dir is not None else None
        if index is None or not index.is_file():
            return web.Response(status=404, text="the web player is not built: run scripts/install_web.sh\n")
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    async def static(self, request: web.Request) -> web.StreamResponse:
        """Serve a file of the built web player. Paths that resolve outside its folder are not found."""
        if self._static_dir is None:
            raise web.HTTPNotFound()
        root = self._static_dir.resolve()
        target = (root / request.match_info["path"]).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(target)

    async def preflight(self, request: web.Request) -> web.Response:
        """Return the response to a CORS preflight for a grpc-web call."""
        origin = request.headers.get("Origin")
        requested_method = request.headers.get("Access-Control-Request-Method", "")
        if origin is None or not requested_method:
            return web.Response(status=204, headers={"Allow": "POST, OPTIONS"})
        if not (self._cors.allows(origin) or _same_origin(request, origin)) or requested_method != "POST":
            logger.info(
                "rejected CORS preflight of %s %s from origin %s", requested_method, request.path, origin
            )
            return web.Response(status=403, text="origin or method not allowed\n")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": ", ".join(ALLOWED_REQUEST_HEADERS),
                "Access-Control-Max-Age": "600",
                "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            },
        )

    async def call(self, request: web.Request) -> web.StreamResponse:
        """Forward one grpc-web call and write its response in the request's wire format."""
        origin = request.headers.get("Origin")
        cross_origin = origin is not None and not _same_origin(request, origin)
        if origin is not None and cross_origin and not self._cors.allows(origin):
            logger.info("rejected POST %s from origin %s: not in BACKBEAT_CORS_ORIGINS", request.path, origin)
            return web.Response(status=403, text="origin not allowed\n")
        wire = wire_format(request.headers.get("Content-Type"))
        if wire is None:
            logger.info(
                "rejected POST %s: Content-Type %s", request.path, request.headers.get("Content-Type")
            )
            return web.Response(
                status=415,
                text="expected Content-Type application/grpc-web or application/grpc-web-text\n",
            )
        reply = _Reply(request, wire, origin if cross_origin else None)

        route = self._routes.get(request.path)
        if route is None:
            logger.info("rejected POST %s: no such method", request.path)
            return reply.trailers_only(grpc.StatusCode.UNIMPLEMENTED, f"unknown method {request.path}")
        try:
            message, timeout_s, metadata = await self._read_request(request, wire)
        except CallRejected as rejected:
            logger.info("rejected POST %s: %s %s", request.path, rejected.code.name, rejected.message)
            return reply.trailers_only(rejected.code, rejected.message)

        parent = propagate.extract({key.lower(): value for key, value in request.headers.items()})
        span = tracer.start_span(
            route.path.lstrip("/"),
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": route.service,
                "rpc.method": route.method,
                "backbeat.service": SERVICE,
                "backbeat.grpc_web.format": wire.value,
            },
        )
        if timeout_s is not None:
            span.set_attribute("backbeat.grpc_web.timeout_s", timeout_s)
        # Without a recording tracer the span is invalid, so the browser's context passes through as is.
        call_context = trace.set_span_in_context(span, parent) if span.get_span_context().is_valid else parent
        outgoing = outgoing_metadata(call_context, extra=metadata)
        channel = self._channels[route.service]
        try:
            with trace.use_span(span, end_on_exit=False):
                if route.server_streaming:
                    return await self._server_stream(
                        channel, route, message, outgoing, timeout_s, reply, span
                    )
                return await self._unary(channel, route, message, outgoing, timeout_s, reply, span)
        finally:
            span.end()

    async def _read_request(
        self, request: web.Request, wire: WireFormat
    ) -> tuple[bytes, float | None, list[tuple[str, str | bytes]]]:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise CallRejected(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request body larger than {request.client_max_size} bytes",
            ) from None
        try:
            frames = decode_frames(decode_text(body) if wire is WireFormat.TEXT else body)
            timeout_header = request.headers.get("grpc-timeout")
            timeout_s = parse_timeout(timeout_header) if timeout_header is not None else None
        except FramingError as error:
            raise CallRejected(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        messages = [frame for frame in frames if not frame.is_trailer]
        if len(messages) != 1 or len(frames) != 1:
            raise CallRejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"expected one request message frame, got {len(messages)} messages in {len(frames)} frames",
            )
        if messages[0].is_compressed:
            raise CallRejected(grpc.StatusCode.UNIMPLEMENTED, "compressed request messages are not supported")
        return messages[0].payload, timeout_s, forwarded_metadata(request.headers)

    async def _unary(
        self,
        channel: grpc.aio.Channel,
        route: Route,
        message: bytes,
        metadata: Metadata,
        timeout_s: float | None,
        reply: _Reply,
        span: trace.Span,
    ) -> web.StreamResponse:
        method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(route.path)
        call = method(message, metadata=metadata, timeout=timeout_s)
        try:
            response: bytes = await call
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the browser closes the connection, which cancels the call.
            _finish_call(span, route, grpc.StatusCode.CANCELLED, "browser closed the connection", 0)
            raise
        except grpc.aio.AioRpcError as error:
            _finish_call(span, route, error.code(), error.details() or "", 0)
            return reply.trailers_only(
                error.code(), error.details() or "", error.initial_metadata(), error.trailing_metadata()
            )
        code = await call.code()
        details = await call.details() or ""
        trailers = status_trailers(_status_number(code), details, list(await call.trailing_metadata() or ()))
        _finish_call(span, route, code, details, 1)
        return reply.whole(list(await call.initial_metadata() or ()), response, trailers)

    async def _server_stream(
        self,
        channel: grpc.aio.Channel,
        route: Route,
        message: bytes,
        metadata: Metadata,
        timeout_s: float | None,
        reply: _Reply,
        span: trace.Span,
    ) -> web.StreamResponse:
        method: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(route.path)
        call = method(message, metadata=metadata, timeout=timeout_s)
        try:
            first = await call.read()
        except grpc.aio.AioRpcError as error:
            _finish_call(span, route, error.code(), error.details() or "", 0)
            return reply.trailers_only(
                error.code(), error.details() or "", error.initial_metadata(), error.trailing_metadata()
            )
        response = await reply.start_stream(list(await call.initial_metadata() or ()))
        sent = 0
        try:
            next_message: Any = first
            while next_message is not grpc.aio.EOF:
                await reply.write(response, encode_frame(next_message))
                sent += 1
                next_message = await call.read()
            code = await call.code()
            details = await call.details() or ""
            trailing = list(await call.trailing_metadata() or ())
        except grpc.aio.AioRpcError as error:
            code = error.code()
            details = error.details() or ""
            trailing = list(error.trailing_metadata())
        except (ConnectionError, asyncio.CancelledError) as error:
            # The browser closed the connection: a failed write raises ConnectionError, and
            # aiohttp cancels the handler when the connection closes while it waits.
            call.cancel()
            _finish_call(span, route, grpc.StatusCode.CANCELLED, "browser closed the connection", sent)
            if isinstance(error, asyncio.CancelledError):
                raise
            return response
        trailers = status_trailers(_status_number(code), details, trailing)
        _finish_call(span, route, code, details, sent)
        await reply.write(response, encode_trailers(trailers))
        await response.write_eof()
        return response


class _Reply:
    """Writes the HTTP response of one grpc-web call in its wire format, with CORS headers."""

    def __init__(self, request: web.Request, wire: WireFormat, cors_origin: str | None) -> None:
        self._request = request
        self._wire = wire
        self._cors_origin = cors_origin

    def _headers(self, metadata: Metadata) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        headers["Content-Type"] = self._wire.response_content_type
        headers["Cache-Control"] = "no-store"
        names = list(STATUS_HEADERS)
        for key, value in metadata:
            headers.add(key, metadata_value(key, value))
            if key not in names:
                names.append(key)
        if self._cors_origin is not None:
            headers["Access-Control-Allow-Origin"] = self._cors_origin
            headers["Access-Control-Expose-Headers"] = ", ".join(names)
            headers["Vary"] = "Origin"
        return headers

    def _body(self, data: bytes) -> bytes:
        return encode_text(data) if self._wire is WireFormat.TEXT else data

    def trailers_only(
        self,
        code: grpc.StatusCode,
        message: str,
        initial_metadata: Iterable[tuple[str, str | bytes]] | None = None,
        trailing_metadata: Iterable[tuple[str, str | bytes]] | None = None,
    ) -> web.Response:
        """Return a trailers-only response: the status in the headers and in a trailer frame."""
        trailers = status_trailers(_status_number(code), message, list(trailing_metadata or ()))
        headers = self._headers([*(initial_metadata or ()), *trailers])
        return web.Response(status=200, headers=headers, body=self._body(encode_trailers(trailers)))

    def whole(self, initial_metadata: Metadata, message: bytes, trailers: Metadata) -> web.Response:
        """Return the response to a unary call: its message frame and trailer frame in one body."""
        body = self._body(encode_frame(message) + encode_trailers(trailers))
        return web.Response(status=200, headers=self._headers(initial_metadata), body=body)

    async def start_stream(self, initial_metadata: Metadata) -> web.StreamResponse:
        """Send the headers of a streamed response."""
        response = web.StreamResponse(status=200, headers=self._headers(initial_metadata))
        await response.prepare(self._request)
        return response

    async def write(self, response: web.StreamResponse, frame: bytes) -> None:
        """Send one frame to the browser now."""
        await response.write(self._body(frame))
