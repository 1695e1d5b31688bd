"""A raw ws client written only from the byte tables of docs/PROTOCOL.md section 1.

Nothing here uses amop_trio's codec or client: frames are packed and parsed
with ``struct`` by the helpers below, and the WebSocket layer is plain
trio-websocket (one frame = one binary WebSocket message). Only ``open_node``
comes from amop_trio, to run the node under test in-process on loopback.

Frame:  version u16 | type u16 | status i16 | seqLen u16 | seq | ext u16 | payload
AMOP body:  version u32 | topicLen u16 | topic (UTF-8) | data
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio_websocket

from amop_trio import Node

from .conftest import wait_until
from .spec_bytes import (
    AMOP_BROADCAST,
    AMOP_REQUEST,
    AMOP_RESPONSE,
    AMOP_SUBTOPIC,
    BODY_HEAD,
    EXT_RESPONSE,
    HANDSHAKE,
    RPC_REQUEST,
    RawFrame,
    new_seq,
    pack_body,
    pack_frame,
    parse_body,
    parse_frame,
)

NO_SUBSCRIBER_NODE = 3001
INVALID_REQUEST = 3005  # amop_trio's own code for an undecodable request
SEQ_RE = re.compile(rb"[0-9a-f]{32}")
TIMEOUT = 10


# -- one raw connection ---------------------------------------------------------


class RawConn:
    """A WebSocket carrying raw frames; frames not yet wanted wait in a backlog."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.backlog: list[RawFrame] = []

    async def send(self, data: bytes) -> None:
        await self.ws.send_message(data)

    async def receive_until(self, predicate: Callable[[RawFrame], bool]) -> RawFrame:
        """Frames may arrive interleaved: read until one matches, keeping the others."""
        for i, held in enumerate(self.backlog):
            if predicate(held):
                return self.backlog.pop(i)
        while True:
            message = await self.ws.get_message()
            assert isinstance(message, bytes), f"node sent a text message: {message!r}"
            frame = parse_frame(message)
            assert frame is not None, f"malformed frame from the node: {message!r}"
            if predicate(frame):
                return frame
            self.backlog.append(frame)

    async def answer_to(self, seq: bytes) -> RawFrame:
        return await self.receive_until(lambda f: f.seq == seq)

    async def handshake(self, extras: list[str] | None = None) -> dict[str, Any]:
        """Handshake as the cpp-sdk does; ``extras`` asks for amop_trio's extensions."""
        seq = new_seq()
        hello: dict[str, Any] = {"maxVersion": 2, "minVersion": 0, "moduleID": 2}
        if extras is not None:
            hello["amopTrio"] = extras
        await self.send(pack_frame(HANDSHAKE, seq, json.dumps(hello).encode()))
        answer = await self.answer_to(seq)
        assert answer.status == 0, answer
        info: dict[str, Any] = json.loads(answer.payload)
        version = info.get("protocolVersion")
        assert isinstance(version, int), info
        assert not isinstance(version, bool), info
        assert version >= 1, info
        if extras is None:  # a real 3.x node's answer, byte for byte (FastWriter)
            assert answer.payload == (
                b'{"groupBlockNumber":[],"groupInfoList":[],"protocolVersion":2}\n'
            )
        return info

    async def subscribe(self, topics: list[str]) -> None:
        payload = json.dumps({"topics": topics}).encode()
        await self.send(pack_frame(AMOP_SUBTOPIC, new_seq(), payload))


@asynccontextmanager
async def raw_connection(endpoint: str) -> AsyncIterator[RawConn]:
    async with trio_websocket.open_websocket_url(f"ws://{endpoint}/") as ws:
        yield RawConn(ws)
    # trio-websocket 0.12 clients never close their TCP socket when the server
    # closed the WebSocket first (``aclose`` returns early once a close reason is
    # set), which filterwarnings=error turns into a ResourceWarning failure.
    # Closing an already closed stream is a no-op, so always make sure here.
    await trio.aclose_forcefully(ws._stream)


