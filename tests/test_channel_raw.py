"""A raw 2.x client written only from the byte tables of docs/PROTOCOL.md section 2, over TLS.

Nothing here uses amop_trio's codec or client: frames are packed and parsed
with ``struct`` by the helpers of ``sdk_wire`` and travel over a plain
``trio.open_ssl_over_tcp_stream``. From amop_trio come only the certificates
(a chain CA, a node and an SDK certificate in ``tmp_path``), the client TLS
context built from them, and ``open_node`` running the node under test, with
mutual TLS on its SDK port, which ws clients share (``test_mixed.py``).

Frame:  length u32 | type u16 | seq 32 bytes | result i32 | data   (length counts all)
Topic body:  topicLen u8 (= len(topic) + 1) | topic | data
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from amop_trio import NodeLimits, open_node
from amop_trio._security.tls import client_context_from_dir

from .sdk_wire import (
    AMOP_REQUEST,
    AMOP_RESPONSE,
    HANDSHAKE,
    HEADER,
    HEARTBEAT,
    MULTICAST,
    RPC,
    SUBSCRIBE,
    Frame,
    channel_frame,
    split_topic_body,
    uuid4_seq,
)

# -- the byte tables of docs/PROTOCOL.md section 2 (frames: sdk_wire) -------------

SUCCESS = 0
REMOTE_PEER_UNAVAILABLE = 100  # no reachable node has a subscriber

LENGTH = struct.Struct(">I")
SEQ_RE = re.compile(rb"[0-9a-f]{32}")
TIMEOUT = 10


def pack_topic_body(topic: bytes, data: bytes) -> bytes:
    # A naive u8 for topicLen: a 255-byte topic wraps to 0, as a C SDK's would.
    return bytes([(len(topic) + 1) & 0xFF]) + topic + data


# -- certificates and connections ----------------------------------------------


@dataclass(frozen=True)
class Certs:
    node: Path
    sdk: Path


@pytest.fixture
def certs(chain_certs: Path) -> Certs:
    return Certs(chain_certs / "node0", chain_certs / "sdk")


class RawChannel:
    """One TLS stream carrying raw frames; frames not yet wanted wait in a backlog."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        self.stream = stream
        self.buffer = b""
        self.backlog: list[Frame] = []

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError("the node closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    async def _receive(self) -> Frame:
        head = await self._read(HEADER.size)
        length, ptype, seq, result = HEADER.unpack(head)
        assert length >= HEADER.size, f"length field {length} under the header size"
        return Frame(ptype, seq, result, await self._read(length - HEADER.size))

    async def receive_until(self, predicate: Callable[[Frame], bool]) -> Frame:
        for i, frame in enumerate(self.backlog):
            if predicate(frame):
                return self.backlog.pop(i)
        while True:
            frame = await self._receive()
            if predicate(frame):
                return frame
            self.backlog.append(frame)

    async def request(self, ptype: int, data: bytes, *, result: int = 0) -> Frame:
        """Send a frame and wait for the frame with the same seq."""
        seq = uuid4_seq()
        await self.send(channel_frame(ptype, seq, data, result=result))
        return await self.receive_until(lambda f: f.seq == seq)

    async def handshake(self) -> dict[str, object]:
        hello = {"minimumSupport": 1, "maximumSupport": 3, "clientType": "raw-test"}
        answer = await self.request(HANDSHAKE, json.dumps(hello).encode())
        assert (answer.type, answer.result) == (HANDSHAKE, SUCCESS), answer
        info = json.loads(answer.data)
        assert isinstance(info, dict), info
        return info

    async def subscribe(self, topics: list[str]) -> None:
        """Send the topic set (no answer), then a heartbeat to know it was handled."""
        await self.send(channel_frame(SUBSCRIBE, uuid4_seq(), json.dumps(topics).encode()))
        answer = await self.request(HEARTBEAT, b'{"heartBeat":0}')
        assert answer.type == HEARTBEAT, answer


@asynccontextmanager
async def raw_channel(port: int, certs: Certs) -> AsyncIterator[RawChannel]:
    context = client_context_from_dir(certs.sdk)
    stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=context)
    try:
        await stream.do_handshake()
        yield RawChannel(stream)
    finally:
        await trio.aclose_forcefully(stream)


async def closed_by_node(conn: RawChannel) -> bool:
    """Read until the node closes the connection."""
    try:
        while True:
            await conn._receive()
    except (EOFError, trio.BrokenResourceError):
        return True


# -- tests ----------------------------------------------------------------------


