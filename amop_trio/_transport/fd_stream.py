"""TCP for both transports: opening a connection (TLS when given a context), and its stream.

A connection's bytes go through one ``trio.abc.Stream``, whatever it runs on:
an ``FdSocketStream`` for plain TCP (on POSIX), a ``trio.SSLStream`` for TLS.
``connection_stream`` picks it for an opened or accepted stream.
"""

from __future__ import annotations

import errno
import operator
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import trio

from .._errors import ConnectError

#: Bytes read from a stream at a time.
RECEIVE_SIZE = 65536
#: Whether plain sockets are read and written on their file descriptors.
_RAW = os.name == "posix"
#: Unsent bytes a socket holds before it stops taking more, as ``trio.SocketStream`` sets it.
_NOTSENT_LOWAT = 2**14


@asynccontextmanager
async def open_stream(  # noqa: ASYNC911 - the body's own I/O is the checkpoint after the yield
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
                stream = connection_stream(await trio.open_tcp_stream(host, port))
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


def connection_stream(stream: trio.abc.Stream, received: bytes = b"") -> trio.abc.Stream:
    """The stream to run a connection on, ``received`` (bytes already read) first.

    A plain ``trio.SocketStream`` becomes an ``FdSocketStream`` that owns its
    socket (``stream`` must not be used after, except to close it); any other
    stream, such as TLS, stays itself, behind a ``ReplayStream`` if there are
    bytes to put back.
    """
    if _RAW and isinstance(stream, trio.SocketStream):
        return FdSocketStream(stream.socket, received=received)
    return ReplayStream(stream, received) if received else stream


#: Why an ``FdSocketStream`` refuses to send.
_CLOSED = "this stream was already closed"
_EOF_SENT = "can't send data after sending EOF"


def _closed(what: str = _CLOSED) -> trio.ClosedResourceError:
    return trio.ClosedResourceError(what)


class FdSocketStream(trio.abc.HalfCloseableStream):
    """A connected TCP socket as a trio stream that reads and writes its descriptor itself.

    ``trio.SocketStream`` spends a scheduler pass on each side of each call.
    Here ``receive_some`` parks once, until the socket is readable, and then
    reads; and ``try_send`` writes what the kernel takes at once without the
    scheduler at all, so a sender whose bytes fit in the kernel's buffer (the
    usual case) does not yield. On a request/reply path that crosses four
    sockets, that is most of what a round trip costs.

    Otherwise it is a ``trio.abc.HalfCloseableStream`` with trio's rules:
    every async method is a checkpoint; two tasks sending at once (in
    ``send_all``, ``wait_send_all_might_not_block`` or ``send_eof``), or two
    receiving, get ``trio.BusyResourceError``; a ``send_all`` cancelled after
    its first check leaves the stream broken for sending, as ``trio.SSLStream``
    does, since an unknown part of the data is on the wire. The peer or the
    network failing is ``trio.BrokenResourceError``, using the stream after
    this side closed it ``trio.ClosedResourceError``.

    ``received`` are bytes already read from the socket (a sniffed prefix):
    ``receive_some`` returns them first. The stream owns ``socket`` and closes
    it in ``aclose``. POSIX only: it calls ``os.read`` and ``os.write``.
    """

    def __init__(self, socket: trio.socket.SocketType, *, received: bytes = b"") -> None:
        self.socket = socket
        self._received = received
        self._sending = False
        self._receiving = False
        #: Why sends are refused (the stream was closed, or EOF sent); empty while they are not.
        self._send_closed = ""
        #: Why the stream is broken for sending; empty while it is not.
        self._broken = ""
        # trio.SocketStream's defaults: no Nagle delay, little unsent data held.
        with suppress(OSError):  # not a TCP socket
            socket.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, True)
        if hasattr(trio.socket, "TCP_NOTSENT_LOWAT"):
            with suppress(OSError):
                socket.setsockopt(
                    trio.socket.IPPROTO_TCP, trio.socket.TCP_NOTSENT_LOWAT, _NOTSENT_LOWAT
                )

    # -- sending ---------------------------------------------------------------

    def _check_send(self) -> None:
        if self._send_closed:
            raise _closed(self._send_closed)
        if self._broken:
            raise trio.BrokenResourceError(self._broken)

    def _error(self, exc: OSError) -> trio.ClosedResourceError | trio.BrokenResourceError:
        """``exc`` from the socket as a stream error; a broken socket stays broken."""
        if exc.errno == errno.EBADF:
            return _closed("the socket was closed")
        self._broken = f"socket connection broken: {exc}"
        return trio.BrokenResourceError(self._broken)

    def try_send(self, data: bytes | bytearray | memoryview) -> int:
        """Write as much of ``data`` as the kernel takes now; how many bytes that was.

        Never blocks and is no checkpoint: the fast path of a sender that
        keeps the rest of ``data`` to send later, in order, before anything
        else. 0 if the kernel takes nothing now or another task is sending.
        Raises what ``send_all`` raises when the stream cannot send.
        """
        if self._sending:
            return 0
        if self._send_closed or self._broken:
            self._check_send()
        try:
            return os.write(self.socket.fileno(), data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise self._error(exc) from exc

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``; see the class for what a cancellation leaves."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            self._check_send()
            await trio.lowlevel.checkpoint_if_cancelled()
            with memoryview(data) as view, view.cast("B") as octets:
                done = 0
                blocked = False
                try:
                    while done < len(octets):
                        try:
                            with octets[done:] as rest:
                                sent = os.write(self.socket.fileno(), rest)
                        except BlockingIOError:
                            sent = 0
                        except OSError as exc:
                            raise self._error(exc) from exc
                        if sent:
                            done += sent
                        else:
                            blocked = True
                            await trio.lowlevel.wait_writable(self.socket)
                except trio.Cancelled:
                    self._broken = "a send was cancelled midway: part of it may be on the wire"
                    raise
                if not blocked:
                    await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            self._check_send()
            if self.socket.fileno() == -1:
                raise _closed("the socket was closed")
            await trio.lowlevel.wait_writable(self.socket)
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            if self._send_closed == _EOF_SENT:
                return
            if self._send_closed:
                raise _closed(self._send_closed)
            try:
                self.socket.shutdown(trio.socket.SHUT_WR)
            except OSError as exc:
                raise self._error(exc) from exc
            self._send_closed = _EOF_SENT
        finally:
            self._sending = False

    # -- receiving -------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` (``RECEIVE_SIZE`` if None) bytes; ``b""`` once the peer closed."""
        size = RECEIVE_SIZE if max_bytes is None else operator.index(max_bytes)
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            if self._received and self.socket.fileno() != -1:
                await trio.lowlevel.checkpoint()
                data, self._received = self._received[:size], self._received[size:]
                return data
            while True:
                if self.socket.fileno() == -1:
                    raise _closed()
                await trio.lowlevel.wait_readable(self.socket)
                try:
                    return os.read(self.socket.fileno(), size)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    raise self._error(exc) from exc
        finally:
            self._receiving = False

    async def aclose(self) -> None:
        """Close the socket; tasks blocked on it get ``trio.ClosedResourceError``."""
        self._send_closed = _CLOSED
        self._received = b""
        self.socket.close()
        await trio.lowlevel.checkpoint()


class ReplayStream(trio.abc.Stream):
    """``stream`` with ``prefix`` put back in front of what it receives."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self.transport_stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return bytes(await self.transport_stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.transport_stream.aclose()
