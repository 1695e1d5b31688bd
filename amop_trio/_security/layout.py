"""Certificate directories of both FISCO generations, and what a node loads from them.

A node's directory holds the chain CA certificate ``ca.crt`` and one or both
of:

* the 2.x layout: ``node.crt`` (the node certificate, possibly followed by its
  agency and the CA: leaf first) and ``node.key``; FISCO 2.x makes these on
  secp256k1;
* the 3.x layout: ``ssl.crt`` and ``ssl.key``; FISCO 3.x makes these RSA-2048.

With both, the SDK port presents whichever the client can take (see
``tls.node_contexts``); the node's identity on node links, and the key that
signs its advertisements, is ``node.crt`` when present, else ``ssl.crt``.

A client's directory holds ``ca.crt`` and ``sdk.crt``/``sdk.key`` (either
generation's SDK files have these names), or a node's pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .certs import CA_CERT, NODE_CERT, NODE_KEY, SDK_CERT, SDK_KEY, CertFiles, CertificateError
from .identity import NodeSigner, PeerRefusedError, node_id_of_certificate
from .paths import StrPath

__all__ = [
    "SSL_CERT",
    "SSL_KEY",
    "NodeCertificates",
    "find_client_certificates",
    "find_node_certificates",
    "load_anchors",
    "load_signer",
]


SSL_CERT = "ssl.crt"
SSL_KEY = "ssl.key"

_NODE_PAIRS = ((NODE_CERT, NODE_KEY, "FISCO 2.x"), (SSL_CERT, SSL_KEY, "FISCO 3.x"))
_CLIENT_PAIRS = ((SDK_CERT, SDK_KEY), (NODE_CERT, NODE_KEY), (SSL_CERT, SSL_KEY))


@dataclass(frozen=True)
class NodeCertificates:
    """What a node found in its certificate directory."""

    directory: Path
    ca: Path
    #: ``node.crt``/``node.key`` (2.x layout), if present.
    fisco2: CertFiles | None
    #: ``ssl.crt``/``ssl.key`` (3.x layout), if present.
    fisco3: CertFiles | None

    @property
    def identity(self) -> CertFiles:
        """The pair that names the node on node links and signs its advertisements."""
        found = self.fisco2 or self.fisco3
        assert found is not None
        return found

    @property
    def node_id(self) -> str:
        return node_id_of_certificate(_load_pem_certs(self.identity.cert)[0])


def _looked_for(directory: Path) -> str:
    return (
        f"looked in {directory} for {CA_CERT} with {NODE_CERT} + {NODE_KEY} (FISCO 2.x layout) "
        f"and/or {SSL_CERT} + {SSL_KEY} (FISCO 3.x layout)"
    )


def find_node_certificates(directory: StrPath) -> NodeCertificates:
    """The layouts present in a node's directory; one ``CertificateError`` if none is whole."""
    path = Path(directory)
    if not path.is_dir():
        raise CertificateError(
            f"certificate directory {path} does not exist; {_looked_for(path)}", path=path
        )
    ca = path / CA_CERT
    pairs: list[CertFiles | None] = []
    half = []
    for cert_name, key_name, _ in _NODE_PAIRS:
        cert, key = path / cert_name, path / key_name
        if cert.is_file() and key.is_file():
            pairs.append(CertFiles(cert=cert, key=key, ca=ca))
        else:
            pairs.append(None)
            if cert.exists() != key.exists():
                half.append(
                    f"{cert_name} without {key_name}"
                    if cert.exists()
                    else f"{key_name} without {cert_name}"
                )
    if not ca.is_file() or half or not any(pairs):
        problems = ([f"no {CA_CERT}"] if not ca.is_file() else []) + half
        if not any(pairs):
            problems.append("no certificate with its key")
        raise CertificateError(
            f"not a node certificate directory ({'; '.join(problems)}): {_looked_for(path)}",
            path=path,
        )
    return NodeCertificates(path, ca, pairs[0], pairs[1])


def find_client_certificates(directory: StrPath) -> CertFiles:
    """A client's pair: ``sdk.crt``/``sdk.key``, else a node's pair, next to ``ca.crt``."""
    path = Path(directory)
    ca = path / CA_CERT
    for cert_name, key_name in _CLIENT_PAIRS:
        cert, key = path / cert_name, path / key_name
        if ca.is_file() and cert.is_file() and key.is_file():
            return CertFiles(cert=cert, key=key, ca=ca)
    wanted = " or ".join(f"{c} + {k}" for c, k in _CLIENT_PAIRS)
    where = "does not exist" if not path.is_dir() else "has no complete set"
    raise CertificateError(
        f"certificate directory {path} {where}: looked for {CA_CERT} with {wanted}",
        path=path / SDK_CERT,
    )


def _load_pem_certs(path: Path) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CertificateError(f"{path}: cannot read PEM certificates ({exc})", path=path) from None
    return certs


def load_anchors(ca: Path) -> list[x509.Certificate]:
    """Every certificate in ``ca.crt`` (one CA, or a bundle)."""
    return _load_pem_certs(ca)


def load_signer(files: CertFiles) -> NodeSigner:
    """The node's key and its certificate chain (leaf and agencies, roots left out)."""
    certs = _load_pem_certs(files.cert)
    try:
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CertificateError(
            f"{files.key}: not an unencrypted PEM private key ({exc})", path=files.key
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertificateError(f"{files.key}: expected an EC or RSA key", path=files.key)
    leaf_key = certs[0].public_key()
    if not isinstance(leaf_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey) or (
        leaf_key.public_numbers() != key.public_key().public_numbers()
    ):
        raise CertificateError(
            f"{files.key} is not the private key of {files.cert}", path=files.key
        )
    chain = [certs[0]] + [c for c in certs[1:] if c.issuer != c.subject]
    try:
        node_id_of_certificate(certs[0])
    except PeerRefusedError as exc:
        raise CertificateError(f"{files.cert}: {exc}", path=files.cert) from None
    return NodeSigner(key, tuple(c.public_bytes(serialization.Encoding.DER) for c in chain))
