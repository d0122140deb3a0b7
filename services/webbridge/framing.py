"""grpc-web wire format: message frames, the trailer frame, base64 text mode and header values.

A grpc-web body is a sequence of frames. Each frame is one flag byte, a 4-byte
big-endian length and that many payload bytes. Flag 0x00 marks a message,
0x80 the trailer frame (HTTP/1-style "name: value" lines), and bit 0x01 a
compressed payload. In text mode (application/grpc-web-text) the body is
base64; each sender write is encoded on its own, so a body can be several
padded base64 runs back to back, and a decoder reads it 4 characters at a time.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DATA_FLAG = 0x00
COMPRESSED_FLAG = 0x01
TRAILER_FLAG = 0x80
HEADER_SIZE = 5
MAX_FRAME_BYTES = 8 * 1024 * 1024

_HEADER = struct.Struct(">BI")
_TIMEOUT = re.compile(r"([0-9]{1,8})([HMSmun])")
_TIMEOUT_UNITS_S = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_BASE64_ALPHABET = re.compile(rb"[A-Za-z0-9+/=]*")

MetadataItems = Iterable[tuple[str, str | bytes]]


class FramingError(ValueError):
    """Raised for a body, header or timeout that does not follow the grpc-web wire format."""


class WireFormat(enum.Enum):
    """Encoding of a grpc-web body: raw bytes or base64 text."""

    BINARY = "binary"
    TEXT = "text"

    @property
    def response_content_type(self) -> str:
        """Content-Type of responses in this format."""
        return (
            "application/grpc-web+proto" if self is WireFormat.BINARY else "application/grpc-web-text+proto"
        )


def wire_format(content_type: str | None) -> WireFormat | None:
    """Return the format of a request Content-Type, or None when it is not protobuf grpc-web."""
    if not content_type:
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in ("application/grpc-web", "application/grpc-web+proto"):
        return WireFormat.BINARY
    if media_type in ("application/grpc-web-text", "application/grpc-web-text+proto"):
        return WireFormat.TEXT
    return None


@dataclass(frozen=True)
class Frame:
    """One grpc-web frame."""

    flags: int
    payload: bytes

    @property
    def is_trailer(self) -> bool:
        return bool(self.flags & TRAILER_FLAG)

    @property
    def is_compressed(self) -> bool:
        return bool(self.flags & COMPRESSED_FLAG)


def encode_frame(payload: bytes, flags: int = DATA_FLAG) -> bytes:
    """Return `payload` as one frame with `flags`."""
    if len(payload) > 0xFFFFFFFF:
        raise FramingError(f"frame payload of {len(payload)} bytes exceeds the 4-byte length field")
    return _HEADER.pack(flags, len(payload)) + payload


def metadata_value(key: str, value: str | bytes) -> str:
    """Return a metadata value as an HTTP header value: base64 for -bin keys, text otherwise."""
    if key.endswith("-bin"):
        raw = value if isinstance(value, bytes) else value.encode()
        return base64.b64encode(raw).decode("ascii")
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if "\r" in text or "\n" in text:
        raise FramingError(f"value of {key!r} contains a line break")
    return text


def encode_trailers(trailers: MetadataItems) -> bytes:
    """Return the trailer frame carrying `trailers` as lower-case "name: value" lines."""
    lines = []
    for key, value in trailers:
        name = key.lower()
        if not name or ":" in name or any(c in name for c in " \r\n"):
            raise FramingError(f"invalid trailer name {key!r}")
        lines.append(f"{name}: {metadata_value(name, value)}\r\n")
    return encode_frame("".join(lines).encode("utf-8"), TRAILER_FLAG)


def parse_trailers(payload: bytes) -> list[tuple[str, str]]:
    """Return the (name, value) pairs of a trailer frame payload, names lower-cased."""
    pairs = []
    for line in payload.decode("utf-8").split("\r\n"):
        if not line:
            continue
        name, separator, value = line.partition(":")
        if not separator or not name.strip():
            raise FramingError(f"trailer line without a name: {line!r}")
        pairs.append((name.strip().lower(), value.strip()))
    return pairs


class FrameDecoder:
    """Incremental decoder of grpc-web frames. Bytes of an incomplete frame wait for the next feed()."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_frame_bytes

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Add `data` and return every frame it completes."""
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER_SIZE:
            flags, length = _HEADER.unpack_from(self._buffer)
            if length > self._max:
                raise FramingError(f"frame of {length} bytes exceeds the limit of {self._max}")
            end = HEADER_SIZE + length
            if len(self._buffer) < end:
                break
            frames.append(Frame(flags, bytes(self._buffer[HEADER_SIZE:end])))
            del self._buffer[:end]
        return frames

    def close(self) -> None:
        """Check that the stream ended on a frame boundary."""
        if self._buffer:
            raise FramingError(f"body ends inside a frame: {len(self._buffer)} bytes left over")


def decode_frames(body: bytes, max_frame_bytes: int = MAX_FRAME_BYTES) -> list[Frame]:
    """Return the frames of a whole body. An incomplete last frame raises FramingError."""
    decoder = FrameDecoder(max_frame_bytes)
    frames = decoder.feed(body)
    decoder.close()
    return frames


class TextDecoder:
    """Decodes grpc-web-text: base64 runs, each possibly padded, read in 4-character groups."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        """Add base64 text and return the bytes of every complete 4-character group."""
        text = self._pending + b"".join(data.split())
        if not _BASE64_ALPHABET.fullmatch(text):
            raise FramingError("grpc-web-text body has characters outside the base64 alphabet")
        whole = len(text) - len(text) % 4
        self._pending = text[whole:]
        decoded = bytearray()
        for start in range(0, whole, 4):
            group = text[start : start + 4]
            if b"=" in group.rstrip(b"="):
                raise FramingError("grpc-web-text body has padding inside a base64 group")
            try:
                decoded += base64.b64decode(group, validate=True)
            except binascii.Error as error:
                raise FramingError(f"grpc-web-text body is not valid base64: {error}") from None
        return bytes(decoded)

    def close(self) -> None:
        """Check that the text ended on a whole base64 group."""
        if self._pending:
            raise FramingError("grpc-web-text body ends inside a base64 group")


def decode_text(body: bytes) -> bytes:
    """Return the bytes of a whole grpc-web-text body."""
    decoder = TextDecoder()
    decoded = decoder.feed(body)
    decoder.close()
    return decoded


def encode_text(data: bytes) -> bytes:
    """Return `data` as one padded base64 run, as a grpc-web-text sender writes it."""
    return base64.b64encode(data)


def parse_timeout(value: str) -> float:
    """Return a grpc-timeout header value ("250m", "5S", up to 8 digits and a unit) in seconds."""
    match = _TIMEOUT.fullmatch(value.strip())
    if match is None:
        raise FramingError(f"invalid grpc-timeout {value!r}: expected up to 8 digits and one of H M S m u n")
    return int(match.group(1)) * _TIMEOUT_UNITS_S[match.group(2)]


def encode_grpc_message(message: str) -> str:
    """Percent-encode a status message for the grpc-message header: bytes outside 0x20-0x7E and '%'."""
    return "".join(
        chr(byte) if 0x20 <= byte <= 0x7E and byte != 0x25 else f"%{byte:02X}"
        for byte in message.encode("utf-8")
    )


def decode_grpc_message(value: str) -> str:
    """Reverse encode_grpc_message(). A '%' not followed by two hex digits stays as it is."""
    raw = value.encode("ascii", errors="replace")
    out = bytearray()
    index = 0
    while index < len(raw):
        if raw[index] == 0x25 and _is_hex(raw[index + 1 : index + 3]):
            out.append(int(raw[index + 1 : index + 3], 16))
            index += 3
        else:
            out.append(raw[index])
            index += 1
    return out.decode("utf-8", errors="replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(chr(c) in "0123456789abcdefABCDEF" for c in pair)


def status_trailers(
    code: int, message: str, metadata: Sequence[tuple[str, str | bytes]] = ()
) -> list[tuple[str, str | bytes]]:
    """Return the trailers of a finished call: grpc-status, grpc-message when set, then `metadata`."""
    trailers: list[tuple[str, str | bytes]] = [("grpc-status", str(code))]
    if message:
        trailers.append(("grpc-message", encode_grpc_message(message)))
    trailers += [(key, value) for key, value in metadata if key not in ("grpc-status", "grpc-message")]
    return trailers
