"""TCP for both transports: opening a connection (TLS when given a context), and its byte I/O."""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from .._errors import ConnectError, ConnectionLostError

#: Bytes read from a stream at a time.
RECEIVE_SIZE = 65536
#: Whether plain sockets are read and written on their file descriptors.
_RAW = os.name == "posix"
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


@asynccontextmanager
async def open_stream(
    url: str, host: str, port: int, *, ssl_context: ssl.SSLContext | None, timeout: float
) -> AsyncIterator[trio.abc.Stream]:
    """A connected stream, TLS handshake done, for the body to finish opening.

    Everything the body does counts against ``timeout``; if it fails, the
    stream is closed. Network and TLS failures become ``ConnectError``s that
    say what to check.
    """
    tls = " over TLS" if ssl_context is not None else ""
    try:
        with trio.fail_after(timeout):
            stream: trio.abc.Stream
            if ssl_context is None:
                stream = await trio.open_tcp_stream(host, port)
            else:
                stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=ssl_context)
            try:
                if isinstance(stream, trio.SSLStream):
                    await stream.do_handshake()
                yield stream
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
    except trio.TooSlowError:
        raise ConnectError(
            f"cannot connect to {url}{tls}: no answer within {timeout:g} s"
        ) from None
    except OSError as exc:
        raise ConnectError(f"cannot connect to {url}{tls}: {exc.strerror or exc}") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        cause = exc.__cause__ or exc
        raise ConnectError(
            f"cannot connect to {url}{tls}: TLS handshake failed ({cause}); "
            "is it a TLS port, and do both sides use certificates of the same chain?"
        ) from None


class StreamIO:
    """Reads and writes bytes on a connected stream; remembers a write cut short.

    On a plain TCP socket (POSIX), it works on the file descriptor itself: a
    write that the kernel takes whole returns without a trip through the
    scheduler, and a read parks once until the socket is readable and then
    reads, where ``trio.SocketStream`` spends a scheduler pass on each side of
    each call. On a request/reply path that crosses four sockets that is most
    of what a round trip costs. TLS streams go through trio's generic calls.

    A stream whose write was cut short may hold half a frame: it takes no more
    writes, and its connection must be closed. Writes are serialised; one task
    reads.
    """

    def __init__(self, stream: trio.abc.Stream, remote: str, *, received: bytes = b"") -> None:
        prefix = getattr(stream, "take_prefix", None)
        if prefix is not None:  # a sniffed stream: its first bytes, then the stream below
            received = prefix() + received
            stream = stream.transport_stream  # type: ignore[attr-defined]
        self._stream = stream
        self._pending = received
        self._socket = stream.socket if _RAW and isinstance(stream, trio.SocketStream) else None
        self._lock = trio.Lock()
        self._remote = remote
        #: The unwritten end of a frame ``write_nowait`` started; goes out before anything else.
        self._backlog = memoryview(b"")
        self.interrupted = False

    @property
    def remote(self) -> str:
        return self._remote

    def _broken(self, exc: BaseException) -> ConnectionLostError:
        return ConnectionLostError(f"connection to {self._remote} broken: {exc}")

    async def receive(self) -> bytes:
        """Whatever arrived next (up to ``RECEIVE_SIZE`` bytes); ``b""`` once the peer closed."""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        sock = self._socket
        try:
            if sock is None:
                return bytes(await self._stream.receive_some(RECEIVE_SIZE))
            while True:
                if sock.fileno() < 0:  # closed by another task: trio cannot wait on it
                    raise ConnectionLostError(f"connection to {self._remote} closed")
                await trio.lowlevel.wait_readable(sock)
                try:
                    return os.read(sock.fileno(), RECEIVE_SIZE)
                except BlockingIOError:
                    continue
        except _BROKEN as exc:
            raise self._broken(exc) from None

    def _check_usable(self) -> None:
        if self.interrupted:
            raise ConnectionLostError(
                f"connection to {self._remote} is unusable: a write was interrupted midway"
            )

    @property
    def backlogged(self) -> bool:
        """True while part of a frame begun by ``write_nowait`` waits for ``flush``."""
        return bool(self._backlog)

    def write_nowait(self, data: bytes) -> bool:
        """Start writing ``data`` now, without blocking; False (nothing done) if busy.

        Only plain sockets do this, and only when no other write is under way.
        What the kernel does not take at once stays as a backlog for the next
        ``write`` or ``flush``.
        """
        sock = self._socket
        if sock is None or self._lock.locked() or self._backlog or self.interrupted:
            return False
        sent = self._try_write(sock, data)
        if sent < len(data):
            self._backlog = memoryview(data)[sent:]
        return True

    async def flush(self) -> None:
        """Finish writing the backlog, if any."""
        await self.write(b"")

    async def write(self, data: bytes) -> None:
        """Write all of ``data``; ``ConnectionLostError`` if the connection is unusable."""
        self._check_usable()
        sock = self._socket
        if sock is None:
            async with self._lock:
                self._check_usable()
                await trio.lowlevel.checkpoint_if_cancelled()
                try:
                    await self._stream.send_all(data)
                except trio.Cancelled:
                    self.interrupted = True
                    raise
                except _BROKEN as exc:
                    raise self._broken(exc) from None
            return
        if self._lock.locked() or self._backlog:
            async with self._lock:
                self._check_usable()
                await self._write_backlog(sock)
                await self._write_raw(sock, memoryview(data), started=False)
            return
        # Nobody is writing: no scheduler pass unless the kernel's buffer is full.
        sent = self._try_write(sock, data)
        if sent < len(data):
            self._lock.acquire_nowait()
            try:
                await self._write_raw(sock, memoryview(data)[sent:], started=sent > 0)
            finally:
                self._lock.release()

    def _try_write(self, sock: trio.socket.SocketType, data: bytes | memoryview) -> int:
        try:
            return os.write(sock.fileno(), data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise self._broken(exc) from None

    async def _write_backlog(self, sock: trio.socket.SocketType) -> None:
        """Finish the frame ``write_nowait`` began.

        It is nobody's own write, so a cancellation here leaves the rest for
        the next writer instead of marking the connection unusable.
        """
        while self._backlog:
            sent = self._try_write(sock, self._backlog)
            if sent:
                self._backlog = self._backlog[sent:]
                continue
            try:
                await trio.lowlevel.wait_writable(sock)
            except _BROKEN as exc:
                raise self._broken(exc) from None

    async def _write_raw(
        self, sock: trio.socket.SocketType, view: memoryview, *, started: bool
    ) -> None:
        """Write ``view`` as the socket takes it; ``started`` if part of the frame went out."""
        try:
            while view:
                sent = self._try_write(sock, view)
                if sent:
                    view = view[sent:]
                    started = True
                else:
                    await trio.lowlevel.wait_writable(sock)
        except trio.Cancelled:
            self.interrupted = started
            raise
        except _BROKEN as exc:
            raise self._broken(exc) from None


class StreamIOSocket:
    """What a frame socket (``FrameSocket``, ``StreamSocket``) says of its ``StreamIO``."""

    _io: StreamIO

    @property
    def interrupted(self) -> bool:
        """True once a write was cut short: the connection must be closed."""
        return self._io.interrupted

    @property
    def backlogged(self) -> bool:
        """True while the end of a frame ``send_nowait`` began still waits for ``flush``."""
        return self._io.backlogged

    async def flush(self) -> None:
        """Finish the frame ``send_nowait`` began."""
        await self._io.flush()
