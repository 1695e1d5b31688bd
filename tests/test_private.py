"""Private topics across two real nodes: only subscribers proving an approved key receive."""

from __future__ import annotations

from collections import Counter
from functools import partial

import trio

from amop_trio import AmopClient, AmopError, Message, MessageKind, Node, open_amop
from amop_trio._node.private import RECHALLENGE_AFTER
from amop_trio._security.keys import generate_private_key

from .conftest import line, open_linked_nodes, serve_replies, wait_until

TOPIC = "secret"
WIRE = "#!$TopicNeedVerify_secret"
MARKER = "marker"


def kinds(log: list[Message]) -> Counter[MessageKind]:
    """Messages of ``log`` counted by kind; all of them on the private topic."""
    assert all(msg.topic == TOPIC for msg in log), log
    return Counter(msg.kind for msg in log)


async def verified_on(node: Node, wire: str, count: int, within: float = 10) -> None:
    """Wait until ``node`` has ``count`` verified subscribers of ``wire``."""
    await wait_until(lambda: len(node.network.private.allowed(wire) or ()) == count, within=within)


async def test_only_approved_subscribers_on_other_nodes_receive() -> None:
    good, bad = generate_private_key(), generate_private_key()
    with trio.fail_after(30):
        async with (
            open_linked_nodes(2, line(2)) as (node0, node1),
            open_amop(node0.endpoint) as publisher,
            open_amop(node1.endpoint) as approved_client,
            open_amop(node1.endpoint) as stranger_client,
            trio.open_nursery() as nursery,
        ):
            await publisher.declare_private_topic(TOPIC, [good.public_key()])
            approved: list[Message] = []
            stranger: list[Message] = []
            marks: list[Message] = []
            await nursery.start(
                partial(
                    serve_replies,
                    approved_client,
                    TOPIC,
                    log=approved,
                    private_key=good,
                    answer=lambda _m: b"approved",
                )
            )
            await nursery.start(
                partial(
                    serve_replies,
                    stranger_client,
                    TOPIC,
                    log=stranger,
                    private_key=bad,
                    answer=lambda _m: b"stranger",
                )
            )
            await nursery.start(partial(serve_replies, stranger_client, MARKER, log=marks))
            await verified_on(node1, WIRE, 1)
            with trio.fail_after(5):
                await node0.network.wait_subscribed(WIRE)
                await node0.network.wait_subscribed(MARKER)

            replies = Counter(
                [await publisher.publish(TOPIC, b"u", private=True) for _ in range(20)]
            )
            assert replies == Counter({b"approved": 20})
            for _ in range(5):
                await publisher.broadcast(TOPIC, b"m", private=True)
            await wait_until(lambda: kinds(approved)[MessageKind.MULTICAST] == 5)
            # node1 sends the stranger a public marker after anything of the private
            # multicasts: once the marker is in, nothing else is coming.
            await publisher.broadcast(MARKER, b"marker")
            await wait_until(lambda: [m.data for m in marks] == [b"marker"])
            assert stranger == [], "a subscriber with a wrong key received something"
            assert node1.network.private.pending()  # the stranger stays unverified
            nursery.cancel_scope.cancel()


async def test_a_verified_subscriber_that_reconnects_is_verified_again() -> None:
    key = generate_private_key()
    with trio.fail_after(30):
        async with (
            open_linked_nodes(2, line(2)) as (node0, node1),
            open_amop(node0.endpoint) as publisher,
            open_amop(node1.endpoint) as sub_client,
            trio.open_nursery() as nursery,
        ):
            await publisher.declare_private_topic(TOPIC, [key.public_key()])
            await nursery.start(
                partial(serve_replies, sub_client, TOPIC, private_key=key, answer=lambda _m: b"me")
            )
            await verified_on(node1, WIRE, 1)
            first = node1.network.private.allowed(WIRE)
            # The publisher's node has the verdict and no challenge pending any more: the
            # reconnected subscriber's challenge is a new one, pushed at once (not a repeat
            # of the old one, which waits RECHALLENGE_AFTER).
            await wait_until(lambda: not node0.network.private.challenged())
            for session in list(node1.sessions.values()):
                session.close("test: drop the subscriber's connection")
            await wait_until(lambda: sub_client.reconnects >= 1, within=10)
            await verified_on(node1, WIRE, 1, within=RECHALLENGE_AFTER / 2)
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


async def test_publisher_and_subscriber_on_one_node_need_no_verification(
    publisher: AmopClient, subscriber: AmopClient
) -> None:
    stranger_key, approved_key = generate_private_key(), generate_private_key()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await publisher.declare_private_topic(TOPIC, [approved_key.public_key()])
            await nursery.start(
                partial(
                    serve_replies,
                    subscriber,
                    TOPIC,
                    private_key=stranger_key,
                    answer=lambda _m: b"local",
                )
            )
            assert await publisher.publish(TOPIC, b"x", private=True) == b"local"
            nursery.cancel_scope.cancel()
