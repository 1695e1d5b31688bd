"""Mutual TLS at a real node: only certificates from the chain CA get in, on both ports."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from amop_trio import ConnectError, open_amop, open_node
from amop_trio._security.certs import create_chain_ca, create_node_cert, create_sdk_cert


def chain(root: Path, name: str, *, nodes: int = 1, sdk_days: int = 3650) -> Path:
    """A chain CA with ``nodes`` node certificates and one SDK certificate."""
    create_chain_ca(root / name / "ca")
    for i in range(nodes):
        create_node_cert(root / name / "ca", root / name / f"node{i}", f"node{i}")
    create_sdk_cert(root / name / "ca", root / name / "sdk", days=sdk_days)
    return root / name


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
            await trio.sleep(0.1)
    refusals = [r.getMessage() for r in caplog.records if "tls_refused" in r.getMessage()]
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
                peers=[node0.p2p_endpoint],
                certs=ours / "node1",
            ) as node1,
            open_node(
                "127.0.0.1:0",
                p2p_listen="127.0.0.1:0",
                peers=[node0.p2p_endpoint],
                certs=theirs / "node0",
            ) as stranger,
        ):
            with trio.fail_after(5):
                while node1.node_id not in node0.network.links.by_peer:
                    await trio.sleep(0.02)
            await trio.sleep(1.0)  # the stranger has had time to retry its dial
            assert set(node0.network.links.by_peer) == {node1.node_id}
            assert stranger.network.links.by_peer == {}
            dialer = next(iter(stranger.network.links.dialers.values()))
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
