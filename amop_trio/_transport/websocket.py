"""Frames over WebSocket: one binary message per frame, via trio-websocket.

Transport errors are translated here, once: everything above sees
``ConnectionLostError`` when the peer or the network went away, and
``WireError`` when the peer sent something that is not a frame.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

import trio
import trio_websocket

from .._errors import ConnectError, ConnectionLostError, FrameTooLargeError, WireError

#: Seconds a WebSocket opening handshake may take.
HANDSHAKE_TIMEOUT = 10.0
#: Seconds to wait for the peer's answer to a close before dropping the connection.
CLOSE_TIMEOUT = 0.5


class FrameSocket:
    """One WebSocket carrying AMOP frames. Safe for one reader and one writer task."""

    def __init__(
        self,
        ws: trio_websocket.WebSocketConnection,
        *,
        max_frame_size: int,
        remote: str | None = None,
    ) -> None:
        self._ws = ws
        self.max_frame_size = max_frame_size
        if remote is None:
            try:
                endpoint = ws.remote
            except OSError:
                endpoint = "unknown peer"
            if isinstance(endpoint, trio_websocket.Endpoint):
                remote = f"{endpoint.address}:{endpoint.port}"
            else:
                remote = str(endpoint)
        #: ``host:port`` of the peer, fixed at connection time.
        self.remote = remote

    async def send(self, frame: bytes) -> None:
        try:
            await self._ws.send_message(frame)
        except trio_websocket.ConnectionClosed as exc:
            raise ConnectionLostError(f"connection to {self.remote} closed: {exc.reason}") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionLostError(f"connection to {self.remote} broken: {exc}") from None

    async def receive(self) -> bytes:
        try:
            message = await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            reason = exc.reason
            if reason is not None and reason.code == 1009:
                raise FrameTooLargeError(
                    f"peer {self.remote} sent a frame over the maximum of "
                    f"{self.max_frame_size} bytes"
                ) from None
            raise ConnectionLostError(f"connection to {self.remote} closed: {reason}") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionLostError(f"connection to {self.remote} broken: {exc}") from None
        if isinstance(message, str):
            raise WireError(
                f"peer {self.remote} sent a WebSocket text message; AMOP frames are binary"
            )
        return message

    async def ping(self) -> None:
        """Wait for the peer's pong; raises ``ConnectionLostError`` if it cannot be sent."""
        try:
            await self._ws.ping()
        except (
            trio_websocket.ConnectionClosed,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
        ):
            raise ConnectionLostError(f"connection to {self.remote} lost") from None

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close politely if the peer answers quickly, abruptly otherwise."""
        if reason is not None:
            reason = reason.encode("utf-8")[:120].decode("utf-8", "ignore")
        with trio.move_on_after(CLOSE_TIMEOUT) as scope:
            scope.shield = True
            with contextlib.suppress(Exception):  # closing must never raise
                await self._ws.aclose(code, reason)
        # trio-websocket leaves the TCP stream open when the peer closed first.
        await trio.aclose_forcefully(self._ws._stream)


class _EndWatch(trio.abc.Stream):
    """A stream that calls ``on_end`` when the peer closes or breaks it.

    trio-websocket waits forever for an upgrade answer that a closed
    connection will never bring; this lets ``connect`` notice at once.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.on_end: Callable[[], None] | None = None

    def _ended(self) -> None:
        if self.on_end is not None:
            self.on_end()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            data = await self.stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._ended()
            raise
        if not data:
            self._ended()
        return bytes(data)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if isinstance(self.stream, trio.abc.HalfCloseableStream):
            await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


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
    nursery: trio.Nursery,
    url: str,
    *,
    ssl_context: ssl.SSLContext | None,
    max_frame_size: int,
    connect_timeout: float = HANDSHAKE_TIMEOUT,
) -> FrameSocket:
    """Open a WebSocket whose background task lives in ``nursery``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "wss" else 80)
    if parts.scheme == "wss" and ssl_context is None:
        ssl_context = ssl.create_default_context()
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
                watched = _EndWatch(stream)
                with trio.CancelScope() as upgrade:
                    watched.on_end = upgrade.cancel
                    ws = await trio_websocket.wrap_client_stream(
                        nursery,
                        watched,  # type: ignore[arg-type]  # any trio Stream works
                        parts.netloc,
                        parts.path or "/",
                        max_message_size=max_frame_size,
                        message_queue_size=1,
                        receive_buffer_size=65536,
                    )
                watched.on_end = None
                if upgrade.cancelled_caught:
                    raise ConnectError(
                        f"cannot connect to {url}: the node closed the connection during the "
                        "WebSocket upgrade (a TLS port? use wss:// or certificates)"
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
    except trio_websocket.HandshakeError as exc:
        raise ConnectError(
            f"cannot connect to {url}: WebSocket handshake failed ({exc!r})"
        ) from None
    except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError) as exc:
        raise ConnectError(f"cannot connect to {url}: {exc}") from None
    return FrameSocket(ws, max_frame_size=max_frame_size, remote=f"{host}:{port}")
