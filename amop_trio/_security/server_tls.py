"""How a node's port does TLS; no ``cryptography`` needed (``tls`` says why two contexts)."""

from __future__ import annotations

import ssl

import trio

from .clienthello import SECP256K1_GROUP, ReplayStream, offered_groups, read_client_hello

__all__ = ["ServerTLS"]


class ServerTLS:
    """How a node's port does TLS: one context, or two chosen per client.

    ``secp256k1`` (if any) serves clients whose ClientHello offers the
    secp256k1 group; ``default`` serves every other client.
    """

    def __init__(self, default: ssl.SSLContext, secp256k1: ssl.SSLContext | None = None) -> None:
        self.default = default
        self.secp256k1 = secp256k1

    async def accept(self, stream: trio.abc.Stream) -> trio.SSLStream[trio.abc.Stream]:
        """Do the server side of the TLS handshake on ``stream``; the TLS stream."""
        context, transport = self.default, stream
        if self.secp256k1 is not None:
            hello = await read_client_hello(stream)
            groups = offered_groups(hello)
            if groups is not None and SECP256K1_GROUP in groups:
                context = self.secp256k1
            transport = ReplayStream(stream, hello)
        tls = trio.SSLStream(transport, context, server_side=True)
        await tls.do_handshake()
        return tls
