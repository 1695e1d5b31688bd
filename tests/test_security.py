"""Certificates, mutual TLS over real loopback sockets, and private-topic keys.

TLS tests run a ``trio.serve_ssl_over_tcp`` server on 127.0.0.1 with the
contexts from ``amop_trio._security.tls`` and dial it with
``trio.open_ssl_over_tcp_stream``, for secp256k1 (TLS 1.2, secp256k1 ECDHE)
and prime256v1 (defaults, TLS 1.3) chains.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
import stat
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import ExtendedKeyUsageOID

from amop_trio._errors import AmopError
from amop_trio._security import keys
from amop_trio._security.certs import (
    CertFiles,
    CertificateError,
    create_chain_ca,
    create_node_cert,
    create_sdk_cert,
    node_id_from_cert,
)
from amop_trio._security.tls import (
    client_context,
    client_context_from_dir,
    server_context,
    uses_secp256k1,
)

CURVES = ["secp256k1", "prime256v1"]
TIMEOUT = 10
GREETING = b"welcome to the chain"


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@dataclass
class Chain:
    """A chain CA with one node and one SDK certificate, in the FISCO layout."""

    root: Path
    curve: str
    ca: CertFiles = field(init=False)
    node: CertFiles = field(init=False)
    sdk: CertFiles = field(init=False)

    def __post_init__(self) -> None:
        self.ca = create_chain_ca(self.root / "ca", curve=self.curve)
        self.node = create_node_cert(self.root / "ca", self.root / "node", "node0")
        self.sdk = create_sdk_cert(self.root / "ca", self.root / "sdk")


@pytest.fixture(params=CURVES)
def chain(request: pytest.FixtureRequest, tmp_path: Path) -> Chain:
    return Chain(tmp_path / "chain", request.param)


@pytest.fixture
def foreign(chain: Chain, tmp_path: Path) -> Chain:
    """A second, unrelated chain on the same curve."""
    return Chain(tmp_path / "foreign", chain.curve)


# -- a loopback TLS server and client -------------------------------------------------


@dataclass
class Outcome:
    server_version: str | None = None
    server_error: BaseException | None = None
    server_peer_cn: str | None = None
    client_version: str | None = None
    client_error: BaseException | None = None
    client_received: bytes = b""


def cause_text(exc: BaseException | None) -> str:
    """The SSL error under a trio BrokenResourceError, as text."""
    while exc is not None and exc.__cause__ is not None:
        exc = exc.__cause__
    return repr(exc)


async def exchange(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext | None) -> Outcome:
    """One connection: TLS (or plain TCP if ``client_ctx`` is None) to a TLS server.

    The server completes the handshake, sends GREETING and echoes one message.
    """
    out = Outcome()
    server_done = trio.Event()

    async def handler(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await stream.do_handshake()
            out.server_version = stream.version()
            peer = stream.getpeercert()
            if peer:
                out.server_peer_cn = dict(x[0] for x in peer["subject"])["commonName"]
            await stream.send_all(GREETING)
            await stream.send_all(await stream.receive_some())
        except trio.BrokenResourceError as exc:
            out.server_error = exc
        finally:
            await trio.aclose_forcefully(stream)
            server_done.set()

    async def client(port: int) -> None:
        stream: trio.abc.Stream
        if client_ctx is None:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        else:
            stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=client_ctx)
        try:
            if isinstance(stream, trio.SSLStream):
                await stream.do_handshake()
                out.client_version = stream.version()
                out.client_received = bytes(await stream.receive_some())
                await stream.send_all(b"ping")
                out.client_received += await stream.receive_some()
            else:
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                while chunk := await stream.receive_some():
                    out.client_received += chunk
        except trio.BrokenResourceError as exc:
            out.client_error = exc
        finally:
            await trio.aclose_forcefully(stream)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_ssl_over_tcp, host="127.0.0.1"), handler, 0, server_ctx
            )
            port = listeners[0].transport_listener.socket.getsockname()[1]
            await client(port)
            await server_done.wait()
            nursery.cancel_scope.cancel()
    return out


def assert_accepted(out: Outcome) -> None:
    assert out.server_error is None, cause_text(out.server_error)
    assert out.client_error is None, cause_text(out.client_error)
    assert out.client_received == GREETING + b"ping"


def assert_refused(out: Outcome) -> None:
    assert GREETING not in out.client_received
    assert out.server_error is not None or out.client_error is not None


# -- mutual TLS -----------------------------------------------------------------------


async def test_mutual_tls_within_one_chain(chain: Chain) -> None:
    out = await exchange(
        server_context(chain.root / "node"), client_context_from_dir(chain.sdk.ca.parent)
    )
    assert_accepted(out)
    assert out.server_peer_cn == "sdk"
    if chain.curve == "secp256k1":
        # PROTOCOL.md section 4: TLS 1.3 cannot carry secp256k1 certificates.
        assert out.server_version == out.client_version == "TLSv1.2"
    else:
        assert out.server_version == out.client_version == "TLSv1.3"


async def test_node_to_node_link_and_context_sources(chain: Chain, tmp_path: Path) -> None:
    """A node dials another node with its node.crt; CertFiles and tuples work too."""
    other = create_node_cert(chain.root / "ca", tmp_path / "node1", "node1")
    out = await exchange(server_context(chain.node), client_context_from_dir(other.ca.parent))
    assert_accepted(out)
    assert out.server_peer_cn == "node1"
    files = (chain.node.ca, chain.node.cert, chain.node.key)
    out = await exchange(server_context(files), client_context(*files))
    assert_accepted(out)


async def test_client_cert_from_another_ca_is_refused(chain: Chain, foreign: Chain) -> None:
    # Trusts the right CA, but presents a certificate the chain CA never issued.
    ctx = client_context(chain.sdk.ca, foreign.sdk.cert, foreign.sdk.key)
    out = await exchange(server_context(chain.node), ctx)
    assert_refused(out)
    assert "CERTIFICATE_VERIFY_FAILED" in cause_text(out.server_error)


async def test_server_cert_from_another_ca_is_refused(chain: Chain, foreign: Chain) -> None:
    out = await exchange(server_context(foreign.node), client_context_from_dir(chain.root / "sdk"))
    assert_refused(out)
    assert "CERTIFICATE_VERIFY_FAILED" in cause_text(out.client_error)
    assert out.server_version is None


async def test_client_without_certificate_is_refused(chain: Chain) -> None:
    ctx = client_context_from_dir(chain.root / "sdk")
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.check_hostname = False
    bare.load_verify_locations(chain.ca.cert)
    bare.minimum_version, bare.maximum_version = ctx.minimum_version, ctx.maximum_version
    if chain.curve == "secp256k1":
        bare.set_ecdh_curve("secp256k1")
    assert_refused(await exchange(server_context(chain.node), bare))
    # ... unless the server does not require one.
    out = await exchange(server_context(chain.node, require_client_cert=False), bare)
    assert_accepted(out)
    assert out.server_peer_cn is None


async def test_expired_client_cert_is_refused(chain: Chain, tmp_path: Path) -> None:
    old = create_sdk_cert(chain.root / "ca", tmp_path / "old", days=-1)
    assert load_cert(old.cert).not_valid_after_utc < dt.datetime.now(dt.UTC)
    out = await exchange(server_context(chain.node), client_context_from_dir(tmp_path / "old"))
    assert_refused(out)
    assert "certificate has expired" in cause_text(out.server_error)


async def test_expired_server_cert_is_refused(chain: Chain, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    old = create_node_cert(
        chain.root / "ca",
        tmp_path / "old",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    out = await exchange(server_context(old), client_context_from_dir(chain.root / "sdk"))
    assert_refused(out)
    assert "certificate has expired" in cause_text(out.client_error)


async def test_plain_tcp_client_is_refused(chain: Chain) -> None:
    out = await exchange(server_context(chain.node), None)
    assert out.server_error is not None
    assert out.server_version is None
    # Nothing but (at most) a TLS alert record comes back: content type 0x15.
    assert GREETING not in out.client_received
    assert out.client_received[:1] in (b"", b"\x15")


def test_context_settings(chain: Chain) -> None:
    server = server_context(chain.node)
    client = client_context_from_dir(chain.root / "sdk")
    assert server.verify_mode == client.verify_mode == ssl.CERT_REQUIRED
    assert client.check_hostname is False
    assert server.minimum_version == client.minimum_version == ssl.TLSVersion.TLSv1_2
    k1 = chain.curve == "secp256k1"
    assert uses_secp256k1(chain.ca.cert, chain.sdk.cert) is k1
    capped = ssl.TLSVersion.TLSv1_2 if k1 else ssl.TLSVersion.MAXIMUM_SUPPORTED
    assert server.maximum_version == client.maximum_version == capped
    # Only the chain CA is trusted, not the system store.
    assert [c["subject"] for c in client.get_ca_certs()] == [
        c["subject"] for c in server.get_ca_certs()
    ]
    assert len(client.get_ca_certs()) == 1


# -- certificate files ------------------------------------------------------------------


@pytest.mark.parametrize("curve", CURVES)
def test_certificate_layout(curve: str, tmp_path: Path) -> None:
    c = Chain(tmp_path, curve)
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == ["ca.crt", "ca.key"]
    assert sorted(p.name for p in (tmp_path / "node").iterdir()) == [
        "ca.crt",
        "node.crt",
        "node.key",
    ]
    assert sorted(p.name for p in (tmp_path / "sdk").iterdir()) == ["ca.crt", "sdk.crt", "sdk.key"]
    assert (tmp_path / "node" / "ca.crt").read_bytes() == c.ca.cert.read_bytes()
    for key in (c.ca.key, c.node.key, c.sdk.key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")

    ca = load_cert(c.ca.cert)
    node = load_cert(c.node.cert)
    sdk = load_cert(c.sdk.cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for leaf, usages in (
        (node, {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}),
        (sdk, {ExtendedKeyUsageOID.CLIENT_AUTH}),  # an SDK certificate never passes for a node
    ):
        leaf.verify_directly_issued_by(ca)
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == usages
        assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
        pub = leaf.public_key()
        assert isinstance(pub, ec.EllipticCurvePublicKey)
        assert pub.curve.name == ("secp256k1" if curve == "secp256k1" else "secp256r1")
    san = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)


def test_node_id(tmp_path: Path) -> None:
    create_chain_ca(tmp_path / "ca")
    files = create_node_cert(tmp_path / "ca", tmp_path / "node")
    node_id = node_id_from_cert(files.cert)
    assert len(node_id) == 128
    assert int(node_id, 16) >= 0
    key = serialization.load_pem_private_key(files.key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    nums = key.public_key().public_numbers()
    assert node_id == f"{nums.x:064x}{nums.y:064x}"
    assert node_id == keys.public_key_hex(key)


def test_chain_ca_is_not_overwritten(tmp_path: Path) -> None:
    create_chain_ca(tmp_path)
    before = (tmp_path / "ca.key").read_bytes()
    with pytest.raises(CertificateError, match=r"ca\.crt already exists"):
        create_chain_ca(tmp_path)
    assert (tmp_path / "ca.key").read_bytes() == before
    create_chain_ca(tmp_path, overwrite=True, curve="prime256v1")
    assert (tmp_path / "ca.key").read_bytes() != before


def test_bad_validity_and_curve(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown curve"):
        create_chain_ca(tmp_path, curve="ed25519")
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(ValueError, match="not before"):
        create_chain_ca(tmp_path, not_before=now, not_after=now - dt.timedelta(days=1))


# -- typed, actionable errors ---------------------------------------------------------


def test_missing_files_name_the_file(tmp_path: Path) -> None:
    assert issubclass(CertificateError, AmopError)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CertificateError, match=r"no ca\.crt.*node\.crt \+ node\.key") as info:
        server_context(empty)
    assert info.value.path == empty

    with pytest.raises(CertificateError, match="does not exist"):
        client_context_from_dir(tmp_path / "nowhere")

    create_chain_ca(tmp_path / "ca")
    create_sdk_cert(tmp_path / "ca", tmp_path / "sdk")
    (tmp_path / "sdk" / "sdk.key").unlink()
    with pytest.raises(CertificateError, match=r"sdk\.crt \+ sdk\.key"):
        client_context_from_dir(tmp_path / "sdk")
    (tmp_path / "sdk" / "sdk.crt").unlink()
    with pytest.raises(CertificateError, match=r"sdk\.crt \+ sdk\.key or node\.crt"):
        client_context_from_dir(tmp_path / "sdk")
    with pytest.raises(CertificateError, match=r"node\.crt \+ node\.key"):
        server_context(tmp_path / "sdk")
    with pytest.raises(CertificateError, match=r"'missing\.key'"):
        client_context(
            tmp_path / "ca" / "ca.crt", tmp_path / "ca" / "ca.crt", tmp_path / "missing.key"
        )

    (tmp_path / "ca" / "ca.key").unlink()
    with pytest.raises(CertificateError, match=r"'ca\.key' not found.*FISCO layout"):
        create_node_cert(tmp_path / "ca", tmp_path / "node")


def test_mismatched_key_and_garbage(tmp_path: Path) -> None:
    create_chain_ca(tmp_path / "ca")
    a = create_sdk_cert(tmp_path / "ca", tmp_path / "a")
    b = create_sdk_cert(tmp_path / "ca", tmp_path / "b")
    with pytest.raises(CertificateError, match="is not the private key of"):
        client_context(a.ca, a.cert, b.key)
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    with pytest.raises(CertificateError, match=r"junk\.crt"):
        client_context(junk, a.cert, a.key)


# -- Keccak-256 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "digest"),
    [
        (b"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"),
        (b"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
        (
            b"The quick brown fox jumps over the lazy dog",
            "4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15",
        ),
    ],
)
def test_keccak256_vectors(data: bytes, digest: str) -> None:
    assert keys.keccak256(data).hex() == digest
    assert keys.keccak256(data) != hashlib.sha3_256(data).digest()


def test_keccak_permutation_matches_hashlib_sha3_across_blocks() -> None:
    # Same sponge with NIST's padding byte must equal hashlib's SHA3-256, around
    # and across the 136-byte block boundary.
    for n in [*range(130, 142), 271, 272, 273, 1000]:
        data = bytes(range(256)) * 4
        assert keys._sponge256(data[:n], 0x06) == hashlib.sha3_256(data[:n]).digest(), n


# -- recoverable signatures ----------------------------------------------------------------

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def test_curve_constants_match_cryptography() -> None:
    one = ec.derive_private_key(1, ec.SECP256K1())
    g = keys.load_public_key_hex(keys.public_key_hex(one))
    assert (g.public_numbers().x, g.public_numbers().y) == keys._G
    assert keys._N == N


def test_sign_verify_round_trip() -> None:
    key = keys.generate_private_key()
    public = key.public_key()
    for i in range(4):
        data = b"challenge %d" % i
        sig = keys.sign_recoverable(key, data)
        assert len(sig) == keys.SIGNATURE_SIZE == 65
        assert sig[64] in (0, 1)
        assert int.from_bytes(sig[32:64], "big") <= N // 2
        assert keys.verify_signature(public, data, sig)
        recovered = keys.recover_public_key(data, sig)
        assert recovered.public_numbers() == public.public_numbers()
        flipped = sig[:64] + bytes([sig[64] ^ 1])
        assert keys.recover_public_key(data, flipped).public_numbers() != public.public_numbers()
        assert keys.recover_public_key(data, sig[:64] + bytes([27 + sig[64]])) == recovered


def test_tampered_or_foreign_signatures_fail() -> None:
    key = keys.generate_private_key()
    sig = keys.sign_recoverable(key, b"random")
    public = key.public_key()
    assert not keys.verify_signature(public, b"randon", sig)
    assert not keys.verify_signature(keys.generate_private_key().public_key(), b"random", sig)
    bad = bytearray(sig)
    bad[5] ^= 0x01
    assert not keys.verify_signature(public, b"random", bytes(bad))
    assert not keys.verify_signature(public, b"random", sig[:64])
    assert not keys.verify_signature(public, b"random", sig + b"\x00")
    assert not keys.verify_signature(public, b"random", bytes(65))
    with pytest.raises(ValueError, match="secp256k1"):
        keys.verify_signature(ec.generate_private_key(ec.SECP256R1()).public_key(), b"x", sig)


def test_high_s_is_rejected() -> None:
    key = keys.generate_private_key()
    data = b"malleable"
    sig = keys.sign_recoverable(key, data)
    r = int.from_bytes(sig[:32], "big")
    high_s = N - int.from_bytes(sig[32:64], "big")
    assert high_s > N // 2
    # Still a mathematically valid ECDSA signature ...
    key.public_key().verify(
        utils.encode_dss_signature(r, high_s),
        keys.keccak256(data),
        ec.ECDSA(utils.Prehashed(hashes.SHA256())),
    )
    # ... that the go-ethereum rule refuses.
    high = sig[:32] + high_s.to_bytes(32, "big") + bytes([sig[64] ^ 1])
    assert not keys.verify_signature(key.public_key(), data, high)


def test_ethereum_signature_vector() -> None:
    """web3.js ``accounts.sign('Some data', key)`` from its documentation.

    Checks Keccak, the signature layout (v = 27 + recovery id) and recovery
    against an independent implementation's output.
    """
    private = ec.derive_private_key(
        0x4C0883A69102937D6231471B5DBB6204FE5129617082792AE468D01A3F362318, ec.SECP256K1()
    )
    message = b"\x19Ethereum Signed Message:\n9Some data"
    assert (
        keys.keccak256(message).hex()
        == "1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655"
    )
    sig = bytes.fromhex(
        "b91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd"
        "6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a029"
        "1c"
    )
    assert keys.verify_signature(private.public_key(), message, sig)
    recovered = keys.recover_public_key(message, sig)
    assert recovered.public_numbers() == private.public_key().public_numbers()
    address = keys.keccak256(bytes.fromhex(keys.public_key_hex(recovered)))[-20:]
    assert address.hex() == "2c7536e3605d9c16a7a3d7b1898e529396a65c23"


def test_key_files(tmp_path: Path) -> None:
    key = keys.generate_private_key()
    path = keys.save_private_key_pem(key, tmp_path / "topic.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = keys.load_private_key_pem(path)
    assert loaded.private_numbers() == key.private_numbers()
    assert keys.load_private_key_pem(path.read_bytes()).private_numbers() == key.private_numbers()

    pem = keys.public_key_pem(key)
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    (tmp_path / "topic.pub").write_bytes(pem)
    for source in (pem, pem.decode(), tmp_path / "topic.pub", str(tmp_path / "topic.pub")):
        assert (
            keys.load_public_key_pem(source).public_numbers() == key.public_key().public_numbers()
        )
    hex_key = keys.public_key_hex(key)
    assert len(hex_key) == 128
    for text in (hex_key, "04" + hex_key, "0x04" + hex_key):
        assert keys.load_public_key_hex(text).public_numbers() == key.public_key().public_numbers()

    sig = keys.sign_recoverable(loaded, b"r")
    assert keys.verify_signature(keys.load_public_key_pem(pem), b"r", sig)


def test_key_file_errors(tmp_path: Path) -> None:
    assert issubclass(keys.KeyFileError, AmopError)
    with pytest.raises(keys.KeyFileError, match=r"nope\.pem"):
        keys.load_private_key_pem(tmp_path / "nope.pem")
    p256 = ec.generate_private_key(ec.SECP256R1())
    pem = p256.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(keys.KeyFileError, match="secp256k1"):
        keys.load_private_key_pem(pem)
    with pytest.raises(keys.KeyFileError, match="secp256k1"):
        keys.load_public_key_pem(
            p256.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    with pytest.raises(keys.KeyFileError, match="not a PEM"):
        keys.load_public_key_pem(b"garbage")
    with pytest.raises(keys.KeyFileError):
        keys.load_public_key_hex("00" * 64)
    with pytest.raises(ValueError, match="secp256k1"):
        keys.sign_recoverable(p256, b"x")
