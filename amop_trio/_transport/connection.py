"""One frame connection: a bounded outbox, one writer task, one keep-alive task.

Both the client's link to a node and the node's session with a client are a
``FrameConnection``. ``run`` owns the connection: its nursery holds the
writer, which drains the outbox onto the socket, the pinger, which declares
the peer dead when a ping goes unanswered, and the caller's read loop, which
decodes and dispatches. Whichever ends first ends all three; ``run`` then
calls ``on_close``, closes the socket and returns the reason.

Other tasks only ever mark a connection: ``close`` asks it to send what is
queued and end; a send that finds the socket broken marks it broken, which
ends it at once. Either way the connection's own task does the closing, so a
task serving one peer never runs another peer's ``on_close`` (failing that
peer's requests, retrying them elsewhere) inside its own call stack.

Async methods here are cancel points, and schedule points only when they
block. Only the writer task ever waits for the socket: a sender writes at
once only what the kernel takes at once, so cancelling a sender never leaves
half a frame on the wire.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import trio

from .._errors import AmopError, ConnectionLostError, WireError

#: WebSocket close code for a peer that broke the protocol.
CLOSE_PROTOCOL_ERROR = 1002
#: Bytes an outbox may hold (besides the one frame it always takes).
DEFAULT_OUTBOX_BYTES = 4 * 1024 * 1024
#: Bytes of answers an outbox may hold past its byte limit (``send_answer_nowait``):
#: what a peer that sends requests and stops reading their answers can cost.
ANSWER_OVERFLOW_BYTES = 32 * 1024 * 1024
#: At most this many queued frames, or about this many bytes, go out in one write.
WRITE_BATCH = 64
WRITE_BATCH_BYTES = 256 * 1024


class FrameTransport(Protocol):
    """What a connection needs of its socket (``FrameSocket``, ``StreamSocket``)."""

    #: ``host:port`` of the peer.
    remote: str

    def try_send(self, frame: bytes) -> memoryview | None:
        """Send ``frame`` as far as the kernel takes it now, without blocking.

        None if it cannot now (nothing sent); else the encoded bytes not taken
        (empty if none), which ``finish_send`` must send before anything else.
        ``ConnectionLostError`` if the socket is broken or closing.
        """

    async def finish_send(self, rest: memoryview) -> None:
        """Send what ``try_send`` left."""

    async def send_many(self, frames: Sequence[bytes]) -> None:
        """Send frames back to back, in one write."""

    async def receive(self) -> bytes:
        """The next frame."""

    @property
    def heard_at(self) -> float:
        """When bytes last came from the peer (``time.monotonic()``)."""

    @property
    def quiet_for(self) -> float:
        """How long the peer was silent before the bytes read last."""

    def peer_closed(self) -> bool:
        """Whether the peer has closed its end already."""

    async def ping(self) -> None:
        """Return once the peer showed it is alive."""

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Say goodbye if the protocol has a way to, then close; never raises."""


