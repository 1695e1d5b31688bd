"""Certificates in the FISCO BCOS layout, made with ``cryptography``.

PROTOCOL.md section 4: a chain CA (``ca.crt``, ``ca.key``) signs one
certificate per node (``node.crt``, ``node.key``; FISCO 3.x names them
``ssl.crt``, ``ssl.key``) and the SDK certificates (``sdk.crt``,
``sdk.key``). Every directory that holds a node or SDK certificate also holds
``ca.crt``, the only trust root of its TLS contexts (see ``tls``). Keys are
ECDSA, secp256k1 as FISCO 2.x makes them or prime256v1 (P-256), or RSA-2048
as FISCO 3.x makes them (``curve="rsa"``).

Roles (see ``identity``): node certificates carry both TLS extended key
usages, serverAuth and clientAuth (a node accepts SDKs and nodes and dials
nodes); SDK certificates carry clientAuth only, so they can never pass for a
node.

For tests, ``days`` may be negative (the certificate expired ``-days`` days
ago) and ``not_before``/``not_after`` set the validity window exactly; a
"foreign" certificate is simply one issued by a second ``create_chain_ca``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .._errors import AmopError
from .paths import StrPath

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CURVES",
    "NODE_CERT",
    "NODE_KEY",
    "SDK_CERT",
    "SDK_KEY",
    "CertFiles",
    "CertificateError",
    "certificate_curve",
    "create_chain_ca",
    "create_node_cert",
    "create_sdk_cert",
    "load_certificate",
    "node_id_from_cert",
]


CA_CERT = "ca.crt"
CA_KEY = "ca.key"
NODE_CERT = "node.crt"
NODE_KEY = "node.key"
SDK_CERT = "sdk.crt"
SDK_KEY = "sdk.key"

CURVES: dict[str, type[ec.EllipticCurve]] = {
    "secp256k1": ec.SECP256K1,
    "prime256v1": ec.SECP256R1,
    "secp256r1": ec.SECP256R1,
    "p-256": ec.SECP256R1,
}
"""Curve names accepted by the ``curve`` parameters (case-insensitive); also ``"rsa"``."""

#: The ``curve`` that makes RSA keys, and their size.
RSA = "rsa"
RSA_BITS = 2048

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

LAYOUT_HELP = (
    "expected FISCO layout: the chain CA directory holds ca.crt and ca.key; "
    "a node directory holds ca.crt, node.crt and node.key; "
    "an SDK directory holds ca.crt, sdk.crt and sdk.key"
)


class CertificateError(AmopError):
    """A certificate or key file is missing, unreadable or unusable.

    ``path`` names the offending file when there is one.
    """

    def __init__(self, message: str, *, path: StrPath | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None


@dataclass(frozen=True)
class CertFiles:
    """Where one certificate, its private key and the chain CA certificate live."""

    cert: Path
    key: Path
    ca: Path


# -- small helpers ------------------------------------------------------------


def _new_key(name: str) -> PrivateKey:
    if name.lower() == RSA:
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    try:
        return ec.generate_private_key(CURVES[name.lower()]())
    except KeyError:
        raise ValueError(
            f"unknown curve {name!r}; use one of: {', '.join(sorted([*CURVES, RSA]))}"
        ) from None


def _key_name(key: PrivateKey) -> str:
    return key.curve.name if isinstance(key, ec.EllipticCurvePrivateKey) else RSA


def _validity(
    days: int, not_before: dt.datetime | None, not_after: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    if not_after is None:
        not_after = now + dt.timedelta(days=days)
    if not_before is None:
        # An hour of slack for clocks that are a little behind.
        not_before = min(now, not_after) - dt.timedelta(hours=1)
    if not_before >= not_after:
        raise ValueError(f"not_before {not_before} is not before not_after {not_after}")
    return not_before, not_after


def _write_key(path: Path, key: PrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)


def _check_free(paths: Iterable[Path], overwrite: bool) -> None:
    if overwrite:
        return
    for p in paths:
        if p.exists():
            raise CertificateError(f"{p} already exists; pass overwrite=True to replace it", path=p)


def _read(path: Path, role: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CertificateError(
            f"{role} file {path.name!r} not found in {path.parent} ({LAYOUT_HELP})", path=path
        ) from None
    except OSError as exc:
        raise CertificateError(f"cannot read {role} file {path}: {exc}", path=path) from exc


def load_certificate(path: StrPath, role: str = "certificate") -> x509.Certificate:
    """The first PEM certificate in ``path``; ``CertificateError`` if missing or not PEM."""
    p = Path(path)
    data = _read(p, role)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise CertificateError(f"{p}: not a PEM certificate ({exc})", path=p) from exc


def _load_private_key(path: Path, role: str) -> PrivateKey:
    data = _read(path, role)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(
            f"{path}: not an unencrypted PEM private key ({exc})", path=path
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertificateError(f"{path}: expected an ECDSA or RSA key", path=path)
    return key


def _name(common_name: str, organization: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
        ]
    )


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName | None:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names) if names else None


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PublicKey,
    start: dt.datetime,
    end: dt.datetime,
    *,
    ca: bool,
) -> x509.CertificateBuilder:
    """What every certificate here has: names, validity, and the usage of a CA or a peer."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not ca and isinstance(public_key, rsa.RSAPublicKey),
                data_encipherment=False,
                key_agreement=not ca and isinstance(public_key, ec.EllipticCurvePublicKey),
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


