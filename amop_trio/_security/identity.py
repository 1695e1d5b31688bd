"""Who a peer is: certificate roles, node ids from keys, and signed advertisements.

Certificate roles
-----------------
Every certificate of a chain is signed by the chain CA (directly or through
an agency); what tells a node from a client is the extendedKeyUsage
extension. A *node* certificate lists serverAuth (and clientAuth: nodes dial
each other); an *SDK* certificate lists clientAuth only. ``amop certs`` and
``create_node_cert``/``create_sdk_cert`` issue them that way. The P2P port,
and a node dialling another, require serverAuth to be present in the peer's
certificate: a certificate without extendedKeyUsage, or with clientAuth only,
is refused there (it may still connect to the SDK port as a client). TLS
itself (OpenSSL's purpose check) already refuses an SDK certificate as a TLS
server; the explicit check closes the other direction, where OpenSSL would
accept a certificate that has no extendedKeyUsage at all.

Node ids
--------
A node's id is derived from the public key of the certificate it presents,
never taken from what it says: for an EC key (secp256k1, P-256, SM2-like) it
is the hex of the uncompressed point without its 04 byte, as FISCO BCOS
computes it (128 hex digits for 256-bit curves); for an RSA key it is the
SHA-256 of the DER SubjectPublicKeyInfo (64 hex digits), FISCO having no
RSA node ids of its own.

Signed advertisements
---------------------
A node signs each part of its link-state advertisement with its node key
(``NodeSigner``) and ships its certificate chain with it. Any node, however
far away, checks the chain up to its own chain CA, that the leaf is a node
certificate, that the id it derives from the leaf is the advertised origin,
and the signature (``AdvertVerifier``). Verified chains are cached by digest,
so a steady flood costs one signature check per part.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from .._errors import PeerRefusedError

__all__ = [
    "AdvertVerifier",
    "NodeSigner",
    "PeerRefusedError",
    "certificate_role",
    "node_id_of_certificate",
    "node_id_of_key",
    "require_node_certificate",
]

Role = Literal["node", "sdk", "unmarked"]

#: Prefix of the bytes a node signs, so an advertisement signature cannot be
#: replayed as a signature over anything else.
ADVERT_SIGNING_CONTEXT = b"amop-trio link state v2\x00"
#: Longest certificate chain (leaf, agencies) an advertisement may carry.
MAX_CHAIN_LENGTH = 4
#: Verified chains remembered (by digest) before the cache starts over.
CHAIN_CACHE_SIZE = 1024


# -- roles and ids ----------------------------------------------------------------


def certificate_role(cert: x509.Certificate) -> Role:
    """``"node"`` if the certificate lists serverAuth, ``"sdk"`` if it lists clientAuth
    only, ``"unmarked"`` if it has no extendedKeyUsage (or neither purpose)."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "unmarked"
    if ExtendedKeyUsageOID.SERVER_AUTH in usage:
        return "node"
    if ExtendedKeyUsageOID.CLIENT_AUTH in usage:
        return "sdk"
    return "unmarked"


def node_id_of_key(key: object) -> str:
    """The node id of a public key (see the module docstring); ``PeerRefusedError``
    for key types that cannot name a node."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        raw = key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return raw[1:].hex()
    if isinstance(key, rsa.RSAPublicKey):
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(der).hexdigest()
    raise PeerRefusedError(f"a {type(key).__name__} key cannot name a node (EC or RSA only)")


def node_id_of_certificate(cert: x509.Certificate) -> str:
    """The node id of the certificate's public key."""
    return node_id_of_key(cert.public_key())


