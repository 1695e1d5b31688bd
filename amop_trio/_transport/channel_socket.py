"""Channel frames over a byte stream (TCP, or TLS over TCP): the 2.x transport.

``StreamSocket`` has the interface of ``FrameSocket`` (``connection.FrameTransport``
and ``send``), so a ``FrameConnection`` runs either. Frame
boundaries come from the length prefix, found by ``ChannelDecoder``, which
refuses an absurd length as soon as its 4 bytes arrive instead of buffering
a body that will never be valid.

The 2.x protocol has no ping of its own: clients send HEARTBEAT frames and
nodes answer them. So liveness is "a frame arrived lately": ``ping`` returns
once a frame has arrived since the previous ``ping`` returned, and a client
socket (given ``heartbeat``) first sends a heartbeat to provoke one. Transport
errors are translated once, by ``StreamIO``.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import trio

from .._errors import ConnectionLostError
from .._wire.budget import BufferBudget
from .._wire.fisco2 import ChannelDecoder
from .._wire.fisco3 import DEFAULT_MAX_FRAME_SIZE
from .fd_stream import open_stream
from .stream_io import OverStreamIO, StreamIO
from .ws_socket import CLOSE_TIMEOUT, HANDSHAKE_TIMEOUT

#: The scheme of channel endpoints: ``channel://host:port``.
SCHEME = "channel"


class StreamSocket(OverStreamIO):
    """One byte stream carrying channel frames. Safe for one reader and one writer task.

    ``heartbeat``, if given, makes a frame for ``ping`` to send (a client's
    HEARTBEAT); without it ``ping`` only watches for frames from the peer (a
    node, whose clients send the heartbeats). Sends take turns (``StreamIO``),
    since ``ping`` and the connection's writer may send at the same time.
    ``budget``, if given, holds the bytes of a frame begun and not yet whole;
    one it cannot hold is a ``FrameTooLargeError`` (see ``ChannelDecoder``).
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        remote: str,
        heartbeat: Callable[[], bytes] | None = None,
        budget: BufferBudget | None = None,
    ) -> None:
        self._stream = stream
        self._record_per_frame = _is_tls(stream)
        self._decoder = ChannelDecoder(max_frame_size=max_frame_size, budget=budget)
        self._io = StreamIO(stream, remote)
        self._received = 0
        self._received_at_ping = 0
        self._arrived = trio.Event()
        self.max_frame_size = max_frame_size
        self.heartbeat = heartbeat
        #: ``host:port`` of the peer, fixed at connection time.
        self.remote = remote

    async def send(self, frame: bytes) -> None:
        await self.send_many((frame,))

    async def send_many(self, frames: Sequence[bytes]) -> None:
        """Send frames back to back: in one write, or over TLS one write (record) each.

        A 2.x node writes every frame by itself, so every frame starts a TLS
        record, and real SDKs count on it: go-sdk 1.x decodes one frame per
        record it reads, leaving a second frame of the same record in its
        buffer until the next record comes (docs/PROTOCOL.md, section 2).
        """
        if not self._record_per_frame:
            await self._io.write(frames[0] if len(frames) == 1 else b"".join(frames))
            return
        first, *rest = frames
        await self._io.write(first)
        for frame in rest:
            await self._io.write(frame)

    def try_send(self, frame: bytes) -> memoryview | None:
        """Send one frame as far as the kernel takes it now (see ``StreamIO.try_send``)."""
        return self._io.try_send(frame)

    async def receive(self) -> bytes:
        """The bytes of the next whole frame; ``WireError`` if the stream is not channel frames.

        A cancel point; a schedule point only when it has to wait for bytes.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while (frame := self._decoder.next_frame_bytes()) is None:
            data = await self._io.receive()
            if not data:
                pending = self._decoder.pending_bytes
                detail = f" in the middle of a frame ({pending} bytes)" if pending else ""
                raise ConnectionLostError(f"connection to {self.remote} closed by the peer{detail}")
            self._decoder.feed(data)
        self._received += 1
        self._arrived.set()
        self._arrived = trio.Event()
        return frame

    async def ping(self) -> None:
        """Return once a frame has arrived since the last ``ping`` (after a heartbeat, if set)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.heartbeat is not None:
            self._received_at_ping = self._received
            await self.send(self.heartbeat())
        while self._received == self._received_at_ping:
            await self._arrived.wait()
        self._received_at_ping = self._received

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the stream (TLS politely if quick); ``code`` and ``reason`` have no place on it."""
        with trio.move_on_after(CLOSE_TIMEOUT) as scope:  # noqa: ASYNC912 - shielded, and bounded
            scope.shield = True
            with contextlib.suppress(Exception):  # closing must never raise
                await self._stream.aclose()
        await trio.aclose_forcefully(self._stream)


def _is_tls(stream: trio.abc.Stream) -> bool:
    """Whether ``stream`` is TLS, under any wrapper that names its ``transport_stream``."""
    while not isinstance(stream, trio.SSLStream):
        inner = getattr(stream, "transport_stream", None)
        if not isinstance(inner, trio.abc.Stream):
            return False
        stream = inner
    return True


def endpoint_url(endpoint: str) -> str:
    """``channel://host:port`` checked and normalised; ``ValueError`` says what is wrong."""
    parts = urlsplit(endpoint)
    if parts.scheme != SCHEME:
        raise ValueError(f"endpoint {endpoint!r}: a channel endpoint starts with channel://")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"endpoint {endpoint!r}: the port is not a number") from None
    if not parts.hostname or port is None:
        raise ValueError(
            f"endpoint {endpoint!r}: expected channel://host:port, "
            "for example channel://127.0.0.1:20200"
        )
    if parts.path not in ("", "/"):
        raise ValueError(f"endpoint {endpoint!r}: a channel endpoint has no path")
    return f"{SCHEME}://{parts.netloc}"


async def connect(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    connect_timeout: float = HANDSHAKE_TIMEOUT,
) -> StreamSocket:
    """Open a channel connection to ``channel://host:port``: TLS over TCP with a context."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 0
    async with open_stream(
        url, host, port, ssl_context=ssl_context, timeout=connect_timeout
    ) as stream:
        return StreamSocket(stream, max_frame_size=max_frame_size, remote=f"{host}:{port}")
