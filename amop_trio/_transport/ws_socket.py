"""Frames over WebSocket: one binary message per frame, on the codec of ``_wire.rfc6455``.

A generic WebSocket library runs a reader task of its own and hands each
message over a channel; on a request/reply path that crosses four WebSockets
per round trip, those hand-offs dominate. Here ``FrameSocket.receive`` feeds
what it reads to the sans-I/O codec and returns the next whole binary message
itself, answering pings and closes on the way; ``send`` writes under a lock. Control
frames are therefore seen only while someone reads, which every AMOP
connection does.

Closing follows RFC 6455 section 7: ``aclose`` sends a Close and waits, for
at most ``CLOSE_TIMEOUT``, for the peer's before dropping the TCP
connection; a peer's Close is answered with its own code. A peer that breaks
the protocol gets a Close with the code its error carries (1002, 1007 or
1009) and is dropped at once. The upgrade before all that is
``client_handshake`` and ``server_handshake``, on ``_wire.ws_upgrade``.

Transport errors are translated here, once: everything above sees
``ConnectionLostError`` when the peer or the network went away, and
``WireError`` when the peer sent something that is not a frame.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

import trio

from .._errors import AmopError, ConnectError, ConnectionLostError, WireError
from .._wire import rfc6455 as ws
from .._wire.budget import BufferBudget
from .._wire.ws_upgrade import ClientUpgrade, ServerUpgrade, UpgradeRefused
from .fd_stream import RECEIVE_SIZE, open_stream
from .stream_io import OverStreamIO, StreamIO

#: Seconds a connection's opening (TLS and WebSocket upgrade) may take.
HANDSHAKE_TIMEOUT = 10.0
#: Seconds to spend saying goodbye (our Close, the peer's answer) before dropping the connection.
CLOSE_TIMEOUT = 0.5
#: Frames ``receive`` decodes from bytes already read before it lets other tasks run.
WORK_PER_CHECKPOINT = 64

_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)


class FrameSocket(OverStreamIO):
    """One WebSocket carrying AMOP frames: one reader task, any number of senders.

    ``budget``, if given, holds the bytes of a message begun and not yet
    whole; one it cannot hold closes the connection with 1009.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        client: bool,
        max_frame_size: int,
        remote: str,
        received: bytes = b"",
        budget: BufferBudget | None = None,
    ) -> None:
        self._stream = stream
        self._mask = client
        self._codec = ws.WsConnection(client=client, max_message=max_frame_size, budget=budget)
        self._io = StreamIO(stream, remote, received=received)
        self._pongs: dict[bytes, trio.Event] = {}
        #: A Close went out: nothing more may be sent.
        self._closed = False
        #: Our Close could not be written: no answer will come.
        self._unanswerable = False
        #: A task is reading the stream: ``receive``, or ``aclose`` awaiting the peer's Close.
        self._reading = False
        self._read_done: trio.Event | None = None
        #: Frames decoded since the reader last waited for the socket.
        self._burst = 0
        self.max_frame_size = max_frame_size
        #: ``host:port`` of the peer, fixed at connection time.
        self.remote = remote

    @property
    def state(self) -> ws.ConnectionState:
        """Where the closing handshake stands."""
        return self._codec.state

    async def send(self, frame: bytes) -> None:
        """Send one frame as one binary message."""
        await self._write(ws.encode_frame(ws.BINARY, frame, mask=self._mask))

    async def send_many(self, frames: Sequence[bytes]) -> None:
        """Send frames as consecutive binary messages, in one write."""
        mask = self._mask
        await self._write(b"".join([ws.encode_frame(ws.BINARY, f, mask=mask) for f in frames]))

    def try_send(self, frame: bytes) -> memoryview | None:
        """Send one frame as far as the kernel takes it now (see ``StreamIO.try_send``)."""
        if self._closed:
            raise ConnectionLostError(f"connection to {self.remote} is closing")
        if not self._io.can_try:
            return None
        return self._io.try_send(ws.encode_frame(ws.BINARY, frame, mask=self._mask))

    async def receive(self) -> bytes:
        """The next frame; ``ConnectionLostError`` once the peer or network is gone.

        Control frames and fragments are handled on the way. After
        ``WORK_PER_CHECKPOINT`` frames decoded from bytes already read
        (messages, control frames, fragments, over one call or many), it lets
        other tasks run, so a peer that floods cannot keep the scheduler to itself.
        """
        if self._reading:
            raise self._busy()
        codec = self._codec
        if codec.buffered:  # a frame may be returned without waiting for the socket
            await trio.lowlevel.checkpoint_if_cancelled()
        self._reading = True
        try:
            while True:
                if self._burst >= WORK_PER_CHECKPOINT:
                    self._burst = 0
                    await trio.lowlevel.checkpoint()
                try:
                    event = codec.next_event()
                except ws.WebSocketError as exc:
                    raise await self._fail(exc) from None
                if event is None:
                    await self._read_more()  # waits for the socket: other tasks ran
                    self._burst = 0
                    continue
                self._burst += 1
                if event.opcode == ws.BINARY:
                    # The hot path: its cancel point is the read, or the check at entry.
                    return event.payload  # noqa: ASYNC910
                await self._control(event)
        finally:
            self._reading = False
            if self._read_done is not None:
                self._read_done.set()

    async def ping(self) -> None:
        """Send a ping and wait for its pong."""
        token = os.urandom(8)
        answered = self._pongs[token] = trio.Event()
        try:
            await self._write(ws.encode_frame(ws.PING, token, mask=self._mask))
            await answered.wait()
        finally:
            self._pongs.pop(token, None)

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close politely, then drop the connection; never raises.

        Sends a Close (unless one went out already) and waits for the peer's,
        as RFC 6455 section 7 asks, for at most ``CLOSE_TIMEOUT`` seconds in
        all, even when the caller is cancelled.
        """
        with trio.move_on_after(CLOSE_TIMEOUT) as scope:
            scope.shield = True
            await self._goodbye(code, reason or "")
            await self._await_peer_close()
        await trio.aclose_forcefully(self._stream)

    async def _control(self, event: ws.WsEvent) -> None:  # noqa: ASYNC910 - a step of receive
        """Answer a control frame; a fragment needs nothing."""
        opcode = event.opcode
        if opcode == ws.PING:
            if not self._closed:  # after our Close, only the peer's Close matters
                with contextlib.suppress(ConnectionLostError):
                    await self._write(ws.encode_frame(ws.PONG, event.payload, mask=self._mask))
        elif opcode == ws.PONG:
            waiter = self._pongs.get(event.payload)
            if waiter is not None:
                waiter.set()
        elif opcode == ws.CLOSE:
            code, reason = ws.close_code(event.payload)
            # The codec let only codes a peer may send through: echo it (none for none).
            await self._goodbye(None if code == ws.NO_STATUS_RCVD else code, "")
            raise ConnectionLostError(
                f"connection to {self.remote} closed by the peer: {code} {reason}".rstrip()
            )
        elif opcode == ws.TEXT:
            await self._goodbye(ws.UNSUPPORTED_DATA, "binary frames only")
            raise WireError(
                f"peer {self.remote} sent a WebSocket text message; AMOP frames are binary"
            )
        # ws.FRAGMENT: part of a message taken in; nothing to do until it is whole.

    async def _fail(self, exc: ws.WebSocketError) -> ws.WebSocketError:
        """Close with the error's code; the error to raise, naming the peer."""
        await self._goodbye(exc.close_code, str(exc))
        if isinstance(exc, ws.MessageTooBigError):
            return ws.MessageTooBigError(f"peer {self.remote}: {exc}", exc.close_code)
        return ws.WebSocketError(
            f"peer {self.remote} broke the WebSocket protocol: {exc}", exc.close_code
        )

    def _busy(self) -> Exception:
        if self._closed:
            return ConnectionLostError(f"connection to {self.remote} is closing")
        return trio.BusyResourceError("another task is already receiving on this WebSocket")

    async def _await_peer_close(self) -> None:
        """Read, and drop, what comes until the peer's Close, its end of the stream or an error."""
        await trio.lowlevel.checkpoint_if_cancelled()
        codec = self._codec
        work = 0
        while (
            codec.state is ws.ConnectionState.LOCAL_CLOSING
            and not codec.failed
            and not self._unanswerable
        ):
            if self._reading:  # another task reads: it will see the Close
                done = self._read_done
                if done is None or done.is_set():
                    done = self._read_done = trio.Event()
                await done.wait()
                continue
            self._reading = True
            try:
                event = codec.next_event()
                if event is None:
                    await self._read_more()
                else:
                    work += 1
                    if work % WORK_PER_CHECKPOINT == 0:
                        await trio.lowlevel.checkpoint()
            except AmopError:  # the peer left or broke the protocol: nothing to wait for
                return
            finally:
                self._reading = False
                if self._read_done is not None:
                    self._read_done.set()

    async def _read_more(self) -> None:
        data = await self._io.receive()
        if not data:
            raise ConnectionLostError(f"connection to {self.remote} closed")
        self._codec.feed(data)

    async def _write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionLostError(f"connection to {self.remote} is closing")
        await self._io.write(data)

    async def _goodbye(self, code: int | None, reason: str) -> None:
        """Send a Close once; the connection takes nothing after it."""
        await trio.lowlevel.checkpoint_if_cancelled()
        frame = self._codec.close(code, reason)
        if frame is None:
            return
        self._closed = True
        try:
            await self._io.write(frame)
        except ConnectionLostError:
            self._unanswerable = True