def _describe(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return f"certificate {names[0].value!r}" if names else "certificate"


def require_node_certificate(der: bytes | None) -> str:
    """The node id of a peer that presented ``der`` on a node link.

    Raises ``PeerRefusedError`` saying why when there is no certificate or it
    is not marked for nodes (serverAuth).
    """
    if not der:
        raise PeerRefusedError("the peer presented no certificate")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise PeerRefusedError(f"the peer's certificate cannot be read: {exc}") from None
    role = certificate_role(cert)
    if role == "sdk":
        raise PeerRefusedError(
            f"{_describe(cert)} is an SDK (client) certificate: extendedKeyUsage has "
            "clientAuth but not serverAuth, so it may not open node links"
        )
    if role == "unmarked":
        raise PeerRefusedError(
            f"{_describe(cert)} is not marked as a node certificate: node links need "
            "serverAuth in extendedKeyUsage (issue node certificates with `amop certs`)"
        )
    return node_id_of_certificate(cert)


# -- signing --------------------------------------------------------------------------


def _sign(key: object, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    raise PeerRefusedError(f"cannot sign with a {type(key).__name__} key (EC or RSA only)")


def _verify(key: object, signature: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class NodeSigner:
    """A node's key and the certificate chain (DER, leaf first) that vouches for it."""

    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    chain: tuple[bytes, ...]

    @property
    def node_id(self) -> str:
        return node_id_of_certificate(x509.load_der_x509_certificate(self.chain[0]))

    def sign(self, body: bytes) -> bytes:
        return _sign(self.key, ADVERT_SIGNING_CONTEXT + body)


# -- verifying --------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Verified:
    node_id: str
    key: object
    not_after: dt.datetime


class AdvertVerifier:
    """Checks advertisements of any node against the chain CA certificates ``anchors``."""

    def __init__(self, anchors: Sequence[x509.Certificate]) -> None:
        if not anchors:
            raise ValueError("an advertisement verifier needs at least one CA certificate")
        self._anchors = tuple(anchors)
        self._cache: dict[bytes, _Verified] = {}

    def check(self, origin: str, body: bytes, signature: bytes, chain: Sequence[bytes]) -> str:
        """``""`` if ``body`` is signed by node ``origin``, else why not."""
        if not signature or not chain:
            return "unsigned"
        try:
            verified = self._chain(chain)
        except PeerRefusedError as exc:
            return str(exc)
        if verified.node_id != origin:
            return f"signed by node {verified.node_id[:16]}…, not by its origin"
        if not _verify(verified.key, signature, ADVERT_SIGNING_CONTEXT + body):
            return "bad signature"
        return ""

    def _chain(self, chain: Sequence[bytes]) -> _Verified:
        digest = hashlib.sha256(b"".join(hashlib.sha256(c).digest() for c in chain)).digest()
        now = _now()
        cached = self._cache.get(digest)
        if cached is not None and now <= cached.not_after:
            return cached
        if len(chain) > MAX_CHAIN_LENGTH:
            raise PeerRefusedError(f"a certificate chain of {len(chain)} is too long")
        try:
            certs = [x509.load_der_x509_certificate(c) for c in chain]
        except ValueError as exc:
            raise PeerRefusedError(f"unreadable certificate: {exc}") from None
        leaf = certs[0]
        if certificate_role(leaf) != "node":
            raise PeerRefusedError(f"{_describe(leaf)} is not a node certificate (no serverAuth)")
        not_after = self._path_to_anchor(leaf, certs[1:], now)
        verified = _Verified(node_id_of_certificate(leaf), leaf.public_key(), not_after)
        if len(self._cache) >= CHAIN_CACHE_SIZE:
            self._cache.clear()
        self._cache[digest] = verified
        return verified

    def _path_to_anchor(
        self, leaf: x509.Certificate, rest: list[x509.Certificate], now: dt.datetime
    ) -> dt.datetime:
        """Walk from ``leaf`` through ``rest`` to an anchor; the earliest expiry on the way."""
        current, not_after = leaf, leaf.not_valid_after_utc
        for _ in range(MAX_CHAIN_LENGTH):
            if not current.not_valid_before_utc <= now <= current.not_valid_after_utc:
                raise PeerRefusedError(f"{_describe(current)} is not valid now")
            for anchor in self._anchors:
                if anchor.subject == current.issuer and _issued_by(current, anchor):
                    return min(not_after, anchor.not_valid_after_utc)
            issuer = next((c for c in rest if c.subject == current.issuer and _is_ca(c)), None)
            if issuer is None or not _issued_by(current, issuer):
                raise PeerRefusedError(f"{_describe(current)} is not from this chain's CA")
            current, not_after = issuer, min(not_after, issuer.not_valid_after_utc)
        raise PeerRefusedError("the certificate chain does not reach this chain's CA")
