"""Frames over real TCP sockets: the shared stream, and the connection's outbox and writer.

A peer that stops reading fills the kernel's buffers: what a send does not
get out at once must follow, whole and in order; a send cut short halfway
must leave the socket refusing further sends; and a connection found broken
by another task's send is closed by its own task, not in the sender's stack.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing

from amop_trio._errors import ConnectionLostError
from amop_trio._transport.channel_socket import StreamSocket
from amop_trio._transport.connection import FrameConnection
from amop_trio._transport.fd_stream import FdSocketStream
from amop_trio._transport.stream_io import StreamIO
from amop_trio._wire.fisco2 import ChannelDecoder

HEADER = struct.Struct(">IH32si")
FRAME_DATA = 60_000


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[FdSocketStream, trio.SocketStream]]:
    """Two ends of one loopback TCP connection: ours on its descriptor, theirs as trio's."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    ours = FdSocketStream(client.socket)
    try:
        yield ours, server
    finally:
        for stream in (ours, server, *listeners):
            await trio.aclose_forcefully(stream)


def numbered_frame(i: int) -> bytes:
    data = i.to_bytes(4, "big") * (FRAME_DATA // 4)
    return HEADER.pack(HEADER.size + len(data), 0x35, b"%032d" % i, 0) + data


def connection(stream: trio.abc.Stream, outbox_size: int = 64) -> FrameConnection:
    return FrameConnection(
        StreamSocket(stream, remote="peer"), name="peer", outbox_size=outbox_size
    )


async def idle(_nursery: trio.Nursery) -> None:
    await trio.sleep_forever()


def run(conn: FrameConnection) -> Callable[[], Awaitable[str]]:
    return partial(conn.run, idle, ping_interval=3600, ping_timeout=3600)


async def read_frames(stream: trio.SocketStream, count: int) -> list[bytes]:
    decoder = ChannelDecoder(max_frame_size=1 << 20)
    frames: list[bytes] = []
    with trio.fail_after(10):
        while len(frames) < count:
            while (frame := decoder.next_frame_bytes()) is not None:
                frames.append(frame)
            if len(frames) < count:
                data = await stream.receive_some(65536)
                assert data, f"connection closed after {len(frames)} of {count} frames"
                decoder.feed(data)
    return frames


async def read_bytes(stream: trio.SocketStream, count: int) -> bytes:
    received = bytearray()
    with trio.fail_after(10):
        while len(received) < count:
            received += await stream.receive_some(1 << 20)
    return bytes(received)


# -- the shared stream ---------------------------------------------------------------------------


async def test_a_send_cut_short_halfway_makes_the_stream_refuse_sends() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ours, _theirs):
            io = StreamIO(ours, "peer")
            with trio.move_on_after(0.2) as scope:
                await io.write(b"x" * (64 << 20))  # far beyond what loopback buffers hold
            assert scope.cancelled_caught
            with pytest.raises(ConnectionLostError, match="interrupted midway"):
                await io.write(b"more")
            with pytest.raises(ConnectionLostError, match="interrupted midway"):
                io.try_send(b"more")


async def test_only_one_send_at_a_time_and_nothing_is_interleaved() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ours, theirs), trio.open_nursery() as nursery:
            io = StreamIO(ours, "peer")
            first = b"a" * (8 << 20)
            nursery.start_soon(io.write, first)
            await trio.testing.wait_all_tasks_blocked()
            assert io.try_send(b"b") is None  # the first send is still under way: nothing sent
            nursery.start_soon(io.write, b"c" * 1000)
            assert await read_bytes(theirs, len(first) + 1000) == first + b"c" * 1000


async def test_a_rest_left_by_try_send_goes_out_before_anything_else() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ours, theirs):
            io = StreamIO(ours, "peer")
            big = b"x" * (8 << 20)
            rest = io.try_send(big)  # the kernel takes part of it; the rest keeps the turn
            assert rest
            with trio.move_on_after(0.2):
                await io.write(b"mine")  # waits for the turn, is cancelled, and sends nothing
            async with trio.open_nursery() as nursery:
                nursery.start_soon(io.finish, rest)
                nursery.start_soon(io.write, b"last")
                assert await read_bytes(theirs, len(big) + 4) == big + b"last"


async def test_a_closed_peer_is_a_lost_connection() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ours, theirs):
            io = StreamIO(ours, "peer")
            await theirs.aclose()
            assert await io.receive() == b""
            lost = None
            for _ in range(100):  # the first sends may still be taken by the kernel
                try:
                    await io.write(b"x" * 65536)
                except ConnectionLostError as exc:
                    lost = exc
                    break
                await trio.sleep(0.001)
            assert lost is not None
            assert "broken" in str(lost)


async def test_reading_a_socket_another_task_closed_is_a_lost_connection() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ours, _theirs):
            io = StreamIO(ours, "peer")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ours.aclose)
                with pytest.raises(ConnectionLostError, match="closed"):
                    await io.receive()


# -- the connection ------------------------------------------------------------------------------


