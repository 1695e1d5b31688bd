"""The WebSocket codec: RFC 6455 vectors, round trips, any chunking, strict refusals."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amop_trio._errors import FrameTooLargeError, WireError
from amop_trio._wire import rfc6455 as ws


def decode_all(data: bytes, *, masked: bool, chunks: list[int] | None = None) -> list[ws.WsEvent]:
    decoder = ws.FrameDecoder(masked=masked, max_message=1 << 20)
    events = []
    cuts = sorted(set(chunks or []))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    for piece in pieces:
        decoder.feed(piece)
        while (event := decoder.next_event()) is not None:
            events.append(event)
    return events


def test_accept_key_is_the_rfc_6455_example() -> None:
    assert ws.accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_rfc_6455_example_frames() -> None:
    # Section 5.7: an unmasked "Hello" from a server, and the same masked from a client.
    assert decode_all(bytes.fromhex("810548656c6c6f"), masked=False) == [ws.WsEvent(0x1, b"Hello")]
    masked = bytes.fromhex("818537fa213d7f9f4d5158")
    assert decode_all(masked, masked=True) == [ws.WsEvent(0x1, b"Hello")]
    fragmented = bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")
    assert decode_all(fragmented, masked=False) == [ws.WsEvent(0x1, b"Hello")]


def test_upgrade_request_and_answer_agree() -> None:
    request, key = ws.client_request("127.0.0.1:20200", "/")
    head, rest = ws.split_head(request + b"extra", "request") or (b"", b"")
    assert rest == b"extra"
    answer = ws.answer_request(head)
    ws.check_answer(answer[:-4], key)
    with pytest.raises(WireError, match="prove"):
        ws.check_answer(answer[:-4], b"another key")
    with pytest.raises(WireError):
        ws.answer_request(b"POST / HTTP/1.1\r\nHost: x")
    with pytest.raises(WireError):
        ws.split_head(b"x" * (ws.MAX_HEAD_SIZE + 1), "request")


@settings(max_examples=150, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=70000), min_size=1, max_size=4),
    masked=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=300000), max_size=8),
)
def test_round_trip_under_any_chunking(
    payloads: list[bytes], masked: bool, cuts: list[int]
) -> None:
    data = b"".join(ws.encode_frame(ws.BINARY, p, mask=masked) for p in payloads)
    cuts = [c for c in cuts if c < len(data)]
    assert decode_all(data, masked=masked, chunks=cuts) == [
        ws.WsEvent(ws.BINARY, p) for p in payloads
    ]


def test_control_frames_interleave_with_fragments() -> None:
    data = (
        bytes((0x02, 2))
        + b"ab"  # BINARY, not final
        + ws.encode_frame(ws.PING, b"p", mask=False)
        + bytes((0x80, 2))
        + b"cd"  # final CONTINUATION
        + ws.encode_close(1000, "bye", mask=False)
    )
    events = decode_all(data, masked=False)
    assert events[0] == ws.WsEvent(ws.PING, b"p")
    assert events[1] == ws.WsEvent(ws.BINARY, b"abcd")
    assert ws.close_code(events[2].payload) == (1000, "bye")
    assert ws.close_code(b"") == (1005, "")


@pytest.mark.parametrize(
    ("data", "masked", "message"),
    [
        (bytes((0xC2, 0)), False, "reserved"),
        (bytes((0x83, 0)), False, "opcode"),
        (bytes((0x82, 0)), True, "unmasked"),
        (bytes((0x82, 0x80)) + b"\0\0\0\0", False, "masked"),
        (bytes((0x89, 126)) + (200).to_bytes(2, "big"), False, "control"),
        (bytes((0x09, 0)), False, "control"),
        (bytes((0x80, 0)), False, "continuation"),
        (bytes((0x02, 0, 0x82, 0)), False, "started before"),
    ],
)
def test_protocol_violations_are_refused(data: bytes, masked: bool, message: str) -> None:
    with pytest.raises(WireError, match=message):
        decode_all(data, masked=masked)


def test_an_oversized_message_is_refused_from_its_header_alone() -> None:
    decoder = ws.FrameDecoder(masked=False, max_message=1000)
    decoder.feed(bytes((0x82, 127)) + (1 << 62).to_bytes(8, "big"))
    with pytest.raises(FrameTooLargeError):
        decoder.next_event()
    fragments = ws.FrameDecoder(masked=False, max_message=1000)
    fragments.feed(bytes((0x02, 126)) + (600).to_bytes(2, "big") + b"x" * 600)
    assert fragments.next_event() is None
    fragments.feed(bytes((0x80, 126)) + (600).to_bytes(2, "big"))
    with pytest.raises(FrameTooLargeError):
        fragments.next_event()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_random_bytes_only_ever_raise_wire_errors(data: bytes, masked: bool) -> None:
    with contextlib.suppress(WireError):
        decode_all(data, masked=masked)
