"""The WebSocket framing codec: RFC 6455 vectors, round trips, any chunking, one test per rule.

Every refusal is checked with the close code it carries (1002 protocol error,
1007 invalid payload, 1009 too big), as wsproto would answer it;
``test_wire_rfc6455_wsproto.py`` checks the same against wsproto itself.
"""

from __future__ import annotations

import contextlib
import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amop_trio._errors import EncodeError, FrameTooLargeError, WireError
from amop_trio._wire import rfc6455 as ws

KEY = b"\x37\xfa\x21\x3d"


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length_bytes: int | None = None,
    length: int | None = None,
) -> bytes:
    """One frame with any field forged: ``length_bytes`` 0, 2 or 8 picks the length's form."""
    size = len(payload) if length is None else length
    if length_bytes is None:
        length_bytes = 0 if size < 126 else 2 if size < 65536 else 8
    mask_bit = 0x80 if masked else 0
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    if length_bytes == 0:
        head += bytes([mask_bit | size])
    elif length_bytes == 2:
        head += bytes([mask_bit | 126]) + struct.pack(">H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack(">Q", size)
    if not masked:
        return head + payload
    return head + KEY + bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))


def decode_all(
    data: bytes, *, client: bool, chunks: list[int] | None = None, max_message: int = 1 << 20
) -> list[ws.WsEvent]:
    """Every event but ``FRAGMENT``, feeding ``data`` cut at ``chunks``."""
    decoder = ws.WsConnection(client=client, max_message=max_message)
    events = []
    cuts = sorted(set(chunks or []))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    for piece in pieces:
        decoder.feed(piece)
        while (event := decoder.next_event()) is not None:
            if event is not ws.FRAGMENT:
                events.append(event)
    return events


def refusal(data: bytes, *, client: bool = False, max_message: int = 1 << 20) -> ws.WebSocketError:
    with pytest.raises(ws.WebSocketError) as caught:
        decode_all(data, client=client, max_message=max_message)
    return caught.value


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack(">H", code) + reason


# -- what must decode ---------------------------------------------------------------------


def test_rfc_6455_example_frames() -> None:
    # Section 5.7: an unmasked "Hello" from a server, and the same masked from a client.
    hello = [ws.WsEvent(ws.TEXT, b"Hello")]
    assert decode_all(bytes.fromhex("810548656c6c6f"), client=True) == hello
    masked = bytes.fromhex("818537fa213d7f9f4d5158")
    assert decode_all(masked, client=False) == [ws.WsEvent(ws.TEXT, b"Hello")]
    fragmented = bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")
    assert decode_all(fragmented, client=True) == [ws.WsEvent(ws.TEXT, b"Hello")]
    ping = bytes.fromhex("890548656c6c6f")
    assert decode_all(ping, client=True) == [ws.WsEvent(ws.PING, b"Hello")]
    assert decode_all(bytes.fromhex("827e0100") + bytes(256), client=True) == [
        ws.WsEvent(ws.BINARY, bytes(256))
    ]
    long = bytes.fromhex("827f0000000000010000") + bytes(65536)
    assert decode_all(long, client=True) == [ws.WsEvent(ws.BINARY, bytes(65536))]


@settings(max_examples=150, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=70000), min_size=1, max_size=4),
    client=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=300000), max_size=8),
)
def test_round_trip_under_any_chunking(
    payloads: list[bytes], client: bool, cuts: list[int]
) -> None:
    data = b"".join(ws.encode_frame(ws.BINARY, p, mask=not client) for p in payloads)
    cuts = [c for c in cuts if c < len(data)]
    assert decode_all(data, client=client, chunks=cuts) == [
        ws.WsEvent(ws.BINARY, p) for p in payloads
    ]


def test_control_frames_interleave_with_fragments() -> None:
    data = (
        frame(ws.BINARY, b"ab", fin=False)
        + frame(ws.PING, b"p")
        + frame(ws.CONTINUATION, b"", fin=False)
        + frame(ws.PONG, b"")
        + frame(ws.CONTINUATION, b"cd")
        + frame(ws.CLOSE, close_payload(1000, b"bye"))
    )
    events = decode_all(data, client=False)
    assert events[:3] == [
        ws.WsEvent(ws.PING, b"p"),
        ws.WsEvent(ws.PONG, b""),
        ws.WsEvent(ws.BINARY, b"abcd"),
    ]
    assert ws.close_code(events[3].payload) == (1000, "bye")
    assert ws.close_code(b"") == (1005, "")


def test_each_fragment_is_handed_back_so_callers_can_count_the_work() -> None:
    decoder = ws.WsConnection(client=False, max_message=100)
    decoder.feed(frame(ws.BINARY, b"a", fin=False) + frame(ws.CONTINUATION, b"", fin=False) * 3)
    assert [decoder.next_event() for _ in range(5)] == [ws.FRAGMENT] * 4 + [None]
    decoder.feed(frame(ws.CONTINUATION, b"b"))
    assert decoder.next_event() == ws.WsEvent(ws.BINARY, b"ab")