async def test_handshake_and_heartbeats_by_negotiated_protocol(certs: Certs) -> None:
    """As a 2.x node (FB2 ChannelRPCServer.cpp): protocol 1 answers only "0", with "1";
    after a handshake every heartbeat gets {"heartBeat":1} and a newline (FastWriter)."""
    with trio.fail_after(TIMEOUT):
        async with open_node("127.0.0.1:0", certs=certs.node) as node:
            async with raw_channel(node.port, certs) as conn:
                # Protocol-1 SDKs never handshake: heartbeats work before one,
                # but an empty one (go-sdk, python-sdk) gets no answer.
                silent = uuid4_seq()
                await conn.send(channel_frame(HEARTBEAT, silent, b""))
                answer = await conn.request(HEARTBEAT, b"0")
                assert (answer.type, answer.result, answer.data) == (HEARTBEAT, SUCCESS, b"1")
                assert [f for f in conn.backlog if f.seq == silent] == []

                assert conn.stream.version() in ("TLSv1.2", "TLSv1.3")
                hello = {"minimumSupport": 1, "maximumSupport": 3, "clientType": "raw-test"}
                answer = await conn.request(HANDSHAKE, json.dumps(hello).encode())
                assert (answer.type, answer.result) == (HANDSHAKE, SUCCESS), answer
                assert answer.data == b'{"nodeVersion":"2.11.0","protocol":3}\n'

                for body in (b'{"heartBeat":0}', b"0", b""):
                    answer = await conn.request(HEARTBEAT, body)
                    assert (answer.type, answer.result) == (HEARTBEAT, SUCCESS), answer
                    assert answer.data == b'{"heartBeat":1}\n'

            # A client that offers no version the node speaks is dropped, unanswered.
            async with raw_channel(node.port, certs) as conn:
                hello = {"minimumSupport": 7, "maximumSupport": 9, "clientType": "future"}
                await conn.send(channel_frame(HANDSHAKE, uuid4_seq(), json.dumps(hello).encode()))
                assert await closed_by_node(conn)
                assert conn.backlog == []


async def test_unicast_with_reply_and_multicast_with_ack(certs: Certs) -> None:
    topic = b"raw-topic"
    with trio.fail_after(TIMEOUT):
        async with (
            open_node("127.0.0.1:0", certs=certs.node) as node,
            raw_channel(node.port, certs) as sub,
            raw_channel(node.port, certs) as pub,
        ):
            await sub.handshake()
            await pub.handshake()
            # SDKs subscribe to block notifications on connect: accepted, no effect.
            await sub.subscribe([topic.decode(), "_block_notify_1"])
            assert node.table.topics() == {"raw-topic": 1}

            # unicast: 0x30 to the subscriber under a node seq, its 0x31 back to pub
            seq = uuid4_seq()
            await pub.send(channel_frame(AMOP_REQUEST, seq, pack_topic_body(topic, b"ping")))
            delivered = await sub.receive_until(lambda f: f.type == AMOP_REQUEST)
            assert SEQ_RE.fullmatch(delivered.seq), delivered
            assert delivered.seq != seq, delivered
            assert split_topic_body(delivered.data) == (topic, b"ping")
            reply = pack_topic_body(topic, b"pong")
            await sub.send(channel_frame(AMOP_RESPONSE, delivered.seq, reply))
            answer = await pub.receive_until(lambda f: f.seq == seq)
            assert (answer.type, answer.result) == (AMOP_RESPONSE, SUCCESS), answer
            assert split_topic_body(answer.data) == (topic, b"pong")

            # multicast: the subscriber gets it, pub gets 0x31 with result 0 and its body
            body = pack_topic_body(topic, b"all")
            answer = await pub.request(MULTICAST, body)
            assert (answer.type, answer.result, answer.data) == (AMOP_RESPONSE, SUCCESS, body)
            delivered = await sub.receive_until(lambda f: f.type == MULTICAST)
            assert split_topic_body(delivered.data) == (topic, b"all")
            assert SEQ_RE.fullmatch(delivered.seq), delivered

            # unicast to a topic nobody subscribes: result 100
            answer = await pub.request(AMOP_REQUEST, pack_topic_body(b"nobody-here", b"x"))
            assert (answer.type, answer.result) == (AMOP_RESPONSE, REMOTE_PEER_UNAVAILABLE)

            # a subscriber that unsubscribes gets nothing more
            await sub.subscribe([])
            assert node.table.topics() == {}
            answer = await pub.request(AMOP_REQUEST, pack_topic_body(topic, b"late"))
            assert answer.result == REMOTE_PEER_UNAVAILABLE, answer
            assert sub.backlog == []


