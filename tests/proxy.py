"""A TCP proxy for tests that can freeze or sever the traffic it carries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio


class Proxy:
    """Forwards loopback TCP connections to ``target_port``.

    ``frozen`` stops moving bytes in both directions without closing anything
    (a dead peer, as a pulled cable looks); ``sever()`` closes every carried
    connection at once.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.frozen = False
        self._thaw = trio.Event()
        self._scopes: set[trio.CancelScope] = set()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def freeze(self) -> None:
        self.frozen = True
        self._thaw = trio.Event()

    def thaw(self) -> None:
        self.frozen = False
        self._thaw.set()

    def sever(self) -> None:
        for scope in list(self._scopes):
            scope.cancel()

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream) -> None:
        while True:
            data = await source.receive_some(65536)
            if not data:
                break
            while self.frozen:
                await self._thaw.wait()
            await sink.send_all(data)

    async def _handle(self, client: trio.SocketStream) -> None:
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
            except OSError:
                await client.aclose()
                return
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, server)
                    nursery.start_soon(self._pump, server, client)
            except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            finally:
                self._scopes.discard(scope)
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(client)
                    await trio.aclose_forcefully(server)


@asynccontextmanager
async def open_proxy(target_port: int) -> AsyncIterator[Proxy]:
    proxy = Proxy(target_port)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, proxy._handle, 0, host="127.0.0.1"))
        proxy.port = listeners[0].socket.getsockname()[1]
        yield proxy
        nursery.cancel_scope.cancel()