def test_text_split_inside_a_character_decodes() -> None:
    text = "AMOP \u00e9\u4e2d\U0001f600".encode()
    for cut in range(1, len(text)):
        data = frame(ws.TEXT, text[:cut], fin=False) + frame(ws.CONTINUATION, text[cut:])
        assert decode_all(data, client=False) == [ws.WsEvent(ws.TEXT, text)]


@pytest.mark.parametrize("size", [126, 65535])
def test_shortest_16_bit_lengths_decode(size: int) -> None:
    assert decode_all(frame(ws.BINARY, bytes(size)), client=False) == [
        ws.WsEvent(ws.BINARY, bytes(size))
    ]


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 4999]
)
def test_close_codes_a_peer_may_send(code: int) -> None:
    events = decode_all(frame(ws.CLOSE, close_payload(code, "\u00e9".encode())), client=False)
    assert [ws.close_code(e.payload) for e in events] == [(code, "\u00e9")]


# -- one test per rule: what must be refused, and with which close code -------------------------


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes(opcode: int) -> None:
    error = refusal(frame(opcode, b"x"))
    assert error.close_code == ws.PROTOCOL_ERROR
    assert "opcode" in str(error)


@pytest.mark.parametrize("rsv", [1, 2, 4, 7])
@pytest.mark.parametrize("opcode", [ws.BINARY, ws.TEXT, ws.PING])
def test_reserved_bits_without_an_extension(rsv: int, opcode: int) -> None:
    error = refusal(frame(opcode, b"x", rsv=rsv))
    assert (error.close_code, "reserved bits" in str(error)) == (ws.PROTOCOL_ERROR, True)


@pytest.mark.parametrize("opcode", [ws.BINARY, ws.PING, ws.CLOSE])
def test_masking_direction(opcode: int) -> None:
    unmasked = refusal(frame(opcode, b"", masked=False), client=False)
    assert (unmasked.close_code, "unmasked" in str(unmasked)) == (ws.PROTOCOL_ERROR, True)
    masked = refusal(frame(opcode, b"", masked=True), client=True)
    assert (masked.close_code, "masked" in str(masked)) == (ws.PROTOCOL_ERROR, True)


@pytest.mark.parametrize("opcode", [ws.PING, ws.PONG, ws.CLOSE])
def test_control_frames_are_short_and_whole(opcode: int) -> None:
    payload = close_payload(1000, b"x" * 124) if opcode == ws.CLOSE else b"p" * 126
    assert refusal(frame(opcode, payload)).close_code == ws.PROTOCOL_ERROR
    # Refused from the 7-bit length alone: the 16-bit length never needs to arrive.
    assert refusal(bytes([0x80 | opcode, 0x80 | 126])).close_code == ws.PROTOCOL_ERROR
    # Even a short payload may not take an extended length on a control frame.
    assert refusal(frame(opcode, b"", length_bytes=2)).close_code == ws.PROTOCOL_ERROR
    fragmented = refusal(frame(opcode, b"", fin=False))
    assert (fragmented.close_code, "fragmented" in str(fragmented)) == (ws.PROTOCOL_ERROR, True)


@pytest.mark.parametrize(
    ("size", "length_bytes"), [(0, 2), (125, 2), (0, 8), (125, 8), (126, 8), (65535, 8)]
)
def test_lengths_must_take_their_shortest_form(size: int, length_bytes: int) -> None:
    error = refusal(frame(ws.BINARY, bytes(size), length_bytes=length_bytes))
    assert (error.close_code, "-bit length" in str(error)) == (ws.PROTOCOL_ERROR, True)


def test_64_bit_length_with_its_top_bit_set() -> None:
    data = frame(ws.BINARY, length=1 << 63, length_bytes=8)
    error = refusal(data, max_message=1 << 20)
    # A protocol error, not "too big": wsproto, with no size limit, says the same.
    assert (error.close_code, type(error)) == (ws.PROTOCOL_ERROR, ws.WebSocketError)


def test_continuations_out_of_place() -> None:
    assert refusal(frame(ws.CONTINUATION, b"abc")).close_code == ws.PROTOCOL_ERROR
    assert refusal(frame(ws.CONTINUATION, b"", fin=False)).close_code == ws.PROTOCOL_ERROR
    started = frame(ws.BINARY, b"a", fin=False)
    assert refusal(started + frame(ws.BINARY, b"b")).close_code == ws.PROTOCOL_ERROR
    assert refusal(started + frame(ws.TEXT, b"b")).close_code == ws.PROTOCOL_ERROR
    # A whole message resets: a continuation after it is out of place again.
    after = started + frame(ws.CONTINUATION, b"b") + frame(ws.CONTINUATION, b"c")
    assert "no message to continue" in str(refusal(after))


