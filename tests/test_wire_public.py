"""The public sans-I/O codec, used as an application would: only ``amop_trio.wire`` names.

Round trips through each encoder and decoder, and the refusals an application
can meet (all of them ``amop_trio`` errors). ``test_wire_fisco3.py`` checks the
same codec field by field, against the spec's golden bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amop_trio import AmopError, EncodeError, FrameTooLargeError, WireError, wire

fast = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

frames = st.builds(
    wire.Frame,
    type=st.sampled_from(list(wire.PacketType)) | st.integers(0, 0xFFFF),
    seq=st.binary(max_size=64),
    payload=st.binary(max_size=300),
    status=st.integers(-0x8000, 0x7FFF),
    ext=st.integers(0, 0xFFFF),
    version=st.integers(0, 0xFFFF),
)


@fast
@given(frames)
def test_frames_round_trip(frame: wire.Frame) -> None:
    assert wire.decode_frame(wire.encode_frame(frame)) == frame


@fast
@given(st.text(max_size=40), st.binary(max_size=200), st.integers(0, 0xFFFFFFFF))
def test_amop_bodies_round_trip(topic: str, data: bytes, version: int) -> None:
    body = wire.decode_amop_body(wire.encode_amop_body(topic, data, version=version))
    assert body == wire.AmopBody(topic=topic, data=data, version=version)


@fast
@given(st.lists(st.text(max_size=20), max_size=8))
def test_topic_sets_round_trip(topics: list[str]) -> None:
    assert wire.decode_subtopic(wire.encode_subtopic(topics)) == sorted(set(topics))


def test_a_request_and_its_answer_as_an_application_builds_them() -> None:
    seq = wire.new_seq()
    body = wire.encode_amop_body("hello", b"hi")
    request = wire.Frame(wire.PacketType.AMOP_REQUEST, seq, body)
    received = wire.decode_frame(wire.encode_frame(request))
    assert received.type == wire.PacketType.AMOP_REQUEST
    assert not received.is_response
    assert wire.decode_amop_body(received.payload) == wire.AmopBody("hello", b"hi")

    answer = wire.Frame(
        wire.PacketType.AMOP_RESPONSE,
        received.seq,
        b"nobody",
        status=wire.Status.NO_SUBSCRIBER_NODE,
        ext=wire.EXT_RESPONSE,
    )
    got = wire.decode_frame(wire.encode_frame(answer))
    assert got.is_response
    assert got.seq == seq
    assert got.status == wire.Status.NO_SUBSCRIBER_NODE
    assert "subscri" in wire.describe_status(got.status)


def test_handshakes_round_trip() -> None:
    request = wire.HandshakeRequest(extras=frozenset({"acks"}))
    assert wire.HandshakeRequest.decode(request.encode()) == request
    response = wire.HandshakeResponse(protocol_version=2, extra={"nodeId": "n"})
    assert wire.HandshakeResponse.decode(response.encode()) == response
    assert json.loads(response.encode())["protocolVersion"] == 2


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 5, wire.encode_frame(wire.Frame(0x111, b"seq", b"x"))[:-4]],
    ids=["empty", "short", "truncated"],
)
def test_malformed_frames_are_wire_errors(data: bytes) -> None:
    with pytest.raises(WireError):
        wire.decode_frame(data)


def test_a_frame_over_the_limit_is_refused_before_it_is_read() -> None:
    data = wire.encode_frame(wire.Frame(0x111, b"s", b"x" * 100))
    assert len(data) < wire.DEFAULT_MAX_FRAME_SIZE
    with pytest.raises(FrameTooLargeError):
        wire.decode_frame(data, max_size=len(data) - 1)
    assert wire.decode_frame(data, max_size=len(data)).payload == b"x" * 100


@pytest.mark.parametrize(
    ("decoder", "payload"),
    [
        (wire.decode_amop_body, b"\x00\x00"),
        (wire.decode_amop_body, b"\x00\x00\x00\x00\x00\x09ab"),
        (wire.decode_subtopic, b"not json"),
        (wire.decode_subtopic, b"[1, 2]"),
        (wire.HandshakeRequest.decode, b"{}}"),
        (wire.HandshakeResponse.decode, b'{"protocolVersion": "2"}'),
    ],
)
def test_malformed_payloads_are_wire_errors(
    decoder: Callable[[bytes], object], payload: bytes
) -> None:
    with pytest.raises(WireError):
        decoder(payload)


def test_what_cannot_be_encoded_is_an_encode_error() -> None:
    with pytest.raises(EncodeError):
        wire.encode_amop_body("t" * 0x10000, b"")  # the topic length is a u16
    with pytest.raises(EncodeError):
        wire.encode_frame(wire.Frame(0x10000, b"", b""))  # so is the packet type
    with pytest.raises(EncodeError):
        wire.encode_amop_body("\ud800", b"")  # not UTF-8
    for error in (WireError, EncodeError, FrameTooLargeError):
        assert issubclass(error, AmopError)
