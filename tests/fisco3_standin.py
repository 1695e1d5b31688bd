"""A stand-in for a real FISCO BCOS 3.x node's AMOP service, for client tests.

It behaves as docs/PROTOCOL.md describes the 3.x node (FISCO-BCOS master:
``bcos-rpc/Rpc.cpp`` for the handshake, ``bcos-rpc/amop/AMOPClient.cpp`` for
AMOP, ``bcos-gateway/libamop/AMOPImpl.cpp`` for the failure texts), not as
amop_trio's node does:

* AMOP_SUBTOPIC only ever ADDS topics to a session; they go when it closes;
* AMOP_BROADCAST gets no answer, and reaches subscribers with seqLen 0;
* a failed unicast is answered with a frame of packet type 0, a status
  (3001 no subscriber, -4008 timeout) and a text;
* a subscriber's refusal (any status) is relayed to the publisher as is:
  no other subscriber is tried;
* JSON-RPC (0x102) is answered with a JSON-RPC error in a frame of type 0;
* unknown packet types are ignored, and there are no private topics:
  ``#!$TopicNeedVerify_`` topics are topics like any other.

Built on trio-websocket and the spec's own byte tables (``spec_bytes``), so
it shares no code with amop_trio's codec or node.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
import trio_websocket

from . import spec_bytes as sb

#: Seconds a 3.x node waits for a subscriber's answer before -4008 (30 in FISCO; short here).
SUBSCRIBER_TIMEOUT = 3.0


@dataclass(eq=False)
class _Session:
    ws: trio_websocket.WebSocketConnection
    topics: set[str] = field(default_factory=set)
    #: node seq -> (publisher session, publisher seq) of unicasts delivered here.
    waiting: dict[bytes, tuple[_Session, bytes]] = field(default_factory=dict)


@dataclass
class StandIn3xNode:
    """The AMOP service of one 3.x node; ``endpoint`` is its ``host:port``."""

    endpoint: str = ""
    sessions: list[_Session] = field(default_factory=list)
    #: Every frame type received, in order, for tests to inspect.
    received: list[int] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    async def _send(self, session: _Session, frame: bytes) -> None:
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            await session.ws.send_message(frame)

    async def serve(self, request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        session = _Session(ws)
        self.sessions.append(session)
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        message = await ws.get_message()
                    except trio_websocket.ConnectionClosed:
                        break
                    if isinstance(message, bytes):
                        await self._on_frame(session, message, nursery)
                nursery.cancel_scope.cancel()
        finally:
            self.sessions.remove(session)  # its topics go with it

    async def _on_frame(self, session: _Session, data: bytes, nursery: trio.Nursery) -> None:
        frame = sb.parse_frame(data)
        if frame is None:
            return
        self.received.append(frame.type)
        if frame.type == sb.HANDSHAKE:
            request = json.loads(frame.payload)
            version = min(2, int(request.get("maxVersion", 0)))
            answer = {"groupBlockNumber": [], "groupInfoList": [], "protocolVersion": version}
            payload = (json.dumps(answer, sort_keys=True, separators=(",", ":")) + "\n").encode()
            await self._send(session, sb.pack_frame(sb.HANDSHAKE, frame.seq, payload))
        elif frame.type == sb.AMOP_SUBTOPIC:
            session.topics.update(json.loads(frame.payload)["topics"])  # additive, no answer
        elif frame.type == sb.AMOP_REQUEST:
            await self._unicast(session, frame, nursery)
        elif frame.type == sb.AMOP_BROADCAST:
            body = sb.parse_body(frame.payload)
            if body is not None:
                relayed = sb.pack_frame(sb.AMOP_BROADCAST, b"", frame.payload)  # seqLen 0
                for other in list(self.sessions):
                    if body[1] in other.topics:
                        await self._send(other, relayed)
        elif frame.type == sb.AMOP_RESPONSE:
            waiting = session.waiting.pop(frame.seq, None)
            if waiting is not None:
                publisher, seq = waiting
                relayed = sb.pack_frame(
                    sb.AMOP_RESPONSE, seq, frame.payload, status=frame.status, ext=frame.ext
                )
                await self._send(publisher, relayed)
        elif frame.type == sb.RPC_REQUEST:
            request = json.loads(frame.payload)
            error = {
                "error": {"code": -32601, "message": "The method does not exist/is not available."},
                "id": request.get("id"),
                "jsonrpc": request.get("jsonrpc", "2.0"),
            }
            payload = json.dumps(error, sort_keys=True, separators=(",", ":")).encode()
            await self._send(session, sb.pack_frame(0, frame.seq, payload))
        # anything else: ignored, as a real node does

    async def _unicast(self, session: _Session, frame: sb.RawFrame, nursery: trio.Nursery) -> None:
        body = sb.parse_body(frame.payload)
        topic = body[1] if body is not None else ""
        candidates = [s for s in self.sessions if topic in s.topics]
        if not candidates:
            text = f"there has no node subscribe this topic, topic: {topic}".encode()
            await self._send(session, sb.pack_frame(0, frame.seq, text, status=3001))
            return
        target = self.rng.choice(candidates)
        node_seq = sb.new_seq()
        target.waiting[node_seq] = (session, frame.seq)
        await self._send(target, sb.pack_frame(sb.AMOP_REQUEST, node_seq, frame.payload))
        nursery.start_soon(self._expire, target, node_seq)

    async def _expire(self, target: _Session, node_seq: bytes) -> None:
        await trio.sleep(SUBSCRIBER_TIMEOUT)
        waiting = target.waiting.pop(node_seq, None)
        if waiting is not None:
            publisher, seq = waiting
            text = b"wait for response timeout"
            await self._send(publisher, sb.pack_frame(0, seq, text, status=-4008))

    def topics(self) -> list[set[str]]:
        """The topic set of each live session."""
        return [set(s.topics) for s in self.sessions]


@asynccontextmanager
async def open_standin_3x_node() -> AsyncIterator[StandIn3xNode]:
    """Run a stand-in 3.x node on a free loopback port for the duration of the block."""
    node = StandIn3xNode()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            trio_websocket.serve_websocket, node.serve, "127.0.0.1", 0, None
        )
        node.endpoint = f"127.0.0.1:{server.port}"
        yield node
        nursery.cancel_scope.cancel()