async def test_frames_sent_to_a_peer_that_stopped_reading_arrive_whole_and_in_order() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ours, theirs), trio.open_nursery() as nursery:
            conn = FrameConnection(
                StreamSocket(ours, remote="peer"), name="peer", outbox_size=64, outbox_bytes=1 << 22
            )
            nursery.start_soon(run(conn))
            accepted = 0
            while accepted < 10_000 and conn.send_nowait(numbered_frame(accepted)):
                accepted += 1
            # The kernel took some, a frame was cut by a full buffer, the outbox holds the rest.
            assert conn.outbox_used() > 0
            frames = await read_frames(theirs, accepted)
            assert frames == [numbered_frame(i) for i in range(accepted)]
            assert conn.outbox_used() == 0
            nursery.cancel_scope.cancel()


async def test_a_send_in_a_cancelled_scope_raises_cancelled_and_sends_nothing() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ours, theirs), trio.open_nursery() as nursery:
            conn = connection(ours)
            nursery.start_soon(run(conn))
            with trio.CancelScope() as scope:
                scope.cancel()
                await conn.send(numbered_frame(1))
            assert scope.cancelled_caught
            assert conn.outbox_used() == 0
            assert not conn.closed
            await conn.send(numbered_frame(2))
            assert await read_frames(theirs, 1) == [numbered_frame(2)]
            with trio.move_on_after(0.05):
                assert await theirs.receive_some(1) == b"", "sent more than the one frame"
            nursery.cancel_scope.cancel()


async def test_a_rest_is_finished_by_the_writer_after_a_cancelled_send() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ours, theirs), trio.open_nursery() as nursery:
            conn = connection(ours)
            nursery.start_soon(run(conn))
            big = numbered_frame(1) * 100  # about 6 MB in one frame's worth of bytes
            assert conn.send_nowait(big)  # the kernel takes part, the writer the rest
            with trio.CancelScope() as scope:
                scope.cancel()
                await conn.send(numbered_frame(2))
            assert not conn.closed
            assert await read_bytes(theirs, len(big)) == big
            nursery.cancel_scope.cancel()


class Recorder(FrameConnection):
    """A connection that notes which task ran its ``on_close``."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        super().__init__(StreamSocket(stream, remote="peer"), name="peer", outbox_size=64)
        self.closed_in: trio.lowlevel.Task | None = None
        self.ended = trio.Event()

    def on_close(self, reason: str) -> None:
        self.closed_in = trio.lowlevel.current_task()
        self.ended.set()


async def test_a_reset_peer_found_by_another_tasks_send_is_closed_by_its_own_task() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ours, theirs), trio.open_nursery() as nursery:
            conn = Recorder(ours)
            nursery.start_soon(run(conn))
            await trio.testing.wait_all_tasks_blocked()
            theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await theirs.aclose()  # an RST, not a FIN
            with trio.fail_after(5):
                while conn.send_nowait(
                    numbered_frame(0)
                ):  # raises nothing, whatever the socket says
                    await trio.sleep(0.01)
            # The send only marked it: nothing of the connection's closing ran in this task.
            assert conn.closed
            assert "broken" in conn.reason
            assert conn.closed_in is None
            with trio.fail_after(5):
                await conn.ended.wait()
            assert conn.closed_in is not trio.lowlevel.current_task()
            assert not conn.send_nowait(b"x")
            with pytest.raises(ConnectionLostError, match="broken"):
                await conn.send(b"x")


async def test_close_sends_what_was_queued_then_ends_in_the_connections_task() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ours, theirs), trio.open_nursery() as nursery:
            conn = Recorder(ours)
            nursery.start_soon(run(conn))
            sent = 0
            while conn.outbox_used() < 10:
                assert conn.send_nowait(numbered_frame(sent))
                sent += 1
            conn.close("done")
            assert conn.closed_in is None
            assert not conn.send_nowait(numbered_frame(sent))
            assert await read_frames(theirs, sent) == [numbered_frame(i) for i in range(sent)]
            with trio.fail_after(5):
                await conn.ended.wait()
            assert conn.closed_in is not trio.lowlevel.current_task()
            assert conn.reason == "done"


async def test_answers_pass_a_full_outbox_and_wait_room_waits_for_the_writer() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ours, theirs), trio.open_nursery() as nursery:
            conn = connection(ours, outbox_size=4)
            nursery.start_soon(run(conn))
            sent = 0
            while conn.send_nowait(
                numbered_frame(sent)
            ):  # until the kernel and the outbox are full
                sent += 1
            assert conn.outbox_used() == 4
            assert conn.send_answer_nowait(numbered_frame(sent))
            sent += 1
            assert conn.outbox_used() == 5
            with trio.move_on_after(0.1) as scope:
                await conn.wait_room()
            assert scope.cancelled_caught
            async with trio.open_nursery() as readers:
                readers.start_soon(read_frames, theirs, sent)
                with trio.fail_after(10):
                    await conn.wait_room()
            conn.close("done")
            assert not conn.send_answer_nowait(b"x")
            nursery.cancel_scope.cancel()
