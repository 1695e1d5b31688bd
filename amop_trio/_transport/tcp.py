"""Opening a TCP connection, with TLS when given a context: shared by both transports."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from .._errors import ConnectError, ConnectionLostError


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


class Writer:
    """Serialises writes to a stream, and remembers a write that was cut short.

    trio cannot say how much of an interrupted ``send_all`` went out, so a
    stream whose write was cancelled midway may hold half a frame: it takes
    no more writes, and its connection must be closed.
    """

    def __init__(self, stream: trio.abc.Stream, remote: str) -> None:
        self._stream = stream
        self._lock = trio.Lock()
        self._remote = remote
        self.interrupted = False

    async def write(self, data: bytes) -> None:
        async with self._lock:
            if self.interrupted:
                raise ConnectionLostError(
                    f"connection to {self.remote} is unusable: a write was interrupted midway"
                )
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                await self._stream.send_all(data)
            except trio.Cancelled:
                self.interrupted = True
                raise
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise ConnectionLostError(f"connection to {self.remote} broken: {exc}") from None

    @property
    def remote(self) -> str:
        return self._remote
