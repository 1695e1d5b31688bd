"""Channel frames over a byte stream, and telling WebSocket from channel by the first bytes."""

from __future__ import annotations

import struct

import pytest
import trio
import trio.testing

from amop_trio._errors import ConnectionLostError, FrameTooLargeError, WireError
from amop_trio._transport.channel_socket import StreamSocket, endpoint_url
from amop_trio._transport.fd_stream import connection_stream
from amop_trio._transport.sniff import Protocol, classify, sniff

HEADER = struct.Struct(">IH32si")


def frame(ptype: int, data: bytes = b"") -> bytes:
    return HEADER.pack(HEADER.size + len(data), ptype, b"0" * 32, 0) + data


def pair(max_frame_size: int = 1024) -> tuple[StreamSocket, trio.abc.Stream]:
    ours, theirs = trio.testing.memory_stream_pair()
    return StreamSocket(ours, max_frame_size=max_frame_size, remote="test"), theirs


async def test_frames_are_found_in_any_chunking() -> None:
    sock, peer = pair()
    wire = frame(0x13, b"0") + frame(0x30, b"\x02tdata") + frame(0x32, b"[]")
    for i in range(0, len(wire), 7):
        await peer.send_all(wire[i : i + 7])
    assert [await sock.receive() for _ in range(3)] == [
        frame(0x13, b"0"),
        frame(0x30, b"\x02tdata"),
        frame(0x32, b"[]"),
    ]


async def test_an_oversized_length_fails_before_its_body_arrives() -> None:
    sock, peer = pair(max_frame_size=100)
    await peer.send_all(HEADER.pack(101, 0x30, b"0" * 32, 0))
    with trio.fail_after(1), pytest.raises(FrameTooLargeError, match="101"):
        await sock.receive()
    sock2, peer2 = pair()
    await peer2.send_all(struct.pack(">I", 5))  # under the 42-byte header
    with trio.fail_after(1), pytest.raises(WireError, match="length field 5"):
        await sock2.receive()


async def test_the_peer_closing_midframe_is_a_lost_connection() -> None:
    sock, peer = pair()
    await peer.send_all(frame(0x13, b"0")[:20])
    await peer.aclose()
    with pytest.raises(ConnectionLostError, match="middle of a frame"):
        await sock.receive()


async def test_ping_waits_for_a_frame_and_sends_a_heartbeat_if_set() -> None:
    sock, peer = pair()
    await peer.send_all(frame(0x13, b"1"))
    await sock.receive()
    with trio.fail_after(1):
        await sock.ping()  # a frame arrived since the last ping
    with trio.move_on_after(0.1) as scope:
        await sock.ping()  # nothing new
    assert scope.cancelled_caught

    sock.heartbeat = lambda: frame(0x13, b"0")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sock.ping)
        assert await peer.receive_some(1024) == frame(0x13, b"0")
        await peer.send_all(frame(0x13, b"1"))
        await sock.receive()


def test_classify_decides_on_the_http_upgrade() -> None:
    assert classify(b"") is None
    assert classify(b"GE") is None
    assert classify(b"GET ") is Protocol.WEBSOCKET
    assert classify(b"GET /ws HTTP/1.1") is Protocol.WEBSOCKET
    assert classify(b"\x00") is Protocol.CHANNEL
    assert classify(b"GEX") is Protocol.CHANNEL
    assert classify(frame(0x14)) is Protocol.CHANNEL


async def test_sniffed_bytes_are_read_first_by_the_protocol_that_takes_the_connection() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    await theirs.send_all(b"G")
    await theirs.send_all(b"ET / HTTP/1.1\r\n")
    protocol, prefix = await sniff(ours)
    assert protocol is Protocol.WEBSOCKET
    assert prefix == b"GET "
    stream = connection_stream(ours, prefix)
    received = b""
    while len(received) < 16:
        received += await stream.receive_some(3)
    assert received == b"GET / HTTP/1.1\r\n"

    ours, theirs = trio.testing.memory_stream_pair()
    await theirs.send_all(frame(0x13, b"0"))
    protocol, prefix = await sniff(ours)
    assert protocol is Protocol.CHANNEL
    sock = StreamSocket(connection_stream(ours, prefix), remote="test")
    assert await sock.receive() == frame(0x13, b"0")

    ours, theirs = trio.testing.memory_stream_pair()
    await theirs.aclose()
    assert await sniff(ours) == (None, b"")


def test_channel_endpoints() -> None:
    assert endpoint_url("channel://127.0.0.1:20200/") == "channel://127.0.0.1:20200"
    with pytest.raises(ValueError, match="host:port"):
        endpoint_url("channel://127.0.0.1")
    with pytest.raises(ValueError, match="path"):
        endpoint_url("channel://127.0.0.1:1/x")
