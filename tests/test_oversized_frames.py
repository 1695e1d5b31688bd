"""A frame over the node's limit closes only its connection, and the node says so in its log."""

from __future__ import annotations

import contextlib
import logging
import struct

import pytest
import trio

from amop_trio import AmopClient, Node, NodeLimits
from amop_trio._wire.rfc6455 import BINARY

from . import spec_bytes as sb
from .conftest import serve_replies
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
