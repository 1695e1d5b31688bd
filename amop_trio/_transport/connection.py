"""One frame connection: a bounded outbox, one writer task, one keep-alive task.

Both the client's link to a node and the node's session with a client are a
``FrameConnection``. ``run`` owns the connection's nursery: the writer drains
the outbox onto the socket, the pinger declares the peer dead when a ping
goes unanswered, and the caller's read loop decodes and dispatches. Whichever
ends first ends all three, and ``run`` returns the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from .._errors import ConnectionLostError, WireError

#: WebSocket close code for a peer that broke the protocol.
CLOSE_PROTOCOL_ERROR = 1002


class FrameTransport(Protocol):
    """What a connection needs of its socket (``FrameSocket``, ``StreamSocket``)."""

    remote: str

    async def send(self, frame: bytes) -> None: ...

    async def receive(self) -> bytes: ...

    async def ping(self) -> None: ...

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None: ...


class FrameConnection:
    """A frame socket with a bounded outbox, so senders wait instead of piling up."""

    def __init__(self, sock: FrameTransport, *, name: str, outbox_size: int) -> None:
        self.sock = sock
        self.name = name
        self._outbox_send, self._outbox_recv = trio.open_memory_channel[bytes](outbox_size)
        self.closed = False
        self.reason = ""
        self._close_code = 1000

    async def send(self, data: bytes) -> None:
        """Queue one encoded frame; waits while the outbox is full."""
        try:
            await self._outbox_send.send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionLostError(f"connection to {self.name} lost: {self.reason}") from None

    def send_nowait(self, data: bytes) -> bool:
        """Queue a frame if there is room; False when it could not be queued."""
        try:
            self._outbox_send.send_nowait(data)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    def outbox_used(self) -> int:
        return self._outbox_send.statistics().current_buffer_used

    def close(self, reason: str, *, code: int = 1000) -> None:
        """Mark the connection dead; ``run`` then ends and closes the socket."""
        if self.closed:
            return
        self.closed = True
        self.reason = reason
        self._close_code = code
        self._outbox_send.close()
        self.on_close(reason)

    def on_close(self, reason: str) -> None:
        """Called once when the connection closes; subclasses fail what was in flight."""

    async def run(
        self,
        read_loop: Callable[[trio.Nursery], Awaitable[None]],
        *,
        ping_interval: float,
        ping_timeout: float,
    ) -> str:
        """Serve the connection until it ends; returns why it ended."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, nursery.cancel_scope)
                nursery.start_soon(self._pinger, ping_interval, ping_timeout, nursery.cancel_scope)
                try:
                    await read_loop(nursery)
                    self.close("closed")
                except ConnectionLostError as exc:
                    self.close(str(exc))
                except WireError as exc:
                    self.close(f"protocol error: {exc}", code=CLOSE_PROTOCOL_ERROR)
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self.close("cancelled")
            with trio.CancelScope(shield=True):
                await self.sock.aclose(self._close_code, self.reason[:120])
        return self.reason

    async def _writer(self, scope: trio.CancelScope) -> None:
        try:
            async for data in self._outbox_recv:
                await self.sock.send(data)
        except ConnectionLostError as exc:
            self.close(str(exc))
        scope.cancel()

    async def _pinger(self, interval: float, timeout: float, scope: trio.CancelScope) -> None:
        try:
            while True:
                await trio.sleep(interval)
                with trio.move_on_after(timeout) as ping_scope:
                    await self.sock.ping()
                if ping_scope.cancelled_caught:
                    self.close(f"no answer to a ping within {timeout:g} s")
                    break
        except ConnectionLostError as exc:
            self.close(str(exc))
        scope.cancel()
