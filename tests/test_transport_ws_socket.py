"""WebSocket connections against real peers: other libraries, hand-written hostile ones.

A trio-websocket client talks to a node, and amop_trio's client to a
trio-websocket server, with a clean closing handshake both ways. A peer
written out by hand (``RawPeer``: it parses nothing it does not have to, so
it sees exactly the close code the node sends) checks the close code of
each protocol error, that the node waits for the peer's Close before it
drops the connection, and that a flood of empty continuation frames is
ended with 1009 while a healthy pair keeps talking through the node.
"""

from __future__ import annotations

import json
import struct

import pytest
import trio
import trio_websocket

from amop_trio import NodeLimits, open_node
from amop_trio._transport import ws_socket
from amop_trio._transport.ws_socket import CLOSE_TIMEOUT, WORK_PER_CHECKPOINT, FrameSocket
from amop_trio._wire import rfc6455 as ws

from .spec_bytes import HANDSHAKE, new_seq, pack_frame, parse_frame
from .test_hostile import SLACK, STEP, under_fire, ws_frame
from .test_wire_rfc6455 import frame as forge

HELLO = json.dumps({"minVersion": 0, "maxVersion": 2, "moduleID": 2}).encode()
UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
)


def parse_server_frame(buffer: bytes) -> tuple[int, bytes, int] | None:
    """(opcode, payload, bytes used) of the unmasked frame starting ``buffer``, if whole."""
    if len(buffer) < 2:
        return None
    size, at = buffer[1] & 0x7F, 2
    if size == 126:
        if len(buffer) < 4:
            return None
        size, at = struct.unpack_from(">H", buffer, 2)[0], 4
    elif size == 127:
        if len(buffer) < 10:
            return None
        size, at = struct.unpack_from(">Q", buffer, 2)[0], 10
    if len(buffer) < at + size:
        return None
    return buffer[0] & 0x0F, buffer[at : at + size], at + size


class RawPeer:
    """A WebSocket client written out by hand, to send what no library would."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""
        #: When the node's end of the stream (FIN or reset) was seen.
        self.eof_at: float | None = None

    @classmethod
    async def connect(cls, port: int) -> RawPeer:
        peer = cls(await trio.open_tcp_stream("127.0.0.1", port))
        await peer.stream.send_all(UPGRADE)
        while b"\r\n\r\n" not in peer.buffer:
            assert await peer._read(), "the node closed during the upgrade"
        head, _, peer.buffer = peer.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert b"sec-websocket-extensions" not in head.lower()  # offered, declined
        return peer

    async def _read(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:  # a reset: the node closed with our bytes unread
            data = b""
        if not data:
            self.eof_at = trio.current_time()
            return False
        self.buffer += data
        return True

    async def send(self, data: bytes) -> bool:
        """False once the node closed or reset the connection."""
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def next_frame(self) -> tuple[int, bytes] | None:
        """The node's next frame; None at the end of the stream."""
        while (found := parse_server_frame(self.buffer)) is None:
            if not await self._read():
                return None
        opcode, payload, used = found
        self.buffer = self.buffer[used:]
        return opcode, payload

    async def handshake(self) -> None:
        seq = new_seq()
        await self.send(ws_frame(ws.BINARY, pack_frame(HANDSHAKE, seq, HELLO)))
        while (frame := await self.next_frame()) is not None:
            answer = parse_frame(frame[1]) if frame[0] == ws.BINARY else None
            if answer is not None and answer.seq == seq:
                assert answer.status == 0, answer
                return
        raise AssertionError("the node closed instead of answering the handshake")

    async def close_code(self) -> int | None:
        """The code of the node's Close (None for a Close without one); fails on EOF first."""
        while (frame := await self.next_frame()) is not None:
            if frame[0] == ws.CLOSE:
                return struct.unpack(">H", frame[1][:2])[0] if frame[1] else None
        raise AssertionError("the node closed the connection without a Close frame")

    async def wait_eof(self) -> float:
        while self.eof_at is None:
            self.buffer = b""
            await self._read()
        return self.eof_at

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


# -- other libraries ------------------------------------------------------------------------


async def test_a_trio_websocket_client_talks_to_a_node() -> None:
    with trio.fail_after(20):
        async with open_node("127.0.0.1:0") as node, trio.open_nursery() as nursery:
            conn = await trio_websocket.connect_websocket_url(nursery, f"ws://{node.endpoint}/")
            seq = new_seq()
            await conn.send_message(pack_frame(HANDSHAKE, seq, HELLO))
            message = await conn.get_message()
            assert isinstance(message, bytes)
            answer = parse_frame(message)
            assert answer is not None
            assert (answer.seq, answer.status) == (seq, 0)
            start = trio.current_time()
            await conn.aclose(code=4000, reason="done")
            assert trio.current_time() - start < CLOSE_TIMEOUT, "the node did not answer"
            assert conn.closed is not None
            assert conn.closed.code == 4000  # the node answered with our code

            # The node closing: a text message is refused with 1003.
            conn = await trio_websocket.connect_websocket_url(nursery, f"ws://{node.endpoint}/")
            await conn.send_message("text")
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await conn.get_message()
            assert closed.value.reason is not None
            assert closed.value.reason.code == ws.UNSUPPORTED_DATA
            # trio-websocket clients leave the TCP socket open when the server closed first.
            await trio.aclose_forcefully(conn._stream)