def test_close_with_a_1_byte_payload() -> None:
    error = refusal(frame(ws.CLOSE, b"\x03"))
    assert (error.close_code, "1-byte" in str(error)) == (ws.PROTOCOL_ERROR, True)


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_close_codes_a_peer_may_not_send(code: int) -> None:
    error = refusal(frame(ws.CLOSE, close_payload(code)))
    assert (error.close_code, str(code) in str(error)) == (ws.PROTOCOL_ERROR, True)


@pytest.mark.parametrize("reason", [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"ok\xe2\x82"])
def test_close_reasons_must_be_utf8(reason: bytes) -> None:
    assert refusal(frame(ws.CLOSE, close_payload(1000, reason))).close_code == ws.INVALID_PAYLOAD


@pytest.mark.parametrize(
    "text", [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xe2\x82"]
)
def test_text_messages_must_be_utf8(text: bytes) -> None:
    assert refusal(frame(ws.TEXT, text)).close_code == ws.INVALID_PAYLOAD
    fragmented = frame(ws.TEXT, b"ok", fin=False) + frame(ws.CONTINUATION, text)
    assert refusal(fragmented).close_code == ws.INVALID_PAYLOAD


def test_invalid_text_is_refused_before_its_message_ends() -> None:
    decoder = ws.WsConnection(client=False, max_message=1000)
    decoder.feed(frame(ws.TEXT, b"fine", fin=False) + frame(ws.CONTINUATION, b"\xff", fin=False))
    assert decoder.next_event() is ws.FRAGMENT
    with pytest.raises(ws.WebSocketError):
        decoder.next_event()
    # A character cut at the end of a fragment is not an error until the message ends.
    decoder = ws.WsConnection(client=False, max_message=1000)
    decoder.feed(frame(ws.TEXT, b"\xe4\xb8", fin=False))
    assert decoder.next_event() is ws.FRAGMENT
    decoder.feed(frame(ws.CONTINUATION, b""))
    assert refusal_of(decoder).close_code == ws.INVALID_PAYLOAD


def drain(decoder: ws.WsConnection) -> None:
    while decoder.next_event() is not None:
        pass


def refusal_of(decoder: ws.WsConnection) -> ws.WebSocketError:
    with pytest.raises(ws.WebSocketError) as caught:
        drain(decoder)
    return caught.value


def test_an_oversized_message_is_refused_from_its_header_alone() -> None:
    decoder = ws.WsConnection(client=True, max_message=1000)
    decoder.feed(bytes((0x82, 127)) + (1 << 62).to_bytes(8, "big"))
    error = refusal_of(decoder)
    assert isinstance(error, FrameTooLargeError)
    assert error.close_code == ws.MESSAGE_TOO_BIG
    fragments = ws.WsConnection(client=True, max_message=1000)
    fragments.feed(bytes((0x02, 126)) + (600).to_bytes(2, "big") + b"x" * 600)
    assert fragments.next_event() is ws.FRAGMENT
    fragments.feed(bytes((0x80, 126)) + (600).to_bytes(2, "big"))
    assert refusal_of(fragments).close_code == ws.MESSAGE_TOO_BIG
    # Exactly the limit is a message, fragmented or not.
    whole = frame(ws.BINARY, bytes(1000)) + frame(ws.BINARY, b"ab", fin=False)
    whole += frame(ws.CONTINUATION, bytes(998))
    assert decode_all(whole, client=False, max_message=1000) == [
        ws.WsEvent(ws.BINARY, bytes(1000)),
        ws.WsEvent(ws.BINARY, b"ab" + bytes(998)),
    ]
    assert refusal(frame(ws.BINARY, bytes(5)), max_message=4).close_code == ws.MESSAGE_TOO_BIG
    assert refusal(frame(ws.BINARY, bytes(200)), max_message=150).close_code == 1009


def test_a_message_may_come_in_at_most_max_fragments_frames() -> None:
    start = frame(ws.BINARY, b"a", fin=False)
    empty = frame(ws.CONTINUATION, b"", fin=False)
    last = frame(ws.CONTINUATION, b"z")
    most = start + empty * (ws.MAX_FRAGMENTS - 2) + last
    assert decode_all(most, client=False) == [ws.WsEvent(ws.BINARY, b"az")]
    error = refusal(start + empty * (ws.MAX_FRAGMENTS - 1) + last)
    assert (error.close_code, "more than" in str(error)) == (ws.MESSAGE_TOO_BIG, True)


def test_empty_fragments_cost_no_memory() -> None:
    decoder = ws.WsConnection(client=False, max_message=1 << 20)
    decoder.feed(frame(ws.BINARY, b"a", fin=False))
    assert decoder.next_event() is ws.FRAGMENT
    empty = frame(ws.CONTINUATION, b"", fin=False) * 1000
    tracemalloc.start()
    try:
        for _ in range(ws.MAX_FRAGMENTS // 1000 - 1):
            decoder.feed(empty)
            drain(decoder)
            used, _peak = tracemalloc.get_traced_memory()
            assert used < 16384
    finally:
        tracemalloc.stop()


def test_errors_are_wire_errors_and_stick() -> None:
    decoder = ws.WsConnection(client=False, max_message=100)
    decoder.feed(frame(ws.CONTINUATION, b"x") + frame(ws.BINARY, b"never decoded"))
    with pytest.raises(WireError) as first:
        decoder.next_event()
    assert decoder.failed
    decoder.feed(frame(ws.BINARY, b"dropped"))
    with pytest.raises(ws.WebSocketError) as again:
        decoder.next_event()
    assert again.value is first.value


# -- the closing handshake ------------------------------------------------------------------------


def state_of(decoder: ws.WsConnection) -> ws.ConnectionState:
    """The decoder's state, read afresh (a type checker would keep it narrowed)."""
    return decoder.state


def test_closing_first() -> None:
    decoder = ws.WsConnection(client=True, max_message=100)
    assert decoder.state is ws.ConnectionState.OPEN
    sent = decoder.close(1000, "bye")
    assert sent is not None
    assert decode_all(sent, client=False)[0].opcode == ws.CLOSE
    assert state_of(decoder) is ws.ConnectionState.LOCAL_CLOSING
    assert decoder.close(1000) is None
    # The peer's last messages still come, then its Close.
    decoder.feed(frame(ws.BINARY, b"late", masked=False))
    decoder.feed(frame(ws.CLOSE, close_payload(1000), masked=False))
    assert decoder.next_event() == ws.WsEvent(ws.BINARY, b"late")
    assert decoder.next_event() == ws.WsEvent(ws.CLOSE, close_payload(1000))
    assert state_of(decoder) is ws.ConnectionState.CLOSED


def test_closed_by_the_peer() -> None:
    decoder = ws.WsConnection(client=False, max_message=100)
    decoder.feed(frame(ws.CLOSE, close_payload(1001)) + frame(ws.BINARY, b"after the close"))
    assert decoder.next_event() == ws.WsEvent(ws.CLOSE, close_payload(1001))
    assert decoder.state is ws.ConnectionState.REMOTE_CLOSING
    # Nothing after a Close is decoded, not even garbage.
    decoder.feed(b"\xff" * 100)
    assert decoder.next_event() is None
    answer = decoder.close(1001)
    assert answer == frame(ws.CLOSE, close_payload(1001), masked=False)
    assert state_of(decoder) is ws.ConnectionState.CLOSED
    assert decoder.close() is None


def test_close_frames_sent() -> None:
    def sent(code: int | None, reason: str = "") -> bytes:
        return decode_all(ws.encode_close(code, reason, mask=False), client=True)[0].payload

    assert sent(None) == b""
    assert sent(ws.NO_STATUS_RCVD) == b""
    assert sent(1006) == close_payload(1000)  # local-only codes go out as 1000, as in wsproto
    assert sent(4000, "x") == close_payload(4000, b"x")
    for code in (999, 1004, 1014, 2999, 5000):
        with pytest.raises(EncodeError):
            ws.encode_close(code, mask=False)
    with pytest.raises(EncodeError):
        ws.encode_close(None, "a reason without a code", mask=False)


@settings(max_examples=200, deadline=None)
@given(reason=st.text(max_size=200), mask=st.booleans())
def test_close_reasons_are_cut_between_characters(reason: str, mask: bool) -> None:
    data = ws.encode_close(1000, reason, mask=mask)
    (event,) = decode_all(data, client=not mask)  # the decoder refuses bad UTF-8
    code, received = ws.close_code(event.payload)
    assert code == 1000
    assert len(event.payload) <= ws.MAX_CONTROL_PAYLOAD
    assert reason.startswith(received)
    assert len(received.encode()) > ws.MAX_CLOSE_REASON - 4 or received == reason


def test_truncate_utf8() -> None:
    assert ws.truncate_utf8("\u00e9\u00e9".encode(), 3) == "\u00e9".encode()
    assert ws.truncate_utf8("a\U0001f600".encode(), 4) == b"a"
    assert ws.truncate_utf8(b"short", 10) == b"short"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_random_bytes_only_ever_raise_websocket_errors(data: bytes, client: bool) -> None:
    with contextlib.suppress(ws.WebSocketError):
        decode_all(data, client=client)
