"""Byte budgets against a running node: a hostile client is refused, nobody else notices.

Each test runs a node in-process on loopback with small budgets and a healthy
pair of clients doing unicast round trips through it all along. A client
then goes past one budget; it must get the typed refusal the budget promises
(over ws and over the 2.x channel protocol), its session must go on as
before, the healthy pair must never fail nor slow down, and once the hostile
connections are closed (and their unicasts over) the node's counters must be
back to the healthy pair's own.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request

from amop_trio import AmopClient, Node, NodeLimits, RejectedError, open_amop, open_node
from amop_trio._node.budget import TOPIC_OVERHEAD
from amop_trio._transport import connection

from .conftest import open_linked_nodes, serve_replies, wait_until
from .spec_bytes import (
    AMOP_BROADCAST,
    AMOP_REQUEST,
    HANDSHAKE,
    new_seq,
    pack_body,
    pack_frame,
    parse_frame,
)

KIB = 1024
HEALTHY = "healthy"
#: Healthy round trips must all succeed and each take less than this (a loaded 2-core VM).
MAX_RTT = 1.5
OVERLOADED = 3006
INVALID_REQUEST = 3005
#: What our client reads 2.x results 103 and 104 as.
CHANNEL_REJECTED = 1004
CHANNEL_FAILED = 3003
LIMITS = NodeLimits(
    max_frame_size=1024 * KIB,
    connection_topic_bytes=64 * KIB,
    node_topic_bytes=64 * KIB,
    connection_pending_bytes=600 * KIB,
    node_pending_bytes=1024 * KIB,
    node_partial_frame_bytes=2100 * KIB,
    node_total_bytes=4096 * KIB,
)


@dataclass
class Health:
    rtts: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def _round_trips(client: AmopClient, health: Health) -> None:
    while True:
        start = trio.current_time()
        try:
            assert await client.publish(HEALTHY, b"ping", timeout=MAX_RTT * 2) == b"ping"
            health.rtts.append(trio.current_time() - start)
        except Exception as exc:
            health.failures.append(repr(exc))
        await trio.sleep(0.01)


@asynccontextmanager
async def healthy_pair(node: Node) -> AsyncIterator[Health]:
    """A subscriber and a publisher doing round trips through ``node`` while the body runs."""
    health = Health()
    async with (
        open_amop(node.endpoint) as subscriber,
        open_amop(node.endpoint) as publisher,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(serve_replies, subscriber, HEALTHY)
        nursery.start_soon(_round_trips, publisher, health)
        await wait_until(lambda: len(health.rtts) + len(health.failures) > 0)
        yield health
        await wait_until(lambda: len(health.rtts) > 5)
        nursery.cancel_scope.cancel()
        reconnects = subscriber._supervisor.reconnects + publisher._supervisor.reconnects
    assert not health.failures, health.failures
    assert max(health.rtts) < MAX_RTT, max(health.rtts)
    assert reconnects == 0


def held(node: Node, kind: int, unit: int) -> int:
    """How many ``unit``-byte things the node holds of ``kind`` (1 pending, 2 partial).

    Floor division leaves out the healthy pair's own small frames and unicasts.
    """
    return counters(node)[kind] // unit


def counters(node: Node) -> tuple[int, int, int]:
    budget = node.hub.budget
    return budget.topic_bytes, budget.pending_bytes, budget.partial_bytes


def at_rest(node: Node) -> bool:
    """The node holds only what the healthy pair holds: its topic, nothing pending or partial."""
    return counters(node) == (len(HEALTHY) + TOPIC_OVERHEAD, 0, 0)


def endpoint(node: Node, protocol: str) -> str:
    return f"channel://{node.endpoint}" if protocol == "channel" else node.endpoint


# -- topic bytes ------------------------------------------------------------------------------

#: Room for 500 bytes of names in three topics a connection, 700 in five on the node.
TOPIC_LIMITS = dataclasses.replace(
    LIMITS,
    connection_topic_bytes=500 + 3 * TOPIC_OVERHEAD,
    node_topic_bytes=700 + 5 * TOPIC_OVERHEAD,
)


@pytest.mark.parametrize("protocol", ["ws", "channel"])
async def test_topics_past_a_budget_are_refused_and_the_session_keeps_its_set(
    protocol: str,
) -> None:
    per_connection = INVALID_REQUEST if protocol == "ws" else CHANNEL_FAILED
    node_wide = OVERLOADED if protocol == "ws" else CHANNEL_REJECTED
    a, b, c, d, e = (letter * 200 for letter in "abcde")
    with trio.fail_after(30):
        async with open_node("127.0.0.1:0", limits=TOPIC_LIMITS) as node, healthy_pair(node):
            async with (
                open_amop(endpoint(node, protocol)) as first,
                first.subscribe(a),
                first.subscribe(b),
            ):
                refused = first.subscribe(c)
                with pytest.raises(RejectedError) as caught:
                    await refused.open()  # 600 bytes of names: past this connection's 500
                assert caught.value.status == per_connection
                limit, excess = 500 + 3 * TOPIC_OVERHEAD, 100
                assert f"connection_topic_bytes of {limit:,} bytes by {excess:,} bytes" in str(
                    caught.value
                )
                assert set(node.table.topics()) == {HEALTHY, a, b}
                assert not refused.is_open  # the client dropped what the node refused
                async with open_amop(endpoint(node, protocol)) as second, second.subscribe(d):
                    with pytest.raises(RejectedError) as caught:
                        await second.subscribe(e).open()  # 807 bytes on the node: past its 700
                    assert caught.value.status == node_wide
                    limit, excess = 700 + 5 * TOPIC_OVERHEAD, 107
                    assert f"node_topic_bytes of {limit:,} bytes by {excess:,} bytes" in str(
                        caught.value
                    )
                    assert set(node.table.topics()) == {HEALTHY, a, b, d}
                    # Both sessions go on, with the sets they had.
                    async with first.subscribe("small") as small:
                        await second.broadcast("small", b"still here")
                        assert (await small.receive()).data == b"still here"
                    assert counters(node)[0] == len(HEALTHY) + 3 * 200 + 4 * TOPIC_OVERHEAD
            await wait_until(lambda: at_rest(node))


async def test_a_2x_sdk_past_the_topic_budget_keeps_its_set_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real 2.x SDK never hears back about 0x32: the node keeps its set and logs why."""
    caplog.set_level(logging.WARNING, logger="amop_trio.node")
    kept = {"u" * 250: 1, "v" * 250: 1}
    with trio.fail_after(30):
        async with open_node("127.0.0.1:0", limits=TOPIC_LIMITS) as node:
            stream = await trio.open_tcp_stream("127.0.0.1", node.port)
            try:
                await stream.send_all(channel_frame(0x32, json.dumps(list(kept)).encode()))
                await wait_until(lambda: node.table.topics() == kept)
                refused = ["w" * 250, "x" * 250, "y"]  # 501 bytes: past this connection's 500
                await stream.send_all(channel_frame(0x32, json.dumps(refused).encode()))
                await wait_until(lambda: "connection_topic_bytes" in caplog.text)
                assert node.table.topics() == kept
                assert counters(node) == (500 + 2 * TOPIC_OVERHEAD, 0, 0)
            finally:
                await trio.aclose_forcefully(stream)
            await wait_until(lambda: counters(node) == (0, 0, 0))
    assert "topics_refused" in caplog.text


