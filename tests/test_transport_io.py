"""Writing and reading frames straight on a TCP socket's descriptor, over real sockets.

A peer that stops reading fills the kernel's buffers: what a write does not
get out at once must follow, whole and in order, and a write cut short
halfway must leave the connection refusing further writes.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing

from amop_trio._errors import ConnectionLostError
from amop_trio._transport.channel_socket import StreamSocket
from amop_trio._transport.connection import FrameConnection
from amop_trio._transport.fd_stream import StreamIO
from amop_trio._wire.fisco2 import ChannelDecoder

HEADER = struct.Struct(">IH32si")
FRAME_DATA = 60_000


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    """Two ends of one loopback TCP connection."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    try:
        yield client, server
    finally:
        for stream in (client, server, *listeners):
            await trio.aclose_forcefully(stream)


def numbered_frame(i: int) -> bytes:
    data = i.to_bytes(4, "big") * (FRAME_DATA // 4)
    return HEADER.pack(HEADER.size + len(data), 0x35, b"%032d" % i, 0) + data


async def idle(_nursery: trio.Nursery) -> None:
    await trio.sleep_forever()


async def read_frames(stream: trio.SocketStream, count: int) -> list[bytes]:
    decoder = ChannelDecoder(max_frame_size=1 << 20)
    frames: list[bytes] = []
    with trio.fail_after(10):
        await _read_into(stream, decoder, frames, count)
    return frames


async def _read_into(
    stream: trio.SocketStream, decoder: ChannelDecoder, frames: list[bytes], count: int
) -> None:
    while len(frames) < count:
        while (frame := decoder.next_frame_bytes()) is not None:
            frames.append(frame)
        if len(frames) < count:
            data = await stream.receive_some(65536)
            assert data, f"connection closed after {len(frames)} of {count} frames"
            decoder.feed(data)


async def test_frames_sent_to_a_peer_that_stopped_reading_arrive_whole_and_in_order() -> None:
    async with tcp_pair() as (ours, theirs), trio.open_nursery() as nursery:
        conn = FrameConnection(
            StreamSocket(ours, remote="peer"), name="peer", outbox_size=64, outbox_bytes=1 << 22
        )
        nursery.start_soon(partial(conn.run, idle, ping_interval=3600, ping_timeout=3600))
        accepted = 0
        while accepted < 10_000 and conn.send_nowait(numbered_frame(accepted)):
            accepted += 1
        # The kernel took some, a frame was cut by a full buffer, the outbox holds the rest.
        assert conn.outbox_used() > 0
        assert conn.sock.backlogged or conn.outbox_used() == 64
        frames = await read_frames(theirs, accepted)
        assert frames == [numbered_frame(i) for i in range(accepted)]
        assert not conn.sock.backlogged
        assert conn.outbox_used() == 0
        nursery.cancel_scope.cancel()


async def test_a_write_cut_short_halfway_makes_the_connection_refuse_writes() -> None:
    async with tcp_pair() as (ours, _theirs):
        io = StreamIO(ours, "peer")
        with trio.move_on_after(0.2) as scope:
            await io.write(b"x" * (64 << 20))  # far beyond what loopback buffers hold
        assert scope.cancelled_caught
        assert io.interrupted
        with pytest.raises(ConnectionLostError, match="interrupted midway"):
            await io.write(b"more")
        assert not io.write_nowait(b"more")


async def test_only_one_write_at_a_time_and_nothing_is_interleaved() -> None:
    async with tcp_pair() as (ours, theirs), trio.open_nursery() as nursery:
        io = StreamIO(ours, "peer")
        first = b"a" * (8 << 20)
        nursery.start_soon(io.write, first)
        await trio.testing.wait_all_tasks_blocked()
        assert not io.write_nowait(b"b")  # the first write is still under way
        nursery.start_soon(io.write, b"c" * 1000)
        received = bytearray()
        with trio.fail_after(10):
            while len(received) < len(first) + 1000:
                received += await theirs.receive_some(1 << 20)
        assert bytes(received) == first + b"c" * 1000


async def test_a_closed_peer_is_a_lost_connection() -> None:
    async with tcp_pair() as (ours, theirs):
        io = StreamIO(ours, "peer")
        await theirs.aclose()
        assert await io.receive() == b""
        lost = None
        for _ in range(100):  # the first writes may still be taken by the kernel
            try:
                await io.write(b"x" * 65536)
            except ConnectionLostError as exc:
                lost = exc
                break
            await trio.sleep(0.001)
        assert lost is not None
        assert "broken" in str(lost)


async def test_a_reset_peer_closes_only_its_connection_when_sent_to_without_waiting() -> None:
    async with tcp_pair() as (ours, theirs), trio.open_nursery() as nursery:
        conn = FrameConnection(StreamSocket(ours, remote="peer"), name="peer", outbox_size=64)
        nursery.start_soon(partial(conn.run, idle, ping_interval=3600, ping_timeout=3600))
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await theirs.aclose()  # an RST, not a FIN
        with trio.fail_after(5):
            while conn.send_nowait(numbered_frame(0)):  # raises nothing, whatever the socket says
                await trio.sleep(0.01)
        assert conn.closed
        assert "broken" in conn.reason
        nursery.cancel_scope.cancel()


async def test_reading_a_socket_another_task_closed_is_a_lost_connection() -> None:
    async with tcp_pair() as (ours, _theirs):
        io = StreamIO(ours, "peer")
        await ours.aclose()
        with pytest.raises(ConnectionLostError, match="closed"):
            await io.receive()


async def test_a_cancelled_writer_leaves_a_frame_begun_without_waiting_whole() -> None:
    async with tcp_pair() as (ours, theirs):
        io = StreamIO(ours, "peer")
        big = b"x" * (8 << 20)
        assert io.write_nowait(big)  # the kernel takes part of it; the rest waits
        assert io.backlogged
        with trio.move_on_after(0.2):
            await io.write(b"mine")  # must finish the other frame first, and is cancelled
        assert not io.interrupted
        assert io.backlogged

        received = bytearray()

        async def drain() -> None:
            while len(received) < len(big) + 4:
                received.extend(await theirs.receive_some(1 << 20))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            with trio.fail_after(10):
                await io.write(b"last")
        assert bytes(received) == big + b"last"


async def test_the_writer_finishes_a_backlog_after_a_cancelled_send() -> None:
    async with tcp_pair() as (ours, theirs), trio.open_nursery() as nursery:
        conn = FrameConnection(StreamSocket(ours, remote="peer"), name="peer", outbox_size=64)
        nursery.start_soon(partial(conn.run, idle, ping_interval=3600, ping_timeout=3600))
        big = numbered_frame(1) * 100  # about 6 MB in one frame's worth of bytes
        assert conn.send_nowait(big)
        assert conn.sock.backlogged
        with trio.CancelScope() as scope:
            scope.cancel()
            await conn.send(numbered_frame(2))
        assert not conn.closed
        received = bytearray()
        with trio.fail_after(10):
            while len(received) < len(big):
                received += await theirs.receive_some(1 << 20)
        assert bytes(received[: len(big)]) == big
        nursery.cancel_scope.cancel()
