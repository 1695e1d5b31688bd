"""Tells a WebSocket client from a 2.x channel client by its first bytes.

Both protocols share the node's SDK port. After TLS (if any), a WebSocket
client's first bytes are its HTTP upgrade, ``GET /…``; a channel client's are
the u32 length of its first frame. Read as a length, ``GET `` is about 1.2 GB,
far beyond any frame size a node accepts, so four bytes decide without doubt.
``sniff`` reads them and returns them, for whoever takes the connection to
read first (``fd_stream.connection_stream``).
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


async def sniff(stream: trio.abc.Stream) -> tuple[Protocol | None, bytes]:
    """Read until the protocol is known; it and the bytes read (``None`` if the peer left first)."""
    first = b""
    while True:  # classify(b"") is None: at least one read
        data = await stream.receive_some(SNIFF_SIZE - len(first))
        if not data:
            return None, first
        first += data
        if (protocol := classify(first)) is not None:
            return protocol, first