# -- pending request bytes ----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["ws", "channel"])
async def test_unicasts_past_the_pending_budgets_are_answered_at_once(protocol: str) -> None:
    refused = OVERLOADED if protocol == "ws" else CHANNEL_REJECTED
    data = b"d" * 200_000
    body = 4 + 2 + len("sink") + len(data)
    with trio.fail_after(30):
        async with open_node("127.0.0.1:0", limits=LIMITS) as node, healthy_pair(node):
            async with (
                open_amop(node.endpoint) as sink_client,
                sink_client.subscribe("sink") as sink,  # never read: nothing is answered
            ):
                async with (
                    open_amop(endpoint(node, protocol)) as first,
                    open_amop(endpoint(node, protocol)) as second,
                    trio.open_nursery() as waiting,
                ):
                    for _ in range(3):  # 600,030 bytes: just within this connection's budget
                        waiting.start_soon(first.publish, "sink", data)
                    await wait_until(lambda: held(node, 1, body) == 3)
                    start = trio.current_time()
                    with pytest.raises(RejectedError) as caught:
                        await first.publish("sink", data)
                    assert caught.value.status == refused
                    assert "connection_pending_bytes of 614,400 bytes" in str(caught.value)
                    for _ in range(2):  # 1,000,050 bytes on the node, within its 1 MiB
                        waiting.start_soon(second.publish, "sink", data)
                    await wait_until(lambda: held(node, 1, body) == 5)
                    with pytest.raises(RejectedError) as caught:
                        await second.publish("sink", data)
                    assert caught.value.status == refused
                    assert "node_pending_bytes of 1,048,576 bytes" in str(caught.value)
                    assert trio.current_time() - start < 2  # at once, not at a timeout
                    assert await second.publish(HEALTHY, b"small") == b"small"  # both go on
                    waiting.cancel_scope.cancel()
                # The publishers left; their unicasts still wait in the sink: still counted.
                assert held(node, 1, body) == 5
                assert sink.statistics().queued == 5
            await wait_until(lambda: at_rest(node))  # the sink left: every unicast ended


