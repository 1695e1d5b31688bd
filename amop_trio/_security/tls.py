"""``ssl.SSLContext`` factories for mutual TLS inside one consortium chain.

Every AMOP link (SDK to node, node to node) is TLS with certificates on both
sides, and both sides trust exactly one root: the chain CA's ``ca.crt``. The
contexts built here therefore:

* load ``ca.crt`` as the only trust anchor (never the system store: a public
  CA must not be able to mint a consortium member);
* require a certificate from the peer, in both directions (``CERT_REQUIRED``);
* do not check host names. Consortium peers are identified by their
  certificate (a node by its node id, the hex of its public key), not by DNS:
  nodes are dialled by IP address, addresses change, and the chain CA, not a
  host name, decides who belongs to the chain. Whoever needs to pin a specific
  peer compares ``node_id_from_cert`` / the peer certificate after the
  handshake.

secp256k1 (PROTOCOL.md section 4): TLS 1.3 defines no signature scheme for
secp256k1 and OpenSSL 3's default group list leaves the curve out, so default
contexts fail with "no shared cipher". When the own certificate or the chain CA
uses secp256k1, the context is capped at TLS 1.2 and ``set_ecdh_curve
("secp256k1")`` makes it the (only) ECDHE group; both ends must do so, which
these factories do on either side. In TLS 1.2 a server may only use an ECDSA
certificate on a curve the client lists as supported, so a secp256k1 peer and a
P-256 peer cannot talk to each other through these contexts: keep one curve per
chain. With P-256 the defaults (TLS 1.2 or 1.3) are used.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from .certs import (
    CA_CERT,
    LAYOUT_HELP,
    NODE_CERT,
    NODE_KEY,
    SDK_CERT,
    SDK_KEY,
    CertFiles,
    CertificateError,
    certificate_curve,
)

__all__ = [
    "CertSource",
    "CertificateError",
    "client_context",
    "client_context_from_dir",
    "server_context",
    "uses_secp256k1",
]

StrPath = str | os.PathLike[str]

CertSource = StrPath | CertFiles | tuple[StrPath, StrPath, StrPath]
"""A FISCO directory, a ``CertFiles``, or a ``(ca, cert, key)`` tuple of file paths."""

# FISCO BCOS 3.x names a node's TLS pair ssl.crt / ssl.key; accepted as a fallback.
_SERVER_PAIRS = ((NODE_CERT, NODE_KEY), ("ssl.crt", "ssl.key"))
_CLIENT_PAIRS = ((SDK_CERT, SDK_KEY), (NODE_CERT, NODE_KEY), ("ssl.crt", "ssl.key"))


def _need_file(path: Path, role: str) -> Path:
    if not path.is_file():
        where = "does not exist" if not path.exists() else "is not a regular file"
        raise CertificateError(
            f"{role} {path.name!r} {where} (looked for {path}); {LAYOUT_HELP}", path=path
        )
    return path


def _from_dir(directory: Path, pairs: Sequence[tuple[str, str]]) -> tuple[Path, Path, Path]:
    if not directory.is_dir():
        raise CertificateError(
            f"certificate directory {directory} does not exist; {LAYOUT_HELP}", path=directory
        )
    ca = _need_file(directory / CA_CERT, "chain CA certificate")
    for cert_name, key_name in pairs:
        cert = directory / cert_name
        if cert.exists():
            key = _need_file(directory / key_name, f"private key of {cert_name}")
            return ca, _need_file(cert, "certificate"), key
    wanted = " or ".join(f"{c} + {k}" for c, k in pairs)
    raise CertificateError(
        f"no certificate in {directory}: expected {wanted} next to {CA_CERT}; {LAYOUT_HELP}",
        path=directory / pairs[0][0],
    )


def _resolve(source: CertSource, pairs: Sequence[tuple[str, str]]) -> tuple[Path, Path, Path]:
    if isinstance(source, CertFiles):
        files: tuple[StrPath, StrPath, StrPath] = (source.ca, source.cert, source.key)
    elif isinstance(source, tuple):
        files = source
    else:
        return _from_dir(Path(source), pairs)
    ca, cert, key = (Path(p) for p in files)
    return (
        _need_file(ca, "chain CA certificate"),
        _need_file(cert, "certificate"),
        _need_file(key, "private key"),
    )


def uses_secp256k1(ca: StrPath, cert: StrPath) -> bool:
    """True if the certificate's key or the chain CA's key is on secp256k1."""
    return "secp256k1" in (certificate_curve(cert), certificate_curve(ca))


def _configure(ctx: ssl.SSLContext, ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=os.fspath(ca))
    except ssl.SSLError as exc:
        raise CertificateError(f"{ca}: not a usable PEM CA certificate ({exc})", path=ca) from exc
    try:
        ctx.load_cert_chain(certfile=os.fspath(cert), keyfile=os.fspath(key))
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            msg = f"{key} is not the private key of {cert}"
        else:
            msg = f"cannot load {cert} with key {key}: {exc}"
        raise CertificateError(msg, path=cert) from exc
    if uses_secp256k1(ca, cert):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.set_ecdh_curve("secp256k1")
        except ValueError as exc:
            raise CertificateError(
                f"{cert} uses secp256k1 but this Python's OpenSSL ({ssl.OPENSSL_VERSION}) "
                "does not offer that curve for TLS; use prime256v1 certificates",
                path=cert,
            ) from exc
    return ctx


def server_context(source: CertSource, *, require_client_cert: bool = True) -> ssl.SSLContext:
    """A server-side context for a node.

    ``source`` is a directory in the FISCO layout (``ca.crt`` + ``node.crt`` +
    ``node.key``; ``ssl.crt``/``ssl.key`` also accepted), a ``CertFiles`` or a
    ``(ca, cert, key)`` tuple. With ``require_client_cert`` (the default, and
    what FISCO does) peers without a certificate from the chain CA are refused
    during the handshake; without it, a certificate is requested and checked
    if offered, but not required.
    """
    ca, cert, key = _resolve(source, _SERVER_PAIRS)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return _configure(ctx, ca, cert, key)


def client_context(ca: StrPath, cert: StrPath, key: StrPath) -> ssl.SSLContext:
    """A client-side context presenting ``cert``/``key`` and trusting only ``ca``.

    The server's certificate must chain to ``ca``; its host name is not
    checked (see the module docstring).
    """
    ca_p, cert_p, key_p = _resolve((ca, cert, key), _CLIENT_PAIRS)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    return _configure(ctx, ca_p, cert_p, key_p)


def client_context_from_dir(directory: StrPath) -> ssl.SSLContext:
    """``client_context`` from a FISCO directory.

    Uses ``ca.crt`` with ``sdk.crt``/``sdk.key`` (an SDK), or else
    ``node.crt``/``node.key`` (a node dialling another node), or else
    ``ssl.crt``/``ssl.key`` (FISCO 3.x node naming).
    """
    ca, cert, key = _from_dir(Path(directory), _CLIENT_PAIRS)
    return client_context(ca, cert, key)
