"""A client that sends requests and never reads their answers costs the node a bounded outbox.

Answers to a client's unicasts go past its outbox's limits
(``FrameConnection.send_answer_nowait``), so that none is lost to a full
outbox. They stay bounded because the node's reader takes a request only
while that outbox is under its limits: at most ``max_pending`` answers beyond
them, however long the client goes on sending.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from amop_trio import open_amop, open_node
from amop_trio._node.limits import NodeLimits
from amop_trio._transport import channel_socket, ws_socket
from amop_trio._wire.fisco2 import (
    ChannelFrame,
    ChannelType,
    encode_channel_frame,
    encode_topic_body,
    new_channel_seq,
)
from amop_trio._wire.fisco3 import (
    Frame,
    HandshakeRequest,
    PacketType,
    encode_amop_body,
    encode_frame,
    new_seq,
)

from .conftest import serve_replies

#: Answers as large as this fill the kernel's buffers to a non-reading client in a few frames.
PAYLOAD = 32 * 1024
REQUESTS = 120


@pytest.mark.parametrize("protocol", ["ws", "channel"])
async def test_answers_to_a_client_that_never_reads_stay_bounded(protocol: str) -> None:
    limits = NodeLimits(outbox_size=8, max_pending=8)
    with trio.fail_after(30):
        async with (
            open_node("127.0.0.1:0", limits=limits) as node,
            open_amop(node.endpoint) as responder,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(serve_replies, responder, "echo")
            data = b"x" * PAYLOAD
            sock: ws_socket.FrameSocket | channel_socket.StreamSocket
            if protocol == "ws":
                sock = await ws_socket.connect(
                    f"ws://{node.endpoint}/", ssl_context=None, max_frame_size=1 << 20
                )
                hello = HandshakeRequest().encode()
                await sock.send(encode_frame(Frame(PacketType.HANDSHAKE, new_seq(), hello)))

                def request() -> bytes:
                    body = encode_amop_body("echo", data)
                    return encode_frame(Frame(PacketType.AMOP_REQUEST, new_seq(), body))
            else:
                sock = await channel_socket.connect(f"channel://{node.endpoint}", ssl_context=None)

                def request() -> bytes:
                    body = encode_topic_body("echo", data)
                    frame = ChannelFrame(ChannelType.AMOP_REQUEST, new_channel_seq(), data=body)
                    return encode_channel_frame(frame)

            sent = 0

            async def flood() -> None:
                nonlocal sent
                for _ in range(REQUESTS):
                    await sock.send(request())
                    sent += 1

            nursery.start_soon(flood)
            await trio.testing.wait_all_tasks_blocked(0.2)  # until nothing moves any more
            (session,) = [s for s in node.sessions.values() if s.requests or s.outbox_used()]
            assert session.outbox_used() <= limits.outbox_size + limits.max_pending
            assert sent < REQUESTS, "the node read every request of a client that reads nothing"
            nursery.cancel_scope.cancel()
            await sock.aclose()