async def test_unicasts_served_for_another_node_count_against_its_pending_budget() -> None:
    data = b"s" * 200_000
    body = 4 + 2 + len("sink") + len(data)
    with trio.fail_after(30):
        async with open_linked_nodes(2, [(0, 1)], limits=LIMITS) as (near, far):
            async with (
                open_amop(far.endpoint) as sink_client,
                sink_client.subscribe("sink"),
                open_amop(far.endpoint) as local,
                open_amop(near.endpoint) as first,
                open_amop(near.endpoint) as second,
                trio.open_nursery() as waiting,
            ):
                await wait_until(lambda: near.network.directory.subscriber_counts("sink") != {})
                waiting.start_soon(local.publish, "sink", data)
                await wait_until(lambda: counters(far)[1] == body)
                for client in (first, first, first, second):
                    waiting.start_soon(client.publish, "sink", data)
                await wait_until(lambda: counters(far)[1] == 5 * body)
                assert counters(near)[1] == 4 * body
                start = trio.current_time()
                with pytest.raises(RejectedError) as caught:  # fits near, not far
                    await second.publish("sink", data)
                assert caught.value.status == OVERLOADED
                assert trio.current_time() - start < 2  # at once, not at a timeout
                assert counters(near)[1] == 4 * body  # the refused one is given back
                assert counters(far)[1] == 5 * body
                waiting.cancel_scope.cancel()
            await wait_until(lambda: counters(near) == counters(far) == (0, 0, 0))


# -- partial frames -----------------------------------------------------------------------------


def channel_frame(ftype: int, data: bytes, *, length: int | None = None) -> bytes:
    """A 2.x channel frame (docs/PROTOCOL.md section 2); ``length`` may lie."""
    size = 42 + len(data) if length is None else length
    return struct.pack(">IH32si", size, ftype, new_seq(), 0) + data


def masked(payload: bytes) -> bytes:
    """One final binary client frame, masking key 0 (RFC 6455 section 5.2)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x82, 0x80 | n])
    elif n < 65536:
        head = bytes([0x82, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([0x82, 0x80 | 127]) + struct.pack(">Q", n)
    return head + b"\0\0\0\0" + payload


async def closed_by_node(stream: trio.SocketStream) -> bool:
    """Whether the node closed (or reset) the connection, once it has."""
    try:
        return await stream.receive_some(65536) == b""
    except trio.BrokenResourceError:
        return True


class RawWs:
    """A client below the WebSocket layer: wsproto reads the node, raw bytes go out."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.messages: list[bytes] = []
        self.close_code: int | None = None

    @classmethod
    async def open(cls, port: int) -> RawWs:
        raw = cls(await trio.open_tcp_stream("127.0.0.1", port))
        await raw.stream.send_all(raw.ws.send(Request(host="127.0.0.1", target="/")))
        await raw.next_message()
        return raw

    async def next_message(self) -> bytes:
        while not self.messages:
            data = await self.stream.receive_some(65536)
            assert data, "the node closed the connection"
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    self.messages.append(b"")
                elif isinstance(event, BytesMessage):
                    self.messages.append(bytes(event.data))
                elif isinstance(event, CloseConnection):
                    self.close_code = event.code
                    return b""
        return self.messages.pop(0)

    async def handshake(self) -> None:
        hello = {"minVersion": 0, "maxVersion": 2, "moduleID": 2, "amopTrio": ["acks"]}
        await self.stream.send_all(
            masked(pack_frame(HANDSHAKE, new_seq(), json.dumps(hello).encode()))
        )
        assert parse_frame(await self.next_message()) is not None


