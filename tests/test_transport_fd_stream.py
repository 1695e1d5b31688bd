"""``FdSocketStream`` over real loopback TCP: trio's stream rules, and TLS's cancellation rule."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from amop_trio._errors import ConnectionLostError
from amop_trio._security.tls import client_context_from_dir, server_context
from amop_trio._transport.fd_stream import FdSocketStream, ReplayStream, connection_stream
from amop_trio._transport.stream_io import StreamIO

pytestmark = pytest.mark.skipif(os.name != "posix", reason="FdSocketStream is POSIX only")


async def socket_stream_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """Two ends of one loopback TCP connection, as trio opens and accepts them."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    try:
        port = listeners[0].socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listeners[0].accept()
    finally:
        await listeners[0].aclose()
    return client, server


async def fd_stream_pair() -> tuple[FdSocketStream, FdSocketStream]:
    client, server = await socket_stream_pair()
    return FdSocketStream(client.socket), FdSocketStream(server.socket)


def clog(stream: FdSocketStream) -> None:
    """Fill the kernel's buffers until it takes no more, without blocking or cancelling."""
    while stream.try_send(b"x" * 65536):
        pass


async def clogged_fd_stream_pair() -> tuple[FdSocketStream, FdSocketStream]:
    left, right = await fd_stream_pair()
    clog(left)
    clog(right)
    return left, right


async def test_it_is_a_trio_half_closeable_stream() -> None:
    with trio.fail_after(60):
        await trio.testing.check_half_closeable_stream(fd_stream_pair, clogged_fd_stream_pair)


async def test_try_send_writes_what_the_kernel_takes_without_a_checkpoint() -> None:
    with trio.fail_after(10):
        ours, theirs = await fd_stream_pair()
        async with ours, theirs:
            with trio.testing.assert_no_checkpoints():
                assert ours.try_send(b"hello") == 5
            assert await theirs.receive_some(5) == b"hello"
            with trio.testing.assert_no_checkpoints():
                taken = ours.try_send(b"x" * (64 << 20))  # far beyond what loopback buffers hold
                assert 0 < taken < 64 << 20
                while sent := ours.try_send(b"x" * 65536):
                    taken += sent
                assert ours.try_send(b"y") == 0  # full: nothing taken, nothing raised

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ours.send_all, b"z" * 1000)  # blocks: the buffers are full
                await trio.testing.wait_all_tasks_blocked()
                assert ours.try_send(b"y") == 0  # another task is sending
                received = 0
                while received < taken + 1000:
                    received += len(await theirs.receive_some(1 << 20))


async def test_try_send_raises_once_the_peer_reset_or_the_stream_closed() -> None:
    with trio.fail_after(10):
        ours, theirs = await fd_stream_pair()
        theirs.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await theirs.aclose()  # an RST
        with pytest.raises(trio.BrokenResourceError, match="broken"):
            ours.try_send(b"x")
        with pytest.raises(trio.BrokenResourceError):  # and it stays broken
            await ours.send_all(b"x")
        await ours.aclose()
        with pytest.raises(trio.ClosedResourceError):
            ours.try_send(b"x")


async def test_bytes_read_before_come_first() -> None:
    with trio.fail_after(10):
        client, server = await socket_stream_pair()
        ours = connection_stream(server, b"GET ")
        assert isinstance(ours, FdSocketStream)
        async with ours, client:
            await client.send_all(b"/ HTTP/1.1")
            assert await ours.receive_some(2) == b"GE"
            assert await ours.receive_some() == b"T "
            received = b""
            while len(received) < 10:
                received += await ours.receive_some()
            assert received == b"/ HTTP/1.1"


async def test_other_streams_replay_the_bytes_read_before() -> None:
    with trio.fail_after(10):
        ours, theirs = trio.testing.memory_stream_pair()
        assert connection_stream(ours) is ours
        stream = connection_stream(ours, b"GET ")
        assert isinstance(stream, ReplayStream)
        await theirs.send_all(b"/")
        with trio.testing.assert_checkpoints():
            assert await stream.receive_some(3) == b"GET"
        assert await stream.receive_some(3) == b" "
        assert await stream.receive_some(3) == b"/"


async def test_reading_a_socket_another_task_closed_is_closed() -> None:
    with trio.fail_after(10):
        client, server = await socket_stream_pair()
        ours = FdSocketStream(server.socket)
        async with client:
            await server.aclose()  # the same socket, closed by its former owner
            with pytest.raises(trio.ClosedResourceError):
                await ours.receive_some()


# -- a cancelled send_all, on plain TCP and on TLS ---------------------------------------------


Opener = Callable[[], Awaitable[tuple[trio.abc.Stream, trio.abc.Stream]]]


@asynccontextmanager
async def opened(opener: Opener) -> AsyncIterator[tuple[trio.abc.Stream, trio.abc.Stream]]:
    ours, theirs = await opener()
    try:
        yield ours, theirs
    finally:
        await trio.aclose_forcefully(ours)
        await trio.aclose_forcefully(theirs)


def tls_pair(certs: Path) -> Opener:
    async def open_pair() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        client, server = await socket_stream_pair()
        ours = trio.SSLStream(client, client_context_from_dir(certs / "sdk"))
        theirs = trio.SSLStream(server, server_context(certs / "node0"), server_side=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ours.do_handshake)
            nursery.start_soon(theirs.do_handshake)
        return ours, theirs

    return open_pair


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_a_blocked_send_all_cancelled_leaves_the_stream_broken_on_tcp_as_on_tls(
    transport: str, chain_certs: Path
) -> None:
    with trio.fail_after(10):
        opener = tls_pair(chain_certs) if transport == "tls" else fd_stream_pair
        async with opened(opener) as (ours, _theirs):
            with trio.move_on_after(0.2) as scope:
                await ours.send_all(b"x" * (64 << 20))  # the peer does not read
            assert scope.cancelled_caught
            with trio.fail_after(1), pytest.raises(trio.BrokenResourceError):
                await ours.send_all(b"more")  # at once: the stream does not take it
            with trio.fail_after(1), pytest.raises(trio.BrokenResourceError):
                await ours.wait_send_all_might_not_block()
            with trio.fail_after(1), pytest.raises(ConnectionLostError, match="broken"):
                await StreamIO(ours, "peer").write(b"more")  # what the frame sockets see
            with trio.testing.assert_checkpoints():
                await ours.aclose()


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_a_send_all_cancelled_before_it_began_sends_nothing_and_breaks_nothing(
    transport: str, chain_certs: Path
) -> None:
    with trio.fail_after(10):
        opener = tls_pair(chain_certs) if transport == "tls" else fd_stream_pair
        async with opened(opener) as (ours, theirs):
            with trio.CancelScope() as scope:
                scope.cancel()
                await ours.send_all(b"never")
            assert scope.cancelled_caught
            await ours.send_all(b"after")
            assert await theirs.receive_some(100) == b"after"
