"""Frames over WebSocket: one binary message per frame, driven with wsproto.

A generic WebSocket library runs a reader task of its own and hands each
message over a channel; on a request/reply path that crosses four WebSockets
per round trip, those hand-offs dominate. Here ``FrameSocket.receive`` feeds
what it reads to wsproto and returns the next whole binary message itself,
answering pings and closes on the way; ``send`` writes under a lock. Control
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
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .._errors import ConnectError, ConnectionLostError, FrameTooLargeError, WireError

#: Seconds a connection's opening (TLS and WebSocket upgrade) may take.
HANDSHAKE_TIMEOUT = 10.0
#: Seconds to spend saying goodbye before dropping the connection.
CLOSE_TIMEOUT = 0.5
#: Bytes read from the socket at a time.
RECEIVE_SIZE = 65536
#: Largest HTTP upgrade request or answer accepted before the WebSocket starts.
MAX_UPGRADE_SIZE = 16384

_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)


class FrameSocket:
    """One WebSocket carrying AMOP frames: one reader task, any number of senders."""

    def __init__(
        self, stream: trio.abc.Stream, ws: WSConnection, *, max_frame_size: int, remote: str
    ) -> None:
        self._stream = stream
        self._ws = ws
        self._send_lock = trio.Lock()
        self._parts: list[bytes] = []
        self._size = 0
        self._pongs: dict[bytes, trio.Event] = {}
        self._closed = False
        self.max_frame_size = max_frame_size
        #: ``host:port`` of the peer, fixed at connection time.
        self.remote = remote

    async def send(self, frame: bytes) -> None:
        """Send one frame as one binary message."""
        await self._write(Message(data=frame))

    async def send_many(self, frames: Sequence[bytes]) -> None:
        """Send frames as consecutive binary messages, in one write."""
        async with self._send_lock:
            try:
                data = b"".join([self._ws.send(Message(data=frame)) for frame in frames])
            except LocalProtocolError:
                raise ConnectionLostError(f"connection to {self.remote} is closing") from None
            try:
                await self._stream.send_all(data)
            except _BROKEN as exc:
                raise ConnectionLostError(f"connection to {self.remote} broken: {exc}") from None

    async def receive(self) -> bytes:
        """The next frame; ``ConnectionLostError`` once the peer or network is gone."""
        while True:
            for event in self._ws.events():
                if isinstance(event, BytesMessage):
                    self._size += len(event.data)
                    if self._size > self.max_frame_size:
                        await self._fail(1009, "frame too large")
                        raise FrameTooLargeError(
                            f"peer {self.remote} sent a frame over the maximum of "
                            f"{self.max_frame_size} bytes"
                        )
                    if event.message_finished and not self._parts:
                        self._size = 0
                        return bytes(event.data)
                    self._parts.append(bytes(event.data))
                    if event.message_finished:
                        frame = b"".join(self._parts)
                        self._parts.clear()
                        self._size = 0
                        return frame
                else:
                    await self._control(event)
            await self._read_more()

    async def ping(self) -> None:
        """Send a ping and wait for its pong."""
        token = os.urandom(8)
        answered = self._pongs[token] = trio.Event()
        try:
            await self._write(Ping(payload=token))
            await answered.wait()
        finally:
            self._pongs.pop(token, None)

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Say goodbye if the socket still takes it, then close; never raises."""
        if not self._closed:
            self._closed = True
            if reason is not None:
                reason = reason.encode("utf-8")[:120].decode("utf-8", "ignore")
            with trio.move_on_after(0.2) as scope, contextlib.suppress(Exception):
                scope.shield = True
                await self._write(CloseConnection(code=code, reason=reason))
        await trio.aclose_forcefully(self._stream)

    async def _control(self, event: Event) -> None:
        if isinstance(event, Ping):
            with contextlib.suppress(ConnectionLostError):
                await self._write(event.response())
        elif isinstance(event, Pong):
            waiter = self._pongs.get(bytes(event.payload))
            if waiter is not None:
                waiter.set()
        elif isinstance(event, CloseConnection):
            with contextlib.suppress(ConnectionLostError):
                await self._write(event.response())
            self._closed = True
            raise ConnectionLostError(
                f"connection to {self.remote} closed by the peer: {event.code} {event.reason or ''}"
            )
        elif isinstance(event, TextMessage):
            await self._fail(1003, "binary frames only")
            raise WireError(
                f"peer {self.remote} sent a WebSocket text message; AMOP frames are binary"
            )

    async def _read_more(self) -> None:
        try:
            data = await self._stream.receive_some(RECEIVE_SIZE)
        except _BROKEN as exc:
            raise ConnectionLostError(f"connection to {self.remote} broken: {exc}") from None
        if not data:
            raise ConnectionLostError(f"connection to {self.remote} closed")
        try:
            self._ws.receive_data(bytes(data))
        except RemoteProtocolError as exc:
            raise WireError(f"peer {self.remote} broke the WebSocket protocol: {exc}") from None

    async def _write(self, event: Event) -> None:
        async with self._send_lock:
            try:
                data = self._ws.send(event)
            except LocalProtocolError:
                raise ConnectionLostError(f"connection to {self.remote} is closing") from None
            try:
                await self._stream.send_all(data)
            except _BROKEN as exc:
                raise ConnectionLostError(f"connection to {self.remote} broken: {exc}") from None

    async def _fail(self, code: int, reason: str) -> None:
        with contextlib.suppress(ConnectionLostError):
            await self._write(CloseConnection(code=code, reason=reason))
        self._closed = True


