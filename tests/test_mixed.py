"""Mixed generations: 2.x channel clients and ws clients on linked nodes, and on one port.

``open_amop("channel://…")`` speaks the 2.x channel protocol, ``open_amop
("host:port")`` ws; both connect to the same SDK port of an amop_trio node,
and every message crosses from one generation to the other, within a node and
between two linked in-process nodes.
"""

from __future__ import annotations

from collections import Counter
from functools import partial

import pytest
import trio

from amop_trio import (
    AmopClient,
    AmopTimeoutError,
    EncodeError,
    Message,
    MessageKind,
    Node,
    NoSubscriberError,
    open_amop,
)
from amop_trio._node.channel_service import ChannelSession
from amop_trio._security.keys import generate_private_key

from .conftest import holder, line, open_linked_nodes, serve_replies, wait_until

PRIVATE = "secret"
PRIVATE_WIRE = "#!$TopicNeedVerify_secret"
MARKER = "marker"
TIMEOUT = 15


def channel(node: Node) -> str:
    return f"channel://{node.endpoint}"


def tally(log: list[Message], topic: str) -> Counter[tuple[MessageKind, bytes]]:
    """Messages of ``log`` counted by kind and data; all of them on ``topic``."""
    assert all(msg.topic == topic for msg in log), log
    return Counter((msg.kind, msg.data) for msg in log)


async def exchange(
    publisher: AmopClient, subscriber: AmopClient, pub_node: Node, topic: str, name: str
) -> None:
    """Unicast with reply and multicast from ``publisher`` to ``subscriber`` on ``topic``."""
    log: list[Message] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_replies, subscriber, topic, f"{name}:".encode(), log=log))
        if pub_node.hub.subscriber_count(topic) == 0:
            await pub_node.network.wait_subscribed(topic)
        assert await publisher.publish(topic, b"u1") == name.encode() + b":u1"
        assert await publisher.publish(topic, b"u2") == name.encode() + b":u2"
        await publisher.broadcast(topic, b"m")
        await wait_until(lambda: tally(log, topic)[MessageKind.MULTICAST, b"m"] == 1)
        assert tally(log, topic) == Counter(
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
            open_linked_nodes(2, line(2)) as (node0, node1),
            open_amop(channel(node0)) as old,
            open_amop(node1.endpoint) as new,
        ):
            await exchange(old, new, node0, "to-ws", "ws")
            await exchange(new, old, node1, "to-channel", "channel")
            with pytest.raises(NoSubscriberError):
                await old.publish("nobody", b"x")


async def test_ws_and_channel_clients_share_one_sdk_port(node: Node, publisher: AmopClient) -> None:
    new = publisher
    with trio.fail_after(TIMEOUT):
        async with open_amop(channel(node)) as old:
            protocols = sorted(type(s).__name__ for s in node.sessions.values())
            assert protocols == ["ChannelSession", "Session"]
            await exchange(old, new, node, "here", "ws")
            await exchange(new, old, node, "there", "channel")
            # A multicast reaches both generations at once.
            log: list[Message] = []
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(serve_replies, old, "both", b"channel:", log=log))
                await nursery.start(partial(serve_replies, new, "both", b"ws:", log=log))
                await new.broadcast("both", b"all")
                await wait_until(lambda: tally(log, "both")[MessageKind.MULTICAST, b"all"] == 2)
                nursery.cancel_scope.cancel()
            status = await old.node_status()  # amop_trio's own query works over channel
            assert status["nodeId"] == node.node_id


@pytest.mark.parametrize(("publisher_on", "subscriber_on"), [("channel", "ws"), ("ws", "channel")])
async def test_private_topics_across_generations(publisher_on: str, subscriber_on: str) -> None:
    approved, stranger_key = generate_private_key(), generate_private_key()
    with trio.fail_after(TIMEOUT):
        async with open_linked_nodes(2, line(2)) as (node0, node1):

            def endpoint(kind: str, node: Node) -> str:
                return channel(node) if kind == "channel" else node.endpoint

            async with (
                open_amop(endpoint(publisher_on, node0)) as publisher,
                open_amop(endpoint(subscriber_on, node1)) as subscriber,
                open_amop(endpoint(subscriber_on, node1)) as stranger,
                trio.open_nursery() as nursery,
            ):
                await publisher.declare_private_topic(PRIVATE, [approved.public_key()])
                seen: list[Message] = []
                refused: list[Message] = []
                marks: list[Message] = []
                await nursery.start(
                    partial(
                        serve_replies,
                        subscriber,
                        PRIVATE,
                        b"approved:",
                        log=seen,
                        private_key=approved,
                    )
                )
                await nursery.start(
                    partial(
                        serve_replies,
                        stranger,
                        PRIVATE,
                        b"stranger:",
                        log=refused,
                        private_key=stranger_key,
                    )
                )
                await nursery.start(partial(serve_replies, stranger, MARKER, log=marks))
                await node0.network.wait_subscribed(MARKER)
                # The publisher's node asked the publisher to challenge both; one passed.
                await wait_until(
                    lambda: len(node1.network.private.allowed(PRIVATE_WIRE) or ()) == 1
                )
                await node0.network.wait_subscribed(PRIVATE_WIRE)

                for i in range(5):
                    reply = await publisher.publish(PRIVATE, b"%d" % i, private=True)
                    assert reply == b"approved:%d" % i
                await publisher.broadcast(PRIVATE, b"m", private=True)
                await wait_until(lambda: tally(seen, PRIVATE)[MessageKind.MULTICAST, b"m"] == 1)
                # The stranger's node sends it a public marker after anything of the
                # private multicast: once the marker is in, nothing else is coming.
                await publisher.broadcast(MARKER, b"marker")
                await wait_until(
                    lambda: tally(marks, MARKER)[MessageKind.MULTICAST, b"marker"] == 1
                )
                assert refused == [], "a subscriber with a wrong key received something"
                nursery.cancel_scope.cancel()


async def test_channel_topics_longer_than_254_bytes_fail_at_once(node: Node) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_amop(channel(node)) as client:
            with pytest.raises(EncodeError, match="254"):
                client.subscribe("t" * 255)
            with pytest.raises(EncodeError, match="254"):
                await client.publish("t" * 255, b"x")
            with pytest.raises(EncodeError, match="254"):
                await client.declare_private_topic("p" * 230, [generate_private_key().public_key()])
            async with client.subscribe("t" * 254):  # the longest that fits
                assert node.table.topics() == {"t" * 254: 1}
            assert all(isinstance(s, ChannelSession) for s in node.sessions.values())


@pytest.mark.node(request_timeout=0.3)
async def test_2x_result_codes_become_the_same_errors_as_over_ws(
    node: Node, subscriber: AmopClient
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_amop(channel(node)) as old, trio.open_nursery() as nursery:
            await nursery.start(holder, subscriber, "silent")  # never replies
            with pytest.raises(AmopTimeoutError, match="1000"):  # 2.x result 102
                await old.publish("silent", b"x", timeout=5)
            with pytest.raises(NoSubscriberError, match="3001"):  # 2.x result 100
                await old.publish("nobody", b"x")
            nursery.cancel_scope.cancel()
