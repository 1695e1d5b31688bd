"""Nodes trust certificates, not claims: attacks on real nodes over real TLS sockets,
then the pieces (roles, ids, advertisement signatures, ClientHello reading) alone.

Each test runs nodes made with ``create_network_certs`` (what ``amop chain``
uses) and an attacker that speaks the node-link protocol by hand with a
certificate of the same chain: an SDK certificate, or the real certificate
of a node that is not running.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from amop_trio import ConnectError, open_amop, open_node
from amop_trio._errors import ConnectionLostError
from amop_trio._node.advert import build_parts
from amop_trio._node.server import Node
from amop_trio._security.certs import create_chain_ca, create_node_cert, node_id_from_cert
from amop_trio._security.clienthello import SECP256K1_GROUP, offered_groups, read_client_hello
from amop_trio._security.identity import (
    AdvertVerifier,
    NodeSigner,
    PeerRefusedError,
    certificate_role,
    node_id_of_certificate,
    require_node_certificate,
)
from amop_trio._security.layout import find_node_certificates, load_signer
from amop_trio._security.tls import client_context_from_dir
from amop_trio._transport import ws_socket
from amop_trio._transport.fd_stream import ReplayStream
from amop_trio._wire.fisco3 import Frame, decode_frame, encode_frame, new_seq
from amop_trio._wire.peer import Hello, PeerType, SignedPart, StatePart

from .conftest import p2p, serve_replies, wait_counts, wait_until

TIMEOUT = 30
MAX_FRAME = 1 << 20


@pytest.fixture
def chain(network_certs: Path) -> Path:
    """Four nodes' certificates and both SDK directories, as ``amop certs`` makes them."""
    return network_certs


def conf(chain: Path, i: int) -> Path:
    return chain / f"node{i}" / "conf"


@asynccontextmanager
async def linked_pair(chain: Path, **kwargs: Any) -> AsyncIterator[tuple[Node, Node]]:
    """node0 and node1 (which dials node0), linked."""
    async with open_node(p2p_listen="127.0.0.1:0", certs=conf(chain, 0), **kwargs) as a:
        async with open_node(
            p2p_listen="127.0.0.1:0",
            peers=[p2p(a)],
            certs=conf(chain, 1),
            **kwargs,
        ) as b:
            await wait_linked(a, b)
            yield a, b


