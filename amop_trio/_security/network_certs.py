"""The certificates of a local network, made once and reused: what ``amop certs`` writes.

Layout (one directory, ``DIR``)::

    DIR/ca/ca.crt, ca.key          the chain CA (secp256k1 unless asked otherwise)
    DIR/ca3/ca.crt, ca.key         the CA of the 3.x side (RSA-2048)
    DIR/nodeN/conf/ca.crt          both CA certificates (a bundle)
    DIR/nodeN/conf/node.crt, .key  the node certificate, 2.x layout: the node's identity
    DIR/nodeN/conf/ssl.crt, .key   the node certificate, 3.x layout (RSA-2048, from ca3)
    DIR/sdk/ca.crt, sdk.crt, .key  what 2.x SDKs (and amop's own clients) present
    DIR/sdk3/ca.crt, sdk.crt, .key what 3.x SDKs present (RSA-2048, from ca3)

So a node serves both generations on its SDK port: a 2.x SDK (secp256k1,
TLS 1.2) gets ``node.crt`` and a 3.x SDK (OpenSSL defaults) gets ``ssl.crt``,
each chaining to the CA in that SDK's own ``ca.crt``. The 3.x side has its
own RSA CA, as FISCO 3.x's build_chain makes it, so that verifiers without
secp256k1 support (the JDK since 16, Go's crypto/x509) can check it; the
node trusts both. Node certificates carry serverAuth and clientAuth, SDK
certificates clientAuth only (see ``identity``).

Running it again over the same directory keeps everything that is there (the
CAs, every node's certificates and so its node id, the SDK certificates) and
adds what is missing, e.g. nodes for a larger count. What is there must be
consistent: a certificate not issued by its CA, a key that is not its
certificate's, an SDK certificate that could act as a node, or an expired
certificate stops it with one ``CertificateError`` saying which file and why.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from .certs import (
    CA_CERT,
    CA_KEY,
    NODE_CERT,
    NODE_KEY,
    RSA,
    SDK_CERT,
    SDK_KEY,
    CertificateError,
    create_chain_ca,
    create_node_cert,
    create_sdk_cert,
    node_id_from_cert,
)
from .identity import certificate_role
from .layout import SSL_CERT, SSL_KEY

__all__ = ["create_network_certs"]


def _key_kind(key: object) -> str:
    name = getattr(getattr(key, "curve", None), "name", None)
    return str(name) if name else RSA


def _pair_state(cert: Path, key: Path) -> bool:
    """True if both files are there, False if neither; ``CertificateError`` if one is."""
    if cert.exists() and key.exists():
        return True
    if cert.exists() or key.exists():
        present, absent = (cert, key) if cert.exists() else (key, cert)
        raise CertificateError(
            f"{present} is there but {absent.name} is not: restore it or remove both",
            path=absent,
        )
    return False


def _load(cert: Path, key: Path) -> tuple[x509.Certificate, object]:
    try:
        certificate = x509.load_pem_x509_certificates(cert.read_bytes())[0]
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CertificateError(f"cannot read {cert} or {key}: {exc}", path=cert) from None
    if certificate.public_key() != private.public_key():
        raise CertificateError(f"{key} is not the private key of {cert}", path=key)
    if certificate.not_valid_after_utc < dt.datetime.now(dt.UTC):
        raise CertificateError(
            f"{cert} expired on {certificate.not_valid_after_utc:%Y-%m-%d}; remove it (and "
            f"{key.name}) to issue a new one",
            path=cert,
        )
    return certificate, private


def _ca(directory: Path, kind: str) -> x509.Certificate:
    """The CA in ``directory``, made if absent; must be of ``kind`` (a curve or "rsa")."""
    cert, key = directory / CA_CERT, directory / CA_KEY
    if not _pair_state(cert, key):
        create_chain_ca(directory, curve=kind, name=f"chain {directory.name}")
    certificate, private = _load(cert, key)
    if _key_kind(private) != kind.lower() and not (
        kind.lower() in ("prime256v1", "p-256") and _key_kind(private) == "secp256r1"
    ):
        raise CertificateError(
            f"{cert} is a {_key_kind(private)} CA, not {kind}: use the curve it was made "
            f"with, or another directory",
            path=cert,
        )
    return certificate


def _leaf(
    ca_dir: Path,
    ca: x509.Certificate,
    out: Path,
    files: tuple[str, str],
    *,
    node: bool,
    name: str,
) -> Path:
    """The certificate ``out/files[0]``, issued now if absent, checked if present."""
    cert, key = out / files[0], out / files[1]
    if not _pair_state(cert, key):
        if node:
            create_node_cert(ca_dir, out, name, files=files)
        else:
            create_sdk_cert(ca_dir, out, name)
    certificate, _ = _load(cert, key)
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise CertificateError(
            f"{cert} was not issued by {ca_dir / CA_CERT}: it belongs to another chain; "
            "remove it (a node then gets a new id) or use another directory",
            path=cert,
        ) from None
    role = certificate_role(certificate)
    if node and role != "node":
        raise CertificateError(
            f"{cert} is not marked as a node certificate (no serverAuth): remove it "
            "to issue one (the node then gets a new id)",
            path=cert,
        )
    if not node and role != "sdk":
        raise CertificateError(
            f"{cert} could act as a node (its extendedKeyUsage is not clientAuth only, as "
            "older versions made SDK certificates): any certificate like it opens node links, "
            "so make a new chain in another directory (or remove this one)",
            path=cert,
        )
    return cert


def _write_bundle(path: Path, *cas: Path) -> None:
    data = b"".join(ca.read_bytes() for ca in cas)
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)
        path.chmod(0o644)


def create_network_certs(directory: Path, count: int, *, curve: str = "secp256k1") -> list[str]:
    """Certificates for ``count`` nodes and both generations of SDK; returns the node ids.

    Reuses whatever ``directory`` already holds (see the module docstring);
    ``curve`` is the chain CA's and the node identities' (secp256k1 or
    prime256v1).
    """
    directory = Path(directory)
    ca_dir, ca3_dir = directory / "ca", directory / "ca3"
    ca = _ca(ca_dir, curve)
    ca3 = _ca(ca3_dir, RSA)
    ids = []
    for i in range(count):
        conf = directory / f"node{i}" / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        node = _leaf(ca_dir, ca, conf, (NODE_CERT, NODE_KEY), node=True, name=f"node{i}")
        _leaf(ca3_dir, ca3, conf, (SSL_CERT, SSL_KEY), node=True, name=f"node{i}")
        _write_bundle(conf / CA_CERT, ca_dir / CA_CERT, ca3_dir / CA_CERT)
        ids.append(node_id_from_cert(node))
    for sdk_dir, side_dir, side_ca in (
        (directory / "sdk", ca_dir, ca),
        (directory / "sdk3", ca3_dir, ca3),
    ):
        sdk_dir.mkdir(parents=True, exist_ok=True)
        _leaf(side_dir, side_ca, sdk_dir, (SDK_CERT, SDK_KEY), node=False, name="sdk")
        _write_bundle(sdk_dir / CA_CERT, side_dir / CA_CERT)
    return ids
