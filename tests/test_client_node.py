"""Integration tests: real clients (``open_amop``) against a real node (``open_node``).

Everything runs over WebSocket on loopback, with the node listening on a port
the OS picks. Every test body runs under ``trio.fail_after`` so a regression
shows up as a failure, never as a hung test run.
"""

from __future__ import annotations

import collections
import gc
from functools import partial

import pytest
import trio

from amop_trio import (
    AmopClient,
    AmopTimeoutError,
    ConnectError,
    ConnectionLostError,
    FrameTooLargeError,
    Message,
    MessageKind,
    Node,
    NoSubscriberError,
    Subscription,
    open_amop,
    open_node,
)

from .conftest import (
    collector,
    holder,
    open_clients,
    serve_replies,
    start_node,
    wait_until,
)
from .network import free_port
from .proxy import open_proxy

LOOPBACK = "127.0.0.1:0"


# -- helpers ------------------------------------------------------------------


def answer_with(name: bytes, _msg: Message) -> bytes:
    return name


async def publish_until_answered(
    client: AmopClient, topic: str, data: bytes, *, deadline: float
) -> bytes:
    """Publish, retrying while nobody (yet) subscribes or the reply is lost."""
    with trio.fail_after(deadline):
        while True:
            try:
                return await client.publish(topic, data, timeout=1)
            except (NoSubscriberError, AmopTimeoutError, ConnectionLostError):
                await trio.sleep(0.05)


# -- 1. unicast load spreading ----------------------------------------------------


async def test_unicast_spreads_over_three_subscribers(node: Node, publisher: AmopClient) -> None:
    with trio.fail_after(20):
        async with open_clients(node.endpoint, 3) as subscribers:
            names = [b"sub-a", b"sub-b", b"sub-c"]
            seen: dict[bytes, list[Message]] = {name: [] for name in names}
            async with trio.open_nursery() as nursery:
                for client, name in zip(subscribers, names, strict=True):
                    await nursery.start(
                        partial(
                            serve_replies,
                            client,
                            "spread",
                            answer=partial(answer_with, name),
                            log=seen[name],
                        )
                    )
                assert len(node.table.subscribers("spread")) == 3

                replies: collections.Counter[bytes] = collections.Counter()
                for i in range(300):
                    replies[await publisher.publish("spread", f"m{i}", timeout=2)] += 1
                nursery.cancel_scope.cancel()

            assert sum(replies.values()) == 300
            assert set(replies) == set(names)
            for name in names:
                assert 60 <= replies[name] <= 141, replies
                # The subscriber that answered is the one that received it, once each.
                assert len(seen[name]) == replies[name]
            received = sorted(m.data for name in names for m in seen[name])
            assert received == sorted(f"m{i}".encode() for i in range(300))


# -- 2. multicast fan-out ---------------------------------------------------------


async def test_multicast_reaches_every_subscriber_exactly_once(
    node: Node, publisher: AmopClient
) -> None:
    with trio.fail_after(15):
        async with open_clients(node.endpoint, 5) as subscribers:
            got: list[list[tuple[MessageKind, bytes]]] = [[] for _ in subscribers]
            async with trio.open_nursery() as nursery:
                for client, log in zip(subscribers, got, strict=True):
                    await nursery.start(collector, client, "news", log)
                assert len(node.table.subscribers("news")) == 5

                sent = [f"bulletin {i}".encode() for i in range(20)]
                for data in sent:
                    await publisher.broadcast("news", data)
                # A duplicate would be queued before the marker sent after everything.
                await publisher.broadcast("news", b"marker")
                await wait_until(
                    lambda: all((MessageKind.MULTICAST, b"marker") in log for log in got)
                )
                nursery.cancel_scope.cancel()

            expected = [(MessageKind.MULTICAST, data) for data in [*sent, b"marker"]]
            for log in got:
                assert log == expected


# -- 3. no subscriber -------------------------------------------------------------


async def test_publish_without_subscriber_raises_no_subscriber_3001(publisher: AmopClient) -> None:
    with trio.fail_after(10):
        with pytest.raises(NoSubscriberError) as info:
            await publisher.publish("nobody-listens", b"hello?", timeout=2)
        assert info.value.status == 3001