async def test_amop_trios_client_talks_to_a_trio_websocket_server() -> None:
    codes: list[int] = []

    async def echo(request: trio_websocket.WebSocketRequest) -> None:
        conn = await request.accept()
        try:
            while True:
                await conn.send_message(await conn.get_message())
        except trio_websocket.ConnectionClosed as exc:
            codes.append(-1 if exc.reason is None else exc.reason.code)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(trio_websocket.serve_websocket, echo, "127.0.0.1", 0, None)
            sock = await ws_socket.connect(
                f"ws://127.0.0.1:{server.port}/", ssl_context=None, max_frame_size=1 << 20
            )
            for size in (0, 125, 126, 65536, 70000):
                await sock.send(bytes(size))
                assert await sock.receive() == bytes(size)
            start = trio.current_time()
            await sock.aclose(1000, "bye")
            assert trio.current_time() - start < CLOSE_TIMEOUT, "waited out the close timeout"
            assert sock.state is ws.ConnectionState.CLOSED
            nursery.cancel_scope.cancel()
    assert codes == [1000]


async def test_the_upgrade_and_what_follows_it_in_one_write() -> None:
    """Frames sent with the upgrade request reach the decoder; a bad request gets an answer."""
    seq = new_seq()
    with trio.fail_after(20):
        async with open_node("127.0.0.1:0") as node:
            stream = await trio.open_tcp_stream("127.0.0.1", node.port)
            async with stream:
                first = ws_frame(ws.BINARY, pack_frame(HANDSHAKE, seq, HELLO))
                await stream.send_all(UPGRADE + first)
                peer = RawPeer(stream)
                while b"\r\n\r\n" not in peer.buffer:
                    assert await peer._read()
                head, _, peer.buffer = peer.buffer.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 101 ")
                frame = await peer.next_frame()
                assert frame is not None
                answer = parse_frame(frame[1])
                assert answer is not None
                assert (answer.seq, answer.status) == (seq, 0)
            stream = await trio.open_tcp_stream("127.0.0.1", node.port)
            async with stream:
                await stream.send_all(UPGRADE.replace(b"Host: 127.0.0.1\r\n", b""))
                answer_head = b""
                while data := await stream.receive_some(4096):
                    answer_head += data
                assert answer_head.startswith(b"HTTP/1.1 400 ")


# -- close codes, and the closing handshake -------------------------------------------------------

CLOSE_CODES = {
    "text that is not UTF-8": (ws_frame(ws.TEXT, b"\xc3\x28"), 1007),
    "text": (ws_frame(ws.TEXT, b"hello"), 1003),
    "close code 999": (ws_frame(ws.CLOSE, struct.pack(">H", 999)), 1002),
    "close code 1005": (ws_frame(ws.CLOSE, struct.pack(">H", 1005)), 1002),
    "1-byte close": (ws_frame(ws.CLOSE, b"\x03"), 1002),
    "close reason not UTF-8": (ws_frame(ws.CLOSE, struct.pack(">H", 1000) + b"\xff"), 1007),
    "close code 4000": (ws_frame(ws.CLOSE, struct.pack(">H", 4000) + b"bye"), 4000),
    "close without a code": (ws_frame(ws.CLOSE), None),
    "a 16-bit length for a short frame": (
        forge(ws.BINARY, pack_frame(HANDSHAKE, new_seq(), HELLO), length_bytes=2),
        1002,
    ),
    "ping with a 16-bit length": (bytes([0x89, 0xFE, 0, 5]) + b"\0" * 9, 1002),
    "declared too big": (ws_frame(ws.BINARY, length=(64 << 20) + 1), 1009),
}


@pytest.mark.parametrize(("data", "code"), CLOSE_CODES.values(), ids=CLOSE_CODES.keys())
async def test_the_node_closes_with_the_code_of_the_error(data: bytes, code: int | None) -> None:
    with trio.fail_after(20):
        async with open_node("127.0.0.1:0") as node:
            peer = await RawPeer.connect(node.port)
            try:
                await peer.handshake()
                await peer.send(data)
                assert await peer.close_code() == code
                await peer.wait_eof()
            finally:
                await peer.aclose()


