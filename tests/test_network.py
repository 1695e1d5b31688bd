"""Several real node processes linked in a network: routing, failures, exactly-once."""

from __future__ import annotations

import signal
from collections import Counter

import pytest
import trio

from amop_trio import AmopError, MessageKind, NoSubscriberError, open_amop

from .conftest import open_clients, serve_replies, wait_until
from .network import line, mesh, ring, running_network, wait_for_topic


async def test_line_of_four_carries_unicast_and_multicast_end_to_end() -> None:
    with trio.fail_after(40):
        async with running_network("ABCD", line("ABCD")) as net:
            async with (
                open_amop(net["D"].endpoint) as sub_client,
                open_amop(net["A"].endpoint) as pub,
                sub_client.subscribe("far") as sub,
            ):
                await wait_for_topic(net["A"].endpoint, "far")
                async with trio.open_nursery() as nursery:

                    async def answer() -> None:
                        msg = await sub.receive()
                        assert msg.kind is MessageKind.UNICAST
                        await msg.reply(b"from D: " + msg.data)
                        msg = await sub.receive()
                        assert (msg.kind, msg.data) == (MessageKind.MULTICAST, b"to all")

                    nursery.start_soon(answer)
                    assert await pub.publish("far", b"ping", timeout=5) == b"from D: ping"
                    await pub.broadcast("far", b"to all")


async def test_ring_keeps_flowing_when_a_node_on_the_path_stops() -> None:
    with trio.fail_after(60):
        async with running_network("ABCD", ring("ABCD")) as net:
            async with open_amop(net["C"].endpoint) as sub_client, trio.open_nursery() as nursery:
                await nursery.start(serve_replies, sub_client, "ring", b"C:")
                await wait_for_topic(net["A"].endpoint, "ring")
                async with open_amop(net["A"].endpoint) as pub:
                    assert await pub.publish("ring", b"before", timeout=5) == b"C:before"
                    await net["B"].stop(signal.SIGKILL)
                    stopped = trio.current_time()
                    failures_after_grace = []
                    for i in range(40):
                        try:
                            reply = await pub.publish("ring", b"%d" % i, timeout=3)
                            assert reply == b"C:%d" % i
                        except AmopError as exc:
                            if trio.current_time() - stopped > 2.0:
                                failures_after_grace.append(exc)
                        await trio.sleep(0.05)
                    assert not failures_after_grace, failures_after_grace
                    status = await pub.node_status()
                    assert "test-B" not in {e["node"] for e in status["directory"]}
                nursery.cancel_scope.cancel()


async def test_stopping_a_middle_node_during_200_unicasts_answers_each_once_or_fails_typed() -> (
    None
):
    with trio.fail_after(90):
        async with running_network("ABCD", ring("ABCD")) as net:
            seen: Counter[bytes] = Counter()
            async with open_amop(net["C"].endpoint) as sub_client, trio.open_nursery() as nursery:
                await nursery.start(serve_replies, sub_client, "stream", b"", seen)
                await wait_for_topic(net["A"].endpoint, "stream")
                outcomes: dict[int, object] = {}
                async with open_amop(net["A"].endpoint) as pub:

                    async def one(i: int) -> None:
                        data = b"req-%d" % i
                        try:
                            reply = await pub.publish("stream", data, timeout=5)
                        except AmopError as exc:
                            outcomes[i] = exc
                        else:
                            assert reply == data, (reply, data)
                            outcomes[i] = "answered"

                    async with trio.open_nursery() as requests:
                        for i in range(200):
                            requests.start_soon(one, i)
                            if i == 100:
                                requests.start_soon(net["B"].stop, signal.SIGKILL)
                            await trio.sleep(0.01)
                assert len(outcomes) == 200
                answered = sum(1 for o in outcomes.values() if o == "answered")
                assert answered >= 150, Counter(type(o).__name__ for o in outcomes.values())
                # The subscriber saw no request twice: re-sent requests are deduplicated.
                assert all(n == 1 for n in seen.values()), seen.most_common(3)
                nursery.cancel_scope.cancel()


