"""Private topics across two real nodes: only subscribers proving an approved key receive."""

from __future__ import annotations

from collections import Counter

import trio

from amop_trio import AmopError, MessageKind, open_amop, open_node
from amop_trio._security.keys import generate_private_key

TOPIC = "secret"
WIRE = "#!$TopicNeedVerify_secret"


async def collect(client, key, name: str, seen: Counter, *, task_status=trio.TASK_STATUS_IGNORED):
    """Subscribe privately with ``key``; count messages by kind; answer unicasts with ``name``."""
    async with client.subscribe(TOPIC, private_key=key) as sub:
        task_status.started(sub)
        async for msg in sub:
            assert msg.topic == TOPIC
            seen[msg.kind] += 1
            if msg.kind is MessageKind.UNICAST:
                await msg.reply(name)


async def verified_on(node, wire: str, count: int) -> None:
    """Wait until ``node`` has ``count`` verified subscribers of ``wire``."""
    while True:
        allowed = node.network.private.allowed(wire)
        if allowed is not None and len(allowed) == count:
            return
        await trio.sleep(0.02)


async def test_only_approved_subscribers_on_other_nodes_receive() -> None:
    good, bad = generate_private_key(), generate_private_key()
    with trio.fail_after(30):
        async with (
            open_node("127.0.0.1:0", p2p_listen="127.0.0.1:0") as node0,
            open_node("127.0.0.1:0", p2p_listen="127.0.0.1:0", peers=[node0.p2p_endpoint]) as node1,
            open_amop(node0.endpoint) as publisher,
            open_amop(node1.endpoint) as approved_client,
            open_amop(node1.endpoint) as stranger_client,
            trio.open_nursery() as nursery,
        ):
            await publisher.declare_private_topic(TOPIC, [good.public_key()])
            approved, stranger = Counter(), Counter()
            await nursery.start(collect, approved_client, good, "approved", approved)
            await nursery.start(collect, stranger_client, bad, "stranger", stranger)
            await verified_on(node1, WIRE, 1)
            with trio.fail_after(5):
                await node0.network.wait_subscribed(WIRE)

            replies = Counter(
                [await publisher.publish(TOPIC, b"u", private=True) for _ in range(20)]
            )
            assert replies == Counter({b"approved": 20})
            for _ in range(5):
                await publisher.broadcast(TOPIC, b"m", private=True)
            with trio.fail_after(5):
                while approved[MessageKind.MULTICAST] < 5:
                    await trio.sleep(0.02)
            await trio.sleep(0.3)  # time for a wrongly delivered multicast to arrive
            assert stranger == Counter(), "a subscriber with a wrong key received something"
            assert node1.network.private.pending()  # the stranger stays unverified
            nursery.cancel_scope.cancel()


async def test_a_verified_subscriber_that_reconnects_is_verified_again() -> None:
    key = generate_private_key()
    with trio.fail_after(30):
        async with (
            open_node("127.0.0.1:0", p2p_listen="127.0.0.1:0") as node0,
            open_node("127.0.0.1:0", p2p_listen="127.0.0.1:0", peers=[node0.p2p_endpoint]) as node1,
            open_amop(node0.endpoint) as publisher,
            open_amop(node1.endpoint) as sub_client,
            trio.open_nursery() as nursery,
        ):
            await publisher.declare_private_topic(TOPIC, [key.public_key()])
            seen: Counter = Counter()
            await nursery.start(collect, sub_client, key, "me", seen)
            await verified_on(node1, WIRE, 1)
            first = node1.network.private.allowed(WIRE)
            for session in list(node1.sessions.values()):
                session.close("test: drop the subscriber's connection")
            with trio.fail_after(10):
                while sub_client.reconnects < 1:
                    await trio.sleep(0.02)
                await verified_on(node1, WIRE, 1)
            assert node1.network.private.allowed(WIRE) != first  # a new session, verified anew
            with trio.fail_after(10):
                while True:
                    try:
                        assert (
                            await publisher.publish(TOPIC, b"x", private=True, timeout=2) == b"me"
                        )
                        break
                    except AmopError:  # the directory may lag a moment
                        await trio.sleep(0.05)
            nursery.cancel_scope.cancel()


async def test_publisher_and_subscriber_on_one_node_need_no_verification() -> None:
    stranger_key, approved_key = generate_private_key(), generate_private_key()
    with trio.fail_after(20):
        async with (
            open_node("127.0.0.1:0") as node,
            open_amop(node.endpoint) as publisher,
            open_amop(node.endpoint) as sub_client,
            trio.open_nursery() as nursery,
        ):
            await publisher.declare_private_topic(TOPIC, [approved_key.public_key()])
            seen: Counter = Counter()
            await nursery.start(collect, sub_client, stranger_key, "local", seen)
            assert await publisher.publish(TOPIC, b"x", private=True) == b"local"
            nursery.cancel_scope.cancel()
