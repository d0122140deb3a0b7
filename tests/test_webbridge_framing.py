"""The grpc-web wire format of the web bridge: frames, trailers, text mode, timeouts, status messages."""

from __future__ import annotations

import base64
import struct

import pytest

from services.webbridge.framing import (
    DATA_FLAG,
    TRAILER_FLAG,
    Frame,
    FrameDecoder,
    FramingError,
    TextDecoder,
    WireFormat,
    decode_frames,
    decode_grpc_message,
    decode_text,
    encode_frame,
    encode_grpc_message,
    encode_text,
    encode_trailers,
    metadata_value,
    parse_timeout,
    parse_trailers,
    status_trailers,
    wire_format,
)


def test_encode_frame_is_flag_length_payload() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert encode_frame(b"", TRAILER_FLAG) == b"\x80\x00\x00\x00\x00"


def test_decode_frames_reads_messages_and_trailer() -> None:
    body = encode_frame(b"one") + encode_frame(b"two") + encode_trailers([("grpc-status", "0")])

    frames = decode_frames(body)

    assert frames[:2] == [Frame(DATA_FLAG, b"one"), Frame(DATA_FLAG, b"two")]
    assert frames[2].is_trailer
    assert parse_trailers(frames[2].payload) == [("grpc-status", "0")]


def test_empty_message_frame_round_trips() -> None:
    assert decode_frames(encode_frame(b"")) == [Frame(DATA_FLAG, b"")]


def test_decoder_waits_for_the_rest_of_a_partial_frame() -> None:
    body = encode_frame(b"x" * 300) + encode_frame(b"tail")
    decoder = FrameDecoder()

    got = []
    for start in range(0, len(body), 7):
        got += decoder.feed(body[start : start + 7])
        assert decoder.pending < 7 + 305

    decoder.close()
    assert [frame.payload for frame in got] == [b"x" * 300, b"tail"]
    assert decoder.pending == 0


def test_decoder_splits_inside_the_header() -> None:
    decoder = FrameDecoder()
    frame = encode_frame(b"hello")

    assert decoder.feed(frame[:2]) == []
    assert decoder.feed(frame[2:5]) == []
    assert decoder.feed(frame[5:]) == [Frame(DATA_FLAG, b"hello")]


@pytest.mark.parametrize("cut", [1, 4, 5, 9])
def test_body_ending_inside_a_frame_is_an_error(cut: int) -> None:
    body = encode_frame(b"truncated")[:cut]

    with pytest.raises(FramingError, match="ends inside a frame"):
        decode_frames(body)


def test_frame_longer_than_the_limit_is_refused() -> None:
    header = struct.pack(">BI", DATA_FLAG, 10_000)

    with pytest.raises(FramingError, match="exceeds the limit"):
        FrameDecoder(max_frame_bytes=1024).feed(header)


def test_compressed_flag_is_reported() -> None:
    (frame,) = decode_frames(encode_frame(b"z", 0x01))

    assert frame.is_compressed
    assert not frame.is_trailer


def test_trailers_are_lower_case_lines_with_base64_binary_values() -> None:
    details = b"\x08\x10\x12\x03bad\xff"
    frame = encode_trailers(
        [
            ("grpc-status", "16"),
            ("Grpc-Message", "no"),
            ("grpc-status-details-bin", details),
            ("x-shard", "7"),
        ]
    )

    flags, length = struct.unpack(">BI", frame[:5])
    payload = frame[5:]

    assert flags == TRAILER_FLAG
    assert length == len(payload)
    assert payload.decode() == (
        "grpc-status: 16\r\n"
        "grpc-message: no\r\n"
        f"grpc-status-details-bin: {base64.b64encode(details).decode()}\r\n"
        "x-shard: 7\r\n"
    )


def test_trailer_value_with_a_line_break_is_refused() -> None:
    with pytest.raises(FramingError, match="line break"):
        encode_trailers([("x-note", "one\r\nx-evil: two")])


def test_trailer_with_invalid_name_is_refused() -> None:
    with pytest.raises(FramingError, match="invalid trailer name"):
        encode_trailers([("bad name", "v")])


def test_parse_trailers_trims_and_lowercases() -> None:
    assert parse_trailers(b"Grpc-Status:  0 \r\nx-a: b:c\r\n\r\n") == [("grpc-status", "0"), ("x-a", "b:c")]


