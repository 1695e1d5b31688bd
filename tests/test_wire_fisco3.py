"""Tests of the sans-I/O ws codec (docs/PROTOCOL.md section 1).

Golden vectors are assembled by hand from the spec tables, field by field, so
they do not share any packing code with the codec under test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from amop_trio._errors import AmopError, EncodeError, FrameTooLargeError, WireError
from amop_trio._wire.extensions import Grant
from amop_trio._wire.fisco3 import (
    DEFAULT_MAX_FRAME_SIZE,
    EXT_RESPONSE,
    HEADER_SIZE,
    MAX_TOPIC_BYTES,
    MIN_FRAME_SIZE,
    AmopBody,
    Frame,
    HandshakeRequest,
    HandshakeResponse,
    PacketType,
    decode_amop_body,
    decode_frame,
    decode_subtopic,
    encode_amop_body,
    encode_frame,
    encode_subtopic,
    new_seq,
)
from amop_trio._wire.status import Status, describe_status

# Modest and deterministic enough for CI: no deadline (a loaded machine must not
# turn a slow example into a failure), the default number of examples.
fast = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------
# strategies

u16 = st.integers(0, 0xFFFF)
i16 = st.integers(-0x8000, 0x7FFF)
u32 = st.integers(0, 0xFFFFFFFF)

frames = st.builds(
    Frame,
    type=u16,
    seq=st.binary(max_size=300),
    payload=st.binary(max_size=500),
    status=i16,
    ext=u16,
    version=u16,
)

# st.text() never yields lone surrogates, so every topic here is encodable UTF-8;
# 50 code points are at most 200 UTF-8 bytes, far below the 65535 limit.
topics = st.text(max_size=50)

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

# ---------------------------------------------------------------------------
# 1. round trips


@fast
@given(frames)
def test_frame_round_trip(frame: Frame) -> None:
    wire = encode_frame(frame)
    assert len(wire) == HEADER_SIZE + len(frame.seq) + 2 + len(frame.payload)
    decoded = decode_frame(wire)
    assert decoded == frame
    assert type(decoded.seq) is bytes
    assert type(decoded.payload) is bytes
    assert decoded.is_response == bool(frame.ext & EXT_RESPONSE)


@fast
@given(st.binary(max_size=200))
def test_decodable_bytes_reencode_identically(data: bytes) -> None:
    """The frame layout has no slack: whatever decodes re-encodes to the same bytes."""
    try:
        frame = decode_frame(data)
    except WireError:
        return
    assert encode_frame(frame) == data


@fast
@given(topics, st.binary(max_size=300), u32)
@example("", b"", 0)
@example("主题", b"\x00\xff", 0)
def test_amop_body_round_trip(topic: str, data: bytes, version: int) -> None:
    raw = topic.encode("utf-8")
    payload = encode_amop_body(topic, data, version=version)
    assert len(payload) == 4 + 2 + len(raw) + len(data)
    # topicLen counts UTF-8 bytes, not code points
    assert int.from_bytes(payload[4:6], "big") == len(raw)
    assert decode_amop_body(payload) == AmopBody(topic=topic, data=data, version=version)


@fast
@given(topics, st.binary(max_size=100))
def test_amop_body_default_version_is_zero(topic: str, data: bytes) -> None:
    payload = encode_amop_body(topic, data)
    assert payload[:4] == b"\x00\x00\x00\x00"
    assert decode_amop_body(payload).version == 0


@fast
@given(st.binary(max_size=200))
def test_decodable_amop_body_reencodes_identically(payload: bytes) -> None:
    try:
        body = decode_amop_body(payload)
    except WireError:
        return
    assert encode_amop_body(body.topic, body.data, version=body.version) == payload


def test_amop_body_topic_at_limit_round_trips() -> None:
    topic = "a" * MAX_TOPIC_BYTES
    payload = encode_amop_body(topic, b"x")
    assert payload[4:6] == bytes.fromhex("ffff")
    assert decode_amop_body(payload) == AmopBody(topic=topic, data=b"x")


@fast
@given(u32, u32, u32, st.frozensets(st.sampled_from(["acks", "status", "private", "later"])))
def test_handshake_request_round_trip(
    lo: int, hi: int, module: int, extras: frozenset[str]
) -> None:
    req = HandshakeRequest(min_version=lo, max_version=hi, module_id=module, extras=extras)
    payload = req.encode()
    assert HandshakeRequest.decode(payload) == req
    assert ("amopTrio" in json.loads(payload)) is bool(extras)


@fast
@given(
    st.integers(),
    st.dictionaries(
        st.text(max_size=10).filter(lambda k: k != "protocolVersion"), json_values, max_size=5
    ),
)
def test_handshake_response_round_trip(version: int, extra: dict[str, Any]) -> None:
    resp = HandshakeResponse(protocol_version=version, extra=extra)
    decoded = HandshakeResponse.decode(resp.encode())
    assert decoded == resp
    assert (decoded.grant is None) == (not isinstance(extra.get("amopTrio"), dict))


@fast
@given(st.lists(st.text(max_size=30), max_size=10))
def test_subtopic_round_trip(topic_list: list[str]) -> None:
    # a set, as the cpp-sdk's std::set: sorted, each topic once
    payload = encode_subtopic(topic_list)
    assert decode_subtopic(payload) == sorted(set(topic_list))
    assert decode_subtopic(encode_subtopic(tuple(topic_list))) == sorted(set(topic_list))


def test_new_seq_is_32_lowercase_hex() -> None:
    seqs = {new_seq() for _ in range(50)}
    assert len(seqs) == 50
    for seq in seqs:
        assert type(seq) is bytes
        assert re.fullmatch(rb"[0-9a-f]{32}", seq)
        assert seq[12:13] == b"4"  # UUID4 version nibble


def test_decode_frame_accepts_bytearray_and_memoryview() -> None:
    wire = encode_frame(Frame(type=PacketType.AMOP_REQUEST, seq=b"ab", payload=b"xyz"))
    expected = Frame(type=0x111, seq=b"ab", payload=b"xyz")
    for view in (bytearray(wire), memoryview(wire)):
        decoded = decode_frame(view)  # type: ignore[arg-type]  # any buffer decodes, not only bytes
        assert decoded == expected
        assert type(decoded.seq) is bytes
        assert type(decoded.payload) is bytes


# ---------------------------------------------------------------------------
# 2. robustness: decoders return or raise WireError, nothing else

DECODERS: list[Callable[[bytes], object]] = [
    decode_frame,
    decode_amop_body,
    decode_subtopic,
    HandshakeRequest.decode,
    HandshakeResponse.decode,
]
decoder_ids = ["frame", "amop_body", "subtopic", "handshake_request", "handshake_response"]


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
@example(data=b"\xff\xfe")  # UTF-16 BOM, nothing after
@example(data=b"1" * 5000)  # beyond Python's int-from-string digit limit
def test_decoders_on_random_bytes(decoder: Callable[[bytes], object], data: bytes) -> None:
    _returns_or_wire_error(decoder, data)


@pytest.mark.parametrize("decoder", DECODERS, ids=decoder_ids)
@fast
@given(value=json_values)
def test_decoders_on_arbitrary_json(decoder: Callable[[bytes], object], value: Any) -> None:
    _returns_or_wire_error(decoder, json.dumps(value).encode())


@fast
@given(
    value=json_values,
    key=st.sampled_from(["topics", "minVersion", "maxVersion", "moduleID", "protocolVersion"]),
)
def test_json_decoders_on_wrong_field_types(value: Any, key: str) -> None:
    """Reach the field checks, not only the JSON parser."""
    payload = json.dumps({key: value}).encode()
    for decoder in (decode_subtopic, HandshakeRequest.decode, HandshakeResponse.decode):
        _returns_or_wire_error(decoder, payload)


@fast
@given(st.binary(max_size=200), st.integers(0, 250))
def test_decode_frame_max_size(data: bytes, max_size: int) -> None:
    try:
        decode_frame(data, max_size=max_size)
    except FrameTooLargeError:
        assert len(data) > max_size
    except WireError:
        assert len(data) <= max_size
    else:
        assert len(data) <= max_size


@fast
@given(frames)
def test_truncated_frames(frame: Frame) -> None:
    wire = encode_frame(frame)
    needed = HEADER_SIZE + len(frame.seq) + 2  # header, seq and ext
    for cut in range(len(wire)):
        prefix = wire[:cut]
        if cut < needed:
            with pytest.raises(WireError) as info:
                decode_frame(prefix)
            assert not isinstance(info.value, FrameTooLargeError)
            if cut >= MIN_FRAME_SIZE:
                assert "seqLen" in str(info.value)
                assert str(len(frame.seq)) in str(info.value)
        else:
            # no length field covers the payload: a cut payload is still a frame
            assert decode_frame(prefix) == Frame(
                type=frame.type,
                seq=frame.seq,
                payload=frame.payload[: cut - needed],
                status=frame.status,
                ext=frame.ext,
                version=frame.version,
            )


def test_frame_too_short_message() -> None:
    for size in range(MIN_FRAME_SIZE):
        with pytest.raises(WireError, match=rf"too short: {size} bytes.*{MIN_FRAME_SIZE}"):
            decode_frame(bytes(size))
    assert MIN_FRAME_SIZE == 10  # spec: "shorter than 10 bytes ... is malformed"
    assert decode_frame(bytes(10)) == Frame(type=0, seq=b"")


def test_seq_len_past_end_message() -> None:
    # seqLen 0x0020 = 32 but only 5 seq bytes and no ext: a 13-byte frame
    data = bytes.fromhex("0000 0111 0000 0020") + b"abcde"
    with pytest.raises(WireError) as info:
        decode_frame(data)
    msg = str(info.value)
    assert "seqLen" in msg
    assert "32" in msg
    assert "13" in msg
    assert "42" in msg  # bytes needed: 8 + 32 + 2
    assert not isinstance(info.value, FrameTooLargeError)


def test_seq_len_ext_missing() -> None:
    # seq complete (2 bytes) but the ext field is cut to one byte
    data = bytes.fromhex("0000 0111 0000 0002 6162 00")
    with pytest.raises(WireError, match="seqLen 2"):
        decode_frame(data)


def test_frame_too_large() -> None:
    data = bytes(11)
    with pytest.raises(FrameTooLargeError) as info:
        decode_frame(data, max_size=10)
    assert isinstance(info.value, WireError)
    assert "11" in str(info.value)
    assert "10" in str(info.value)
    # exactly at the limit is fine
    assert decode_frame(bytes(10), max_size=10) == Frame(type=0, seq=b"")
    # the size check comes first, even for an otherwise malformed frame
    with pytest.raises(FrameTooLargeError):
        decode_frame(bytes(5), max_size=4)
    assert DEFAULT_MAX_FRAME_SIZE == 32 * 1024 * 1024


def test_amop_body_too_short_message() -> None:
    with pytest.raises(WireError, match=r"too short: 5 bytes.*6") as info:
        decode_amop_body(bytes.fromhex("00000000 00"))
    assert info.value.status == Status.INVALID_REQUEST


def test_amop_body_topic_len_past_end() -> None:
    # topicLen 0x0010 = 16 but 3 bytes follow: a 9-byte body
    with pytest.raises(WireError) as info:
        decode_amop_body(bytes.fromhex("00000000 0010 616263"))
    msg = str(info.value)
    assert "topicLen" in msg
    assert "16" in msg
    assert "9" in msg
    assert info.value.status == Status.INVALID_REQUEST


@pytest.mark.parametrize(
    "topic_bytes",
    [
        bytes.fromhex("ff"),
        bytes.fromhex("e4b8"),  # 主 cut short
        bytes.fromhex("eda080"),  # UTF-8-encoded surrogate (CESU-8), not UTF-8
        bytes.fromhex("c0af"),  # overlong "/"
    ],
)
def test_amop_body_topic_not_utf8(topic_bytes: bytes) -> None:
    payload = bytes.fromhex("00000000") + len(topic_bytes).to_bytes(2, "big") + topic_bytes
    with pytest.raises(WireError, match="UTF-8") as info:
        decode_amop_body(payload + b"data")
    assert info.value.status == Status.INVALID_REQUEST


@pytest.mark.parametrize(
    "decoder", [decode_subtopic, HandshakeRequest.decode, HandshakeResponse.decode]
)
@pytest.mark.parametrize("payload", [b"", b"{", b"\xff\xfe\xfd", b'{"topics": [}', b"nul"])
def test_invalid_json_message(decoder: Callable[[bytes], object], payload: bytes) -> None:
    with pytest.raises(WireError, match="JSON"):
        decoder(payload)


@pytest.mark.parametrize(
    "decoder", [decode_subtopic, HandshakeRequest.decode, HandshakeResponse.decode]
)
@pytest.mark.parametrize(
    "payload",
    [b"[" * 100_000, b'{"a":' * 100_000, b'{"topics":' * 50_000, b"[{" * 50_000],
    ids=["arrays", "objects", "topics", "mixed"],
)
def test_deeply_nested_json(decoder: Callable[[bytes], object], payload: bytes) -> None:
    with pytest.raises(WireError, match="JSON"):
        decoder(payload)


@pytest.mark.parametrize(
    "decoder", [decode_subtopic, HandshakeRequest.decode, HandshakeResponse.decode]
)
@pytest.mark.parametrize(
    ("payload", "kind"), [(b"[]", "list"), (b'"x"', "str"), (b"1", "int"), (b"null", "NoneType")]
)
def test_json_not_an_object(decoder: Callable[[bytes], object], payload: bytes, kind: str) -> None:
    with pytest.raises(WireError, match=f"JSON object, got {kind}"):
        decoder(payload)


@pytest.mark.parametrize(
    "payload",
    [b"{}", b'{"topics":"hello"}', b'{"topics":["a",1]}', b'{"topics":null}', b'{"topics":{}}'],
)
def test_subtopic_bad_topics(payload: bytes) -> None:
    with pytest.raises(WireError, match='"topics"') as info:
        decode_subtopic(payload)
    assert info.value.status == Status.INVALID_REQUEST


def test_subtopic_empty_list_is_unsubscribe_all() -> None:
    assert encode_subtopic([]) == b'{"topics":[]}\n'
    assert decode_subtopic(b'{"topics": []}') == []


@pytest.mark.parametrize("key", ["minVersion", "maxVersion", "moduleID"])
@pytest.mark.parametrize("bad", ["-1", "4294967296", "true", "1.0", '"1"', "null", "[]"])
def test_handshake_request_bad_field(key: str, bad: str) -> None:
    payload = ('{"%s":%s}' % (key, bad)).encode()  # noqa: UP031
    with pytest.raises(WireError, match=key) as info:
        HandshakeRequest.decode(payload)
    assert info.value.status == Status.INVALID_REQUEST


def test_handshake_request_defaults_and_limits() -> None:
    assert HandshakeRequest.decode(b"{}") == HandshakeRequest(0, 0, 0)
    top = HandshakeRequest.decode(
        b'{"minVersion":4294967295,"maxVersion":0,"moduleID":7,"amopTrio":"acks"}'
    )
    assert top == HandshakeRequest(0xFFFFFFFF, 0, 7)  # only a list of names asks
    assert HandshakeRequest.decode(b'{"amopTrio":["acks",7,"x"]}').extras == {"acks", "x"}
    assert HandshakeRequest.decode(b'{"amopAcks":true}').extras == frozenset()


@pytest.mark.parametrize(
    "bad",
    [
        b"{}",
        b'{"protocolVersion":"1"}',
        b'{"protocolVersion":true}',
        b'{"protocolVersion":1.5}',
        b'{"protocolVersion":null}',
    ],
)
def test_handshake_response_bad_version(bad: bytes) -> None:
    with pytest.raises(WireError, match="protocolVersion"):
        HandshakeResponse.decode(bad)


# ---------------------------------------------------------------------------
# 3. golden byte vectors, assembled from the spec tables

SEQ = b"5f0b2c8e9a7d4e31b6c04f2a9d8e7c15"
SEQ_HEX = "3566306232633865396137643465333162366330346632613964386537633135"

# the cpp-sdk's bytes (HandshakeRequest::encode, FastWriter): sorted keys, newline
HANDSHAKE_JSON = b'{"maxVersion":2,"minVersion":0,"moduleID":2}\n'
HANDSHAKE_WIRE = (
    bytes.fromhex(
        "0000"  # version 0
        "0100"  # type HANDSHAKE
        "0000"  # status 0
        "0020"  # seqLen 32
    )
    + bytes.fromhex(SEQ_HEX)  # seq
    + bytes.fromhex("0000")  # ext 0
    + bytes.fromhex(  # the JSON payload
        "7b 226d617856657273696f6e22 3a 32"  # {"maxVersion":2
        "2c 226d696e56657273696f6e22 3a 30"  # ,"minVersion":0
        "2c 226d6f64756c65494422 3a 32 7d 0a"  # ,"moduleID":2}\n
    )
)

SUBTOPIC_WIRE = (
    bytes.fromhex(
        "0000"  # version
        "0110"  # type AMOP_SUBTOPIC
        "0000"  # status
        "0020"  # seqLen 32
    )
    + bytes.fromhex(SEQ_HEX)  # seq
    + bytes.fromhex("0000")  # ext
    + b'{"topics":["hello"]}\n'
)

REQUEST_BODY = bytes.fromhex(
    "00000000"  # body version u32 0
    "0005"  # topicLen 5
    "68656c6c6f"  # "hello"
    "6869"  # data b"hi"
)
REQUEST_WIRE = (
    bytes.fromhex("0000 0111 0000 0020")  # version, AMOP_REQUEST, status, seqLen 32
    + SEQ
    + bytes.fromhex("0000")  # ext
    + REQUEST_BODY
)

# a multicast to the topic "主题" (2 code points, 6 UTF-8 bytes) with data 00 ff
BROADCAST_BODY = bytes.fromhex(
    "00000000 0006 e4b8bb e9a298 00ff"
)  # version, topicLen, 主, 题, data
BROADCAST_WIRE = bytes.fromhex("0000 0112 0000 0020") + SEQ + bytes.fromhex("0000") + BROADCAST_BODY

ERROR_TEXT = b'no subscriber for topic "hello"'
RESPONSE_WIRE = (
    bytes.fromhex(
        "0000"  # version
        "0113"  # type AMOP_RESPONSE
        "0bb9"  # status 3001
        "0020"  # seqLen
    )
    + SEQ
    + bytes.fromhex("0001")  # ext: response flag
    + ERROR_TEXT
)

# status -4008 as i16 is 0xf058 (65536 - 4008 = 61528)
NEGATIVE_STATUS_WIRE = bytes.fromhex("0001 0113 f058 0003 616263 8001 ff")

GOLDEN = [
    pytest.param(
        HANDSHAKE_WIRE,
        Frame(type=0x100, seq=SEQ, payload=HANDSHAKE_JSON),
        id="handshake",
    ),
    pytest.param(
        SUBTOPIC_WIRE,
        Frame(type=0x110, seq=SEQ, payload=b'{"topics":["hello"]}\n'),
        id="subtopic",
    ),
    pytest.param(REQUEST_WIRE, Frame(type=0x111, seq=SEQ, payload=REQUEST_BODY), id="request"),
    pytest.param(
        BROADCAST_WIRE, Frame(type=0x112, seq=SEQ, payload=BROADCAST_BODY), id="broadcast"
    ),
    pytest.param(
        RESPONSE_WIRE,
        Frame(type=0x113, seq=SEQ, payload=ERROR_TEXT, status=3001, ext=0x0001),
        id="response-3001",
    ),
    pytest.param(
        NEGATIVE_STATUS_WIRE,
        Frame(type=0x113, seq=b"abc", payload=b"\xff", status=-4008, ext=0x8001, version=1),
        id="negative-status",
    ),
    pytest.param(
        bytes.fromhex("ffff ffff 8000 0000 ffff"),
        Frame(type=0xFFFF, seq=b"", status=-0x8000, ext=0xFFFF, version=0xFFFF),
        id="extremes-low-status",
    ),
    pytest.param(
        bytes.fromhex("0000 0000 7fff 0000 0000"),
        Frame(type=0, seq=b"", status=0x7FFF),
        id="max-status",
    ),
    pytest.param(
        bytes.fromhex("0000 0000 ffff 0000 0000"),
        Frame(type=0, seq=b"", status=-1),
        id="status-minus-one",
    ),
]


@pytest.mark.parametrize(("wire", "frame"), GOLDEN)
def test_golden_encode(wire: bytes, frame: Frame) -> None:
    assert encode_frame(frame) == wire


@pytest.mark.parametrize(("wire", "frame"), GOLDEN)
def test_golden_decode(wire: bytes, frame: Frame) -> None:
    assert decode_frame(wire) == frame


def test_golden_handshake_payload() -> None:
    assert HandshakeRequest().encode() == HANDSHAKE_JSON
    assert HandshakeRequest.decode(HANDSHAKE_JSON) == HandshakeRequest(0, 2, 2)
    frame = decode_frame(HANDSHAKE_WIRE)
    assert frame.type == PacketType.HANDSHAKE
    assert not frame.is_response
    assert HandshakeRequest.decode(frame.payload) == HandshakeRequest()


def test_golden_handshake_answer_of_a_real_node() -> None:
    # FB3 Rpc::onRecvHandshakeRequest writes with FastWriter: sorted keys, newline
    payload = b'{"groupBlockNumber":[{"group0":1}],"groupInfoList":[],"protocolVersion":1}\n'
    resp = HandshakeResponse.decode(payload)
    assert resp.protocol_version == 1
    assert resp.extra == {"groupInfoList": [], "groupBlockNumber": [{"group0": 1}]}
    assert resp.grant is None
    assert resp.encode() == payload
    granted = HandshakeResponse.decode(
        b'{"amopTrio":{"extras":["acks"],"maxFrameSize":99,"nodeId":"n"},"protocolVersion":2}'
    )
    assert granted.grant == Grant(frozenset({"acks"}), "n", 99)
    assert HandshakeResponse.decode(b'{"amopTrio":[],"protocolVersion":2}').grant is None


def test_golden_subtopic_payload() -> None:
    assert encode_subtopic(["hello"]) == b'{"topics":["hello"]}\n'
    assert encode_subtopic(["b", "a", "b"]) == b'{"topics":["a","b"]}\n'  # the cpp-sdk's set
    assert decode_subtopic(decode_frame(SUBTOPIC_WIRE).payload) == ["hello"]
    # non-ASCII topics survive, escaped or not
    assert decode_subtopic('{"topics":["主题"]}'.encode()) == ["主题"]
    assert decode_subtopic(encode_subtopic(["主题"])) == ["主题"]


def test_golden_request_body() -> None:
    assert encode_amop_body("hello", b"hi") == REQUEST_BODY
    frame = decode_frame(REQUEST_WIRE)
    assert frame.type == PacketType.AMOP_REQUEST
    assert decode_amop_body(frame.payload) == AmopBody(topic="hello", data=b"hi", version=0)


def test_golden_broadcast_body() -> None:
    assert encode_amop_body("主题", b"\x00\xff") == BROADCAST_BODY
    frame = decode_frame(BROADCAST_WIRE)
    assert frame.type == PacketType.AMOP_BROADCAST
    assert decode_amop_body(frame.payload) == AmopBody(topic="主题", data=b"\x00\xff")


def test_golden_body_version_is_u32() -> None:
    body = bytes.fromhex("fffffffe000161")
    assert encode_amop_body("a", b"", version=0xFFFFFFFE) == body
    assert decode_amop_body(body) == AmopBody(topic="a", data=b"", version=0xFFFFFFFE)


def test_golden_response() -> None:
    frame = decode_frame(RESPONSE_WIRE)
    assert frame.type == PacketType.AMOP_RESPONSE
    assert frame.status == Status.NO_SUBSCRIBER_NODE
    assert int(Status.NO_SUBSCRIBER_NODE) == 3001
    assert frame.is_response
    assert frame.payload.decode("utf-8") == 'no subscriber for topic "hello"'


def test_golden_negative_status() -> None:
    frame = decode_frame(NEGATIVE_STATUS_WIRE)
    assert frame.status == -4008
    assert frame.is_response  # 0x8001 has the response bit set
    assert encode_frame(Frame(type=0x113, seq=b"", status=-4008))[4:6] == bytes.fromhex("f058")


# ---------------------------------------------------------------------------
# 4. encoding errors


@pytest.mark.parametrize(
    "topic",
    ["a" * (MAX_TOPIC_BYTES + 1), "é" * 32768, "主" * 21846],  # 65536, 65536, 65538 bytes
    ids=["ascii", "2-byte", "3-byte"],
)
def test_encode_topic_too_long(topic: str) -> None:
    assert len(topic) <= MAX_TOPIC_BYTES + 1
    with pytest.raises(EncodeError) as info:
        encode_amop_body(topic, b"")
    assert str(len(topic.encode("utf-8"))) in str(info.value)
    assert "65535" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, AmopError)
    assert not isinstance(info.value, WireError)


def test_encode_topic_limit_counts_bytes_not_code_points() -> None:
    # 21845 * 3 = 65535 bytes: exactly at the limit
    payload = encode_amop_body("主" * 21845, b"")
    assert payload[4:6] == bytes.fromhex("ffff")


@pytest.mark.parametrize("version", [-1, 0x1_0000_0000])
def test_encode_body_version_out_of_range(version: int) -> None:
    with pytest.raises(EncodeError, match="u32"):
        encode_amop_body("t", b"", version=version)


@pytest.mark.parametrize(
    "frame",
    [
        Frame(type=0x10000, seq=b""),
        Frame(type=-1, seq=b""),
        Frame(type=0x111, seq=b"x" * 0x10000),
        Frame(type=0x111, seq=b"", status=0x8000),
        Frame(type=0x111, seq=b"", status=-0x8001),
        Frame(type=0x111, seq=b"", ext=0x10000),
        Frame(type=0x111, seq=b"", ext=-1),
        Frame(type=0x111, seq=b"", version=0x10000),
    ],
    ids=[
        "type-big",
        "type-neg",
        "seq-long",
        "status-big",
        "status-small",
        "ext-big",
        "ext-neg",
        "version-big",
    ],
)
def test_encode_frame_field_out_of_range(frame: Frame) -> None:
    with pytest.raises(EncodeError, match="out of range"):
        encode_frame(frame)


def test_encode_frame_longest_seq() -> None:
    wire = encode_frame(Frame(type=0x111, seq=b"s" * 0xFFFF))
    assert wire[6:8] == bytes.fromhex("ffff")
    assert decode_frame(wire).seq == b"s" * 0xFFFF


def test_lone_surrogate_topics_are_refused_both_ways() -> None:
    # JSON can spell a lone surrogate ("\ud800", or CESU-8 bytes ED A0 80 that
    # json.loads decodes with surrogatepass), but no AMOP body can carry it.
    for payload in (b'{"topics":["\\ud800"]}', b'{"topics":["\xed\xa0\x80"]}'):
        with pytest.raises(WireError, match="UTF-8"):
            decode_subtopic(payload)
    with pytest.raises(EncodeError):
        encode_amop_body("\ud800", b"")


# ---------------------------------------------------------------------------
# 5. status codes and packet types


def test_status_values_match_spec() -> None:
    assert int(Status.SUCCESS) == 0
    assert int(Status.TIMEOUT) == 1000
    assert int(Status.BANDWIDTH_LIMIT) == 1004
    assert int(Status.NO_SUBSCRIBER_NODE) == 3001
    assert int(Status.NO_SUBSCRIBER_CLIENT) == 3002
    assert int(Status.SEND_FAILED) == 3003
    assert int(Status.UNSUPPORTED_TYPE) == 3004
    assert int(Status.SUBSCRIBER_TIMEOUT) == -4008
    assert int(Status.FAILED) == -1
    # the spec's codes, with the negative ones real 3.x nodes send
    spec_codes = {-4008, -1, 0, 1000, 1004, 3001, 3002, 3003, 3004}
    assert spec_codes <= {int(s) for s in Status}
    # anything beyond the spec list is amop_trio's own, numbered from 3005 on
    assert all(int(s) >= 3005 for s in Status if int(s) not in spec_codes)


def test_describe_status() -> None:
    for status in Status:
        text = describe_status(status)
        assert isinstance(text, str)
        assert text
        assert text != describe_status(99999)
        assert describe_status(int(status)) == text
    assert describe_status(0) == "success"
    assert "did not answer" in describe_status(-4008)
    for unknown in (1, 999, 2000, 9999, -4007, -2, 1 << 40):
        text = describe_status(unknown)
        assert isinstance(text, str)
        assert "unknown" in text


def test_packet_types_match_spec() -> None:
    assert int(PacketType.HANDSHAKE) == 0x100
    assert int(PacketType.BLOCK_NOTIFY) == 0x101
    assert int(PacketType.RPC_REQUEST) == 0x102
    assert int(PacketType.GROUP_NOTIFY) == 0x103
    assert int(PacketType.AMOP_SUBTOPIC) == 0x110
    assert int(PacketType.AMOP_REQUEST) == 0x111
    assert int(PacketType.AMOP_BROADCAST) == 0x112
    assert int(PacketType.AMOP_RESPONSE) == 0x113
    assert int(PacketType.EVENT_SUBSCRIBE) == 0x120
    assert int(PacketType.EVENT_UNSUBSCRIBE) == 0x121
    assert int(PacketType.EVENT_PUSH) == 0x122
    assert EXT_RESPONSE == 0x0001