async def _receive_handshake(stream: trio.abc.Stream, remote: str) -> bytes:
    """The next bytes of the upgrade; ``ConnectionLostError`` if the peer closed."""
    data = await stream.receive_some(RECEIVE_SIZE)
    if not data:
        raise ConnectionLostError(
            f"{remote} closed the connection during the WebSocket upgrade "
            "(a TLS port? use wss:// or certificates)"
        )
    return bytes(data)


async def client_handshake(
    stream: trio.abc.Stream, host: str, path: str, *, max_frame_size: int, remote: str
) -> FrameSocket:
    """Upgrade ``stream`` to a WebSocket as a client; ``ConnectError`` if refused."""
    upgrade = ClientUpgrade(host, path)
    try:
        await stream.send_all(upgrade.request)
        rest = None
        while rest is None:
            rest = upgrade.receive_data(await _receive_handshake(stream, remote))
    except (ConnectionLostError, WireError) as exc:
        raise ConnectError(f"cannot connect to {remote}: {exc}") from None
    except _BROKEN as exc:
        raise ConnectError(f"cannot connect to {remote}: {exc}") from None
    return FrameSocket(
        stream, client=True, max_frame_size=max_frame_size, remote=remote, received=rest
    )


async def server_handshake(
    stream: trio.abc.Stream,
    *,
    max_frame_size: int,
    remote: str,
    budget: BufferBudget | None = None,
) -> FrameSocket:
    """Accept a WebSocket upgrade on ``stream`` as a server; ``UpgradeRefused`` says why not.

    ``budget`` holds the bytes of messages begun (see ``FrameSocket``).
    """
    upgrade = ServerUpgrade()
    accepted = None
    try:
        while accepted is None:
            accepted = upgrade.receive_data(await _receive_handshake(stream, remote))
    except UpgradeRefused as exc:
        refused = exc
    if accepted is None:
        with contextlib.suppress(*_BROKEN):
            await stream.send_all(refused.answer)
        raise refused
    answer, rest = accepted
    try:
        await stream.send_all(answer)
    except _BROKEN as exc:
        raise ConnectionLostError(f"connection to {remote} broken: {exc}") from None
    return FrameSocket(
        stream,
        client=False,
        max_frame_size=max_frame_size,
        remote=remote,
        received=rest,
        budget=budget,
    )