# -- public API ----------------------------------------------------------------


def create_chain_ca(
    directory: StrPath,
    *,
    curve: str = "secp256k1",
    days: int = 3650,
    name: str = "chain",
    organization: str = "amop_trio",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    overwrite: bool = False,
) -> CertFiles:
    """Make a self-signed chain CA: writes ``ca.crt`` and ``ca.key`` into ``directory``.

    ``curve`` is ``"secp256k1"`` (FISCO 2.x), ``"prime256v1"`` (P-256) or
    ``"rsa"`` (RSA-2048, FISCO 3.x). Refuses to replace an existing CA unless
    ``overwrite``.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / CA_CERT, out / CA_KEY
    _check_free((cert_path, key_path), overwrite)

    key = _new_key(curve)
    start, end = _validity(days, not_before, not_after)
    subject = _name(name, organization, "chain")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        _builder(subject, subject, key.public_key(), start, end, ca=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return CertFiles(cert=cert_path, key=key_path, ca=cert_path)


def _issue(
    ca_dir: StrPath,
    out_dir: StrPath,
    *,
    cert_name: str,
    key_name: str,
    common_name: str,
    unit: str,
    organization: str,
    curve: str | None,
    days: int,
    hosts: Iterable[str],
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
    overwrite: bool,
    usages: tuple[x509.ObjectIdentifier, ...],
) -> CertFiles:
    ca_path = Path(ca_dir)
    ca_cert = load_certificate(ca_path / CA_CERT, "chain CA certificate")
    ca_key = _load_private_key(ca_path / CA_KEY, "chain CA key")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path, ca_copy = out / cert_name, out / key_name, out / CA_CERT
    _check_free((cert_path, key_path), overwrite)

    key = _new_key(curve or _key_name(ca_key))
    start, end = _validity(days, not_before, not_after)
    subject = _name(common_name, organization, unit)
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), start, end, ca=False)
        .add_extension(
            x509.ExtendedKeyUsage(list(usages)),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    san = _san(hosts)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())

    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    src = ca_path / CA_CERT
    if not ca_copy.exists() or not ca_copy.samefile(src):
        shutil.copyfile(src, ca_copy)
    return CertFiles(cert=cert_path, key=key_path, ca=ca_copy)


def create_node_cert(
    ca_dir: StrPath,
    out_dir: StrPath,
    name: str = "node",
    *,
    curve: str | None = None,
    days: int = 3650,
    hosts: Iterable[str] = ("127.0.0.1", "::1", "localhost"),
    organization: str = "amop_trio",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    overwrite: bool = False,
    files: tuple[str, str] = (NODE_CERT, NODE_KEY),
) -> CertFiles:
    """Issue a node certificate (serverAuth and clientAuth) from the CA in ``ca_dir``.

    Writes ``node.crt``, ``node.key`` (``files``: ``("ssl.crt", "ssl.key")``
    for the 3.x layout) and a copy of ``ca.crt`` into ``out_dir``. ``name``
    is the subject common name; ``curve`` defaults to the CA's key type;
    ``hosts`` become subjectAltName entries (IP addresses or DNS names). A
    negative ``days`` makes a certificate that expired ``-days`` days ago.
    """
    return _issue(
        ca_dir,
        out_dir,
        cert_name=files[0],
        key_name=files[1],
        usages=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
        common_name=name,
        unit="node",
        organization=organization,
        curve=curve,
        days=days,
        hosts=hosts,
        not_before=not_before,
        not_after=not_after,
        overwrite=overwrite,
    )


def create_sdk_cert(
    ca_dir: StrPath,
    out_dir: StrPath,
    name: str = "sdk",
    *,
    curve: str | None = None,
    days: int = 3650,
    hosts: Iterable[str] = (),
    organization: str = "amop_trio",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    overwrite: bool = False,
) -> CertFiles:
    """Issue an SDK (client) certificate: writes ``sdk.crt``, ``sdk.key``, ``ca.crt``.

    Its only extended key usage is clientAuth: it connects to SDK ports and
    can never open a node link. Same parameters as ``create_node_cert``; no
    subjectAltName unless ``hosts``.
    """
    return _issue(
        ca_dir,
        out_dir,
        cert_name=SDK_CERT,
        key_name=SDK_KEY,
        usages=(ExtendedKeyUsageOID.CLIENT_AUTH,),
        common_name=name,
        unit="sdk",
        organization=organization,
        curve=curve,
        days=days,
        hosts=hosts,
        not_before=not_before,
        not_after=not_after,
        overwrite=overwrite,
    )


def certificate_curve(path: StrPath) -> str | None:
    """OpenSSL's name of the curve of the certificate's key (``"secp256k1"``,
    ``"secp256r1"``...), or ``None`` for a non-EC key."""
    key = load_certificate(path).public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.curve.name
    return None


def node_id_from_cert(path: StrPath) -> str:
    """The node id of the certificate at ``path`` (its first certificate).

    For an EC key, FISCO's: 128 lowercase hex digits, the uncompressed public
    key without its leading 04 byte. For an RSA key, 64 hex digits: the
    SHA-256 of its DER SubjectPublicKeyInfo (see ``identity``).
    """
    from .identity import PeerRefusedError, node_id_of_certificate

    p = Path(path)
    try:
        return node_id_of_certificate(load_certificate(p, "node certificate"))
    except PeerRefusedError as exc:
        raise CertificateError(f"{p}: {exc}", path=p) from None
