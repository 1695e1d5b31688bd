"""Dead connections are found by ping, and a blocked connection holds senders back."""

from functools import partial

import pytest
import trio
import trio.testing

from amop_trio import AmopClient, AmopTimeoutError, ConnectionLostError, Node, open_amop

from .conftest import serve_replies
from .proxy import open_proxy


async def test_a_silent_node_is_declared_dead_by_ping_and_requests_fail_fast(
    node: Node, subscriber: AmopClient
) -> None:
    with trio.fail_after(15):
        async with (
            open_proxy(node.port) as proxy,
            subscriber.subscribe("slow") as sub,
            open_amop(proxy.endpoint, ping_interval=0.3, ping_timeout=0.3, timeout=30) as client,
        ):
            assert client.connected
            proxy.freeze()
            start = trio.current_time()
            try:
                await client.publish("slow", b"x")
            except ConnectionLostError:
                pass
            else:
                raise AssertionError("publish through a frozen link must fail")
            # Detected within one ping interval plus one ping timeout, with slack.
            assert trio.current_time() - start < 1.5
            assert sub.statistics().queued <= 1


async def test_a_blocked_connection_makes_senders_wait_instead_of_queueing(node: Node) -> None:
    with trio.fail_after(15):
        async with (
            open_proxy(node.port) as proxy,
            open_amop(proxy.endpoint, ping_interval=30, outbox_size=4) as client,
        ):
            proxy.freeze()
            sent = 0

            async def flood() -> None:
                nonlocal sent
                while True:
                    await client.broadcast("t", b"x" * 65536)
                    sent += 1

            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    nursery.start_soon(flood)
                await trio.testing.wait_all_tasks_blocked(0.2)  # until nothing moves any more
                # Nothing is acknowledged through a frozen link, and what is buffered
                # stays bounded by the outbox, not by the number of senders.
                assert sent == 0
                assert client._supervisor.uplink is not None
                assert client._supervisor.uplink.outbox_used() <= 4
                nursery.cancel_scope.cancel()


async def test_a_publish_timing_out_midframe_leaves_the_frame_whole_and_the_link_usable(
    node: Node, subscriber: AmopClient
) -> None:
    """The timeout ends the wait, not the write: no half frame is left on the wire."""
    with trio.fail_after(30):
        async with (
            open_proxy(node.port) as proxy,
            open_amop(proxy.endpoint, ping_interval=30) as client,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(
                partial(serve_replies, subscriber, "big", answer=lambda m: m.data[:4])
            )
            proxy.freeze()
            with pytest.raises(AmopTimeoutError):
                await client.publish("big", b"x" * (8 << 20), timeout=0.5)
            proxy.thaw()
            assert await client.publish("big", b"abcdef", timeout=10) == b"abcd"
            assert client.reconnects == 0
            nursery.cancel_scope.cancel()


async def test_by_default_a_frozen_node_is_left_within_about_two_seconds(
    node: Node, subscriber: AmopClient
) -> None:
    """As fast as nodes notice a dead neighbour; the application hears of it too."""
    with trio.fail_after(15):
        async with (
            open_proxy(node.port) as proxy,
            subscriber.subscribe("slow"),
            open_amop(proxy.endpoint, timeout=30, reconnect=False) as client,
        ):
            await client.wait_connected()
            proxy.freeze()
            start = trio.current_time()
            with pytest.raises(ConnectionLostError):
                await client.publish("slow", b"x")
            assert trio.current_time() - start < 3.0
            await client.wait_disconnected()
            assert not client.connected
