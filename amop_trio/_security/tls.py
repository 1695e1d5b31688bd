"""TLS for a chain: the contexts of SDK clients, of a node's two ports, and of node links.

Every AMOP link (SDK to node, node to node) is TLS with certificates on both
sides, and both sides trust only the chain's CA certificates (``ca.crt``,
one CA or a bundle), never the system store: a public CA must not be able to
mint a consortium member. Host names are not checked: consortium peers are
identified by their certificate (a node by the id derived from its key, see
``identity``), not by DNS.

One SDK port, both generations (PROTOCOL.md section 4). A node directory may
hold a secp256k1 ``node.crt`` (2.x layout) and an RSA or P-256 ``ssl.crt``
(3.x layout). 2.x clients offer only the secp256k1 group (go-sdk 1.x also
P-256, with TLS 1.3 it cannot use with its secp256k1 key) and need the
secp256k1 certificate over TLS 1.2; 3.x clients keep OpenSSL's defaults,
which leave secp256k1 out. Python 3.11 sets one ECDHE group per context, so
``ServerTLS`` holds two contexts and picks one per connection from the
client's ClientHello (``clienthello``): a client offering secp256k1 gets the
2.x context (secp256k1 certificate, TLS 1.2, secp256k1 ECDHE), any other the
3.x one (OpenSSL's defaults, TLS 1.2 or 1.3). When the node's certificates
need no secp256k1 (a P-256 ``node.crt``, or 3.x layout only), one context
holds every certificate (one slot per key type) and nothing is read ahead.

Node links use the node's identity certificate only (``node.crt``, else
``ssl.crt``), on both ends, so the id a peer derives is always the same.

Clients: a secp256k1 certificate, or a chain CA on secp256k1 only, caps the
client at TLS 1.2 with the secp256k1 group (python-sdk's settings); anything
else keeps OpenSSL's defaults.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .certs import CertFiles, CertificateError, certificate_curve
from .layout import NodeCertificates, find_client_certificates, find_node_certificates, load_anchors
from .paths import CertPaths, StrPath
from .server_tls import ServerTLS

__all__ = [
    "CertSource",
    "CertificateError",
    "NodeTLS",
    "ServerTLS",
    "client_context",
    "client_context_from_dir",
    "node_tls",
    "server_context",
    "uses_secp256k1",
]


CertSource = StrPath | CertFiles | CertPaths
"""A FISCO directory, a ``CertFiles``, or a ``(ca, cert, key)`` tuple of file paths."""


def _need_file(path: Path, role: str) -> Path:
    if not path.is_file():
        where = "does not exist" if not path.exists() else "is not a regular file"
        raise CertificateError(f"{role} {path.name!r} {where} (looked for {path})", path=path)
    return path


def _files(source: CertSource, *, node: bool) -> CertFiles:
    if isinstance(source, CertFiles):
        ca, cert, key = source.ca, source.cert, source.key
    elif isinstance(source, tuple):
        ca, cert, key = (Path(p) for p in source)
    elif node:
        return find_node_certificates(source).identity
    else:
        return find_client_certificates(source)
    return CertFiles(
        cert=_need_file(Path(cert), "certificate"),
        key=_need_file(Path(key), "private key"),
        ca=_need_file(Path(ca), "chain CA certificate"),
    )


def _is_k1(cert: Path) -> bool:
    return certificate_curve(cert) == "secp256k1"


def uses_secp256k1(ca: StrPath, cert: StrPath) -> bool:
    """True if the certificate's key, or every chain CA's key, is on secp256k1."""
    if _is_k1(Path(cert)):
        return True
    curves = {_curve_name(c) for c in load_anchors(Path(ca))}
    return curves == {"secp256k1"}


def _curve_name(cert: object) -> str | None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = cert.public_key()  # type: ignore[attr-defined]
    return key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else None


def _trust(ctx: ssl.SSLContext, ca: Path) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=os.fspath(ca))
    except ssl.SSLError as exc:
        raise CertificateError(f"{ca}: not a usable PEM CA certificate ({exc})", path=ca) from exc


def _load_pair(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        ctx.load_cert_chain(certfile=os.fspath(cert), keyfile=os.fspath(key))
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            msg = f"{key} is not the private key of {cert}"
        else:
            msg = f"cannot load {cert} with key {key}: {exc}"
        raise CertificateError(msg, path=cert) from exc


def _secp256k1_only(ctx: ssl.SSLContext, cert: Path) -> None:
    """TLS 1.2 with the secp256k1 ECDHE group: what 2.x peers speak."""
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.set_ecdh_curve("secp256k1")
    except ValueError as exc:
        raise CertificateError(
            f"{cert} uses secp256k1 but this Python's OpenSSL ({ssl.OPENSSL_VERSION}) "
            "does not offer that curve for TLS; use prime256v1 certificates",
            path=cert,
        ) from exc


def _server(ca: Path, pairs: Sequence[CertFiles], *, require_client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    _trust(ctx, ca)
    for pair in pairs:
        _load_pair(ctx, pair.cert, pair.key)
    if any(_is_k1(pair.cert) for pair in pairs):
        _secp256k1_only(ctx, pairs[0].cert)
    return ctx


def server_context(source: CertSource, *, require_client_cert: bool = True) -> ssl.SSLContext:
    """A server-side context presenting one certificate: a node's identity pair.

    ``source`` is a node directory (``node.crt``/``node.key``, else
    ``ssl.crt``/``ssl.key``, next to ``ca.crt``), a ``CertFiles`` or a
    ``(ca, cert, key)`` tuple. With ``require_client_cert`` (the default, and
    what FISCO does) peers without a certificate from the chain CA are refused
    during the handshake; without it, a certificate is checked if offered.
    """
    files = _files(source, node=True)
    return _server(files.ca, [files], require_client_cert=require_client_cert)


def client_context(ca: StrPath, cert: StrPath, key: StrPath) -> ssl.SSLContext:
    """A client-side context presenting ``cert``/``key`` and trusting only ``ca``."""
    files = _files((ca, cert, key), node=False)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    _trust(ctx, files.ca)
    _load_pair(ctx, files.cert, files.key)
    if uses_secp256k1(files.ca, files.cert):
        _secp256k1_only(ctx, files.cert)
    return ctx


def client_context_from_dir(directory: StrPath) -> ssl.SSLContext:
    """``client_context`` from a directory: ``ca.crt`` with ``sdk.crt``/``sdk.key`` (an SDK
    of either generation), else ``node.crt``/``node.key`` or ``ssl.crt``/``ssl.key``."""
    files = find_client_certificates(directory)
    return client_context(files.ca, files.cert, files.key)


@dataclass(frozen=True)
class NodeTLS:
    """The TLS a node with certificates runs: its SDK port, its P2P port, its dials."""

    certificates: NodeCertificates
    sdk: ServerTLS
    p2p: ServerTLS
    dial: ssl.SSLContext


def node_tls(source: StrPath | NodeCertificates) -> NodeTLS:
    """Contexts for a node from its certificate directory (either layout, or both)."""
    found = source if isinstance(source, NodeCertificates) else find_node_certificates(source)
    pairs = [p for p in (found.fisco2, found.fisco3) if p is not None]
    k1 = [p for p in pairs if _is_k1(p.cert)]
    others = [p for p in pairs if not _is_k1(p.cert)]
    if k1 and others:
        sdk = ServerTLS(
            _server(found.ca, others, require_client_cert=True),
            _server(found.ca, k1, require_client_cert=True),
        )
    else:
        sdk = ServerTLS(_server(found.ca, pairs, require_client_cert=True))
    identity = found.identity
    p2p = ServerTLS(_server(found.ca, [identity], require_client_cert=True))
    dial = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    dial.check_hostname = False
    dial.verify_mode = ssl.CERT_REQUIRED
    _trust(dial, found.ca)
    _load_pair(dial, identity.cert, identity.key)
    if _is_k1(identity.cert):
        _secp256k1_only(dial, identity.cert)
    return NodeTLS(found, sdk, p2p, dial)
