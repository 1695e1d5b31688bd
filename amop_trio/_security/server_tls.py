"""How a node's port does TLS; no ``cryptography`` needed (``tls`` says why two contexts)."""

from __future__ import annotations

import ssl

from .clienthello import SECP256K1_GROUP, offered_groups

__all__ = ["ServerTLS"]


class ServerTLS:
    """How a node's port does TLS: one context, or two chosen per client.

    ``secp256k1`` (if any) serves clients whose ClientHello offers the
    secp256k1 group; ``default`` serves every other client. With two, the
    server reads the ClientHello first (``read_client_hello``), picks the
    context with ``context_for``, and hands TLS the bytes it read.
    """

    def __init__(self, default: ssl.SSLContext, secp256k1: ssl.SSLContext | None = None) -> None:
        self.default = default
        self.secp256k1 = secp256k1

    @property
    def reads_hello(self) -> bool:
        """Whether the context depends on the ClientHello."""
        return self.secp256k1 is not None

    def context_for(self, hello: bytes) -> ssl.SSLContext:
        """The context for a client that opened with ``hello`` (read whole, or what came)."""
        if self.secp256k1 is not None:
            groups = offered_groups(hello)
            if groups is not None and SECP256K1_GROUP in groups:
                return self.secp256k1
        return self.default
