"""Tests of the sans-I/O channel codec (docs/PROTOCOL.md section 2).

Golden vectors are assembled by hand from the spec table, field by field in
literal hex, so they share no packing code with the codec under test. The
stream decoder is checked h11-style (whole, byte by byte, arbitrary cuts)
with Hypothesis choosing the cut points.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from typing import Any, cast
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from amop_trio._errors import AmopError, EncodeError, FrameTooLargeError, WireError
from amop_trio._wire import fisco2 as channel
from amop_trio._wire.extensions import Grant
from amop_trio._wire.fisco2 import (
    HEADER_SIZE,
    MAX_CHANNEL_TOPIC_BYTES,
    SEQ_SIZE,
    ChannelDecoder,
    ChannelFrame,
    ChannelResult,
    ChannelType,
    TopicBody,
    channel_result_from_status,
    decode_channel_frame,
    decode_topic_body,
    describe_channel_result,
    encode_channel_frame,
    encode_topic_body,
    new_channel_seq,
    status_from_channel_result,
)
from amop_trio._wire.fisco2_json import (
    HEARTBEAT_ANSWER,
    HEARTBEAT_ANSWER_V1,
    HEARTBEAT_REQUEST,
    HEARTBEAT_REQUEST_V1,
    ChannelHandshakeRequest,
    ChannelHandshakeResponse,
    ChannelVerifyRequest,
    ChannelVerifyResult,
    decode_subscription,
    encode_subscription,
    heartbeat_answer,
    heartbeat_request,
    is_heartbeat_answer,
)
from amop_trio._wire.fisco3 import DEFAULT_MAX_FRAME_SIZE
from amop_trio._wire.status import Status

# No deadline (a loaded machine must not turn a slow example into a failure).
fast = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------
# strategies

u16 = st.integers(0, 0xFFFF)
i32 = st.integers(-0x8000_0000, 0x7FFF_FFFF)
seqs = st.binary(min_size=SEQ_SIZE, max_size=SEQ_SIZE)

channel_frames = st.builds(
    ChannelFrame, type=u16, seq=seqs, result=i32, data=st.binary(max_size=300)
)

# st.text() never yields lone surrogates; 60 code points are at most 240 UTF-8
# bytes, within the 254-byte limit.
topics = st.text(min_size=1, max_size=60)
json_text = st.text(max_size=30)

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _chunks(wire: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(cuts), len(wire)]
    return [wire[a:b] for a, b in itertools.pairwise(points)]


# ---------------------------------------------------------------------------
# 1. frame round trips


@fast
@given(channel_frames)
def test_frame_round_trip(frame: ChannelFrame) -> None:
    wire = encode_channel_frame(frame)
    assert len(wire) == HEADER_SIZE + len(frame.data)
    assert int.from_bytes(wire[:4], "big") == len(wire)
    decoded = decode_channel_frame(wire)
    assert decoded == frame
    assert type(decoded.seq) is bytes
    assert type(decoded.data) is bytes


@fast
@given(u16, seqs, i32, st.binary(max_size=100))
def test_decodable_bytes_reencode_identically(
    ftype: int, seq: bytes, result: int, data: bytes
) -> None:
    """The layout has no slack: any header with a matching length re-encodes exactly."""
    wire = (
        (HEADER_SIZE + len(data)).to_bytes(4, "big")
        + ftype.to_bytes(2, "big")
        + seq
        + result.to_bytes(4, "big", signed=True)
        + data
    )
    frame = decode_channel_frame(wire)
    assert frame == ChannelFrame(ftype, seq, result, data)
    assert encode_channel_frame(frame) == wire


def test_decode_frame_accepts_bytearray_and_memoryview() -> None:
    wire = encode_channel_frame(ChannelFrame(0x30, b"s" * 32, 0, b"xyz"))
    for view in (bytearray(wire), memoryview(wire)):
        decoded = decode_channel_frame(view)
        assert decoded == ChannelFrame(0x30, b"s" * 32, 0, b"xyz")
        assert type(decoded.seq) is bytes
        assert type(decoded.data) is bytes


def test_encode_accepts_bytearray_fields() -> None:
    # The fields are typed bytes; other buffers are taken too.
    frame = ChannelFrame(0x13, bytearray(b"0" * 32), 0, bytearray(b"0"))  # type: ignore[arg-type]
    wire = encode_channel_frame(frame)
    assert type(wire) is bytes
    assert decode_channel_frame(wire) == ChannelFrame(0x13, b"0" * 32, 0, b"0")


def test_new_channel_seq_is_32_lowercase_hex() -> None:
    seqs_seen = {new_channel_seq() for _ in range(50)}
    assert len(seqs_seen) == 50
    for seq in seqs_seen:
        assert type(seq) is bytes
        assert len(seq) == SEQ_SIZE
        assert re.fullmatch(rb"[0-9a-f]{32}", seq)
        assert seq[12:13] == b"4"  # UUID4 version nibble
    frame = ChannelFrame(ChannelType.HEARTBEAT, new_channel_seq())
    assert decode_channel_frame(encode_channel_frame(frame)) == frame


# ---------------------------------------------------------------------------
# 2. the stream decoder


def _decode_stream(chunks: list[bytes], drain: list[bool] | None = None) -> list[ChannelFrame]:
    dec = ChannelDecoder()
    got: list[ChannelFrame] = []
    for i, chunk in enumerate(chunks):
        dec.feed(chunk)
        if drain is None or drain[i]:
            got.extend(dec.frames())
    got.extend(dec.frames())
    assert dec.next_frame() is None
    assert dec.pending_bytes == 0
    dec.feed_eof()
    assert dec.next_frame() is None
    return got


@fast
@given(st.lists(channel_frames, max_size=8), st.data())
@example([], None)
def test_split_stream(frames: list[ChannelFrame], data: st.DataObject | None) -> None:
    """Any chunking of the concatenated frames yields exactly the same frames."""
    wire = b"".join(encode_channel_frame(f) for f in frames)
    # whole, then one byte at a time
    assert _decode_stream([wire]) == frames
    assert _decode_stream([wire[i : i + 1] for i in range(len(wire))]) == frames
    if data is None:
        return
    # cut points chosen by Hypothesis (duplicates give empty chunks)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=25), label="cuts")
    chunks = _chunks(wire, cuts)
    drain = data.draw(
        st.lists(st.booleans(), min_size=len(chunks), max_size=len(chunks)), label="drain"
    )
    assert _decode_stream(chunks) == frames
    assert _decode_stream(chunks, drain) == frames


@fast
@given(st.lists(channel_frames, min_size=1, max_size=8), st.data())
def test_split_stream_with_eager_compaction(
    frames: list[ChannelFrame], data: st.DataObject
) -> None:
    """Same property with the compaction threshold at 1 byte, so every path compacts."""
    wire = b"".join(encode_channel_frame(f) for f in frames)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=25), label="cuts")
    with mock.patch.object(channel, "_COMPACT_MIN", 1):
        assert _decode_stream(_chunks(wire, cuts)) == frames
        assert _decode_stream([wire[i : i + 1] for i in range(len(wire))]) == frames


def test_split_stream_large_frames_compact() -> None:
    """Frames bigger than the compaction threshold, fed in odd-sized chunks."""
    frames = [
        ChannelFrame(0x30, (b"%032d" % i), i, bytes([i]) * (20_000 + 7919 * i)) for i in range(12)
    ]
    wire = b"".join(encode_channel_frame(f) for f in frames)
    for size in (7, 4093, 65_537, 200_003):
        chunks = [wire[i : i + size] for i in range(0, len(wire), size)]
        assert _decode_stream(chunks) == frames


def test_many_small_frames_decode_in_linear_time() -> None:
    """100k empty frames (4.2 MB) in one chunk: quadratic re-slicing would take minutes."""
    one = encode_channel_frame(ChannelFrame(0x13, b"0" * 32))
    count = 100_000
    dec = ChannelDecoder()
    start = time.perf_counter()
    dec.feed(one * count)
    n = sum(1 for _ in dec.frames())
    # and the same stream in 1000-byte chunks, drained after each
    dec2 = ChannelDecoder()
    wire = one * count
    n2 = 0
    for i in range(0, len(wire), 1000):
        dec2.feed(wire[i : i + 1000])
        n2 += sum(1 for _ in dec2.frames())
    elapsed = time.perf_counter() - start
    assert n == n2 == count
    assert dec.pending_bytes == dec2.pending_bytes == 0
    assert elapsed < 5, f"decoding took {elapsed:.2f}s"


def test_frames_iterator_and_partial_frame() -> None:
    a = encode_channel_frame(ChannelFrame(0x30, b"a" * 32, 0, b"\x02a1"))
    b = encode_channel_frame(ChannelFrame(0x31, b"b" * 32, 0, b"\x02b2"))
    dec = ChannelDecoder()
    dec.feed(a + b[:10])
    assert list(dec.frames()) == [ChannelFrame(0x30, b"a" * 32, 0, b"\x02a1")]
    assert dec.pending_bytes == 10
    assert dec.next_frame() is None
    dec.feed(b"")
    assert dec.next_frame() is None
    dec.feed(b[10:])
    assert dec.pending_bytes == len(b)
    assert dec.next_frame() == ChannelFrame(0x31, b"b" * 32, 0, b"\x02b2")
    assert dec.pending_bytes == 0
    assert dec.next_frame() is None


def test_absurd_length_raises_after_four_bytes() -> None:
    dec = ChannelDecoder()
    for byte in b"\xff\xff\xff":
        dec.feed(bytes([byte]))
        assert dec.next_frame() is None
    dec.feed(b"\xff")
    with pytest.raises(FrameTooLargeError) as info:
        dec.next_frame()
    assert str(0xFFFFFFFF) in str(info.value)
    assert str(DEFAULT_MAX_FRAME_SIZE) in str(info.value)
    assert dec.pending_bytes == 4  # nothing but the length field was buffered
    assert dec.broken


def test_absurd_length_raises_before_the_body_arrives() -> None:
    # a 1 MiB frame against a 64 KiB limit: fails on the header, body never needed
    dec = ChannelDecoder(max_frame_size=65_536)
    dec.feed(bytes.fromhex("00100000 0030") + b"0" * 32)
    with pytest.raises(FrameTooLargeError, match="1048576"):
        dec.next_frame()


def test_length_at_the_limit_is_fine() -> None:
    dec = ChannelDecoder(max_frame_size=50)
    ok = encode_channel_frame(ChannelFrame(0x30, b"s" * 32, 0, b"\x02t" + b"d" * 6))
    assert len(ok) == 50
    dec.feed(ok)
    assert dec.next_frame() == ChannelFrame(0x30, b"s" * 32, 0, b"\x02tdddddd")
    dec.feed((51).to_bytes(4, "big"))
    with pytest.raises(FrameTooLargeError, match="51"):
        dec.next_frame()


@pytest.mark.parametrize("length", [0, 1, 4, 41])
def test_length_below_header_raises(length: int) -> None:
    dec = ChannelDecoder()
    dec.feed(length.to_bytes(4, "big"))
    with pytest.raises(WireError, match=f"length field {length} .*42") as info:
        dec.next_frame()
    assert not isinstance(info.value, FrameTooLargeError)
    assert dec.pending_bytes == 4


def test_empty_frame_of_exactly_42_bytes() -> None:
    wire = bytes.fromhex("0000002a 0013") + b"0" * 32 + bytes.fromhex("00000000")
    dec = ChannelDecoder()
    dec.feed(wire)
    assert dec.next_frame() == ChannelFrame(0x13, b"0" * 32, 0, b"")


def test_decoder_stays_broken() -> None:
    good = encode_channel_frame(ChannelFrame(0x13, b"0" * 32))
    dec = ChannelDecoder()
    dec.feed(good + bytes.fromhex("00000005") + good)
    assert dec.next_frame() == ChannelFrame(0x13, b"0" * 32)  # frames before the error
    with pytest.raises(WireError, match="length field 5"):
        dec.next_frame()
    for _ in range(2):
        with pytest.raises(WireError, match=r"already failed.*length field 5"):
            dec.next_frame()
        with pytest.raises(WireError, match="already failed"):
            dec.feed(good)
        with pytest.raises(WireError):
            list(dec.frames())
    assert dec.broken
    assert "broken" in repr(dec)


def test_decoder_stays_broken_keeps_error_class() -> None:
    dec = ChannelDecoder(max_frame_size=42)
    dec.feed(bytes.fromhex("0000002b"))
    with pytest.raises(FrameTooLargeError):
        dec.next_frame()
    with pytest.raises(FrameTooLargeError, match="already failed"):
        dec.next_frame()


def test_eof_clean_and_truncated() -> None:
    frame = ChannelFrame(0x12, b"r" * 32, 0, b"{}")
    wire = encode_channel_frame(frame)

    dec = ChannelDecoder()
    dec.feed(wire)
    dec.feed_eof()
    dec.feed_eof()  # idempotent
    assert dec.next_frame() == frame
    assert dec.next_frame() is None
    with pytest.raises(RuntimeError, match="after feed_eof"):
        dec.feed(b"x")

    dec = ChannelDecoder()
    dec.feed(wire + wire[:20])
    dec.feed_eof()
    assert dec.next_frame() == frame  # complete frames still come out
    with pytest.raises(WireError, match=f"20 of its {len(wire)} bytes"):
        dec.next_frame()
    assert dec.broken

    dec = ChannelDecoder()
    dec.feed(wire[:2])
    assert dec.next_frame() is None
    dec.feed_eof()
    with pytest.raises(WireError, match="length field"):
        dec.next_frame()

    dec = ChannelDecoder()
    dec.feed_eof()
    assert dec.next_frame() is None
    assert "eof" in repr(dec)


def test_decoder_constructor_checks() -> None:
    assert ChannelDecoder().max_frame_size == DEFAULT_MAX_FRAME_SIZE == 32 * 1024 * 1024
    assert ChannelDecoder(max_frame_size=42).max_frame_size == 42
    with pytest.raises(ValueError, match="42"):
        ChannelDecoder(max_frame_size=41)
    with pytest.raises(TypeError):
        ChannelDecoder(max_frame_size=True)
    dec = ChannelDecoder()
    assert repr(dec) == (
        f"<ChannelDecoder open, 0 bytes pending, max_frame_size={DEFAULT_MAX_FRAME_SIZE}>"
    )
    assert not dec.broken


@fast
@given(st.binary(max_size=400), st.data(), st.integers(HEADER_SIZE, 300))
@example(b"\x00\x00\x00\x2a" + b"\x00" * 38, None, 42)
@example(b"\xff" * 10, None, 100)
def test_random_bytes_only_raise_wire_error(
    wire: bytes, data: st.DataObject | None, max_size: int
) -> None:
    cuts = [] if data is None else data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    dec = ChannelDecoder(max_frame_size=max_size)
    got: list[ChannelFrame] = []
    failed = False
    message = ""
    try:
        for chunk in _chunks(wire, cuts):
            dec.feed(chunk)
            got.extend(dec.frames())
        dec.feed_eof()
        got.extend(dec.frames())
    except WireError as exc:
        message = str(exc)
        failed = True
    if failed:
        assert message  # a WireError always says what is wrong
        assert dec.broken
        with pytest.raises(WireError):
            dec.next_frame()
    # whatever came out is exactly a prefix of the input, frame by frame
    consumed = b"".join(encode_channel_frame(f) for f in got)
    assert wire.startswith(consumed)
    assert all(len(encode_channel_frame(f)) <= max_size for f in got)
    if not failed:
        assert consumed == wire


@fast
@given(
    st.lists(
        st.one_of(channel_frames.map(encode_channel_frame), st.binary(min_size=1, max_size=50)),
        max_size=6,
    ),
    st.data(),
)
def test_garbage_between_valid_frames_only_raises_wire_error(
    pieces: list[bytes], data: st.DataObject
) -> None:
    """Valid frames mixed with junk reach deeper than pure noise, whose length is huge."""
    wire = b"".join(pieces)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10), label="cuts")
    dec = ChannelDecoder(max_frame_size=400)
    got: list[ChannelFrame] = []
    try:
        for chunk in _chunks(wire, cuts):
            dec.feed(chunk)
            got.extend(dec.frames())
        dec.feed_eof()
        got.extend(dec.frames())
    except WireError:
        assert dec.broken
    assert wire.startswith(b"".join(encode_channel_frame(f) for f in got))


# ---------------------------------------------------------------------------
# 3. decode_channel_frame errors and encoding errors


def test_decode_frame_too_short() -> None:
    with pytest.raises(WireError, match=r"41 bytes.*42") as info:
        decode_channel_frame(bytes.fromhex("00000029") + bytes(37))
    assert not isinstance(info.value, FrameTooLargeError)
    with pytest.raises(WireError, match="0 bytes"):
        decode_channel_frame(b"")


@pytest.mark.parametrize("declared", [42, 44, 1000, 0xFFFFFFFF])
def test_decode_frame_length_mismatch(declared: int) -> None:
    wire = declared.to_bytes(4, "big") + bytes(39)  # 43 bytes given
    with pytest.raises(WireError, match=f"length field {declared} .*43 bytes"):
        decode_channel_frame(wire)


def test_decode_frame_too_large() -> None:
    wire = encode_channel_frame(ChannelFrame(0x30, b"s" * 32, 0, b"x" * 10))
    with pytest.raises(FrameTooLargeError, match=r"52 bytes.*51"):
        decode_channel_frame(wire, max_size=51)
    assert decode_channel_frame(wire, max_size=52).data == b"x" * 10


@pytest.mark.parametrize(
    "frame",
    [
        ChannelFrame(0x10000, b"s" * 32),
        ChannelFrame(-1, b"s" * 32),
        ChannelFrame(0x30, b"s" * 32, 0x8000_0000),
        ChannelFrame(0x30, b"s" * 32, -0x8000_0001),
    ],
    ids=["type-big", "type-neg", "result-big", "result-small"],
)
def test_encode_field_out_of_range(frame: ChannelFrame) -> None:
    with pytest.raises(EncodeError, match="out of range"):
        encode_channel_frame(frame)


@pytest.mark.parametrize(
    ("seq", "got"),
    [(b"", "0 bytes"), (b"s" * 31, "31 bytes"), (b"s" * 33, "33 bytes"), ("s" * 32, "str")],
)
def test_encode_seq_must_be_32_bytes(seq: Any, got: str) -> None:
    with pytest.raises(EncodeError, match=f"exactly 32 bytes, got {got}") as info:
        encode_channel_frame(ChannelFrame(0x30, seq))
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, AmopError)
    assert not isinstance(info.value, WireError)


def test_encode_extreme_fields() -> None:
    wire = encode_channel_frame(ChannelFrame(0xFFFF, b"\xff" * 32, -0x8000_0000))
    assert wire == bytes.fromhex("0000002a ffff") + b"\xff" * 32 + bytes.fromhex("80000000")
    wire = encode_channel_frame(ChannelFrame(0, b"\x00" * 32, 0x7FFF_FFFF))
    assert wire == bytes.fromhex("0000002a 0000") + bytes(32) + bytes.fromhex("7fffffff")


# ---------------------------------------------------------------------------
# 4. topic body


@fast
@given(topics, st.binary(max_size=300))
@example("主题", b"\x00\xff")
@example("t", b"")
def test_topic_body_round_trip(topic: str, data: bytes) -> None:
    raw = topic.encode("utf-8")
    body = encode_topic_body(topic, data)
    assert len(body) == 1 + len(raw) + len(data)
    assert body[0] == len(raw) + 1  # counts UTF-8 bytes plus itself
    assert decode_topic_body(body) == TopicBody(topic=topic, data=data)
    assert type(decode_topic_body(bytearray(body)).data) is bytes


@fast
@given(st.binary(max_size=300))
@example(b"")
@example(b"\x00")
@example(b"\x01abc")
@example(b"\xff" + b"a" * 254)
def test_decodable_topic_body_reencodes_identically(body: bytes) -> None:
    try:
        parsed = decode_topic_body(body)
    except WireError as exc:
        status = exc.status
    else:
        assert encode_topic_body(parsed.topic, parsed.data) == body
        return
    assert status == Status.INVALID_REQUEST


@pytest.mark.parametrize(
    "topic",
    ["a" * 254, "é" * 127, "主" * 84 + "ab", "😀" * 63 + "ab"],
    ids=["ascii", "2-byte", "3-byte", "4-byte"],
)
def test_topic_of_254_bytes_is_fine(topic: str) -> None:
    assert len(topic.encode("utf-8")) == MAX_CHANNEL_TOPIC_BYTES == 254
    body = encode_topic_body(topic, b"x")
    assert body[0] == 0xFF
    assert decode_topic_body(body) == TopicBody(topic, b"x")


@pytest.mark.parametrize(
    "topic",
    ["a" * 255, "é" * 128, "主" * 85, "😀" * 64, "a" * 300],
    ids=["ascii", "2-byte", "3-byte", "4-byte", "far"],
)
def test_topic_over_254_bytes_is_refused(topic: str) -> None:
    size = len(topic.encode("utf-8"))
    assert size > 254
    with pytest.raises(EncodeError) as info:
        encode_topic_body(topic, b"")
    assert str(size) in str(info.value)
    assert "254" in str(info.value)
    with pytest.raises(EncodeError, match="254"):
        encode_subscription(["ok", topic])


def test_empty_and_bad_topics_are_refused() -> None:
    with pytest.raises(EncodeError, match="empty"):
        encode_topic_body("", b"data")
    with pytest.raises(EncodeError, match="Unicode"):
        encode_topic_body("\ud800", b"")
    with pytest.raises(EncodeError, match="str"):
        encode_topic_body(b"topic", b"")  # type: ignore[arg-type]  # a bytes topic is refused
    with pytest.raises(EncodeError, match="empty"):
        encode_subscription([""])


def test_topic_body_empty() -> None:
    with pytest.raises(WireError, match=r"empty.*topicLen") as info:
        decode_topic_body(b"")
    assert info.value.status == Status.INVALID_REQUEST


@pytest.mark.parametrize("topic_len", [0, 1])
def test_topic_body_topic_len_too_small(topic_len: int) -> None:
    with pytest.raises(WireError, match=f"topicLen {topic_len} ") as info:
        decode_topic_body(bytes([topic_len]) + b"data")
    assert info.value.status == Status.INVALID_REQUEST


def test_topic_body_topic_len_past_end() -> None:
    # topicLen 0x10 = 16 but only 3 topic bytes follow: a 4-byte body
    with pytest.raises(WireError) as info:
        decode_topic_body(bytes.fromhex("10 616263"))
    msg = str(info.value)
    assert "topicLen 16" in msg
    assert "4-byte" in msg
    # exactly filling the body is fine: a topic with empty data
    assert decode_topic_body(bytes.fromhex("04 616263")) == TopicBody("abc", b"")


@pytest.mark.parametrize(
    "topic_bytes",
    [
        bytes.fromhex("ff"),
        bytes.fromhex("e4b8"),  # 主 cut short
        bytes.fromhex("eda080"),  # UTF-8-encoded surrogate (CESU-8), not UTF-8
        bytes.fromhex("c0af"),  # overlong "/"
    ],
)
def test_topic_body_topic_not_utf8(topic_bytes: bytes) -> None:
    body = bytes([len(topic_bytes) + 1]) + topic_bytes + b"data"
    with pytest.raises(WireError, match="UTF-8") as info:
        decode_topic_body(body)
    assert info.value.status == Status.INVALID_REQUEST


# ---------------------------------------------------------------------------
# 5. JSON payloads


@fast
@given(st.integers(0, 0x7FFF_FFFF), st.integers(0, 0x7FFF_FFFF), json_text)
def test_handshake_request_round_trip(lo: int, hi: int, client_type: str) -> None:
    req = ChannelHandshakeRequest(lo, hi, client_type)
    assert ChannelHandshakeRequest.decode(req.encode()) == req


@fast
@given(st.integers(-0x8000_0000, 0x7FFF_FFFF), json_text)
def test_handshake_response_round_trip(protocol: int, node_version: str) -> None:
    resp = ChannelHandshakeResponse(protocol, node_version)
    assert ChannelHandshakeResponse.decode(resp.encode()) == resp
    granted = ChannelHandshakeResponse(protocol, node_version, Grant(frozenset({"status"}), "n", 9))
    assert ChannelHandshakeResponse.decode(granted.encode()) == granted


@fast
@given(st.lists(topics, max_size=10))
def test_subscription_round_trip(topic_list: list[str]) -> None:
    assert decode_subscription(encode_subscription(topic_list)) == topic_list
    assert decode_subscription(encode_subscription(iter(topic_list))) == topic_list


@fast
@given(json_text, json_text, json_text)
def test_verify_request_round_trip(topic: str, cert_topic: str, node_id: str) -> None:
    req = ChannelVerifyRequest(topic, cert_topic, node_id)
    assert ChannelVerifyRequest.decode(req.encode()) == req


@fast
@given(i32, json_text, json_text)
def test_verify_result_round_trip(check: int, node_id: str, topic: str) -> None:
    res = ChannelVerifyResult(check, node_id, topic)
    decoded = ChannelVerifyResult.decode(res.encode())
    assert decoded == res
    assert decoded.verified == (check == 0)


def test_handshake_request_extensions() -> None:
    req = ChannelHandshakeRequest(extras=frozenset({"status"}))
    assert req.encode() == (
        b'{"minimumSupport":1,"maximumSupport":3,"clientType":"amop_trio","amopTrio":["status"]}'
    )
    assert ChannelHandshakeRequest.decode(req.encode()) == req
    # only a list of names asks for anything; other entries are skipped
    assert ChannelHandshakeRequest.decode(b'{"amopTrio":["status",1,null,"x"]}').extras == {
        "status",
        "x",
    }
    for other in (b'{"amopTrio":1}', b'{"amopTrio":"status"}', b'{"amopTrio":{"status":1}}'):
        assert ChannelHandshakeRequest.decode(other).extras == frozenset()


def test_handshake_request_defaults_like_a_node() -> None:
    assert ChannelHandshakeRequest.decode(b"{}") == ChannelHandshakeRequest(1, 1, "")
    assert ChannelHandshakeRequest().encode() == (
        b'{"minimumSupport":1,"maximumSupport":3,"clientType":"amop_trio"}'
    )


@pytest.mark.parametrize("key", ["minimumSupport", "maximumSupport"])
@pytest.mark.parametrize("bad", ["-1", "2147483648", "true", "1.0", '"1"', "null", "[]"])
def test_handshake_request_bad_version(key: str, bad: str) -> None:
    payload = ('{"%s":%s}' % (key, bad)).encode()  # noqa: UP031
    with pytest.raises(WireError, match=key) as info:
        ChannelHandshakeRequest.decode(payload)
    assert info.value.status == Status.INVALID_REQUEST


@pytest.mark.parametrize("bad", ["1", "null", "[]", '"\\ud800"'])
def test_handshake_request_bad_client_type(bad: str) -> None:
    with pytest.raises(WireError, match="clientType"):
        ChannelHandshakeRequest.decode(('{"clientType":%s}' % bad).encode())  # noqa: UP031


@pytest.mark.parametrize(
    ("client", "node", "chosen"),
    [
        ((1, 3), (1, 3), 3),
        ((1, 3), (1, 2), 2),
        ((1, 2), (1, 3), 2),
        ((2, 2), (1, 3), 2),
        ((1, 1), (2, 3), None),
        ((4, 5), (1, 3), None),
        ((3, 9), (1, 3), 3),
    ],
)
def test_choose_protocol(
    client: tuple[int, int], node: tuple[int, int], chosen: int | None
) -> None:
    assert ChannelHandshakeRequest(*client).choose_protocol(*node) == chosen


@pytest.mark.parametrize(
    "bad",
    [
        b"{}",
        b'{"protocol":"1"}',
        b'{"protocol":true}',
        b'{"protocol":1.5}',
        b'{"protocol":null}',
        b'{"protocol":2147483648}',
        b'{"protocol":1,"nodeVersion":2}',
    ],
)
def test_handshake_response_bad_fields(bad: bytes) -> None:
    with pytest.raises(WireError, match=r"protocol|nodeVersion"):
        ChannelHandshakeResponse.decode(bad)


def test_handshake_response_node_version_optional() -> None:
    assert ChannelHandshakeResponse.decode(b'{"protocol":2}') == ChannelHandshakeResponse(2, "")


@pytest.mark.parametrize(
    "payload",
    [b"{}", b'"hello"', b'{"topics":["a"]}', b'["a",1]', b"[null]", b"[[]]", b"1"],
)
def test_subscription_bad_shape(payload: bytes) -> None:
    with pytest.raises(WireError, match="array of topic strings") as info:
        decode_subscription(payload)
    assert info.value.status == Status.INVALID_REQUEST


def test_subscription_details() -> None:
    assert encode_subscription([]) == b"[]"
    assert decode_subscription(b"[]") == []
    # real nodes accept and SDKs may send non-ASCII, escaped or not
    assert decode_subscription('["主题"]'.encode()) == ["主题"]
    assert decode_subscription(encode_subscription(["主题"])) == ["主题"]
    # lone surrogates can be spelt in JSON but carried by no topic body
    for payload in (b'["\\ud800"]', b'["\xed\xa0\x80"]'):
        with pytest.raises(WireError, match="UTF-8"):
            decode_subscription(payload)


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        (b'{"topicForCert":"c","nodeId":"n"}', "topic"),
        (b'{"topic":"t","nodeId":"n"}', "topicForCert"),
        (b'{"topic":"t","topicForCert":"c"}', "nodeId"),
        (b'{"topic":1,"topicForCert":"c","nodeId":"n"}', "topic"),
        (b'{"topic":"t","topicForCert":null,"nodeId":"n"}', "topicForCert"),
        (b'{"topic":"t","topicForCert":"c","nodeId":["n"]}', "nodeId"),
    ],
)
def test_verify_request_bad_fields(payload: bytes, key: str) -> None:
    with pytest.raises(WireError, match=f"verify request: {key} must be a string"):
        ChannelVerifyRequest.decode(payload)


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        (b'{"nodeId":"n","topic":"t"}', "checkResult"),
        (b'{"checkResult":true,"nodeId":"n","topic":"t"}', "checkResult"),
        (b'{"checkResult":"0","nodeId":"n","topic":"t"}', "checkResult"),
        (b'{"checkResult":0.0,"nodeId":"n","topic":"t"}', "checkResult"),
        (b'{"checkResult":4294967296,"nodeId":"n","topic":"t"}', "checkResult"),
        (b'{"checkResult":0,"topic":"t"}', "nodeId"),
        (b'{"checkResult":0,"nodeId":"n","topic":5}', "topic"),
    ],
)
def test_verify_result_bad_fields(payload: bytes, key: str) -> None:
    with pytest.raises(WireError, match=f"verify result: {key}"):
        ChannelVerifyResult.decode(payload)


# heartbeats


@pytest.mark.parametrize(
    ("protocol", "request_data", "answer"),
    [
        # FB2 ChannelRPCServer::onClientHeartbeat: by the session's protocol, not the body.
        (1, b"0", b"1"),
        (1, b"", None),  # go-sdk and python-sdk beat with an empty body: unanswered on v1
        (1, b"0\n", None),
        (1, b'{"heartBeat":0}', None),
        (2, b'{"heartBeat":0}', b'{"heartBeat":1}\n'),
        (3, b'{"heartBeat":0}', b'{"heartBeat":1}\n'),
        (3, b"", b'{"heartBeat":1}\n'),
        (3, b"0", b'{"heartBeat":1}\n'),
        (3, b"\xff garbage", b'{"heartBeat":1}\n'),
    ],
)
def test_heartbeat_answer_by_protocol(protocol: int, request_data: bytes, answer: bytes) -> None:
    assert heartbeat_answer(protocol, request_data) == answer
    if answer is not None:
        assert is_heartbeat_answer(answer)
    assert not is_heartbeat_answer(request_data)


def test_heartbeat_constants_and_request() -> None:
    assert HEARTBEAT_REQUEST_V1 == b"0"
    assert HEARTBEAT_ANSWER_V1 == b"1"
    assert HEARTBEAT_REQUEST == b'{"heartBeat":0}'
    assert HEARTBEAT_ANSWER == b'{"heartBeat":1}\n'  # jsoncpp FastWriter's newline
    assert heartbeat_request(1) == b"0"
    assert heartbeat_request(2) == heartbeat_request(3) == b'{"heartBeat":0}'
    assert is_heartbeat_answer(b'{"heartBeat":1}\n')
    for other in (b"", b"0", b"11", b'{"heartBeat":true}', b"[1]", b"\xff\xfe"):
        assert not is_heartbeat_answer(other)


# robustness of every body decoder

DECODERS: list[Callable[[bytes], object]] = [
    decode_topic_body,
    decode_subscription,
    ChannelHandshakeRequest.decode,
    ChannelHandshakeResponse.decode,
    ChannelVerifyRequest.decode,
    ChannelVerifyResult.decode,
]
decoder_ids = [
    "topic_body",
    "subscription",
    "handshake_request",
    "handshake_response",
    "verify_request",
    "verify_result",
]
JSON_DECODERS = DECODERS[1:]
JSON_IDS = decoder_ids[1:]


def _returns_or_wire_error(decoder: Callable[[bytes], object], data: bytes) -> None:
    try:
        decoder(data)
    except WireError as exc:
        message = str(exc)
    else:
        return
    assert message  # a WireError always says what is wrong


@pytest.mark.parametrize("decoder", DECODERS, ids=decoder_ids)
@fast
@given(data=st.binary(max_size=200))
@example(data=b"")
@example(data=b"\xef\xbb\xbf{}")  # UTF-8 BOM
@example(data=b"\x00{\x00}")  # looks like UTF-16-BE to json.loads
@example(data=b"\xff\xfe")
@example(data=b"1" * 5000)  # beyond Python's int-from-string digit limit
def test_decoders_on_random_bytes(decoder: Callable[[bytes], object], data: bytes) -> None:
    _returns_or_wire_error(decoder, data)


@pytest.mark.parametrize("decoder", JSON_DECODERS, ids=JSON_IDS)
@fast
@given(value=json_values)
def test_decoders_on_arbitrary_json(decoder: Callable[[bytes], object], value: Any) -> None:
    _returns_or_wire_error(decoder, json.dumps(value).encode())


@fast
@given(
    value=json_values,
    key=st.sampled_from(
        [
            "minimumSupport",
            "maximumSupport",
            "clientType",
            "protocol",
            "nodeVersion",
            "heartBeat",
            "topic",
            "topicForCert",
            "nodeId",
            "checkResult",
        ]
    ),
)
def test_json_decoders_on_wrong_field_types(value: Any, key: str) -> None:
    """Reach the field checks, not only the JSON parser."""
    base = {"protocol": 1, "topic": "t", "topicForCert": "c", "nodeId": "n", "checkResult": 0}
    for payload in (json.dumps({key: value}), json.dumps({**base, key: value})):
        for decoder in JSON_DECODERS:
            _returns_or_wire_error(decoder, payload.encode())


@pytest.mark.parametrize("decoder", JSON_DECODERS, ids=JSON_IDS)
@pytest.mark.parametrize(
    "payload",
    [b"[" * 100_000, b'{"a":' * 100_000, b"[{" * 50_000],
    ids=["arrays", "objects", "mixed"],
)
def test_deeply_nested_json(decoder: Callable[[bytes], object], payload: bytes) -> None:
    with pytest.raises(WireError, match="JSON"):
        decoder(payload)


@pytest.mark.parametrize("decoder", JSON_DECODERS[2:], ids=JSON_IDS[2:])
@pytest.mark.parametrize(
    ("payload", "kind"), [(b"[]", "list"), (b'"x"', "str"), (b"1", "int"), (b"null", "NoneType")]
)
def test_json_not_an_object(decoder: Callable[[bytes], object], payload: bytes, kind: str) -> None:
    with pytest.raises(WireError, match=f"JSON object, got {kind}"):
        decoder(payload)


# ---------------------------------------------------------------------------
# 6. golden byte vectors, assembled from the spec table

SEQ = b"5f0b2c8e9a7d4e31b6c04f2a9d8e7c15"
SEQ_HEX = "3566306232633865396137643465333162366330346632613964386537633135"
NODE_SEQ_HEX = "30" * 32  # the node's pushes use 32 ASCII "0"

H = bytes.fromhex

HEARTBEAT_V2_WIRE = (
    H("00000039")  # length 57 = 42 + 15
    + H("0013")  # type HEARTBEAT
    + H(SEQ_HEX)  # seq
    + H("00000000")  # result 0
    + H("7b 22686561727442656174 22 3a 30 7d")  # {"heartBeat":0}
)
HEARTBEAT_V2_ANSWER_WIRE = (
    H("0000003a")  # length 58
    + H("0013")  # type HEARTBEAT
    + H(SEQ_HEX)  # the request's seq
    + H("00000000")  # result 0
    + H("7b 22686561727442656174 22 3a 31 7d 0a")  # {"heartBeat":1}\n (FastWriter's newline)
)
HEARTBEAT_V1_WIRE = H("0000002b 0013") + H(SEQ_HEX) + H("00000000 30")  # 43 bytes, "0"
HEARTBEAT_V1_ANSWER_WIRE = H("0000002b 0013") + H(SEQ_HEX) + H("00000000 31")  # "1"
HEARTBEAT_EMPTY_WIRE = H("0000002a 0013") + H(SEQ_HEX) + H("00000000")  # header only: 42

# go-sdk 1.x's handshake (json.Marshal of its struct; Java puts maximumSupport first)
HANDSHAKE_JSON = b'{"minimumSupport":1,"maximumSupport":3,"clientType":"Go-SDK"}'
HANDSHAKE_WIRE = (
    H("00000067")  # length 103 = 42 + 61
    + H("0014")  # type HANDSHAKE
    + H(SEQ_HEX)  # seq
    + H("00000000")  # result 0
    + H("7b 226d696e696d756d537570706f727422 3a 31")  # {"minimumSupport":1
    + H("2c 226d6178696d756d537570706f727422 3a 33")  # ,"maximumSupport":3
    + H("2c 22636c69656e745479706522 3a 22476f2d53444b22 7d")  # ,"clientType":"Go-SDK"}
)
# a real node's answer: jsoncpp's FastWriter sorts keys and ends with a newline
HANDSHAKE_ANSWER_JSON = b'{"nodeVersion":"2.9.1","protocol":3}\n'
HANDSHAKE_ANSWER_WIRE = (
    H("0000004f")  # length 79 = 42 + 37
    + H("0014")  # type HANDSHAKE
    + H(SEQ_HEX)  # the request's seq
    + H("00000000")  # result 0
    + H("7b 226e6f646556657273696f6e22 3a 22322e392e3122")  # {"nodeVersion":"2.9.1"
    + H("2c 2270726f746f636f6c22 3a 33 7d 0a")  # ,"protocol":3}\n
)

SUBSCRIBE_WIRE = (
    H("00000033")  # length 51 = 42 + 9
    + H("0032")  # type AMOP_SUBSCRIBE
    + H(SEQ_HEX)  # seq
    + H("00000000")  # result 0
    + H("5b 2268656c6c6f22 5d")  # ["hello"]
)

REQUEST_BODY = H("06 68656c6c6f 6869")  # topicLen 6, "hello", data "hi"
REQUEST_WIRE = (
    H("00000032")  # length 50 = 42 + 8
    + H("0030")  # type AMOP_REQUEST
    + H(SEQ_HEX)  # seq
    + H("00000000")  # result 0
    + H("06")  # topicLen = 5 + 1
    + H("68656c6c6f")  # "hello"
    + H("6869")  # data "hi"
)
ANSWER_BODY = H("06 68656c6c6f 6f6b")  # "hello", reply "ok"
ANSWER_WIRE = (
    H("00000032")  # length 50
    + H("0031")  # type AMOP_RESPONSE
    + H(SEQ_HEX)  # the request's seq
    + H("00000000")  # result 0
    + H("06 68656c6c6f")  # topicLen, "hello"
    + H("6f6b")  # reply "ok"
)

# a multicast to "主题" (2 code points, 6 UTF-8 bytes) with data 00 ff
MULTICAST_BODY = H("07 e4b8bb e9a298 00ff")  # topicLen 7, 主, 题, data
MULTICAST_WIRE = (
    H("00000033")  # length 51 = 42 + 9
    + H("0035")  # type AMOP_MULTICAST
    + H(SEQ_HEX)  # seq
    + H("00000000")  # result 0
    + H("07 e4b8bb e9a298 00ff")  # topic body
)
# the node's acknowledgement: 0x31, same seq, result 0, the body echoed back
MULTICAST_ACK_WIRE = (
    H("00000033")  # length 51
    + H("0031")  # type AMOP_RESPONSE
    + H(SEQ_HEX)  # the multicast's seq
    + H("00000000")  # result 0
    + H("07 e4b8bb e9a298 00ff")  # the same topic body
)

# no subscriber anywhere: 0x31, result 100, data cleared
NO_PEER_WIRE = (
    H("0000002a")  # length 42: no data
    + H("0031")  # type AMOP_RESPONSE
    + H(SEQ_HEX)  # the request's seq
    + H("00000064")  # result 100
)
# seq of 32 ASCII "0" (as in a node's pushes); result -1 as i32 is ffffffff
NEGATIVE_RESULT_WIRE = H("0000002b 0031") + H(NODE_SEQ_HEX) + H("ffffffff 00")

# as a 2.x node writes it (FB2 P2PSession.cpp, FastWriter): sorted keys, newline
VERIFY_REQUEST_JSON = (
    b'{"nodeId":"abc","topic":"#!$TopicNeedVerify_T",'
    b'"topicForCert":"#!$VerifyChannel_#!$TopicNeedVerify_T_0123456789abcdef0123456789abcdef"}\n'
)
VERIFY_RESULT_JSON = b'{"checkResult":0,"nodeId":"abc","topic":"#!$TopicNeedVerify_T"}'

GOLDEN = [
    pytest.param(HEARTBEAT_V2_WIRE, ChannelFrame(0x13, SEQ, 0, HEARTBEAT_REQUEST), id="hb-v2"),
    pytest.param(
        HEARTBEAT_V2_ANSWER_WIRE, ChannelFrame(0x13, SEQ, 0, HEARTBEAT_ANSWER), id="hb-v2-answer"
    ),
    pytest.param(HEARTBEAT_V1_WIRE, ChannelFrame(0x13, SEQ, 0, b"0"), id="hb-v1"),
    pytest.param(HEARTBEAT_V1_ANSWER_WIRE, ChannelFrame(0x13, SEQ, 0, b"1"), id="hb-v1-answer"),
    pytest.param(HEARTBEAT_EMPTY_WIRE, ChannelFrame(0x13, SEQ), id="hb-empty"),
    pytest.param(HANDSHAKE_WIRE, ChannelFrame(0x14, SEQ, 0, HANDSHAKE_JSON), id="handshake"),
    pytest.param(
        HANDSHAKE_ANSWER_WIRE,
        ChannelFrame(0x14, SEQ, 0, HANDSHAKE_ANSWER_JSON),
        id="handshake-answer",
    ),
    pytest.param(SUBSCRIBE_WIRE, ChannelFrame(0x32, SEQ, 0, b'["hello"]'), id="subscribe"),
    pytest.param(REQUEST_WIRE, ChannelFrame(0x30, SEQ, 0, REQUEST_BODY), id="request"),
    pytest.param(ANSWER_WIRE, ChannelFrame(0x31, SEQ, 0, ANSWER_BODY), id="answer"),
    pytest.param(MULTICAST_WIRE, ChannelFrame(0x35, SEQ, 0, MULTICAST_BODY), id="multicast"),
    pytest.param(
        MULTICAST_ACK_WIRE, ChannelFrame(0x31, SEQ, 0, MULTICAST_BODY), id="multicast-ack"
    ),
    pytest.param(NO_PEER_WIRE, ChannelFrame(0x31, SEQ, 100, b""), id="result-100"),
    pytest.param(
        NEGATIVE_RESULT_WIRE, ChannelFrame(0x31, b"0" * 32, -1, b"\x00"), id="result-minus-1"
    ),
]


@pytest.mark.parametrize(("wire", "frame"), GOLDEN)
def test_golden_encode(wire: bytes, frame: ChannelFrame) -> None:
    assert encode_channel_frame(frame) == wire


@pytest.mark.parametrize(("wire", "frame"), GOLDEN)
def test_golden_decode(wire: bytes, frame: ChannelFrame) -> None:
    assert decode_channel_frame(wire) == frame
    dec = ChannelDecoder()
    dec.feed(wire)
    assert dec.next_frame() == frame


def test_golden_stream_of_all_vectors() -> None:
    wire = b"".join(cast(bytes, p.values[0]) for p in GOLDEN)
    expected = [p.values[1] for p in GOLDEN]
    assert _decode_stream([wire]) == expected
    assert _decode_stream([wire[i : i + 3] for i in range(0, len(wire), 3)]) == expected


def test_golden_heartbeats() -> None:
    for protocol, request, answer in (
        (3, HEARTBEAT_V2_WIRE, HEARTBEAT_V2_ANSWER_WIRE),
        (1, HEARTBEAT_V1_WIRE, HEARTBEAT_V1_ANSWER_WIRE),
        (3, HEARTBEAT_EMPTY_WIRE, HEARTBEAT_V2_ANSWER_WIRE),
    ):
        frame = decode_channel_frame(request)
        assert frame.type == ChannelType.HEARTBEAT
        data = heartbeat_answer(protocol, frame.data)
        assert data is not None
        assert encode_channel_frame(ChannelFrame(frame.type, frame.seq, 0, data)) == answer
        assert is_heartbeat_answer(decode_channel_frame(answer).data)
    assert heartbeat_answer(1, decode_channel_frame(HEARTBEAT_EMPTY_WIRE).data) is None


def test_golden_handshake() -> None:
    assert ChannelHandshakeRequest(client_type="Go-SDK").encode() == HANDSHAKE_JSON
    frame = decode_channel_frame(HANDSHAKE_WIRE)
    assert frame.type == ChannelType.HANDSHAKE
    req = ChannelHandshakeRequest.decode(frame.data)
    assert req == ChannelHandshakeRequest(1, 3, "Go-SDK")
    assert req.choose_protocol(1, 3) == 3
    answer = ChannelHandshakeResponse.decode(decode_channel_frame(HANDSHAKE_ANSWER_WIRE).data)
    assert answer == ChannelHandshakeResponse(protocol=3, node_version="2.9.1")
    assert answer.encode() == HANDSHAKE_ANSWER_JSON  # a 2.x node's bytes, newline included


def test_golden_subscribe() -> None:
    assert encode_subscription(["hello"]) == b'["hello"]'
    frame = decode_channel_frame(SUBSCRIBE_WIRE)
    assert frame.type == ChannelType.AMOP_SUBSCRIBE
    assert decode_subscription(frame.data) == ["hello"]


def test_golden_unicast_request_and_answer() -> None:
    assert encode_topic_body("hello", b"hi") == REQUEST_BODY
    request = decode_channel_frame(REQUEST_WIRE)
    assert request.type == ChannelType.AMOP_REQUEST
    assert decode_topic_body(request.data) == TopicBody("hello", b"hi")
    answer = decode_channel_frame(ANSWER_WIRE)
    assert answer.type == ChannelType.AMOP_RESPONSE
    assert answer.seq == request.seq
    assert answer.result == ChannelResult.SUCCESS
    assert decode_topic_body(answer.data) == TopicBody("hello", b"ok")
    assert encode_topic_body("hello", b"ok") == ANSWER_BODY


def test_golden_multicast_and_ack() -> None:
    assert encode_topic_body("主题", b"\x00\xff") == MULTICAST_BODY
    multicast = decode_channel_frame(MULTICAST_WIRE)
    assert multicast.type == ChannelType.AMOP_MULTICAST
    assert decode_topic_body(multicast.data) == TopicBody("主题", b"\x00\xff")
    ack = decode_channel_frame(MULTICAST_ACK_WIRE)
    assert (ack.type, ack.seq, ack.result) == (ChannelType.AMOP_RESPONSE, multicast.seq, 0)


def test_golden_result_100() -> None:
    frame = decode_channel_frame(NO_PEER_WIRE)
    assert frame.type == ChannelType.AMOP_RESPONSE
    assert frame.result == ChannelResult.REMOTE_PEER_UNAVAILABLE
    assert frame.result == 100
    assert frame.data == b""
    assert status_from_channel_result(frame.result) == Status.NO_SUBSCRIBER_NODE
    reply = ChannelFrame(
        ChannelType.AMOP_RESPONSE, SEQ, channel_result_from_status(Status.NO_SUBSCRIBER_NODE)
    )
    assert encode_channel_frame(reply) == NO_PEER_WIRE


def test_golden_verify_payloads() -> None:
    challenge = "#!$VerifyChannel_#!$TopicNeedVerify_T_0123456789abcdef0123456789abcdef"
    req = ChannelVerifyRequest("#!$TopicNeedVerify_T", challenge, "abc")
    assert req.encode() == VERIFY_REQUEST_JSON
    assert ChannelVerifyRequest.decode(VERIFY_REQUEST_JSON) == req
    res = ChannelVerifyResult(0, "abc", "#!$TopicNeedVerify_T")
    assert res.encode() == VERIFY_RESULT_JSON
    assert ChannelVerifyResult.decode(VERIFY_RESULT_JSON) == res
    assert res.verified
    assert not ChannelVerifyResult(1, "abc", "t").verified
    # extra keys and key order do not matter
    assert (
        ChannelVerifyResult.decode(
            b'{"topic":"#!$TopicNeedVerify_T","extra":1,"nodeId":"abc","checkResult":0}'
        )
        == res
    )


# ---------------------------------------------------------------------------
# 7. types, result codes and their mapping to ws status codes


def test_channel_types_match_spec() -> None:
    assert {t.name: int(t) for t in ChannelType} == {
        "RPC": 0x12,
        "HEARTBEAT": 0x13,
        "HANDSHAKE": 0x14,
        "AMOP_REQUEST": 0x30,
        "AMOP_RESPONSE": 0x31,
        "AMOP_SUBSCRIBE": 0x32,
        "AMOP_MULTICAST": 0x35,
        "VERIFY_REQUEST": 0x37,
        "VERIFY_RESULT": 0x38,
    }
    assert (HEADER_SIZE, SEQ_SIZE, MAX_CHANNEL_TOPIC_BYTES) == (42, 32, 254)


def test_channel_results_match_spec() -> None:
    assert [int(r) for r in ChannelResult] == [0, 100, 101, 102, 103, 104]


SPEC_PAIRS = [(0, 0), (3001, 100), (3002, 101), (1000, 102), (1004, 103), (3003, 104)]


@pytest.mark.parametrize(("status", "result"), SPEC_PAIRS)
def test_status_result_mapping(status: int, result: int) -> None:
    assert channel_result_from_status(status) == result
    assert type(channel_result_from_status(status)) is ChannelResult
    assert status_from_channel_result(result) == status
    assert type(status_from_channel_result(result)) is Status


def test_status_result_mapping_defaults() -> None:
    assert channel_result_from_status(Status.OVERLOADED) == ChannelResult.REJECTED
    for other in (Status.UNSUPPORTED_TYPE, Status.INVALID_REQUEST, 1, 999, -4008, 1 << 40):
        assert channel_result_from_status(other) == ChannelResult.SEND_FAILED
    for other in (1, 99, 105, -1, 1 << 40):
        assert status_from_channel_result(other) == Status.SEND_FAILED
    # every ws status maps somewhere, and back to a status with the same meaning class
    for status in Status:
        result = channel_result_from_status(status)
        assert isinstance(result, ChannelResult)
        assert (status == Status.SUCCESS) == (result == ChannelResult.SUCCESS)


def test_describe_channel_result() -> None:
    texts = {describe_channel_result(r) for r in ChannelResult}
    assert len(texts) == len(ChannelResult)
    assert describe_channel_result(0) == "success"
    assert "subscriber" in describe_channel_result(100)
    for unknown in (1, 99, 105, -1):
        assert "unknown" in describe_channel_result(unknown)
