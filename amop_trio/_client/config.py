"""How a client is configured: endpoints, TLS, timeouts and limits."""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._transport import channel_socket, ws_socket

_Path = str | os.PathLike[str]
#: A certificate directory in the FISCO layout, or (CA, certificate, key) paths.
CertSource = _Path | tuple[_Path, _Path, _Path]
#: What a directory needs to hold to serve as SDK certificates.
SDK_CERT_FILES = ("ca.crt", "sdk.crt", "sdk.key")
_WS_SCHEMES = ("ws://", "wss://")


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything ``open_amop`` was told, checked."""

    urls: tuple[str, ...]
    ssl_context: ssl.SSLContext | None
    #: Whether the certificates were found rather than passed (see ``find_sdk_certs``).
    implicit_tls: bool
    timeout: float
    connect_timeout: float
    ping_interval: float
    ping_timeout: float
    reconnect: bool
    max_frame_size: int
    subscription_buffer: int
    outbox_size: int

    @property
    def channel(self) -> bool:
        """Whether any endpoint speaks channel, whose topics are at most 254 bytes."""
        return any(url.startswith(f"{channel_socket.SCHEME}://") for url in self.urls)


def endpoint_url(endpoint: str, *, tls: bool) -> str:
    """The URL of an endpoint: ``channel://host:port`` or a WebSocket URL."""
    if endpoint.startswith(f"{channel_socket.SCHEME}://"):
        return channel_socket.endpoint_url(endpoint)
    return ws_socket.endpoint_url(endpoint, tls=tls)


def find_sdk_certs() -> Path | None:
    """The first SDK certificate directory among the usual places, if any."""
    candidates = [os.environ.get("AMOP_SDK_CERTS"), "nodes/sdk", "conf"]
    for candidate in candidates:
        if candidate and all((Path(candidate) / f).is_file() for f in SDK_CERT_FILES):
            return Path(candidate)
    return None


def client_tls(
    endpoints: Sequence[str], certs: CertSource | None, ssl_context: ssl.SSLContext | None
) -> tuple[ssl.SSLContext | None, bool]:
    """The TLS context to connect with, and whether its certificates were found, not given."""
    cert_dir = certs
    implicit = False
    if (
        certs is None
        and ssl_context is None
        and not any(e.startswith(_WS_SCHEMES) for e in endpoints)
    ):
        cert_dir = find_sdk_certs()
        implicit = cert_dir is not None
    if isinstance(cert_dir, tuple):
        from .._security.tls import client_context

        ssl_context = client_context(*cert_dir)
    elif cert_dir is not None:
        from .._security.tls import client_context_from_dir

        ssl_context = client_context_from_dir(cert_dir)
    return ssl_context, implicit


def make_config(
    endpoints: str | Sequence[str],
    *,
    ssl_context: ssl.SSLContext | None,
    certs: CertSource | None,
    timeout: float,
    connect_timeout: float,
    ping_interval: float,
    ping_timeout: float | None,
    reconnect: bool,
    max_frame_size: int,
    subscription_buffer: int,
    outbox_size: int,
) -> ClientConfig:
    """Check ``open_amop``'s arguments; ``ValueError`` names the one that is wrong."""
    if isinstance(endpoints, str):
        endpoints = [endpoints]
    if not endpoints:
        raise ValueError("open_amop needs at least one endpoint")
    if not (math.isfinite(ping_interval) and ping_interval > 0):
        raise ValueError(f"ping_interval must be a positive number of seconds, not {ping_interval}")
    context, implicit = client_tls(endpoints, certs, ssl_context)
    return ClientConfig(
        urls=tuple(endpoint_url(e, tls=context is not None) for e in endpoints),
        ssl_context=context,
        implicit_tls=implicit,
        timeout=timeout,
        connect_timeout=connect_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_interval if ping_timeout is None else ping_timeout,
        reconnect=reconnect,
        max_frame_size=max_frame_size,
        subscription_buffer=subscription_buffer,
        outbox_size=outbox_size,
    )
