"""The client over ``channel://``: TLS, certificate discovery, liveness, reconnection."""

from __future__ import annotations

import json
import struct
from functools import partial
from pathlib import Path

import pytest
import trio

from amop_trio import (
    AmopClient,
    ConnectError,
    ConnectionLostError,
    Node,
    RejectedError,
    open_amop,
    open_node,
)
from amop_trio._security.certs import CertificateError

from .conftest import serve_replies, wait_until
from .proxy import open_proxy

TIMEOUT = 15


async def test_channel_over_tls_beside_wss_on_one_port(chain_certs: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_node("127.0.0.1:0", certs=chain_certs / "node0") as node,
            open_amop(f"channel://{node.endpoint}", certs=chain_certs / "sdk") as old,
            open_amop(node.endpoint, certs=chain_certs / "sdk") as new,
            trio.open_nursery() as nursery,
        ):
            assert old.endpoint.startswith("channel://")
            assert new.endpoint.startswith("wss://")
            await nursery.start(serve_replies, old, "tls", b"echo:")
            assert await new.publish("tls", b"x") == b"echo:x"
            nursery.cancel_scope.cancel()


async def test_found_sdk_certificates_are_used_and_never_given_up_for_plain_text(
    chain_certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once TLS is in play it is mandatory: a node (or whoever sits on the path)
    that does not complete the handshake gets a ConnectError, never a plain client."""
    monkeypatch.setenv("AMOP_SDK_CERTS", str(chain_certs / "sdk"))
    with trio.fail_after(TIMEOUT):
        async with (
            open_node("127.0.0.1:0", certs=chain_certs / "node0") as tls_node,
            open_node("127.0.0.1:0") as plain_node,
            open_amop(f"channel://{tls_node.endpoint}") as over_tls,
        ):
            await over_tls.broadcast("t", b"x")
            for endpoint in (f"channel://{plain_node.endpoint}", plain_node.endpoint):
                with pytest.raises(ConnectError, match="TLS"):
                    async with open_amop(endpoint, connect_timeout=3):
                        pass
            assert plain_node.statistics().connections == 2  # two TLS hellos, refused as garbage


async def test_a_wrong_amop_sdk_certs_is_an_error_not_a_plain_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMOP_SDK_CERTS", str(tmp_path / "missing"))
    with pytest.raises(CertificateError, match="AMOP_SDK_CERTS"):
        async with open_amop("127.0.0.1:1"):
            pass
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "ca.crt").write_text("x")
    monkeypatch.setenv("AMOP_SDK_CERTS", str(tmp_path / "partial"))
    with pytest.raises(CertificateError, match=r"lacks sdk\.crt, sdk\.key"):
        async with open_amop("127.0.0.1:1"):
            pass


async def test_a_plain_client_at_a_tls_port_gets_a_hint(chain_certs: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_node("127.0.0.1:0", certs=chain_certs / "node0") as node:
            with pytest.raises(ConnectError, match="TLS"):
                async with open_amop(f"channel://{node.endpoint}", connect_timeout=3):
                    pass


async def test_heartbeats_find_a_dead_connection(node: Node, subscriber: AmopClient) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_proxy(node.port) as proxy,
            subscriber.subscribe("slow"),
            open_amop(
                f"channel://{proxy.endpoint}", ping_interval=0.3, ping_timeout=0.3, timeout=30
            ) as client,
        ):
            await trio.sleep(0.7)  # longer than a ping timeout: heartbeats keep the link up
            assert client.connected
            assert client.reconnects == 0
            proxy.freeze()
            start = trio.current_time()
            with pytest.raises(ConnectionLostError):
                await client.publish("slow", b"x")
            assert trio.current_time() - start < 1.5


async def test_reconnects_and_resubscribes_after_the_node_drops_it(
    node: Node, publisher: AmopClient
) -> None:
    new = publisher
    with trio.fail_after(TIMEOUT):
        async with (
            open_amop(f"channel://{node.endpoint}") as old,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(serve_replies, old, "again", b"echo:")
            assert await new.publish("again", b"1") == b"echo:1"
            for session in list(node.sessions.values()):
                if session.protocol == "channel":
                    session.close("test: drop the channel client")
            await wait_until(lambda: old.reconnects >= 1 and node.table.subscribers("again"))
            assert await new.publish("again", b"2") == b"echo:2"
            nursery.cancel_scope.cancel()


async def test_node_status_needs_an_amop_trio_node() -> None:
    """A node that does not say ``amop_trio`` in its handshake is not asked at all."""

    async def fake_2x_node(stream: trio.SocketStream) -> None:
        head = struct.Struct(">IH32si")
        data = await stream.receive_some(65536)
        _, ptype, seq, _ = head.unpack_from(data)
        body = json.dumps({"protocol": 3, "nodeVersion": "2.9.1"}).encode()
        await stream.send_all(head.pack(head.size + len(body), ptype, seq, 0) + body)
        while await stream.receive_some(65536):
            pass

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_tcp, fake_2x_node, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            async with open_amop(f"channel://127.0.0.1:{port}", ping_interval=30) as client:
                with pytest.raises(RejectedError, match="3004"):
                    await client.node_status()
            nursery.cancel_scope.cancel()
