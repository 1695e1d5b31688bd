"""A frame socket's byte I/O: one stream, read by one task, written by any in turns.

Both frame sockets (``ws_socket.FrameSocket``, ``channel_socket.StreamSocket``)
read and write their ``trio.abc.Stream`` through a ``StreamIO``. It
translates the stream's errors once, into ``ConnectionLostError``, and makes
senders take turns so that their messages never interleave: a connection's
writer, a ping, the reader answering one. The turn is not tied to a task, so
a message that one task began without blocking (``try_send``) can be
finished by another (``finish``): that is how a sender whose bytes the kernel
takes at once skips the scheduler, and leaves a rest, if any, to the
connection's writer task.
"""

from __future__ import annotations

import socket
import time

import trio

from .._errors import ConnectionLostError
from .fd_stream import FdSocketStream

_NOTHING = memoryview(b"")
#: TCP states (linux/tcp_states.h) of a socket whose peer has closed: CLOSE, CLOSE_WAIT, LAST_ACK.
_PEER_GONE = frozenset({7, 8, 9})


class StreamIO:
    """``stream``, its errors said as ``ConnectionLostError``, its senders taking turns.

    ``received`` are bytes already read from the stream (the rest of a
    WebSocket upgrade): ``receive`` returns them first.
    """

    def __init__(self, stream: trio.abc.Stream, remote: str, *, received: bytes = b"") -> None:
        self.stream = stream
        self.remote = remote
        self._received = received
        #: The stream's non-blocking send, if it has one.
        self._fd = stream if isinstance(stream, FdSocketStream) else None
        #: Whether a sender has the turn; the others wait in line.
        self._busy = False
        self._line = trio.lowlevel.ParkingLot()
        #: Set once a message was cut short: part of it may be on the wire, nothing may follow.
        self._cut = False
        #: Whether ``try_send`` can send now: the stream sends without blocking, and is free.
        self.can_try = self._fd is not None
        #: When bytes last came from the peer (``time.monotonic()``: a fraction of the cost
        #: of trio's clock, on every read), and how long it was silent before.
        self.heard_at = time.monotonic()
        self.quiet_for = 0.0

    def _lost(self, exc: BaseException) -> ConnectionLostError:
        if isinstance(exc, trio.ClosedResourceError):
            return ConnectionLostError(f"connection to {self.remote} closed")
        return ConnectionLostError(f"connection to {self.remote} broken: {exc}")

    def _check(self) -> None:
        if self._cut:
            raise ConnectionLostError(
                f"connection to {self.remote} is unusable: a write was interrupted midway"
            )

    async def _take_turn(self) -> None:  # noqa: ASYNC910 - callers check for cancellation first
        """Wait for the turn, if another sender has it."""
        if self._busy:
            await self._line.park()  # woken with the turn handed over
        else:
            self._busy = True
            self.can_try = False

    def _give_turn(self) -> None:
        if self._line:
            self._line.unpark()
        else:
            self._busy = False
            self.can_try = self._fd is not None and not self._cut

    async def receive(self) -> bytes:
        """Whatever arrived next; ``b""`` once the peer closed.

        Bytes received before come at once: the caller's read loop is the
        cancel point (a schedule point only when it waits for the socket).
        """
        if self._received:
            received, self._received = self._received, b""
            return received  # noqa: ASYNC910 - once per connection, see above
        try:
            data = await self.stream.receive_some()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self._lost(exc) from None
        now = time.monotonic()
        self.quiet_for = now - self.heard_at
        self.heard_at = now
        return data if type(data) is bytes else bytes(data)

    def peer_closed(self) -> bool:
        """Whether the peer has already closed its end (TCP's CLOSE_WAIT, or reset).

        Bytes it sent before closing are still read: this says they come from a
        peer that no longer waits for an answer. One system call; False when
        the stream does not show its socket.
        """
        stream: object = self.stream
        while not hasattr(stream, "socket"):
            stream = getattr(stream, "transport_stream", None)
            if stream is None:
                return False
        sock = stream.socket
        try:
            state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        except (OSError, AttributeError, IndexError):
            return False
        return state in _PEER_GONE

    def try_send(self, data: bytes) -> memoryview | None:
        """Send ``data`` as far as the kernel takes it now, without blocking.

        None if that cannot be done now (see ``can_try``): nothing was sent.
        Otherwise the part of ``data`` the kernel did not take, empty if it took
        all. A rest keeps this sender's turn: nothing else is sent until
        ``finish`` has sent it.
        """
        if not self.can_try:
            self._check()
            return None
        fd = self._fd
        assert fd is not None
        self._busy = True
        self.can_try = False
        try:
            sent = fd.try_send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._give_turn()
            raise self._lost(exc) from None
        if sent == len(data):
            self._give_turn()
            return _NOTHING
        return memoryview(data)[sent:]

    async def finish(self, rest: memoryview) -> None:
        """Send the rest ``try_send`` left, and give the turn back.

        However this ends early (cancelled, or the stream broke), the message
        is cut short and the stream takes nothing more.
        """
        sent = False
        try:
            await self.stream.send_all(rest)
            sent = True
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self._lost(exc) from None
        finally:
            self._cut = self._cut or not sent
            self._give_turn()

    async def write(self, data: bytes) -> None:
        """Send all of ``data`` in its turn.

        A cancel point; a schedule point only when it waits (for its turn, or
        for the kernel to take the bytes). If it is cancelled once it has
        begun sending, the stream is left unusable: ``ConnectionLostError``
        from then on.
        """
        self._check()
        await trio.lowlevel.checkpoint_if_cancelled()
        rest = self.try_send(data)
        if rest is not None:
            if rest:
                await self.finish(rest)
            return
        await self._take_turn()
        try:
            self._check()
            await self.stream.send_all(data)
        except trio.Cancelled:
            self._cut = True
            raise
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self._lost(exc) from None
        finally:
            self._give_turn()


class OverStreamIO:
    """What a frame socket passes straight to its ``StreamIO`` (``self._io``)."""

    _io: StreamIO

    async def finish_send(self, rest: memoryview) -> None:
        """Send the rest of the frame ``try_send`` began."""
        await self._io.finish(rest)

    @property
    def heard_at(self) -> float:
        """When bytes last came from the peer (``time.monotonic()``): a frame, a ping, a pong."""
        return self._io.heard_at

    @property
    def quiet_for(self) -> float:
        """How long the peer was silent before the bytes read last."""
        return self._io.quiet_for

    def peer_closed(self) -> bool:
        """Whether the peer has closed its end already (see ``StreamIO.peer_closed``)."""
        return self._io.peer_closed()
