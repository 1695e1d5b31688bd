"""Routing across nodes, in this process: multi-hop, re-sending, cached answers, refusals.

The nodes are ``open_node``s linked over real loopback WebSockets, so this is
the network code as it runs, under coverage; node processes are tested in
``test_network.py``.
"""

from __future__ import annotations

from collections import Counter
from functools import partial

import pytest
import trio

from amop_trio import MessageKind, RejectedError, Status, open_amop
from amop_trio._node import remote
from amop_trio._wire.fisco3 import Frame
from amop_trio._wire.peer import PeerType

from .conftest import (
    LOOPBACK,
    BackgroundNode,
    line,
    open_linked_nodes,
    serve_replies,
    start_node,
    wait_until,
)
from .network import free_port

TIMEOUT = 20


async def test_a_unicast_and_its_reply_cross_a_middle_node() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_linked_nodes(3, line(3)) as (first, middle, last),
            open_amop(last.endpoint) as subscriber,
            open_amop(first.endpoint) as publisher,
            trio.open_nursery() as nursery,
        ):
            seen: Counter[bytes] = Counter()
            await nursery.start(serve_replies, subscriber, "far", b"re:", seen)
            await first.network.wait_subscribed("far")
            assert first.network.directory.next_hop(last.node_id) == middle.node_id
            assert await publisher.publish("far", b"1") == b"re:1"
            await publisher.broadcast("far", b"all")
            await wait_until(lambda: seen[b"all"] == 1)
            # request, reply and multicast each went through the middle node once
            assert middle.statistics().forwarded == 2
            assert middle.statistics().multicast_dropped == 0
            nursery.cancel_scope.cancel()


async def start_square(nursery: trio.Nursery) -> dict[int, BackgroundNode]:
    """Nodes 0-1-2 and 0-3-2 in ``nursery``: two paths from node 0 to node 2."""
    p2p = {i: f"127.0.0.1:{free_port()}" for i in range(4)}
    peers = {0: [], 1: [p2p[0]], 3: [p2p[0]], 2: [p2p[1], p2p[3]]}
    return {
        i: await start_node(
            nursery, LOOPBACK, p2p_listen=p2p[i], peers=peers[i], node_id=f"node-{i}"
        )
        for i in (0, 1, 3, 2)
    }


async def test_a_request_whose_path_breaks_is_re_sent_and_delivered_once() -> None:
    """The square 0-1-2, 0-3-2: node 1 dies while a request waits at node 2."""
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nodes = await start_square(nursery)
            origin, via, other, target = (nodes[i].node for i in (0, 1, 3, 2))
            await wait_until(lambda: len(origin.network.directory.reachable()) == 4, within=10)
            async with (
                open_amop(target.endpoint) as subscriber_client,
                open_amop(origin.endpoint) as publisher,
                subscriber_client.subscribe("slow") as sub,
            ):
                await origin.network.wait_subscribed("slow")
                assert origin.network.directory.next_hop(target.node_id) == via.node_id
                replies: list[bytes] = []

                async def publish() -> None:
                    replies.append(await publisher.publish("slow", b"x", timeout=10))

                nursery.start_soon(publish)
                first = await sub.receive()  # the request reached node 2 through node 1
                await nodes[1].stop()
                await wait_until(
                    lambda: origin.network.directory.next_hop(target.node_id) == other.node_id
                )
                # The re-sent copy reaches node 2 through node 3; it is not delivered again.
                await wait_until(lambda: other.statistics().forwarded >= 1)
                await first.reply(b"once")
                await wait_until(lambda: replies == [b"once"])
                assert sub.statistics().queued == 0
                assert target.statistics().unicasts == 1
            nursery.cancel_scope.cancel()


async def test_a_lost_answer_is_replayed_from_the_target_nodes_cache() -> None:
    """Node 1 loses the reply; after the path changes, node 2 answers the repeat from cache."""
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nodes = await start_square(nursery)
            origin, via, target = (nodes[i].node for i in (0, 1, 2))
            await wait_until(lambda: len(origin.network.directory.reachable()) == 4, within=10)
            lost: list[bytes] = []
            forward = via.network.remote.forward

            def lose_replies(target: str, frame: Frame, *, origin: str | None, hop: int) -> None:
                if frame.type == PeerType.REPLY:
                    lost.append(frame.seq)
                    return
                forward(target, frame, origin=origin, hop=hop)

            # node 1 drops the replies it should pass on
            via.network.remote.forward = lose_replies  # type: ignore[method-assign]
            async with (
                open_amop(target.endpoint) as subscriber_client,
                open_amop(origin.endpoint) as publisher,
            ):
                seen: Counter[bytes] = Counter()
                await nursery.start(serve_replies, subscriber_client, "t", b"re:", seen)
                await origin.network.wait_subscribed("t")
                replies: list[bytes] = []

                async def publish() -> None:
                    replies.append(await publisher.publish("t", b"x", timeout=10))

                nursery.start_soon(publish)
                await wait_until(lambda: bool(lost))
                await nodes[1].stop()
                await wait_until(lambda: replies == [b"re:x"])
                assert seen[b"x"] == 1  # answered from the cache, not delivered twice
                assert target.statistics().unicasts == 1
            nursery.cancel_scope.cancel()


async def test_a_node_serving_too_many_unicasts_refuses_with_3006(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(remote, "MAX_SERVED_UNICASTS", 1)
    with trio.fail_after(TIMEOUT):
        async with (
            open_linked_nodes(2, line(2)) as (origin, target),
            open_amop(target.endpoint) as subscriber,
            open_amop(origin.endpoint) as publisher,
            subscriber.subscribe("busy") as sub,
            trio.open_nursery() as nursery,
        ):
            await origin.network.wait_subscribed("busy")
            nursery.start_soon(partial(publisher.publish, "busy", b"held", timeout=10))
            held = await sub.receive()  # node 1 now serves one unicast: its limit
            with pytest.raises(RejectedError) as refused:
                await publisher.publish("busy", b"refused")
            assert refused.value.status == Status.OVERLOADED
            assert held.kind is MessageKind.UNICAST
            await held.reply(b"ok")
            nursery.cancel_scope.cancel()


async def test_two_nodes_dialling_each_other_keep_the_link_the_smaller_id_dialled() -> None:
    with trio.fail_after(TIMEOUT):
        ports = [free_port() for _ in range(2)]
        p2p = [f"127.0.0.1:{port}" for port in ports]
        async with trio.open_nursery() as nursery:
            a = await start_node(
                nursery, LOOPBACK, p2p_listen=p2p[0], peers=[p2p[1]], node_id="node-a"
            )
            b = await start_node(
                nursery, LOOPBACK, p2p_listen=p2p[1], peers=[p2p[0]], node_id="node-b"
            )
            links_a, links_b = a.node.network.links, b.node.network.links

            def settled() -> bool:
                return (
                    list(links_a.by_peer) == ["node-b"]
                    and list(links_b.by_peer) == ["node-a"]
                    and links_a.by_peer["node-b"].outbound
                    and not links_b.by_peer["node-a"].outbound
                )

            await wait_until(settled, within=10)
            await trio.sleep(0.5)  # and it stays so: no flapping between the two links
            assert settled()
            nursery.cancel_scope.cancel()