@asynccontextmanager
async def pair_serving_mine(chain: Path) -> AsyncIterator[tuple[Node, Node]]:
    """A linked pair whose node1 has a subscriber answering "mine" with ``node1:``."""
    async with (
        linked_pair(chain) as (a, b),
        open_amop(b.endpoint, certs=chain / "sdk") as subscriber,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(serve_replies, subscriber, "mine", b"node1:")
        await wait_counts(a, "mine", {b.node_id: 1}, 5)
        yield a, b
        nursery.cancel_scope.cancel()


async def assert_node1_answers(a: Node, chain: Path) -> None:
    """20 unicasts from node0 on "mine", each answered by node1's subscriber."""
    async with open_amop(a.endpoint, certs=chain / "sdk") as publisher:
        for i in range(20):
            reply = await publisher.publish("mine", b"%d" % i, timeout=5)
            assert reply == b"node1:%d" % i


async def wait_linked(a: Node, b: Node) -> None:
    await wait_until(
        lambda: (
            b.node_id in a.network.links.live_peers() and a.node_id in b.network.links.live_peers()
        ),
        within=10,
    )


async def dial_p2p(node: Node, cert_dir: Path) -> ws_socket.FrameSocket:
    """A TLS + WebSocket connection to ``node``'s P2P port, presenting ``cert_dir``'s pair."""
    return await ws_socket.connect(
        f"wss://{node.p2p_endpoint}/",
        ssl_context=client_context_from_dir(cert_dir),
        max_frame_size=MAX_FRAME,
        connect_timeout=5,
    )


async def say_hello(sock: ws_socket.FrameSocket, node_id: str) -> bool:
    """Send HELLO as ``node_id``; True if the node then keeps the link (sends its states)."""
    await sock.send(encode_frame(Frame(PeerType.HELLO, new_seq(), Hello(node_id).encode())))
    try:
        with trio.fail_after(5):
            while True:
                frame = decode_frame(await sock.receive(), max_size=MAX_FRAME)
                if frame.type != PeerType.HELLO:  # the node's states: the link is up
                    return True
    except ConnectionLostError:
        return False


async def link_opens(node: Node, cert_dir: Path, claim: str) -> bool:
    """Whether ``node`` takes a link from ``cert_dir``'s certificate claiming to be ``claim``."""
    try:
        sock = await dial_p2p(node, cert_dir)
    except ConnectError:
        return False  # refused before the WebSocket upgrade
    try:
        return await say_hello(sock, claim)
    finally:
        await sock.aclose()


def unmarked_certificate(chain: Path, out: Path) -> Path:
    """A certificate of the chain's CA without extendedKeyUsage, as FISCO's own tools make them."""
    ca_cert = x509.load_pem_x509_certificate((chain / "ca" / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((chain / "ca" / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256K1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "fisco-node")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    out.mkdir()
    (out / "ca.crt").write_bytes((chain / "ca" / "ca.crt").read_bytes())
    (out / "node.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / "node.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return out


def log_lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(event)]


async def test_an_sdk_certificate_cannot_open_a_node_link(
    chain: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="amop_trio.node")
    with trio.fail_after(TIMEOUT):
        async with linked_pair(chain) as (a, b):
            link_before = a.network.links.by_peer[b.node_id]
            # The attacker holds only the SDK certificate and claims to be node1.
            assert not await link_opens(a, chain / "sdk", b.node_id)
            # Nor can a certificate of the chain without the node marker.
            unmarked = unmarked_certificate(chain, tmp_path / "unmarked")
            assert not await link_opens(a, unmarked, b.node_id)
            assert a.network.links.by_peer[b.node_id] is link_before
            assert set(a.network.links.by_peer) == {b.node_id}
            # The SDK certificate still works where it belongs: the SDK port.
            async with open_amop(a.endpoint, certs=chain / "sdk", reconnect=False) as client:
                assert (await client.node_status())["nodeId"] == a.node_id
    refused = log_lines(caplog, "link_refused")
    assert any("SDK (client) certificate" in line for line in refused), refused
    assert any("not marked as a node certificate" in line for line in refused), refused


async def test_a_node_cannot_claim_another_nodes_id(
    chain: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="amop_trio.node")
    with trio.fail_after(TIMEOUT):
        async with pair_serving_mine(chain) as (a, b):
            link_before = a.network.links.by_peer[b.node_id]
            # node2's real certificate, but HELLO says node1.
            for _ in range(5):
                sock = await dial_p2p(a, conf(chain, 2))
                assert not await say_hello(sock, b.node_id)
                await sock.aclose()
            assert a.network.links.by_peer[b.node_id] is link_before
            await assert_node1_answers(a, chain)
    refused = log_lines(caplog, "link_refused")
    assert sum("HELLO names node" in line for line in refused) == 5, refused


def forged_part(
    signer_dir: Path, origin: str, version: tuple[int, int], *, tamper: bool = False
) -> bytes:
    """A LINK_STATE payload naming ``origin``, with no topics, signed with ``signer_dir``'s key."""
    signer = load_signer(find_node_certificates(signer_dir).identity)
    payload = build_parts(origin, version, neighbours=(), counts={}, signer=signer).parts[0]
    if tamper:
        signed = SignedPart.decode(payload)
        part = StatePart.decode(signed.body)
        body = StatePart(part.origin, part.epoch, part.seq + 1, 0, 1).encode()
        payload = SignedPart(body, signed.signature, signed.chain).encode()
    return payload


async def test_forged_advertisements_are_dropped_and_go_no_further(
    chain: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="amop_trio.node")
    with trio.fail_after(TIMEOUT):
        async with pair_serving_mine(chain) as (a, b):
            b_version = b.network.flood.version
            # The attacker holds node2's real certificate and says so.
            node2 = find_node_certificates(conf(chain, 2)).node_id
            sock = await dial_p2p(a, conf(chain, 2))
            assert await say_hello(sock, node2)
            huge = (b_version[0] + 10**12, 0)
            forgeries = [
                forged_part(conf(chain, 2), b.node_id, huge),  # node1's id, node2's key
                forged_part(conf(chain, 1), node2, huge, tamper=True),  # body changed after
                forged_part(conf(chain, 2), node2, huge, tamper=True),  # own id, bad signature
                build_parts(b.node_id, huge, neighbours=(), counts={}).parts[0],  # unsigned
            ]
            for payload in forgeries:
                await sock.send(encode_frame(Frame(PeerType.LINK_STATE, new_seq(), payload)))
            await wait_until(lambda: a.network.flood.refused >= len(forgeries))
            # node0's next advertisement follows anything it passed on to node1.
            async with open_amop(a.endpoint, certs=chain / "sdk") as marker:
                async with marker.subscribe("marker"):
                    await wait_counts(b, "marker", {a.node_id: 1})
            assert a.network.directory.subscriber_counts("mine") == {b.node_id: 1}
            assert a.network.directory.state_of(node2) is None
            assert b.network.flood.refused == 0  # nothing reached it
            assert b.network.flood.version[0] == b_version[0]
            await assert_node1_answers(a, chain)
            await sock.aclose()
    refused = log_lines(caplog, "advert_refused")
    assert refused
    assert "not by its origin" in refused[0], refused


async def test_a_node_restarted_with_its_clock_an_hour_behind_is_heard_at_once(
    chain: Path,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_node(p2p_listen="127.0.0.1:0", certs=conf(chain, 0)) as a:
            peers = [p2p(a)]
            async with open_node(p2p_listen="127.0.0.1:0", peers=peers, certs=conf(chain, 1)) as b:
                await wait_linked(a, b)
                async with open_amop(b.endpoint, certs=chain / "sdk") as subscriber:
                    async with subscriber.subscribe("before"):
                        await wait_counts(a, "before", {b.node_id: 1}, 5)
            # node1 is back at once, with its clock an hour behind.
            behind = lambda: time.time() - 3600  # noqa: E731
            async with open_node(
                p2p_listen="127.0.0.1:0", peers=peers, certs=conf(chain, 1), clock=behind
            ) as b:
                async with (
                    open_amop(b.endpoint, certs=chain / "sdk") as subscriber,
                    trio.open_nursery() as nursery,
                ):
                    await nursery.start(serve_replies, subscriber, "after", b"again:")
                    await wait_counts(a, "after", {b.node_id: 1}, 2)
                    async with open_amop(a.endpoint, certs=chain / "sdk") as publisher:
                        reply = await publisher.publish("after", b"x", timeout=2)
                    assert reply == b"again:x"
                    assert a.network.directory.subscriber_counts("before") == {}
                    nursery.cancel_scope.cancel()


# -- reading a ClientHello ahead of TLS ----------------------------------------------


def client_hello(ctx: ssl.SSLContext) -> bytes:
    """The bytes a client with ``ctx`` opens a handshake with (no socket needed)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_side=False)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_offered_groups_tell_2x_from_3x_clients() -> None:
    k1 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    k1.maximum_version = ssl.TLSVersion.TLSv1_2
    k1.set_ecdh_curve("secp256k1")
    assert offered_groups(client_hello(k1)) == {SECP256K1_GROUP}
    default = offered_groups(client_hello(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)))
    assert default is not None
    assert SECP256K1_GROUP not in default
    assert 0x001D in default  # X25519
    assert offered_groups(b"GET / HTTP/1.1\r\n\r\n") is None
    assert offered_groups(client_hello(k1)[:40]) is None


async def test_a_client_hello_is_read_whole_however_it_arrives() -> None:
    hello = client_hello(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    # The same handshake message cut into three TLS records, sent a byte at a time.
    body = hello[5:]
    records = b"".join(
        hello[:3] + len(piece).to_bytes(2, "big") + piece
        for piece in (body[:10], body[10:100], body[100:])
    )
    for data in (hello, records):
        sender, receiver = trio.testing.memory_stream_pair()
        for i in range(len(data)):
            await sender.send_all(data[i : i + 1])
        await sender.send_all(b"after")
        read = await read_client_hello(receiver)
        assert read == data  # not a byte more
        assert offered_groups(read) == offered_groups(hello)
        replay = ReplayStream(receiver, read)
        assert await replay.receive_some(3) == data[:3]
    # Not TLS at all: stops at once, keeps what it read for whoever comes next.
    sender, receiver = trio.testing.memory_stream_pair()
    await sender.send_all(b"GET / HTTP/1.1\r\n")
    assert await read_client_hello(receiver) == b"GET /"


# -- node identity and signed advertisements -------------------------------------------


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    usages: list[x509.ObjectIdentifier] | None = None,
    days: int = 1,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=2))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def test_advertisements_verify_through_an_agency_and_nothing_else() -> None:
    """FISCO 2.x issues node certificates through an agency: chain CA -> agency -> node."""
    k = [ec.generate_private_key(ec.SECP256K1()) for _ in range(5)]
    root = _cert("chain", k[0], None, k[0], ca=True)
    agency = _cert("agency", k[1], root, k[0], ca=True)
    server = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    node = _cert("node", k[2], agency, k[1], ca=False, usages=server)
    sdk = _cert("sdk", k[3], agency, k[1], ca=False, usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
    expired = _cert("old", k[4], agency, k[1], ca=False, usages=server, days=-1)
    der = [c.public_bytes(serialization.Encoding.DER) for c in (node, agency, sdk, expired)]
    node_id = node_id_of_certificate(node)
    verifier = AdvertVerifier([root])
    signer = NodeSigner(k[2], (der[0], der[1]))
    assert signer.node_id == node_id
    body = b'{"origin":"x"}'
    signature = signer.sign(body)
    assert verifier.check(node_id, body, signature, signer.chain) == ""
    assert verifier.check(node_id, body, signature, signer.chain) == ""  # cached
    assert "not by its origin" in verifier.check("someone", body, signature, signer.chain)
    assert verifier.check(node_id, body + b" ", signature, signer.chain) == "bad signature"
    assert verifier.check(node_id, body, b"", signer.chain) == "unsigned"
    assert "not from this chain" in verifier.check(node_id, body, signature, (der[0],))
    assert "not a node" in verifier.check(
        node_id_of_certificate(sdk),
        body,
        NodeSigner(k[3], (der[2], der[1])).sign(body),
        (der[2], der[1]),
    )
    assert "not valid now" in verifier.check(
        node_id_of_certificate(expired),
        body,
        NodeSigner(k[4], (der[3], der[1])).sign(body),
        (der[3], der[1]),
    )
    stranger = AdvertVerifier([_cert("other", k[4], None, k[4], ca=True)])
    assert "not from this chain" in stranger.check(node_id, body, signature, signer.chain)
    # Roles and ids as the P2P port sees them.
    assert certificate_role(node) == "node"
    assert certificate_role(sdk) == "sdk"
    assert certificate_role(root) == "unmarked"
    assert require_node_certificate(der[0]) == node_id
    with pytest.raises(PeerRefusedError, match="SDK"):
        require_node_certificate(der[2])
    with pytest.raises(PeerRefusedError, match="no certificate"):
        require_node_certificate(None)


def test_rsa_node_ids_are_the_digest_of_the_key(tmp_path: Path) -> None:
    create_chain_ca(tmp_path / "ca", curve="rsa")
    files = create_node_cert(tmp_path / "ca", tmp_path / "node", files=("ssl.crt", "ssl.key"))
    key = x509.load_pem_x509_certificate(files.cert.read_bytes()).public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert node_id_from_cert(files.cert) == hashlib.sha256(spki).hexdigest()
