"""Mutual TLS at a real node: only certificates from the chain CA get in, on both ports,
and one SDK port serves FISCO 2.x and 3.x clients as the real SDKs set up TLS."""

from __future__ import annotations

import logging
import shutil
import ssl
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from amop_trio import ConnectError, open_amop, open_node
from amop_trio._node.server import Node
from amop_trio._security.certs import (
    CertificateError,
    create_chain_ca,
    create_node_cert,
    create_sdk_cert,
    node_id_from_cert,
)
from amop_trio._security.network_certs import create_network_certs

from .conftest import p2p, wait_until


def chain(root: Path, name: str, *, nodes: int = 1, sdk_days: int = 3650) -> Path:
    """A chain CA with ``nodes`` node certificates and one SDK certificate."""
    create_chain_ca(root / name / "ca")
    for i in range(nodes):
        create_node_cert(root / name / "ca", root / name / f"node{i}", f"node{i}")
    create_sdk_cert(root / name / "ca", root / name / "sdk", days=sdk_days)
    return root / name


def tls_refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "tls_refused" in r.getMessage()]


async def test_sdk_certificates_of_the_chain_get_in_and_others_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ours, theirs = chain(tmp_path, "ours"), chain(tmp_path, "theirs")
    expired = tmp_path / "expired"
    create_sdk_cert(ours / "ca", expired, days=-1)
    caplog.set_level(logging.INFO, logger="amop_trio.node")
    with trio.fail_after(20):
        async with open_node("127.0.0.1:0", certs=ours / "node0") as node:
            async with open_amop(node.endpoint, certs=ours / "sdk") as client:
                assert client.endpoint.startswith("wss://")
                assert (await client.node_status())["nodeId"] == node.node_id
            for refused in (theirs / "sdk", expired):
                with pytest.raises(ConnectError):
                    async with open_amop(node.endpoint, certs=refused, reconnect=False):
                        pass
            with pytest.raises(ConnectError):
                async with open_amop(f"ws://{node.endpoint}", reconnect=False):
                    pass

            await wait_until(lambda: len(tls_refusals(caplog)) >= 2)
    refusals = tls_refusals(caplog)
    assert len(refusals) >= 2, refusals
    assert all("remote=127.0.0.1:" in line for line in refusals)


async def test_node_links_need_the_same_chain_ca(tmp_path: Path) -> None:
    ours, theirs = chain(tmp_path, "ours", nodes=2), chain(tmp_path, "theirs")
    with trio.fail_after(20):
        async with (
            open_node("127.0.0.1:0", p2p_listen="127.0.0.1:0", certs=ours / "node0") as node0,
            open_node(
                "127.0.0.1:0",
                p2p_listen="127.0.0.1:0",
                peers=[p2p(node0)],
                certs=ours / "node1",
            ) as node1,
            open_node(
                "127.0.0.1:0",
                p2p_listen="127.0.0.1:0",
                peers=[p2p(node0)],
                certs=theirs / "node0",
            ) as stranger,
        ):
            await wait_until(lambda: node1.node_id in node0.network.links.by_peer)
            dialer = next(iter(stranger.network.links.dialers.values()))
            await wait_until(lambda: dialer.attempts >= 3)  # refused, and refused again
            assert set(node0.network.links.by_peer) == {node1.node_id}
            assert stranger.network.links.by_peer == {}
            assert dialer.state == "connecting"
            assert dialer.error


async def test_the_client_takes_ca_certificate_and_key_paths(tmp_path: Path) -> None:
    ours = chain(tmp_path, "ours")
    sdk = ours / "sdk"
    with trio.fail_after(10):
        async with (
            open_node("127.0.0.1:0", certs=ours / "node0") as node,
            open_amop(node.endpoint, certs=(sdk / "ca.crt", sdk / "sdk.crt", sdk / "sdk.key")) as c,
        ):
            assert (await c.node_status())["nodeId"] == node.node_id


# -- one SDK port, both generations ------------------------------------------------------


