"""One frame connection: a bounded outbox, one writer task, one keep-alive task.

Both the client's link to a node and the node's session with a client are a
``FrameConnection``. ``run`` owns the connection's nursery: the writer drains
the outbox onto the socket, the pinger declares the peer dead when a ping
goes unanswered, and the caller's read loop decodes and dispatches. Whichever
ends first ends all three, and ``run`` returns the reason.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import trio

from .._errors import ConnectionLostError, WireError

#: WebSocket close code for a peer that broke the protocol.
CLOSE_PROTOCOL_ERROR = 1002
#: Bytes an outbox may hold (besides the one frame it always takes).
DEFAULT_OUTBOX_BYTES = 4 * 1024 * 1024
#: At most this many queued frames, or about this many bytes, go out in one write.
WRITE_BATCH = 64
WRITE_BATCH_BYTES = 256 * 1024


class FrameTransport(Protocol):
    """What a connection needs of its socket (``FrameSocket``, ``StreamSocket``)."""

    remote: str

    @property
    def interrupted(self) -> bool: ...

    async def send(self, frame: bytes) -> None: ...

    async def send_many(self, frames: Sequence[bytes]) -> None: ...

    def send_nowait(self, frame: bytes) -> bool: ...

    @property
    def backlogged(self) -> bool: ...

    async def flush(self) -> None: ...

    async def receive(self) -> bytes: ...

    async def ping(self) -> None: ...

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None: ...


class FrameConnection:
    """A frame socket with an outbox bounded in frames and in bytes.

    Senders wait (``send``) or are told no (``send_nowait``) when the outbox
    is full, so a peer that reads slowly never makes the other end's memory
    grow. An empty outbox always takes one frame, however large. When nothing
    is queued and nothing is being written, ``send`` writes at once itself,
    saving the hand-off to the writer task on the common, uncontended path.
    """

    def __init__(
        self,
        sock: FrameTransport,
        *,
        name: str,
        outbox_size: int,
        outbox_bytes: int = DEFAULT_OUTBOX_BYTES,
    ) -> None:
        self.sock = sock
        self.name = name
        self.closed = False
        self.reason = ""
        self._close_code = 1000
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._max_frames = outbox_size
        self._max_bytes = outbox_bytes
        self._writing = False
        self._has_data = trio.Event()
        self._has_room = trio.Event()

    def _fits(self, size: int) -> bool:
        return not self._queue or (
            len(self._queue) < self._max_frames and self._queued_bytes + size <= self._max_bytes
        )

    def _push(self, data: bytes) -> None:
        self._queue.append(data)
        self._queued_bytes += len(data)
        self._has_data.set()

    async def send(self, data: bytes) -> None:
        """Send one encoded frame, or queue it; waits while the outbox is full."""
        while not self.closed and not self._fits(len(data)):
            room = self._has_room
            await room.wait()
        if self.closed:
            raise ConnectionLostError(f"connection to {self.name} lost: {self.reason}")
        if self._queue or self._writing:
            self._push(data)
            await trio.lowlevel.checkpoint()
            return
        self._writing = True
        try:
            await self.sock.send(data)
        except ConnectionLostError as exc:
            self.close(str(exc))
            raise
        except trio.Cancelled:
            if self.sock.interrupted:  # half a frame may be on the wire
                self.close("a write was interrupted midway")
            raise
        finally:
            self._writing = False
            if self._queue or self.sock.backlogged:
                self._has_data.set()

    def send_nowait(self, data: bytes) -> bool:
        """Send or queue a frame if there is room; False when it could not be taken.

        When nothing is queued or being written, the frame goes straight to the
        socket; whatever of it the kernel does not take at once, the writer
        task finishes before anything else. A broken socket closes this
        connection and returns False: the caller is usually serving another.
        """
        if self.closed or not self._fits(len(data)):
            return False
        if not self._queue and not self._writing:
            try:
                sent = self.sock.send_nowait(data)
            except ConnectionLostError as exc:  # this connection's loss, not the caller's
                self.close(str(exc))
                return False
            if sent:
                if self.sock.backlogged:
                    self._has_data.set()
                return True
        self._push(data)
        return True

    def outbox_used(self) -> int:
        """Frames waiting in the outbox."""
        return len(self._queue)

    def close(self, reason: str, *, code: int = 1000) -> None:
        """Mark the connection dead; ``run`` then ends and closes the socket."""
        if self.closed:
            return
        self.closed = True
        self.reason = reason
        self._close_code = code
        self._has_data.set()
        self._has_room.set()
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
        """Drain the outbox onto the socket, in order; after a close, what was queued."""
        try:
            while True:
                while self._writing or not (self._queue or self.sock.backlogged):
                    if self.closed and not self._queue:
                        scope.cancel()
                        return
                    self._has_data = trio.Event()
                    await self._has_data.wait()
                if not self._queue:
                    self._writing = True
                    try:
                        await self.sock.flush()
                    finally:
                        self._writing = False
                    continue
                # Whatever piled up goes out in one write: fewer system calls and
                # wake-ups for the peer exactly when the connection is busiest.
                batch = [self._queue.popleft()]
                size = len(batch[0])
                while self._queue and len(batch) < WRITE_BATCH and size < WRITE_BATCH_BYTES:
                    batch.append(self._queue.popleft())
                    size += len(batch[-1])
                self._queued_bytes -= size
                self._has_room.set()
                self._has_room = trio.Event()
                self._writing = True
                try:
                    await self.sock.send_many(batch)
                finally:
                    self._writing = False
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
