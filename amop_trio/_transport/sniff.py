"""Tells a WebSocket client from a 2.x channel client by its first bytes.

Both protocols share the node's SDK port. After TLS (if any), a WebSocket
client's first bytes are its HTTP upgrade, ``GET /…``; a channel client's are
the u32 length of its first frame. Read as a length, ``GET `` is about 1.2 GB,
far beyond any frame size a node accepts, so four bytes decide without doubt.
``sniff`` reads them and returns a stream that replays them to whichever
protocol takes the connection.
"""

from __future__ import annotations

from enum import Enum

import trio

#: The first bytes of an HTTP upgrade request.
HTTP_PREFIX = b"GET "
#: Bytes needed to decide.
SNIFF_SIZE = len(HTTP_PREFIX)


class Protocol(Enum):
    """The protocol a connection speaks."""

    WEBSOCKET = "ws"
    CHANNEL = "channel"


def classify(first: bytes) -> Protocol | None:
    """The protocol whose stream starts with ``first``; ``None`` if more bytes are needed."""
    if len(first) < SNIFF_SIZE and HTTP_PREFIX.startswith(first):
        return None
    return Protocol.WEBSOCKET if first.startswith(HTTP_PREFIX) else Protocol.CHANNEL


class ReplayStream(trio.abc.Stream):
    """``stream`` with ``prefix`` put back in front of what it receives."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self.transport_stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return bytes(await self.transport_stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport_stream.send_all(data)

    def take_prefix(self) -> bytes:
        """The replayed bytes not yet received, handed over to a reader of ``transport_stream``."""
        prefix, self._prefix = self._prefix, b""
        return prefix

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.transport_stream.aclose()


async def sniff(stream: trio.abc.Stream) -> tuple[Protocol | None, trio.abc.Stream]:
    """Read until the protocol is known; ``None`` if the peer closed before saying."""
    first = b""
    while (protocol := classify(first)) is None:
        data = await stream.receive_some(SNIFF_SIZE - len(first))
        if not data:
            return None, stream
        first += data
    return protocol, ReplayStream(stream, first)
