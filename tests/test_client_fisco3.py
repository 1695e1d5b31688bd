"""The client against a node that behaves as a real FISCO BCOS 3.x node does.

``fisco3_standin`` keeps every topic a connection ever subscribed, answers no
multicast, fails unicasts with packet type 0 and negative statuses, relays
multicasts with an empty seq, and has no private topics. The client must
still unsubscribe for real, never let a private topic go public, and raise
the right errors.
"""

from __future__ import annotations

from collections import Counter

import pytest
import trio

from amop_trio import (
    AmopTimeoutError,
    MessageKind,
    NoSubscriberError,
    NotSupportedError,
    open_amop,
)
from amop_trio._security.keys import generate_private_key

from . import fisco3_standin
from .conftest import serve_replies, wait_until
from .fisco3_standin import open_standin_3x_node

TIMEOUT = 15


async def test_unicast_and_multicast_through_a_3x_node() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_standin_3x_node() as node,
            open_amop(f"ws://{node.endpoint}") as subscriber,
            open_amop(f"ws://{node.endpoint}") as publisher,
            trio.open_nursery() as nursery,
        ):
            seen: Counter[bytes] = Counter()
            await nursery.start(serve_replies, subscriber, "t", b"re:", seen)
            assert await publisher.publish("t", b"1") == b"re:1"
            await publisher.broadcast("t", b"all")  # no answer comes: done once written
            await wait_until(lambda: seen[b"all"] == 1)
            with pytest.raises(NoSubscriberError, match="no node subscribe"):
                await publisher.publish("nobody", b"x")  # a type-0 failure, matched by seq
            assert node.received.count(0x112) == 1
            nursery.cancel_scope.cancel()


async def test_unsubscribing_takes_effect_on_a_node_that_only_adds_topics() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_standin_3x_node() as node,
            open_amop(f"ws://{node.endpoint}") as subscriber,
            open_amop(f"ws://{node.endpoint}") as publisher,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(serve_replies, subscriber, "kept", b"k:")
            async with subscriber.subscribe("dropped"):
                await wait_until(lambda: any("dropped" in t for t in node.topics()))
            # The node cannot drop a topic from a connection: the client moved to a
            # new one without it, and the old one is gone.
            await wait_until(lambda: not any("dropped" in t for t in node.topics()))
            with pytest.raises(NoSubscriberError) as refused:
                await publisher.publish("dropped", b"x")
            assert refused.value.status == 3001  # the node's "nobody", not a client's refusal
            assert await publisher.publish("kept", b"1") == b"k:1"
            nursery.cancel_scope.cancel()


async def test_no_multicast_is_lost_or_repeated_while_unsubscribing() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_standin_3x_node() as node,
            open_amop(f"ws://{node.endpoint}") as subscriber,
            open_amop(f"ws://{node.endpoint}") as publisher,
            subscriber.subscribe("stream") as stream,
        ):
            received: list[bytes] = []
            sent = 0

            async def publish_steadily(*, task_status: trio.TaskStatus[None]) -> None:
                nonlocal sent
                task_status.started()
                while True:
                    await publisher.broadcast("stream", b"%d" % sent)
                    sent += 1
                    await trio.sleep(0.001)

            async def read() -> None:
                async for message in stream:
                    assert message.kind is MessageKind.MULTICAST
                    received.append(message.data)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                async with trio.open_nursery() as publishing:
                    await publishing.start(publish_steadily)
                    await wait_until(lambda: len(received) > 20)
                    for _ in range(3):  # three link changes under a steady stream
                        async with subscriber.subscribe("other"):
                            await wait_until(lambda: any("other" in t for t in node.topics()))
                        await wait_until(lambda: not any("other" in t for t in node.topics()))
                        await trio.sleep(0.05)  # the stream goes on over the new link a while
                    publishing.cancel_scope.cancel()
                # Everything sent before the marker arrives before it.
                await publisher.broadcast("stream", b"-1")
                await wait_until(lambda: b"-1" in received)
                nursery.cancel_scope.cancel()
            numbers = [int(d) for d in received if d != b"-1"]
            assert received[-1] == b"-1"
            assert len(numbers) == len(set(numbers)), "a multicast arrived twice"
            first = numbers[0]
            missing = set(range(first, max(numbers))) - set(numbers)
            assert not missing, f"multicasts lost: {sorted(missing)[:10]}"
            assert max(numbers) >= sent - 1, "the last multicasts were lost"


async def test_private_topics_are_refused_where_the_node_cannot_enforce_them() -> None:
    key = generate_private_key()
    with trio.fail_after(TIMEOUT):
        async with open_standin_3x_node() as node, open_amop(f"ws://{node.endpoint}") as client:
            with pytest.raises(NotSupportedError, match="private topics"):
                async with client.subscribe("secret", private_key=key):
                    pass
            with pytest.raises(NotSupportedError, match="private topics"):
                await client.declare_private_topic("secret", [key.public_key()])
            with pytest.raises(NotSupportedError, match="private topics"):
                await client.publish("secret", b"x", private=True)
            with pytest.raises(NotSupportedError, match="private topics"):
                await client.broadcast("secret", b"x", private=True)
            # Nothing private ever reached the node.
            assert not any(t for topics in node.topics() for t in topics if "#!$" in t)


async def test_a_3x_timeout_status_is_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fisco3_standin, "SUBSCRIBER_TIMEOUT", 0.3)
    with trio.fail_after(TIMEOUT):
        async with (
            open_standin_3x_node() as node,
            open_amop(f"ws://{node.endpoint}") as subscriber,
            open_amop(f"ws://{node.endpoint}") as publisher,
            subscriber.subscribe("silent"),  # holds the message, never answers
        ):
            await wait_until(lambda: any("silent" in t for t in node.topics()))
            with pytest.raises(AmopTimeoutError, match="-4008"):
                await publisher.publish("silent", b"x")