async def _pump_handshake(stream: trio.abc.Stream, ws: WSConnection, remote: str) -> Event:
    """Read until wsproto reports the other side's half of the opening handshake."""
    received = 0
    while True:
        for event in ws.events():
            return event
        data = await stream.receive_some(RECEIVE_SIZE)
        if not data:
            raise ConnectionLostError(
                f"{remote} closed the connection during the WebSocket upgrade "
                "(a TLS port? use wss:// or certificates)"
            )
        received += len(data)
        if received > MAX_UPGRADE_SIZE:
            raise WireError(f"{remote} sent an upgrade of over {MAX_UPGRADE_SIZE} bytes")
        try:
            ws.receive_data(bytes(data))
        except RemoteProtocolError as exc:
            raise WireError(f"{remote} sent a malformed WebSocket upgrade: {exc}") from None


async def client_handshake(
    stream: trio.abc.Stream, host: str, path: str, *, max_frame_size: int, remote: str
) -> FrameSocket:
    """Upgrade ``stream`` to a WebSocket as a client; ``ConnectError`` if refused."""
    ws = WSConnection(ConnectionType.CLIENT)
    try:
        await stream.send_all(ws.send(Request(host=host, target=path)))
        event = await _pump_handshake(stream, ws, remote)
    except (ConnectionLostError, WireError) as exc:
        raise ConnectError(f"cannot connect to {remote}: {exc}") from None
    except _BROKEN as exc:
        raise ConnectError(f"cannot connect to {remote}: {exc}") from None
    if isinstance(event, RejectConnection | RejectData):
        status = getattr(event, "status_code", "?")
        raise ConnectError(f"{remote} refused the WebSocket upgrade (HTTP {status})")
    if not isinstance(event, AcceptConnection):
        raise ConnectError(f"{remote} answered the upgrade with {type(event).__name__}")
    return FrameSocket(stream, ws, max_frame_size=max_frame_size, remote=remote)


async def server_handshake(
    stream: trio.abc.Stream, *, max_frame_size: int, remote: str
) -> FrameSocket:
    """Accept a WebSocket upgrade on ``stream`` as a server."""
    ws = WSConnection(ConnectionType.SERVER)
    event = await _pump_handshake(stream, ws, remote)
    if not isinstance(event, Request):
        raise WireError(f"{remote} did not start with a WebSocket upgrade request")
    try:
        await stream.send_all(ws.send(AcceptConnection()))
    except _BROKEN as exc:
        raise ConnectionLostError(f"connection to {remote} broken: {exc}") from None
    return FrameSocket(stream, ws, max_frame_size=max_frame_size, remote=remote)


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
    try:
        with trio.fail_after(connect_timeout):
            stream: trio.abc.Stream
            if ssl_context is None:
                stream = await trio.open_tcp_stream(host, port)
            else:
                stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=ssl_context)
            try:
                if isinstance(stream, trio.SSLStream):
                    await stream.do_handshake()
                return await client_handshake(
                    stream,
                    parts.netloc,
                    parts.path or "/",
                    max_frame_size=max_frame_size,
                    remote=remote,
                )
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
    except trio.TooSlowError:
        raise ConnectError(
            f"cannot connect to {url}: no answer within {connect_timeout:g} s"
        ) from None
    except OSError as exc:
        raise ConnectError(f"cannot connect to {url}: {exc.strerror or exc}") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError) as exc:
        raise ConnectError(f"cannot connect to {url}: {exc}") from None