def test_parse_trailers_refuses_a_line_without_colon() -> None:
    with pytest.raises(FramingError):
        parse_trailers(b"grpc-status 0\r\n")


def test_metadata_value_encodes_binary_keys() -> None:
    assert metadata_value("trace-bin", b"\x00\x01") == "AAE="
    assert metadata_value("x-plain", "text") == "text"


def test_text_mode_round_trip() -> None:
    body = encode_frame(b"message") + encode_trailers([("grpc-status", "0")])

    assert decode_text(encode_text(body)) == body


def test_text_mode_reads_several_padded_runs() -> None:
    # A streaming text response base64-encodes each frame on its own.
    first = encode_frame(b"ab")
    second = encode_frame(b"cde")
    trailer = encode_trailers([("grpc-status", "0")])
    body = encode_text(first) + encode_text(second) + encode_text(trailer)

    assert encode_text(first).endswith(b"==")
    assert encode_text(second).endswith(b"=")
    assert decode_frames(decode_text(body)) == decode_frames(first + second + trailer)


def test_text_decoder_keeps_partial_groups_between_feeds() -> None:
    text = encode_text(encode_frame(b"streamed text")) + encode_text(encode_frame(b"!"))
    decoder = TextDecoder()

    decoded = b"".join(decoder.feed(text[start : start + 3]) for start in range(0, len(text), 3))

    decoder.close()
    assert [frame.payload for frame in decode_frames(decoded)] == [b"streamed text", b"!"]


def test_text_mode_ignores_line_breaks() -> None:
    text = encode_text(encode_frame(b"wrapped"))

    assert decode_text(text[:4] + b"\r\n" + text[4:]) == encode_frame(b"wrapped")


@pytest.mark.parametrize(
    ("body", "match"),
    [(b"AAAA*AAA", "outside the base64 alphabet"), (b"AA=A", "padding inside"), (b"AAAAAA", "ends inside")],
)
def test_text_mode_rejects_bad_base64(body: bytes, match: str) -> None:
    with pytest.raises(FramingError, match=match):
        decode_text(body)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/grpc-web", WireFormat.BINARY),
        ("application/grpc-web+proto", WireFormat.BINARY),
        ("Application/GRPC-Web+Proto; charset=utf-8", WireFormat.BINARY),
        ("application/grpc-web-text", WireFormat.TEXT),
        ("application/grpc-web-text+proto", WireFormat.TEXT),
        ("application/grpc-web+json", None),
        ("application/grpc", None),
        ("application/json", None),
        ("", None),
        (None, None),
    ],
)
def test_wire_format_from_content_type(content_type: str | None, expected: WireFormat | None) -> None:
    assert wire_format(content_type) is expected


def test_response_content_types() -> None:
    assert WireFormat.BINARY.response_content_type == "application/grpc-web+proto"
    assert WireFormat.TEXT.response_content_type == "application/grpc-web-text+proto"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1H", 3600.0),
        ("2M", 120.0),
        ("5S", 5.0),
        ("250m", 0.25),
        ("1500u", 0.0015),
        ("99999999n", 0.099999999),
    ],
)
def test_parse_timeout(value: str, seconds: float) -> None:
    assert parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "5", "S", "123456789S", "1.5S", "-1S", "5s", "10 m"])
def test_parse_timeout_refuses_malformed_values(value: str) -> None:
    with pytest.raises(FramingError, match="invalid grpc-timeout"):
        parse_timeout(value)


def test_grpc_message_percent_encoding_round_trip() -> None:
    message = "track 'x' is not available in your market: 100% sure, Zürich ✓"

    encoded = encode_grpc_message(message)

    assert encoded.isascii()
    assert "%25" in encoded
    assert "%C3%BC" in encoded
    assert decode_grpc_message(encoded) == message


def test_decode_grpc_message_keeps_a_lone_percent() -> None:
    assert decode_grpc_message("50% off") == "50% off"


def test_status_trailers_put_status_first_and_skip_duplicates() -> None:
    trailers = status_trailers(5, "not found", [("grpc-status", "99"), ("x-shard", "3")])

    assert trailers == [("grpc-status", "5"), ("grpc-message", "not found"), ("x-shard", "3")]
    assert status_trailers(0, "") == [("grpc-status", "0")]