async def test_frames_past_the_partial_frame_budget_close_only_their_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="amop_trio.node")
    seq = new_seq()
    frame = masked(pack_frame(AMOP_BROADCAST, seq, pack_body("big", b"b" * 1_000_000)))
    half = len(frame) // 2
    with trio.fail_after(30):
        async with open_node("127.0.0.1:0", limits=LIMITS) as node, healthy_pair(node):
            streams: list[trio.SocketStream] = []
            try:
                holders = [await RawWs.open(node.port) for _ in range(2)]
                streams += [h.stream for h in holders]
                for holder in holders:  # two frames of 1 MB begun: 2 MB of the 2.1 MB
                    await holder.handshake()
                    await holder.stream.send_all(frame[:half])
                await wait_until(lambda: held(node, 2, len(frame)) == 2)
                third = await RawWs.open(node.port)
                streams.append(third.stream)
                await third.handshake()
                await third.stream.send_all(frame[:1000])  # its header says 1 MB
                with trio.fail_after(5):
                    assert await third.next_message() == b""
                assert third.close_code == 1009
                channel = await trio.open_tcp_stream("127.0.0.1", node.port)
                streams.append(channel)
                await channel.send_all(channel_frame(0x12, b"", length=1_000_000))
                with trio.fail_after(5):
                    assert await closed_by_node(channel)
                # The connections that fitted go on: the frame arrives whole and is taken.
                await holders[0].stream.send_all(frame[half:])
                answer = parse_frame(await holders[0].next_message())
                assert answer is not None
                assert (answer.seq, answer.status) == (seq, 0)
            finally:
                for stream in streams:
                    await trio.aclose_forcefully(stream)
            await wait_until(lambda: at_rest(node))
    refusals = [r.getMessage() for r in caplog.records if "partial_frame_refused" in r.getMessage()]
    assert len(refusals) == 2, refusals
    assert f"announced={len(frame)}" in refusals[0]
    assert "budget=2150400" in refusals[0]


async def test_answers_a_publisher_leaves_unread_are_bounded_and_then_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A publisher sends tiny unicasts and stops reading; a subscriber answers each with
    256 KiB. Past the outbox's limit plus ANSWER_OVERFLOW_BYTES, the node queues a short
    3006 refusal instead of the answer, so the publisher costs a bounded amount."""
    overflow = 2 * 1024 * 1024
    monkeypatch.setattr(connection, "ANSWER_OVERFLOW_BYTES", overflow)
    reply = b"r" * (256 * 1024)
    with trio.fail_after(30):
        async with (
            open_node("127.0.0.1:0", request_timeout=20) as node,
            open_amop(node.endpoint) as subscriber,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(partial(serve_replies, subscriber, "big", answer=lambda _m: reply))
            raw = await RawWs.open(node.port)
            await raw.handshake()
            request = pack_frame(AMOP_REQUEST, new_seq(), pack_body("big", b"x"))
            await raw.stream.send_all(masked(request) * 60)  # and never reads again
            session = max(node.hub.sessions.values(), key=lambda s: s.id)
            await wait_until(lambda: node.stats.unicasts >= 60 and session.requests == 0)
            assert session._queued_bytes <= connection.DEFAULT_OUTBOX_BYTES + overflow
            assert node.statistics().answers_dropped > 0
            await trio.aclose_forcefully(raw.stream)
            nursery.cancel_scope.cancel()