async def test_a_255_byte_topic_is_refused(certs: Certs) -> None:
    longest, too_long = "a" * 254, "b" * 255
    with trio.fail_after(TIMEOUT):
        async with (
            open_node("127.0.0.1:0", certs=certs.node) as node,
            raw_channel(node.port, certs) as sub,
            raw_channel(node.port, certs) as pub,
        ):
            await sub.handshake()
            await pub.handshake()

            # In a subscription: the 254-byte topic is taken, the 255-byte one refused
            # and logged; a 0x32 is never answered, as on a 2.x node.
            seq = uuid4_seq()
            await sub.send(channel_frame(SUBSCRIBE, seq, json.dumps([longest, too_long]).encode()))
            answer = await sub.request(HEARTBEAT, b'{"heartBeat":0}')
            assert answer.type == HEARTBEAT, answer
            assert [f for f in sub.backlog if f.seq == seq] == []
            assert node.table.topics() == {longest: 1}

            # In a topic body: a 255-byte topic cannot be written (topicLen wraps to 0).
            answer = await pub.request(AMOP_REQUEST, pack_topic_body(too_long.encode(), b"x"))
            assert answer.type == AMOP_RESPONSE, answer
            assert answer.result != SUCCESS, answer
            assert b"at most 254" in answer.data, answer
            answer = await pub.request(MULTICAST, pack_topic_body(too_long.encode(), b"x"))
            assert answer.type == AMOP_RESPONSE, answer
            assert answer.result != SUCCESS, answer

            # Both connections carry on: the 254-byte topic works end to end.
            seq = uuid4_seq()
            await pub.send(
                channel_frame(AMOP_REQUEST, seq, pack_topic_body(longest.encode(), b"q"))
            )
            delivered = await sub.receive_until(lambda f: f.type == AMOP_REQUEST)
            assert split_topic_body(delivered.data) == (longest.encode(), b"q")
            await sub.send(
                channel_frame(AMOP_RESPONSE, delivered.seq, pack_topic_body(longest.encode(), b"a"))
            )
            answer = await pub.receive_until(lambda f: f.seq == seq)
            assert answer.result == SUCCESS
            assert split_topic_body(answer.data) == (longest.encode(), b"a")


async def test_json_rpc_answers_and_unknown_types_are_ignored(certs: Certs) -> None:
    """JSON-RPC is answered as a 2.x node does (0x12, result 0, sorted JSON and a
    newline), errors included; a packet type a 2.x node does not serve gets nothing."""
    with trio.fail_after(TIMEOUT):
        async with (
            open_node("127.0.0.1:0", certs=certs.node) as node,
            raw_channel(node.port, certs) as conn,
        ):
            await conn.handshake()
            rpc = {"jsonrpc": "2.0", "method": "getBlockNumber", "params": [1], "id": 7}
            answer = await conn.request(RPC, json.dumps(rpc).encode())
            assert (answer.type, answer.result) == (RPC, SUCCESS), answer
            assert answer.data == b'{"id":7,"jsonrpc":"2.0","result":"0x0"}\n'

            rpc = {"jsonrpc": "2.0", "method": "sendRawTransaction", "params": [1, "0x"], "id": 8}
            answer = await conn.request(RPC, json.dumps(rpc).encode())
            assert (answer.type, answer.result) == (RPC, SUCCESS), answer
            error = json.loads(answer.data)
            assert error["id"] == 8
            assert error["error"]["code"] == -32601
            assert "AMOP only" in error["error"]["message"]

            for ptype in (0x77, 0x1010, 0x15):  # 0x1010 only for clients that ask for it
                seq = uuid4_seq()
                await conn.send(channel_frame(ptype, seq, b"?"))
                answer = await conn.request(HEARTBEAT, b"0")  # still connected
                assert answer.data == b'{"heartBeat":1}\n'
                assert [f for f in conn.backlog if f.seq == seq] == []


async def test_an_absurd_length_closes_the_connection_at_once(certs: Certs) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_node("127.0.0.1:0", certs=certs.node) as node:
            async with raw_channel(node.port, certs) as conn:
                await conn.handshake()
                # 4 GiB announced: the node must not wait for (or buffer) the body.
                await conn.send(LENGTH.pack(0xFFFFFFFF) + b"\x00\x13")
                with trio.fail_after(2):
                    assert await closed_by_node(conn)
            async with raw_channel(node.port, certs) as conn:  # the node is fine
                await conn.handshake()


async def test_a_silent_client_is_dropped_and_heartbeats_keep_one_alive(certs: Certs) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_node(
                "127.0.0.1:0", certs=certs.node, limits=NodeLimits(channel_idle_timeout=0.4)
            ) as node,
            raw_channel(node.port, certs) as silent,
            raw_channel(node.port, certs) as beating,
        ):
            await silent.handshake()
            await beating.handshake()
            start = trio.current_time()
            with trio.move_on_after(1.2):
                while True:
                    answer = await beating.request(HEARTBEAT, b'{"heartBeat":0}')
                    assert answer.result == SUCCESS
                    await trio.sleep(0.1)
            with trio.fail_after(1):
                assert await closed_by_node(silent)
            assert trio.current_time() - start < 2.2
            answer = await beating.request(HEARTBEAT, b"0")
            assert answer.data == b'{"heartBeat":1}\n'  # protocol 3: JSON, whatever the body
