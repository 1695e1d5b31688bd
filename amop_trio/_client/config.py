"""How a client is configured: endpoints, TLS, timeouts and limits."""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._security.paths import CertPaths, StrPath
from .._transport import channel_socket, ws_socket

#: A certificate directory in the FISCO layout, or (CA, certificate, key) paths.
CertSource = StrPath | CertPaths
#: What a directory needs to hold to serve as SDK certificates.
SDK_CERT_FILES = ("ca.crt", "sdk.crt", "sdk.key")
#: Where SDK certificates are looked for when none are given: ``amop chain``'s, then FISCO's.
_DISCOVERY_DIRS = ("nodes/sdk", "conf")


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything ``open_amop`` was told, checked."""

    urls: tuple[str, ...]
    ssl_context: ssl.SSLContext | None
    #: Why the client speaks TLS or not, for the log.
    tls_choice: str
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
    """The SDK certificate directory to use when none is given, if any.

    ``$AMOP_SDK_CERTS`` when set (a ``CertificateError`` if it does not hold
    ``ca.crt``, ``sdk.crt`` and ``sdk.key``: a wrong setting is never ignored),
    else ``./nodes/sdk`` (written by ``amop chain``), else ``./conf`` (the FISCO
    SDK default), else None.
    """
    configured = os.environ.get("AMOP_SDK_CERTS")
    if configured:
        directory = Path(configured)
        missing = [f for f in SDK_CERT_FILES if not (directory / f).is_file()]
        if missing:
            from .._security.certs import CertificateError

            where = "does not exist" if not directory.is_dir() else f"lacks {', '.join(missing)}"
            raise CertificateError(
                f"AMOP_SDK_CERTS={configured} {where}; it must name a directory holding "
                f"{', '.join(SDK_CERT_FILES)} (unset it to connect without TLS)",
                path=directory,
            )
        return directory
    for candidate in _DISCOVERY_DIRS:
        if all((Path(candidate) / f).is_file() for f in SDK_CERT_FILES):
            return Path(candidate)
    return None


def client_tls(
    endpoints: Sequence[str], certs: CertSource | None, ssl_context: ssl.SSLContext | None
) -> tuple[ssl.SSLContext | None, str]:
    """The TLS context to connect with (None: plain), and why, for the log.

    Certificates passed (``certs``, ``ssl_context``) are used as given. Without
    them, the SDK certificates ``find_sdk_certs`` finds are used for every
    endpoint but explicit ``ws://`` ones. Once TLS is chosen it is never given
    up for plain text: a TLS failure is a ``ConnectError`` that says why.
    """
    if ssl_context is not None:
        return ssl_context, "an SSL context was given"
    if isinstance(certs, tuple):
        from .._security.tls import client_context

        return client_context(*certs), "certificates were given"
    if certs is not None:
        from .._security.tls import client_context_from_dir

        return client_context_from_dir(certs), f"certificates were given in {certs}"
    if all(e.startswith("ws://") for e in endpoints):
        return None, "the endpoints are ws:// (plain WebSocket)"
    found = find_sdk_certs()
    if found is None:
        return None, "no SDK certificates in $AMOP_SDK_CERTS, ./nodes/sdk or ./conf"
    from .._security.tls import client_context_from_dir

    return client_context_from_dir(found), f"SDK certificates were found in {found}"


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
    context, choice = client_tls(endpoints, certs, ssl_context)
    return ClientConfig(
        urls=tuple(endpoint_url(e, tls=context is not None) for e in endpoints),
        ssl_context=context,
        tls_choice=choice,
        timeout=timeout,
        connect_timeout=connect_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_interval if ping_timeout is None else ping_timeout,
        reconnect=reconnect,
        max_frame_size=max_frame_size,
        subscription_buffer=subscription_buffer,
        outbox_size=outbox_size,
    )