async def read_forever(conn: RawConn) -> None:
    """Read and drop frames until the connection closes."""
    while True:
        await conn.ws.get_message()


async def wait_subscribed(node: Node, topic: str, count: int = 1) -> None:
    """The spec requires no answer to AMOP_SUBTOPIC: poll the node's table."""
    await wait_until(lambda: len(node.table.subscribers(topic)) >= count)


async def serve_one_unicast(sub: RawConn, topic: str, data: bytes, reply: bytes) -> None:
    """As subscriber: take the next AMOP_REQUEST, check its body, answer it."""
    request = await sub.receive_until(lambda f: f.type == AMOP_REQUEST)
    assert SEQ_RE.fullmatch(request.seq), request
    assert request.status == 0, request
    assert not request.ext & EXT_RESPONSE, request
    assert parse_body(request.payload) == (0, topic, data)
    await sub.send(pack_frame(AMOP_RESPONSE, request.seq, reply, ext=EXT_RESPONSE))


async def unicast(pub: RawConn, sub: RawConn, topic: str, data: bytes, reply: bytes) -> None:
    """Unicast through the node from ``pub`` to ``sub``; check the reply comes back."""
    seq = new_seq()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_one_unicast, sub, topic, data, reply)
        await pub.send(pack_frame(AMOP_REQUEST, seq, pack_body(topic, data)))
        answer = await pub.answer_to(seq)
    assert answer.type == AMOP_RESPONSE, answer
    assert answer.ext & EXT_RESPONSE, answer
    assert answer.status == 0, answer
    assert answer.payload == reply, answer


# -- the scenario ---------------------------------------------------------------


async def test_raw_client_scenario(node: Node) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            raw_connection(node.endpoint) as sub,
            raw_connection(node.endpoint) as pub,
        ):
            # 1. handshakes
            await sub.handshake()
            await pub.handshake()

            # 2. subscription (no answer required)
            await sub.subscribe(["raw-topic"])
            await wait_subscribed(node, "raw-topic")

            # 3. unicast: request out to S, S's reply back to P
            await unicast(pub, sub, "raw-topic", b"ping", b"pong")

            # 4. multicast: S gets it, P gets no answer (as from a 3.x node)
            quiet = new_seq()
            await pub.send(pack_frame(AMOP_BROADCAST, quiet, pack_body("raw-topic", b"all")))
            delivered = await sub.receive_until(lambda f: f.type == AMOP_BROADCAST)
            assert parse_body(delivered.payload) == (0, "raw-topic", b"all")
            assert SEQ_RE.fullmatch(delivered.seq), delivered

            # 5. unicast to a topic nobody subscribes to: 3001 with an error text
            seq = new_seq()
            await pub.send(pack_frame(AMOP_REQUEST, seq, pack_body("nobody-here", b"x")))
            answer = await pub.answer_to(seq)
            assert answer.type == AMOP_RESPONSE, answer
            assert answer.status == NO_SUBSCRIBER_NODE, answer
            assert answer.payload, answer
            answer.payload.decode("utf-8")

            # 6. JSON-RPC: a 3.x node's "method not found", in a frame of type 0
            seq = new_seq()
            rpc = b'{"jsonrpc":"2.0","method":"getBlockNumber","params":["group0",""],"id":1}'
            await pub.send(pack_frame(RPC_REQUEST, seq, rpc))
            answer = await pub.answer_to(seq)
            assert (answer.type, answer.status) == (0, 0), answer
            error = json.loads(answer.payload)
            assert (error["id"], error["jsonrpc"]) == (1, "2.0"), error
            assert error["error"]["code"] == -32601, error

            # 6b. types a 3.x node does not serve get nothing, amop_trio's own included
            for ptype in (0x101, 0x120, 0x1010, 0x7FFF):
                await pub.send(pack_frame(ptype, new_seq(), b"{}"))

            # 7. topicLen runs past the end of the body: refused, connection kept
            seq = new_seq()
            bad_body = BODY_HEAD.pack(0, 50) + b"raw-topic"
            await pub.send(pack_frame(AMOP_REQUEST, seq, bad_body))
            answer = await pub.answer_to(seq)
            assert answer.status != 0, answer
            assert answer.status == INVALID_REQUEST, answer
            await unicast(pub, sub, "raw-topic", b"still there?", b"yes")

            # 8. a frame under 10 bytes closes that connection only
            await pub.send(b"\x00\x00\x01\x11\x00")
            with trio.fail_after(3), pytest.raises(trio_websocket.ConnectionClosed):
                await read_forever(pub)
            async with raw_connection(node.endpoint) as pub2:
                await pub2.handshake()
                await unicast(pub2, sub, "raw-topic", b"after", b"fine")
            # nothing unexpected reached the subscriber along the way, nor the publisher
            assert sub.backlog == []
            assert pub.backlog == []