@pytest.mark.parametrize("answer_after", [0.2, None])
async def test_the_node_waits_for_the_peers_close_for_a_while(answer_after: float | None) -> None:
    """No AMOP handshake in time: the node sends a Close (1008) and drops the TCP
    connection once the peer answers, or after CLOSE_TIMEOUT if it never does."""
    with trio.fail_after(20):
        async with open_node("127.0.0.1:0", limits=NodeLimits(handshake_timeout=0.3)) as node:
            peer = await RawPeer.connect(node.port)
            try:
                assert await peer.close_code() == 1008
                closed_at = trio.current_time()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(peer.wait_eof)  # notes the moment the node hangs up
                    if answer_after is not None:
                        await trio.sleep(answer_after)
                        await peer.send(ws_frame(ws.CLOSE, struct.pack(">H", 1008)))
                assert peer.eof_at is not None
                waited = peer.eof_at - closed_at
                if answer_after is not None:
                    assert answer_after <= waited < answer_after + SLACK
                else:
                    assert CLOSE_TIMEOUT * 0.8 <= waited < CLOSE_TIMEOUT + SLACK
            finally:
                await peer.aclose()


# -- floods -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flood", "messages"),
    [
        (ws_frame(ws.PING, b"p") * 2000 + ws_frame(ws.BINARY, b"end"), 1),
        (
            ws_frame(ws.BINARY, b"x", fin=False)
            + ws_frame(ws.CONTINUATION, fin=False) * 2000
            + ws_frame(ws.CONTINUATION, b"end"),
            1,
        ),
        (ws_frame(ws.BINARY, b"m") * 2000 + ws_frame(ws.BINARY, b"end"), 2001),
    ],
    ids=["pings", "empty fragments", "small messages"],
)
async def test_receive_lets_other_tasks_run_during_a_flood(flood: bytes, messages: int) -> None:
    """All of the flood is read at once: only the reader's own checkpoints let others run."""
    ours, theirs = trio.socket.socketpair()
    sock = FrameSocket(
        trio.SocketStream(ours), client=False, max_frame_size=1 << 20, remote="flooder"
    )
    peer = trio.SocketStream(theirs)
    await peer.send_all(flood)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async def drain() -> None:  # the pongs
        while await peer.receive_some(65536):
            pass

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            nursery.start_soon(tick)
            await trio.lowlevel.checkpoint()
            before = ticks
            for _ in range(messages - 1):
                await sock.receive()
            assert (await sock.receive()).endswith(b"end")
            ran = ticks - before
            nursery.cancel_scope.cancel()
    await sock.aclose()
    await peer.aclose()
    assert ran >= 2000 // WORK_PER_CHECKPOINT - 2, f"other tasks ran {ran} times"


async def test_a_flood_of_empty_continuation_frames_is_closed_with_1009() -> None:
    """After one unfinished binary frame, each flooder sends 60,000 empty continuation
    frames: the node refuses the message at its MAX_FRAGMENTS-th frame, and the
    healthy pair that ``under_fire`` keeps talking through the node never notices."""
    flood = ws_frame(ws.CONTINUATION, fin=False) * 10_000
    with trio.fail_after(40):
        async with under_fire("continuation-flood") as h:

            async def flooder() -> None:
                peer = await RawPeer.connect(h.port)
                try:
                    await peer.handshake()
                    start = trio.current_time()
                    code: list[int | None] = []

                    async def read_close() -> None:
                        code.append(await peer.close_code())

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(read_close)
                        await peer.send(ws_frame(ws.BINARY, b"x", fin=False))
                        for _ in range(6):
                            if not await peer.send(flood):
                                break
                    assert code == [1009]
                    took = await peer.wait_eof() - start
                    assert took < STEP, f"the flood went on for {took:.1f} s"
                    h.cases += 1
                    h.closed("continuation flood")
                finally:
                    await peer.aclose()

            for _ in range(3):
                async with trio.open_nursery() as nursery:
                    for _ in range(3):
                        nursery.start_soon(flooder)


async def test_receive_is_a_cancel_point_even_with_frames_buffered() -> None:
    """A cancelled receive takes nothing: the frame stays for the next call."""
    ours, theirs = trio.socket.socketpair()
    sock = FrameSocket(trio.SocketStream(ours), client=False, max_frame_size=1 << 20, remote="peer")
    peer = trio.SocketStream(theirs)
    await peer.send_all(ws_frame(ws.BINARY, b"one") + ws_frame(ws.BINARY, b"two"))
    with trio.fail_after(5):
        assert await sock.receive() == b"one"
        with trio.CancelScope() as scope:
            scope.cancel()
            await sock.receive()
        assert scope.cancelled_caught
        assert await sock.receive() == b"two"
    await sock.aclose()
    await peer.aclose()
