"""A frame over the node's limit closes only its connection, and the node says so in its log."""

from __future__ import annotations

import contextlib
import logging
import struct

import pytest
import trio

from amop_trio import AmopClient, Node, NodeLimits, RejectedError, open_amop, open_node
from amop_trio._wire.rfc6455 import BINARY

from . import spec_bytes as sb
from .conftest import open_linked_nodes, serve_replies
from .test_hostile import ws_frame
from .test_transport_ws_socket import RawPeer

LIMIT = 4096


@pytest.mark.node(limits=NodeLimits(max_frame_size=LIMIT))
async def test_oversized_ws_and_channel_frames_are_refused_and_logged(
    node: Node,
    subscriber: AmopClient,
    publisher: AmopClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="amop_trio.node")
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_replies, subscriber, "t", b"re:")
            # ws: a handshake, then a message over the limit
            peer = await RawPeer.connect(node.port)
            try:
                await peer.handshake()
                body = sb.pack_body("t", b"x" * LIMIT)
                await peer.send(
                    ws_frame(BINARY, sb.pack_frame(sb.AMOP_REQUEST, sb.new_seq(), body))
                )
                assert await peer.close_code() == 1009
            finally:
                await peer.aclose()
            # channel: a length prefix over the limit
            stream = await trio.open_tcp_stream("127.0.0.1", node.port)
            async with stream:
                await stream.send_all(struct.pack(">IH32si", LIMIT + 1, 0x30, b"0" * 32, 0))
                # closed at once (or reset: the rest of the frame was still coming)
                with contextlib.suppress(trio.BrokenResourceError):
                    assert await stream.receive_some(100) == b""
            assert await publisher.publish("t", b"still") == b"re:still"
            nursery.cancel_scope.cancel()
    refused = [r.getMessage() for r in caplog.records if "frame_refused" in r.getMessage()]
    assert len(refused) == 2, refused
    assert all(str(LIMIT) in message for message in refused)


SIZE_LIMIT = 64 * 1024
#: A ws frame's header before its AMOP body, and that body's before its data (topic "t").
WS_HEADER, WS_BODY_HEAD = 2 + 2 + 2 + 2 + 32 + 2, 6 + 1
#: A channel frame's header, and its topic body's before the data (topic "t").
CHANNEL_HEADER, CHANNEL_BODY_HEAD = 42, 2


async def test_a_client_frame_of_the_largest_size_crosses_a_node_link() -> None:
    """A link frame wraps the client's body with ids and a hop count: it must take a
    client frame of ``max_frame_size`` whole, or any client could take the link down."""
    with trio.fail_after(20):
        async with open_linked_nodes(2, [(0, 1)], limits=NodeLimits(max_frame_size=SIZE_LIMIT)) as (
            near,
            far,
        ):
            async with (
                open_amop(far.endpoint) as subscriber,
                trio.open_nursery() as nursery,
            ):
                await nursery.start(serve_replies, subscriber, "t", b"")
                await near.network.wait_subscribed("t", nodes=1)
                async with open_amop(near.endpoint) as publisher:
                    data = b"d" * (SIZE_LIMIT - WS_HEADER - WS_BODY_HEAD)
                    assert await publisher.publish("t", data) == data
                    await publisher.broadcast("t", data)
                    assert await publisher.publish("t", b"after") == b"after"
                assert len(near.network.links.status()["links"]) == 1
                nursery.cancel_scope.cancel()


async def test_a_2x_message_that_grows_past_a_ws_subscribers_limit_is_not_sent() -> None:
    """A 2.x body becomes a ws body 5 bytes longer: at the limit, the ws subscriber is
    skipped (the publisher is told), and its connection is not dropped."""
    with trio.fail_after(20):
        async with (
            open_node("127.0.0.1:0", limits=NodeLimits(max_frame_size=SIZE_LIMIT)) as node,
            open_amop(node.endpoint) as subscriber,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(serve_replies, subscriber, "t", b"")
            async with open_amop(f"channel://{node.endpoint}") as publisher:
                data = b"d" * (SIZE_LIMIT - CHANNEL_HEADER - CHANNEL_BODY_HEAD)
                with pytest.raises(RejectedError):
                    await publisher.publish("t", data)
                assert await publisher.publish("t", b"small") == b"small"
            assert subscriber.reconnects == 0
            nursery.cancel_scope.cancel()
