"""Mixed generations: 2.x channel clients and ws clients on linked nodes, and on one port.

``open_amop("channel://…")`` speaks the 2.x channel protocol, ``open_amop
("host:port")`` ws; both connect to the same SDK port of an amop_trio node,
and every message crosses from one generation to the other, within a node and
between two linked in-process nodes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio

from amop_trio import (
    AmopClient,
    AmopTimeoutError,
    EncodeError,
    MessageKind,
    Node,
    NoSubscriberError,
    open_amop,
    open_node,
)
from amop_trio._node.channel_service import ChannelSession
from amop_trio._security.keys import generate_private_key

PRIVATE = "secret"
PRIVATE_WIRE = "#!$TopicNeedVerify_secret"
TIMEOUT = 15


@asynccontextmanager
async def two_nodes() -> AsyncIterator[tuple[Node, Node]]:
    async with (
        open_node("127.0.0.1:0", p2p_listen="127.0.0.1:0") as node0,
        open_node("127.0.0.1:0", p2p_listen="127.0.0.1:0", peers=[node0.p2p_endpoint]) as node1,
    ):
        yield node0, node1


def channel(node: Node) -> str:
    return f"channel://{node.endpoint}"


async def serve(
    client: AmopClient,
    topic: str,
    name: str,
    seen: Counter[Any],
    *,
    private_key: Any = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Subscribe; count messages by kind and data; answer unicasts with ``name`` + data."""
    async with client.subscribe(topic, private_key=private_key) as sub:
        task_status.started()
        async for msg in sub:
            assert msg.topic == topic
            seen[msg.kind, msg.data] += 1
            if msg.kind is MessageKind.UNICAST:
                await msg.reply(name.encode() + b":" + msg.data)


async def until(predicate: Any) -> None:
    while not predicate():
        await trio.sleep(0.01)


async def exchange(
    publisher: AmopClient, subscriber: AmopClient, pub_node: Node, topic: str, name: str
) -> None:
    """Unicast with reply and multicast from ``publisher`` to ``subscriber`` on ``topic``."""
    seen: Counter[Any] = Counter()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve, subscriber, topic, name, seen)
        if pub_node.hub.subscriber_count(topic) == 0:
            await pub_node.network.wait_subscribed(topic)
        assert await publisher.publish(topic, b"u1") == name.encode() + b":u1"
        assert await publisher.publish(topic, b"u2") == name.encode() + b":u2"
        await publisher.broadcast(topic, b"m")
        await until(lambda: seen[MessageKind.MULTICAST, b"m"] == 1)
        assert seen == Counter(
            {
                (MessageKind.UNICAST, b"u1"): 1,
                (MessageKind.UNICAST, b"u2"): 1,
                (MessageKind.MULTICAST, b"m"): 1,
            }
        )
        nursery.cancel_scope.cancel()


async def test_unicast_and_multicast_across_nodes_in_both_directions() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            two_nodes() as (node0, node1),
            open_amop(channel(node0)) as old,
            open_amop(node1.endpoint) as new,
        ):
            await exchange(old, new, node0, "to-ws", "ws")
            await exchange(new, old, node1, "to-channel", "channel")
            with pytest.raises(NoSubscriberError):
                await old.publish("nobody", b"x")


async def test_ws_and_channel_clients_share_one_sdk_port() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_node("127.0.0.1:0") as node,
            open_amop(channel(node)) as old,
            open_amop(node.endpoint) as new,
        ):
            protocols = sorted(type(s).__name__ for s in node.sessions.values())
            assert protocols == ["ChannelSession", "Session"]
            await exchange(old, new, node, "here", "ws")
            await exchange(new, old, node, "there", "channel")
            # A multicast reaches both generations at once.
            seen: Counter[Any] = Counter()
            async with trio.open_nursery() as nursery:
                await nursery.start(serve, old, "both", "channel", seen)
                await nursery.start(serve, new, "both", "ws", seen)
                await new.broadcast("both", b"all")
                await until(lambda: seen[MessageKind.MULTICAST, b"all"] == 2)
                nursery.cancel_scope.cancel()
            status = await old.node_status()  # amop_trio's own query works over channel
            assert status["nodeId"] == node.node_id


@pytest.mark.parametrize(("publisher_on", "subscriber_on"), [("channel", "ws"), ("ws", "channel")])
async def test_private_topics_across_generations(publisher_on: str, subscriber_on: str) -> None:
    approved, stranger_key = generate_private_key(), generate_private_key()
    with trio.fail_after(TIMEOUT):
        async with two_nodes() as (node0, node1):

            def endpoint(kind: str, node: Node) -> str:
                return channel(node) if kind == "channel" else node.endpoint

            async with (
                open_amop(endpoint(publisher_on, node0)) as publisher,
                open_amop(endpoint(subscriber_on, node1)) as subscriber,
                open_amop(endpoint(subscriber_on, node1)) as stranger,
                trio.open_nursery() as nursery,
            ):
                await publisher.declare_private_topic(PRIVATE, [approved.public_key()])
                seen: Counter[Any] = Counter()
                refused: Counter[Any] = Counter()
                await nursery.start(
                    partial(serve, subscriber, PRIVATE, "approved", seen, private_key=approved)
                )
                await nursery.start(
                    partial(serve, stranger, PRIVATE, "stranger", refused, private_key=stranger_key)
                )
                # The publisher's node asked the publisher to challenge both; one passed.
                await until(lambda: len(node1.network.private.allowed(PRIVATE_WIRE) or ()) == 1)
                await node0.network.wait_subscribed(PRIVATE_WIRE)

                for i in range(5):
                    reply = await publisher.publish(PRIVATE, b"%d" % i, private=True)
                    assert reply == b"approved:%d" % i
                await publisher.broadcast(PRIVATE, b"m", private=True)
                await until(lambda: seen[MessageKind.MULTICAST, b"m"] == 1)
                await trio.sleep(0.2)  # time for a wrongly delivered multicast to arrive
                assert refused == Counter(), "a subscriber with a wrong key received something"
                nursery.cancel_scope.cancel()


async def test_channel_topics_longer_than_254_bytes_fail_at_once() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_node("127.0.0.1:0") as node, open_amop(channel(node)) as client:
            with pytest.raises(EncodeError, match="254"):
                client.subscribe("t" * 255)
            with pytest.raises(EncodeError, match="254"):
                await client.publish("t" * 255, b"x")
            with pytest.raises(EncodeError, match="254"):
                await client.declare_private_topic("p" * 230, [generate_private_key().public_key()])
            async with client.subscribe("t" * 254):  # the longest that fits
                assert node.table.topics() == {"t" * 254: 1}
            assert all(isinstance(s, ChannelSession) for s in node.sessions.values())


async def test_2x_result_codes_become_the_same_errors_as_over_ws() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_node("127.0.0.1:0", request_timeout=0.3) as node,
            open_amop(channel(node)) as old,
            open_amop(node.endpoint) as new,
            new.subscribe("silent") as silent,
            trio.open_nursery() as nursery,
        ):

            async def hold_forever() -> None:
                async for _ in silent:
                    await trio.sleep_forever()  # never replies

            nursery.start_soon(hold_forever)
            with pytest.raises(AmopTimeoutError, match="1000"):  # 2.x result 102
                await old.publish("silent", b"x", timeout=5)
            with pytest.raises(NoSubscriberError, match="3001"):  # 2.x result 100
                await old.publish("nobody", b"x")
            nursery.cancel_scope.cancel()