# -- 4. timeouts ------------------------------------------------------------------


@pytest.mark.node(request_timeout=0.5)
async def test_node_request_timeout_raises_amop_timeout(
    subscriber: AmopClient, publisher: AmopClient
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            received = trio.Event()
            await nursery.start(holder, subscriber, "slowpoke", received)

            start = trio.current_time()
            with pytest.raises(AmopTimeoutError):
                await publisher.publish("slowpoke", b"anyone?", timeout=5)
            elapsed = trio.current_time() - start
            assert received.is_set()
            # The node's 0.5 s deadline fired, not the client's 5 s one.
            assert 0.4 <= elapsed < 3, elapsed
            nursery.cancel_scope.cancel()


@pytest.mark.node(request_timeout=10)
async def test_client_side_timeout_raises_amop_timeout(
    subscriber: AmopClient, publisher: AmopClient
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            received = trio.Event()
            await nursery.start(holder, subscriber, "slowpoke", received)

            start = trio.current_time()
            with pytest.raises(AmopTimeoutError):
                await publisher.publish("slowpoke", b"anyone?", timeout=0.3)
            elapsed = trio.current_time() - start
            assert received.is_set()
            assert 0.25 <= elapsed < 2, elapsed
            nursery.cancel_scope.cancel()


# -- 5. concurrency -----------------------------------------------------------------


async def test_concurrent_publishes_each_get_their_own_reply(
    subscriber: AmopClient, publisher: AmopClient
) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as servers:
            await servers.start(serve_replies, subscriber, "echo")
            replies: dict[int, bytes] = {}

            async def one(i: int) -> None:
                replies[i] = await publisher.publish("echo", f"request #{i}", timeout=10)

            async with trio.open_nursery() as nursery:
                for i in range(200):
                    nursery.start_soon(one, i)

            assert len(replies) == 200
            for i, reply in replies.items():
                assert reply == f"request #{i}".encode()
            servers.cancel_scope.cancel()


# -- 6. unsubscribe ----------------------------------------------------------------


async def test_unsubscribe_stops_delivery(node: Node, publisher: AmopClient) -> None:
    with trio.fail_after(15):
        async with open_clients(node.endpoint, 2) as (client_a, client_b):
            async with trio.open_nursery() as servers:
                await servers.start(
                    partial(serve_replies, client_b, "work", answer=lambda _m: b"B")
                )
                async with client_a.subscribe("work") as sub_a, trio.open_nursery() as a_server:

                    async def serve_a() -> None:
                        async for msg in sub_a:
                            await msg.reply(b"A")

                    a_server.start_soon(serve_a)
                    assert len(node.table.subscribers("work")) == 2
                    # Both answer while both subscribe (all-B has odds of 2**-40).
                    before = {await publisher.publish("work", b"x", timeout=2) for _ in range(40)}
                    assert before == {b"A", b"B"}
                    a_server.cancel_scope.cancel()

                # A left its ``async with``: the node knows before it returned.
                assert len(node.table.subscribers("work")) == 1
                after = [await publisher.publish("work", b"y", timeout=2) for _ in range(20)]
                assert after == [b"B"] * 20
                servers.cancel_scope.cancel()

            # Only A subscribes, then unsubscribes: nobody is left.
            async with client_a.subscribe("solo"):
                assert len(node.table.subscribers("solo")) == 1
            assert node.table.subscribers("solo") == []
            with pytest.raises(NoSubscriberError) as info:
                await publisher.publish("solo", b"z", timeout=2)
            assert info.value.status in (3001, 3002)


# -- 7. unanswered unicast ------------------------------------------------------------


async def test_unanswered_unicast_gets_empty_reply_when_app_moves_on(
    subscriber: AmopClient, publisher: AmopClient
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            got: list[tuple[MessageKind, bytes]] = []
            await nursery.start(collector, subscriber, "ignored", got)

            start = trio.current_time()
            assert await publisher.publish("ignored", b"first", timeout=5) == b""
            assert await publisher.publish("ignored", b"second", timeout=5) == b""
            # Answered as soon as the loop came round, not by some timeout.
            assert trio.current_time() - start < 2
            assert got == [(MessageKind.UNICAST, b"first"), (MessageKind.UNICAST, b"second")]
            nursery.cancel_scope.cancel()


# -- 8. node restart ---------------------------------------------------------------


async def test_subscriber_survives_node_restart_on_same_port() -> None:
    with trio.fail_after(25):
        async with trio.open_nursery() as nursery:
            first = await start_node(nursery)
            port = first.node.port
            assert port != 0
            async with open_amop(first.node.endpoint, ping_interval=1) as sub_client:
                log: list[Message] = []
                loop_ended = trio.Event()

                async def subscriber(*, task_status: trio.TaskStatus[Subscription]) -> None:
                    try:
                        await serve_replies(
                            sub_client, "durable", b"ack ", log=log, task_status=task_status
                        )
                    finally:
                        loop_ended.set()

                async with trio.open_nursery() as sub_nursery:
                    await sub_nursery.start(subscriber)
                    async with open_amop(first.node.endpoint) as publisher:
                        assert await publisher.publish("durable", b"before", timeout=2) == (
                            b"ack before"
                        )

                    await first.stop()
                    await wait_until(lambda: not sub_client.connected)
                    assert not loop_ended.is_set()

                    async with (
                        open_node(f"127.0.0.1:{port}") as second,
                        open_amop(second.endpoint) as publisher,
                    ):
                        assert second.port == port
                        reply = await publish_until_answered(
                            publisher, "durable", b"after", deadline=10
                        )
                        assert reply == b"ack after"
                        assert sub_client.reconnects >= 1
                        assert not loop_ended.is_set()
                        assert log[0].data == b"before"
                        assert log[-1].data == b"after"
                        sub_nursery.cancel_scope.cancel()
            nursery.cancel_scope.cancel()


# -- 9. connection lost -------------------------------------------------------------


async def test_in_flight_publish_fails_fast_when_node_goes_away() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            background = await start_node(nursery)
            endpoint = background.node.endpoint
            async with (
                open_amop(endpoint) as sub_client,
                open_amop(endpoint) as publisher,
                trio.open_nursery() as inner,
            ):
                received = trio.Event()
                await inner.start(holder, sub_client, "doomed", received)

                async def stop_node_once_delivered() -> None:
                    await received.wait()
                    await background.stop()

                inner.start_soon(stop_node_once_delivered)
                start = trio.current_time()
                with pytest.raises(ConnectionLostError):
                    await publisher.publish("doomed", b"last words", timeout=10)
                elapsed = trio.current_time() - start
                assert received.is_set()
                assert elapsed < 3, elapsed
                inner.cancel_scope.cancel()
            nursery.cancel_scope.cancel()


async def test_a_subscriber_cut_off_midrequest_has_its_unicast_go_to_another(
    node: Node, publisher: AmopClient
) -> None:
    """The node notices the chosen subscriber's connection die and tries the next one."""
    with trio.fail_after(20):
        async with (
            open_proxy(node.port) as proxy,
            open_amop(proxy.endpoint, ping_interval=30) as doomed,
            open_amop(node.endpoint) as healthy,
            trio.open_nursery() as servers,
        ):
            received = trio.Event()
            await servers.start(holder, doomed, "handover", received)
            await servers.start(
                partial(serve_replies, healthy, "handover", answer=lambda _m: b"healthy")
            )
            await wait_until(lambda: len(node.table.subscribers("handover")) == 2)

            async def cut_once_delivered() -> None:
                await received.wait()
                proxy.sever()

            servers.start_soon(cut_once_delivered)
            replies = []
            while not received.is_set():  # the node picks at random: until the doomed one got one
                replies.append(await publisher.publish("handover", b"q", timeout=5))
            assert set(replies) == {b"healthy"}
            assert node.statistics().unicasts == len(replies)
            servers.cancel_scope.cancel()


# -- 10. unreachable endpoint ---------------------------------------------------------


async def test_open_amop_to_closed_port_raises_connect_error() -> None:
    with trio.fail_after(10):
        port = free_port()
        with pytest.raises(ConnectError) as info:
            async with open_amop(f"127.0.0.1:{port}", connect_timeout=3):
                pytest.fail("connected to a port nobody listens on")
        assert not isinstance(info.value, BaseExceptionGroup)
        assert type(info.value) is ConnectError


# -- 11. bare subscription form ---------------------------------------------------------


async def test_bare_async_for_unsubscribes_after_break(
    node: Node, subscriber: AmopClient, publisher: AmopClient
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            replies: list[bytes] = []

            async def publish_once_subscribed() -> None:
                await wait_until(lambda: bool(node.table.subscribers("bare")))
                replies.append(await publisher.publish("bare", b"ping", timeout=3))

            nursery.start_soon(publish_once_subscribed)
            seen: list[bytes] = []
            async for msg in subscriber.subscribe("bare"):
                seen.append(msg.data)
                await msg.reply(b"pong")
                break
            await wait_until(lambda: bool(replies))
            assert seen == [b"ping"]
            assert replies == [b"pong"]

            # After the break nothing holds the subscription: the topic is dropped.
            await wait_until(lambda: node.table.subscribers("bare") == [], within=3)
            assert "bare" not in subscriber.topics
            with pytest.raises(NoSubscriberError):
                await publisher.publish("bare", b"ping again", timeout=2)


async def test_a_forgotten_subscription_unsubscribes_from_the_loop_not_its_finalizer(
    node: Node, subscriber: AmopClient
) -> None:
    """The finalizer only hands the work to the loop: nothing runs inside the collector."""
    with trio.fail_after(10):
        sub = subscriber.subscribe("forgotten")
        await sub.open()
        assert node.table.subscribers("forgotten")
        del sub
        gc.collect()
        assert "forgotten" in subscriber.topics  # nothing happened inside the collector
        await wait_until(lambda: node.table.subscribers("forgotten") == [], within=3)
        assert "forgotten" not in subscriber.topics


async def test_a_message_over_the_frame_limit_fails_at_once_and_the_connection_stays(
    node: Node, subscriber: AmopClient
) -> None:
    limit = 64 * 1024
    with trio.fail_after(10):
        async with (
            open_amop(node.endpoint, max_frame_size=limit) as publisher,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(partial(serve_replies, subscriber, "big", answer=lambda _m: b"ok"))
            for send in (publisher.publish, publisher.broadcast):
                with pytest.raises(FrameTooLargeError, match="nothing was sent"):
                    await send("big", b"x" * limit)
            assert await publisher.publish("big", b"x" * (limit - 100)) == b"ok"
            assert publisher.reconnects == 0
            assert node.statistics().unicasts == 1
            nursery.cancel_scope.cancel()


# -- 12. slow subscriber ------------------------------------------------------------


async def test_slow_subscriber_does_not_block_others(
    node: Node, subscriber: AmopClient, publisher: AmopClient
) -> None:
    with trio.fail_after(20):
        async with (
            open_amop(node.endpoint) as flooder,
            subscriber.subscribe("slow", buffer=2) as slow,
            trio.open_nursery() as servers,
        ):
            # The healthy subscriber shares the slow one's connection.
            await servers.start(serve_replies, subscriber, "fast")
            assert node.table.subscribers("slow")
            assert node.table.subscribers("fast")

            flood_seconds: list[float] = []

            async def flood() -> None:
                start = trio.current_time()
                for i in range(1000):
                    await flooder.broadcast("slow", f"flood {i}", timeout=5)
                flood_seconds.append(trio.current_time() - start)

            unicast_replies: list[bytes] = []

            async def ping_fast_while_flooding() -> None:
                for i in range(20):
                    unicast_replies.append(await publisher.publish("fast", f"u{i}", timeout=2))
                    await trio.sleep(0.01)

            async with trio.open_nursery() as work:
                work.start_soon(flood)
                work.start_soon(ping_fast_while_flooding)

            assert len(flood_seconds) == 1
            assert flood_seconds[0] < 10, flood_seconds
            assert unicast_replies == [f"u{i}".encode() for i in range(20)]
            # Still healthy after the flood too.
            assert await publisher.publish("fast", b"after", timeout=2) == b"after"

            stats = slow.statistics()
            assert stats.queued <= 2
            assert stats.dropped > 0 or node.statistics().multicast_dropped > 0, (
                stats,
                node.statistics(),
            )
            servers.cancel_scope.cancel()