class FrameConnection:
    """A frame socket with an outbox bounded in frames and in bytes.

    Senders wait (``send``) or are told no (``send_nowait``) when the outbox
    is full, so a peer that reads slowly never makes the other end's memory
    grow. An empty outbox always takes one frame, however large. When nothing
    is queued and nothing is being written, a frame goes straight to the
    socket, as far as the kernel takes it at once; the writer task sends the
    rest, if any, before anything else. On the common, uncontended path that
    saves the hand-off to the writer.
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
        #: True once the connection is closing: it takes no more frames.
        self.closed = False
        self.reason = ""
        self._close_code = 1000
        #: True once the socket was found broken: ``run`` ends at once, queued frames are lost.
        self._broken = False
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._max_frames = outbox_size
        self._max_bytes = outbox_bytes
        #: The unsent end of a frame the kernel took part of; the writer sends it first.
        self._rest: memoryview | None = None
        #: True while the writer task writes; senders then queue, so frames keep their order.
        self._writing = False
        self._has_data = trio.Event()
        self._has_room = trio.Event()
        #: The cancel scope of ``run``'s tasks, while it runs.
        self._tasks: trio.CancelScope | None = None
        #: Set once ``run`` has ended and the socket is closed.
        self.ended = trio.Event()
        #: What ended the connection, when the peer or the network did.
        self.failure: AmopError | None = None

    def _lost(self) -> ConnectionLostError:
        return ConnectionLostError(f"connection to {self.name} lost: {self.reason}")

    def _fits(self, size: int) -> bool:
        return not self._queue or (
            len(self._queue) < self._max_frames and self._queued_bytes + size <= self._max_bytes
        )

    def _push(self, data: bytes) -> None:
        self._queue.append(data)
        self._queued_bytes += len(data)
        self._has_data.set()

    def _take(self, data: bytes) -> bool:
        """Write ``data`` now if nothing else is being written, else queue it.

        False if the socket turned out to be broken: the connection is then
        marked broken, and its own task closes it.
        """
        if self._queue or self._writing or self._rest is not None:
            self._push(data)
            return True
        try:
            rest = self.sock.try_send(data)
        except ConnectionLostError as exc:
            self._break(str(exc))
            return False
        if rest is None:
            self._push(data)
        elif rest:
            self._rest = rest
            self._has_data.set()
        return True

    async def send(self, data: bytes) -> None:
        """Send one encoded frame, or queue it; waits while the outbox is full.

        A cancel point; a schedule point only when it waits for room. Once the
        connection is closing, ``ConnectionLostError``.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self.closed and not self._fits(len(data)):
            await self._has_room.wait()
        if self.closed or not self._take(data):
            raise self._lost()

    def send_nowait(self, data: bytes) -> bool:
        """Send or queue a frame if there is room; False when it could not be taken.

        A broken socket marks this connection broken and returns False: the
        caller is usually serving another peer, and this connection's own task
        closes it.
        """
        if self.closed or not self._fits(len(data)):
            return False
        return self._take(data)

    def send_answer_nowait(self, data: bytes) -> bool:
        """Send or queue the answer to one of the peer's requests, whatever the outbox holds.

        False only once the connection is closing: an answer is never lost to
        a full outbox. What goes past the outbox's limits this way is bounded
        by the requests the peer has in flight, if the reader takes a request
        only once ``wait_room`` returns: at most that many answers
        (``NodeLimits.max_pending`` for a node's session) beyond the limits,
        and in bytes by ``answer_fits``, which callers check first.
        """
        if self.closed:
            return False
        return self._take(data)

    def answer_fits(self, size: int) -> bool:
        """Whether an answer of ``size`` bytes stays within ``ANSWER_OVERFLOW_BYTES`` past
        the outbox's byte limit; one that does not should be replaced by a short refusal."""
        return self._queued_bytes + size <= self._max_bytes + ANSWER_OVERFLOW_BYTES

    async def wait_room(self) -> None:
        """Wait while the outbox is at its limits; returns at once if closing.

        A cancel point; a schedule point only when it waits.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self.closed and not self._fits(0):
            await self._has_room.wait()

    def outbox_used(self) -> int:
        """Frames waiting in the outbox."""
        return len(self._queue)

    def close(self, reason: str, *, code: int = 1000) -> None:
        """Mark the connection closing: ``run`` sends what is queued, then ends.

        Returns at once and calls nothing back: ``on_close`` runs later, in
        ``run``'s task.
        """
        if self.closed:
            return
        self.closed = True
        self.reason = reason
        self._close_code = code
        self._has_data.set()
        self._has_room.set()

    def _break(self, reason: str) -> None:
        """Mark the connection broken: ``run`` ends at once, without sending what is queued."""
        self.close(reason)
        self._broken = True
        if self._tasks is not None:
            self._tasks.cancel()

    def on_close(self, reason: str) -> None:
        """Called once, from ``run``'s task as it ends; subclasses fail what was in flight."""

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
                self._tasks = nursery.cancel_scope
                if self._broken:
                    nursery.cancel_scope.cancel()
                nursery.start_soon(self._writer, nursery.cancel_scope)
                nursery.start_soon(self._pinger, ping_interval, ping_timeout, nursery.cancel_scope)
                try:
                    await read_loop(nursery)
                    self.close("closed")
                except ConnectionLostError as exc:
                    self.failure = exc
                    self.close(str(exc))
                except WireError as exc:
                    self.failure = exc
                    self.close(f"protocol error: {exc}", code=CLOSE_PROTOCOL_ERROR)
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self._tasks = None
            self.close("cancelled")
            try:
                self.on_close(self.reason)
            finally:
                with trio.CancelScope(shield=True):
                    await self.sock.aclose(self._close_code, self.reason[:120])
                self.ended.set()
        return self.reason

    async def _writer(self, scope: trio.CancelScope) -> None:  # noqa: ASYNC910 - a task body
        """Drain the outbox onto the socket, in order; after a ``close``, what was queued."""
        try:
            while True:
                if self._rest is not None:
                    self._writing = True
                    try:
                        await self.sock.finish_send(self._rest)
                    finally:
                        self._writing = False
                    self._rest = None
                elif self._queue:
                    await self._write_batch()
                elif self.closed:
                    break
                else:
                    self._has_data = trio.Event()
                    await self._has_data.wait()
        except ConnectionLostError as exc:
            self._break(str(exc))
        scope.cancel()

    async def _write_batch(self) -> None:
        """Whatever piled up goes out in one write.

        Fewer system calls and wake-ups for the peer, exactly when the
        connection is busiest.
        """
        queue = self._queue
        batch = [queue.popleft()]
        size = len(batch[0])
        while queue and len(batch) < WRITE_BATCH and size < WRITE_BATCH_BYTES:
            batch.append(queue.popleft())
            size += len(batch[-1])
        self._queued_bytes -= size
        self._has_room.set()
        self._has_room = trio.Event()
        self._writing = True
        try:
            await self.sock.send_many(batch)
        finally:
            self._writing = False

    async def _pinger(  # noqa: ASYNC910 - a task body
        self, interval: float, timeout: float, scope: trio.CancelScope
    ) -> None:
        try:
            while True:
                await trio.sleep(interval)
                with trio.move_on_after(timeout) as ping_scope:
                    await self.sock.ping()
                if ping_scope.cancelled_caught:
                    self.close(f"no answer to a ping within {timeout:g} s")
                    break
        except ConnectionLostError as exc:
            self._break(str(exc))
        scope.cancel()