def endpoint_url(endpoint: str, *, tls: bool = False) -> str:
    """``host:port``, ``ws://…`` or ``wss://…`` as a WebSocket URL."""
    if "://" not in endpoint:
        endpoint = f"{'wss' if tls else 'ws'}://{endpoint}"
    parts = urlsplit(endpoint)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(
            f"endpoint {endpoint!r}: scheme must be ws:// or wss://, not {parts.scheme}://"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"endpoint {endpoint!r}: the port is not a number") from None
    if not parts.hostname or port is None:
        raise ValueError(f"endpoint {endpoint!r}: expected host:port, for example 127.0.0.1:20200")
    path = parts.path or "/"
    return f"{parts.scheme}://{parts.netloc}{path}"


async def connect(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None,
    max_frame_size: int,
    connect_timeout: float = HANDSHAKE_TIMEOUT,
) -> FrameSocket:
    """Open a WebSocket to ``url`` (``ws://`` or ``wss://``); ``ConnectError`` says why not."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "wss" else 80)
    if parts.scheme == "wss" and ssl_context is None:
        ssl_context = ssl.create_default_context()
    remote = f"{host}:{port}"
    async with open_stream(
        url, host, port, ssl_context=ssl_context, timeout=connect_timeout
    ) as stream:
        return await client_handshake(
            stream, parts.netloc, parts.path or "/", max_frame_size=max_frame_size, remote=remote
        )
