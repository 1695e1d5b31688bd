"""Frames over WebSocket: one binary message per frame, on the codec of ``_wire.rfc6455``.

A generic WebSocket library runs a reader task of its own and hands each
message over a channel; on a request/reply path that crosses four WebSockets
per round trip, those hand-offs dominate. Here ``FrameSocket.receive`` feeds
what it reads to the sans-I/O codec and returns the next whole binary message
itself, answering pings and closes on the way; ``send`` writes under a lock. Control
frames are therefore seen only while someone reads, which every AMOP
connection does.

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

from .._errors import ConnectError, ConnectionLostError, FrameTooLargeError, WireError
from .._wire import rfc6455 as ws
from .fd_stream import RECEIVE_SIZE, StreamIO, StreamIOSocket, open_stream

#: Seconds a connection's opening (TLS and WebSocket upgrade) may take.
HANDSHAKE_TIMEOUT = 10.0
#: Seconds to spend saying goodbye before dropping the connection.
CLOSE_TIMEOUT = 0.5

_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)


class FrameSocket(StreamIOSocket):
    """One WebSocket carrying AMOP frames: one reader task, any number of senders."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        client: bool,
        max_frame_size: int,
        remote: str,
        received: bytes = b"",
    ) -> None:
        self._stream = stream
        self._mask = client
        self._decoder = ws.FrameDecoder(masked=not client, max_message=max_frame_size)
        self._io = StreamIO(stream, remote, received=received)
        self._pongs: dict[bytes, trio.Event] = {}
        self._closed = False
        self.max_frame_size = max_frame_size
        #: ``host:port`` of the peer, fixed at connection time.
        self.remote = remote

    async def send(self, frame: bytes) -> None:
        """Send one frame as one binary message."""
        await self._write(ws.encode_frame(ws.BINARY, frame, mask=self._mask))

    async def send_many(self, frames: Sequence[bytes]) -> None:
        """Send frames as consecutive binary messages, in one write."""
        mask = self._mask
        await self._write(b"".join([ws.encode_frame(ws.BINARY, f, mask=mask) for f in frames]))

    def send_nowait(self, frame: bytes) -> bool:
        """Start sending one frame without blocking; False if another write is under way."""
        if self._closed:
            return False
        return self._io.write_nowait(ws.encode_frame(ws.BINARY, frame, mask=self._mask))

    async def receive(self) -> bytes:
        """The next frame; ``ConnectionLostError`` once the peer or network is gone."""
        decoder = self._decoder
        while True:
            try:
                event = decoder.next_event()
            except WireError as exc:
                await self._goodbye(1009 if isinstance(exc, FrameTooLargeError) else 1002, "")
                if isinstance(exc, FrameTooLargeError):
                    raise FrameTooLargeError(f"peer {self.remote}: {exc}") from None
                raise WireError(f"peer {self.remote} broke the WebSocket protocol: {exc}") from None
            if event is None:
                await self._read_more()
            elif event.opcode == ws.BINARY:
                return event.payload
            else:
                await self._control(event)

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
        """Say goodbye if the socket still takes it, then close; never raises."""
        if not self._closed:
            with trio.move_on_after(0.2) as scope:
                scope.shield = True
                await self._goodbye(code, reason or "")
        await trio.aclose_forcefully(self._stream)

    async def _control(self, event: ws.WsEvent) -> None:
        if event.opcode == ws.PING:
            with contextlib.suppress(ConnectionLostError):
                await self._write(ws.encode_frame(ws.PONG, event.payload, mask=self._mask))
        elif event.opcode == ws.PONG:
            waiter = self._pongs.get(event.payload)
            if waiter is not None:
                waiter.set()
        elif event.opcode == ws.CLOSE:
            code, reason = ws.close_code(event.payload)
            await self._goodbye(code if code != 1005 else 1000, "")
            raise ConnectionLostError(
                f"connection to {self.remote} closed by the peer: {code} {reason}".rstrip()
            )
        else:  # TEXT
            await self._goodbye(1003, "binary frames only")
            raise WireError(
                f"peer {self.remote} sent a WebSocket text message; AMOP frames are binary"
            )

    async def _read_more(self) -> None:
        data = await self._io.receive()
        if not data:
            raise ConnectionLostError(f"connection to {self.remote} closed")
        self._decoder.feed(data)

    async def _write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionLostError(f"connection to {self.remote} is closing")
        await self._io.write(data)

    async def _goodbye(self, code: int, reason: str) -> None:
        """Send a close frame once; the connection takes nothing after it."""
        if self._closed:
            return
        with contextlib.suppress(ConnectionLostError):
            await self._write(ws.encode_close(code, reason, mask=self._mask))
        self._closed = True


async def _read_head(stream: trio.abc.Stream, what: str, remote: str) -> tuple[bytes, bytes]:
    """Read an HTTP head; (head, whatever came after it)."""
    buffer = b""
    while True:
        found = ws.split_head(buffer, what)
        if found is not None:
            return found
        data = await stream.receive_some(RECEIVE_SIZE)
        if not data:
            raise ConnectionLostError(
                f"{remote} closed the connection during the WebSocket upgrade "
                "(a TLS port? use wss:// or certificates)"
            )
        buffer += data


async def client_handshake(
    stream: trio.abc.Stream, host: str, path: str, *, max_frame_size: int, remote: str
) -> FrameSocket:
    """Upgrade ``stream`` to a WebSocket as a client; ``ConnectError`` if refused."""
    request, key = ws.client_request(host, path)
    try:
        await stream.send_all(request)
        head, rest = await _read_head(stream, "upgrade answer", remote)
        ws.check_answer(head, key)
    except (ConnectionLostError, WireError) as exc:
        raise ConnectError(f"cannot connect to {remote}: {exc}") from None
    except _BROKEN as exc:
        raise ConnectError(f"cannot connect to {remote}: {exc}") from None
    return FrameSocket(
        stream, client=True, max_frame_size=max_frame_size, remote=remote, received=rest
    )


async def server_handshake(
    stream: trio.abc.Stream, *, max_frame_size: int, remote: str
) -> FrameSocket:
    """Accept a WebSocket upgrade on ``stream`` as a server."""
    head, rest = await _read_head(stream, "upgrade request", remote)
    try:
        answer = ws.answer_request(head)
    except WireError:
        with contextlib.suppress(*_BROKEN):
            await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        raise
    try:
        await stream.send_all(answer)
    except _BROKEN as exc:
        raise ConnectionLostError(f"connection to {remote} broken: {exc}") from None
    return FrameSocket(
        stream, client=False, max_frame_size=max_frame_size, remote=remote, received=rest
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