def generation_client(sdk: Path, *, tls12: bool = False, secp256k1: bool = False) -> ssl.SSLContext:
    """A client as a real SDK sets it up: python-sdk / Java 2.x (TLS 1.2, secp256k1 only)
    with ``secp256k1``, else OpenSSL's defaults (3.x SDKs), optionally capped at TLS 1.2."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(sdk / "ca.crt"))
    ctx.load_cert_chain(str(sdk / "sdk.crt"), str(sdk / "sdk.key"))
    if secp256k1:
        ctx.set_ecdh_curve("secp256k1")
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def handshake(node: Node, ctx: ssl.SSLContext) -> tuple[str, str]:
    """TLS to the node's SDK port: (TLS version, the server key's type)."""
    stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", node.port, ssl_context=ctx)
    try:
        await stream.do_handshake()
        version = stream.version() or ""
        der = stream.getpeercert(binary_form=True)
        assert der is not None
        key = x509.load_der_x509_certificate(der).public_key()
        kind = key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else "rsa"
        return version, kind
    finally:
        await trio.aclose_forcefully(stream)


async def test_one_sdk_port_serves_2x_and_3x_clients(network_certs: Path) -> None:
    sdk2, sdk3 = network_certs / "sdk", network_certs / "sdk3"
    with trio.fail_after(20):
        async with open_node("127.0.0.1:0", certs=network_certs / "node0" / "conf") as node:
            # python-sdk, Java SDK 2.x: TLS 1.2, secp256k1 only, secp256k1 certificate
            two = generation_client(sdk2, tls12=True, secp256k1=True)
            assert await handshake(node, two) == ("TLSv1.2", "secp256k1")
            # cpp-sdk and every 3.x SDK: OpenSSL's defaults, RSA certificate
            assert await handshake(node, generation_client(sdk3)) == ("TLSv1.3", "rsa")
            assert await handshake(node, generation_client(sdk3, tls12=True)) == ("TLSv1.2", "rsa")
            for ctx in (two, generation_client(sdk3), generation_client(sdk3, tls12=True)):
                async with open_amop(node.endpoint, ssl_context=ctx, reconnect=False) as client:
                    assert (await client.node_status())["nodeId"] == node.node_id
            # amop's own client takes either SDK directory
            for sdk in (sdk2, sdk3):
                async with open_amop(node.endpoint, certs=sdk, reconnect=False) as client:
                    assert (await client.node_status())["nodeId"] == node.node_id


async def test_both_directory_layouts_and_neither(tmp_path: Path, network_certs: Path) -> None:
    both = network_certs / "node0" / "conf"
    only2, only3 = tmp_path / "only2", tmp_path / "only3"
    for layout, names in ((only2, ("node.crt", "node.key")), (only3, ("ssl.crt", "ssl.key"))):
        layout.mkdir()
        for name in ("ca.crt", *names):
            shutil.copy(both / name, layout / name)
    two = generation_client(network_certs / "sdk", tls12=True, secp256k1=True)
    three = generation_client(network_certs / "sdk3")
    with trio.fail_after(30):
        async with open_node("127.0.0.1:0", certs=only2) as node:
            assert await handshake(node, two) == ("TLSv1.2", "secp256k1")
            assert node.node_id == node_id_from_cert(both / "node.crt")
        async with open_node("127.0.0.1:0", certs=only3) as node:
            assert await handshake(node, three) == ("TLSv1.3", "rsa")
            assert node.node_id == node_id_from_cert(both / "ssl.crt")
            assert len(node.node_id) == 64  # RSA: the SHA-256 of the public key
    neither = tmp_path / "neither"
    neither.mkdir()
    shutil.copy(both / "ca.crt", neither / "ca.crt")
    shutil.copy(both / "node.crt", neither / "node.crt")
    with pytest.raises(CertificateError) as info:
        async with open_node("127.0.0.1:0", certs=neither):
            pass
    message = str(info.value)
    for name in ("node.crt", "node.key", "ssl.crt", "ssl.key", "ca.crt"):
        assert name in message
    assert "node.crt without node.key" in message


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_a_client_offering_tls13_with_secp256k1_and_p256_gets_tls12(
    network_certs: Path,
) -> None:
    """go-sdk 1.x offers TLS 1.3 and 1.2 with groups secp256k1 and P-256, and holds a
    secp256k1 certificate it cannot sign with in TLS 1.3: it must be served TLS 1.2."""
    sdk = network_certs / "sdk"
    with trio.fail_after(20):
        async with open_node("127.0.0.1:0", certs=network_certs / "node0" / "conf") as node:
            command = ["openssl", "s_client", "-connect", f"127.0.0.1:{node.port}"]
            command += ["-groups", "secp256k1:prime256v1", "-verify_return_error", "-brief"]
            command += ["-CAfile", str(sdk / "ca.crt"), "-cert", str(sdk / "sdk.crt")]
            command += ["-key", str(sdk / "sdk.key")]
            done = await trio.run_process(
                command, stdin=b"", capture_stdout=True, capture_stderr=True, check=False
            )
    out = (done.stdout + done.stderr).decode(errors="replace")
    assert "Protocol version: TLSv1.2" in out, out
    assert "Verification: OK" in out, out


def test_network_certificates_are_reused_and_checked(tmp_path: Path) -> None:
    ids = create_network_certs(tmp_path, 2)
    sdk = (tmp_path / "sdk" / "sdk.crt").read_bytes()
    more = create_network_certs(tmp_path, 4)
    assert more[:2] == ids
    assert len(set(more)) == 4
    assert (tmp_path / "sdk" / "sdk.crt").read_bytes() == sdk
    # A node certificate from another chain is refused, with the file named.
    create_chain_ca(tmp_path / "other")
    create_node_cert(tmp_path / "other", tmp_path / "node1" / "conf", "node1", overwrite=True)
    with pytest.raises(CertificateError, match=r"node1/conf/node\.crt was not issued by"):
        create_network_certs(tmp_path, 4)
    # So is an SDK certificate that could pass for a node (as older versions made them).
    fresh = tmp_path / "fresh"
    create_network_certs(fresh, 1)
    create_node_cert(
        fresh / "ca", fresh / "sdk", "sdk", files=("sdk.crt", "sdk.key"), overwrite=True
    )
    with pytest.raises(CertificateError, match="could act as a node"):
        create_network_certs(fresh, 1)