async def test_full_mesh_multicast_reaches_each_subscriber_exactly_once() -> None:
    with trio.fail_after(60):
        async with running_network("ABCD", mesh("ABCD")) as net:
            counts: dict[str, Counter[bytes]] = {name: Counter() for name in "BCD"}
            async with (
                open_clients(net["A"].endpoint, 1) as (pub,),
                open_clients(net["B"].endpoint, 1) as (b,),
                open_clients(net["C"].endpoint, 1) as (c,),
                open_clients(net["D"].endpoint, 1) as (d,),
                trio.open_nursery() as nursery,
            ):
                clients = {"A": pub, "B": b, "C": c, "D": d}
                for name in "BCD":
                    await nursery.start(serve_replies, clients[name], "mesh", b"", counts[name])
                await wait_for_topic(net["A"].endpoint, "mesh", nodes=3)
                for i in range(100):
                    await pub.broadcast("mesh", b"m%d" % i)
                await pub.broadcast("mesh", b"end-A")
                await wait_until(lambda: all(c[b"end-A"] for c in counts.values()), within=10)
                # Every node has handled A's multicasts and passed on whatever it would; a
                # marker from each node then follows, on each of its links, any copy it sent.
                for name in "BCD":
                    await wait_for_topic(net[name].endpoint, "mesh", nodes=2)
                    await clients[name].broadcast("mesh", b"end-" + name.encode())
                markers = {b"end-" + name.encode() for name in "ABCD"}
                await wait_until(lambda: all(markers <= set(c) for c in counts.values()), within=10)
                nursery.cancel_scope.cancel()
            for name, counter in counts.items():
                assert len(counter) == 100 + len(markers), name
                assert set(counter.values()) == {1}, (name, counter.most_common(2))


async def test_unicast_is_uniform_over_all_subscribers_of_the_network() -> None:
    with trio.fail_after(60):
        async with running_network("ABC", line("ABC")) as net:
            tally: Counter[bytes] = Counter()
            async with (
                open_clients(net["A"].endpoint, 1) as (a1,),
                open_clients(net["C"].endpoint, 2) as (c1, c2),
                trio.open_nursery() as nursery,
            ):
                for client, tag in ((a1, b"a1"), (c1, b"c1"), (c2, b"c2")):
                    await nursery.start(serve_replies, client, "fair", tag + b":")
                await wait_for_topic(net["B"].endpoint, "fair", nodes=2)
                async with open_amop(net["B"].endpoint) as pub:
                    for _ in range(300):
                        reply = await pub.publish("fair", b"x", timeout=5)
                        tally[reply.split(b":")[0]] += 1
                assert set(tally) == {b"a1", b"c1", b"c2"}
                assert all(60 <= n <= 141 for n in tally.values()), tally
                nursery.cancel_scope.cancel()


async def test_a_subscriber_joining_on_a_far_node_receives_within_a_second() -> None:
    with trio.fail_after(40):
        async with running_network("ABCD", line("ABCD")) as net:
            async with open_amop(net["A"].endpoint) as pub, open_amop(net["D"].endpoint) as sub:
                with pytest.raises(NoSubscriberError):
                    await pub.publish("late", b"x")
                async with trio.open_nursery() as nursery:
                    await nursery.start(serve_replies, sub, "late", b"ok:")
                    joined = trio.current_time()
                    while True:
                        try:
                            assert await pub.publish("late", b"x", timeout=2) == b"ok:x"
                            break
                        except NoSubscriberError:
                            await trio.sleep(0.01)
                    assert trio.current_time() - joined < 1.0
                    nursery.cancel_scope.cancel()


async def test_client_fails_over_between_endpoints_and_keeps_its_subscription() -> None:
    with trio.fail_after(60):
        async with running_network("AB", line("AB")) as net:
            endpoints = [net["A"].endpoint, net["B"].endpoint]
            async with (
                open_amop(endpoints, ping_interval=0.5) as sub_client,
                open_amop(net["B"].endpoint) as pub,
                trio.open_nursery() as nursery,
            ):
                await nursery.start(serve_replies, sub_client, "fo", b"r:")
                await wait_for_topic(net["B"].endpoint, "fo")
                assert await pub.publish("fo", b"1", timeout=5) == b"r:1"
                await net["A"].stop(signal.SIGKILL)
                with trio.fail_after(10):
                    while True:
                        try:
                            assert await pub.publish("fo", b"2", timeout=2) == b"r:2"
                            break
                        except AmopError:
                            await trio.sleep(0.1)
                assert sub_client.reconnects >= 1
                assert sub_client.endpoint.endswith(net["B"].endpoint + "/")
                nursery.cancel_scope.cancel()