@pytest.mark.node(node_id="raw-node")
async def test_extensions_only_for_a_client_that_asks(node: Node) -> None:
    """amop_trio's extras (acknowledgements, status queries) for a client that asks in
    its handshake, with a grant that says what it got, its node id and frame limit."""
    with trio.fail_after(TIMEOUT):
        async with (
            raw_connection(node.endpoint) as sub,
            raw_connection(node.endpoint) as pub,
        ):
            await sub.handshake()
            info = await pub.handshake(["acks", "status", "future-extra"])
            grant = info["amopTrio"]
            assert grant == {
                "extras": ["acks", "status"],
                "maxFrameSize": node.limits.max_frame_size,
                "nodeId": "raw-node",
            }
            seq = new_seq()
            await pub.send(pack_frame(AMOP_SUBTOPIC, seq, b'{"topics":["mine"]}'))
            answer = await pub.answer_to(seq)
            assert (answer.type, answer.status) == (AMOP_SUBTOPIC, 0), answer

            await sub.subscribe(["raw-topic"])
            await wait_subscribed(node, "raw-topic")
            seq = new_seq()
            await pub.send(pack_frame(AMOP_BROADCAST, seq, pack_body("raw-topic", b"all")))
            answer = await pub.answer_to(seq)
            assert (answer.type, answer.status) == (AMOP_RESPONSE, 0), answer
            assert answer.ext & EXT_RESPONSE, answer
            await sub.receive_until(lambda f: f.type == AMOP_BROADCAST)

            seq = new_seq()
            await pub.send(pack_frame(0x1010, seq, b"{}"))
            answer = await pub.answer_to(seq)
            assert answer.status == 0, answer
            assert json.loads(answer.payload)["nodeId"] == "raw-node"


@pytest.mark.parametrize("ptype", [AMOP_REQUEST, AMOP_BROADCAST], ids=["unicast", "multicast"])
async def test_malformed_request_answered_as_amop_response(node: Node, ptype: int) -> None:
    """docs/PROTOCOL.md sections 1 and 8: AMOP_RESPONSE (0x113) answers 0x111, and
    0x112 for a client granted "acks"; a malformed request gets 3005 and a text. It
    must come back as 0x113, not echoed as 0x111 / 0x112, which a client could take
    for an incoming delivery."""
    with trio.fail_after(TIMEOUT):
        async with raw_connection(node.endpoint) as pub:
            await pub.handshake(["acks"])  # a 3.x node never answers a multicast
            seq = new_seq()
            await pub.send(pack_frame(ptype, seq, BODY_HEAD.pack(0, 50) + b"t"))
            answer = await pub.answer_to(seq)
            assert answer.status == INVALID_REQUEST, answer
            assert answer.ext & EXT_RESPONSE, answer
            assert answer.type == AMOP_RESPONSE, answer
