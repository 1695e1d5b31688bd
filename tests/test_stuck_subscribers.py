"""A subscriber that stops costs only itself; a publisher that gave up is not served later.

A subscriber is "stuck" when the node hears nothing from it (no frame, ping
or pong) for ``NodeLimits.subscriber_timeout`` while it holds a unicast: the
node then gives the unicast to another subscriber and avoids the stuck one.
A slow subscriber that still speaks keeps its unicast. These tests use real
clients over loopback; the stuck client is an ``open_amop`` whose pings are
far apart and whose application never reads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
import trio

from amop_trio import ConnectionLostError, NodeLimits, Subscription, open_amop, open_node
from amop_trio._chain import wait_listening

from .conftest import LOOPBACK, line, open_linked_nodes, serve_replies, wait_until
from .network import free_port

TIMEOUT = 20
QUICK = NodeLimits(subscriber_timeout=0.3)


async def test_a_stuck_subscriber_is_skipped_and_avoided_on_its_node() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_node(LOOPBACK, limits=QUICK) as node,
            open_amop(node.endpoint) as healthy,
            open_amop(node.endpoint, ping_interval=60) as stuck,
            open_amop(node.endpoint) as publisher,
            stuck.subscribe("work") as never_read,
            trio.open_nursery() as nursery,
        ):
            seen: Counter[bytes] = Counter()
            await nursery.start(serve_replies, healthy, "work", b"ok:", seen)
            await wait_until(lambda: len(node.table.subscribers("work")) == 2)
            start = trio.current_time()
            for i in range(20):
                assert await publisher.publish("work", b"%d" % i, timeout=5) == b"ok:%d" % i
            # One unicast at most waited out the stuck subscriber; the rest went round it.
            assert trio.current_time() - start < 2.0
            assert node.statistics().silent_subscribers == 1
            assert (await publisher.node_status())["statistics"]["silentSubscribers"] == 1
            assert never_read.statistics().queued <= 1
            nursery.cancel_scope.cancel()


async def test_a_slow_subscriber_that_still_speaks_keeps_its_unicast() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_node(LOOPBACK, limits=QUICK) as node,
            open_amop(node.endpoint, ping_interval=0.1) as slow,
            open_amop(node.endpoint, ping_interval=0.1) as other,
            open_amop(node.endpoint) as publisher,
            slow.subscribe("work") as slow_sub,
            other.subscribe("work") as other_sub,
        ):
            await wait_until(lambda: len(node.table.subscribers("work")) == 2)
            received: list[str] = []

            async def answer_late(name: str, sub: Subscription) -> None:
                message = await sub.receive()
                received.append(name)
                await trio.sleep(1.0)  # three subscriber timeouts, pinging all along
                await message.reply(b"late")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_late, "slow", slow_sub)
                nursery.start_soon(answer_late, "other", other_sub)
                assert await publisher.publish("work", b"x", timeout=5) == b"late"
                # Had the node taken it back, the other subscriber would have had it at 0.3 s.
                assert len(received) == 1
                nursery.cancel_scope.cancel()
            assert node.statistics().silent_subscribers == 0


async def test_a_stuck_subscriber_on_another_node_costs_the_publisher_nothing_lasting() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_linked_nodes(3, line(3), limits=QUICK) as (far, middle, near),
            open_amop(far.endpoint, ping_interval=60) as stuck,
            open_amop(near.endpoint) as healthy,
            open_amop(middle.endpoint) as publisher,
            stuck.subscribe("work") as never_read,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(serve_replies, healthy, "work", b"ok:")
            await middle.network.wait_subscribed("work", nodes=2)
            for i in range(20):
                assert await publisher.publish("work", b"%d" % i, timeout=5) == b"ok:%d" % i
            # Its node took back what it held and the route went round it: of 20, about 10
            # would have reached it (each waited out) if it were still chosen.
            assert far.statistics().silent_subscribers >= 1
            assert never_read.statistics().queued <= 2
            nursery.cancel_scope.cancel()


async def test_a_request_whose_publisher_gave_up_while_the_node_was_stopped_is_dropped() -> None:
    """SIGSTOP the node: the publisher leaves (connection lost); after SIGCONT the node
    reads the request from a connection already closed, and must not deliver it."""
    endpoint = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(  # noqa: ASYNC220 - started once; SIGSTOP needs its pid at hand
        [sys.executable, "-m", "amop_trio", "node", "--listen", endpoint],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
    )
    try:
        with trio.fail_after(TIMEOUT):
            await wait_listening(endpoint, 15)
            async with (
                # its connection outlives the stop: it pings rarely
                open_amop(endpoint, ping_interval=60) as subscriber,
                subscriber.subscribe("stale") as sub,
            ):
                try:
                    # it gives up on the stopped node after half a second of silence
                    async with open_amop(
                        endpoint, connect_timeout=1, ping_interval=0.2, ping_timeout=0.3
                    ) as publisher:
                        process.send_signal(signal.SIGSTOP)
                        with pytest.raises(ConnectionLostError):
                            await publisher.publish("stale", b"given up", timeout=10)
                    # the publisher is closed: its end of the connection is gone
                finally:
                    process.send_signal(signal.SIGCONT)
                async with open_amop(endpoint) as marker, trio.open_nursery() as nursery:

                    async def answer_first() -> None:
                        message = await sub.receive()
                        await message.reply(message.data)

                    nursery.start_soon(answer_first)
                    # The first message the subscriber gets is the marker, not the request.
                    assert await marker.publish("stale", b"marker", timeout=5) == b"marker"
    finally:
        process.kill()
        process.wait()
