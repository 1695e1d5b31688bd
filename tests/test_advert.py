"""Advertisements stay small whatever clients subscribe, and lost ones are repaired."""

from __future__ import annotations

import random
from contextlib import AsyncExitStack
from pathlib import Path

import trio

from amop_trio import open_amop, open_node
from amop_trio._node.advert import MAX_PART_BYTES, Assembler, Offer, build_parts
from amop_trio._node.limits import NodeLimits
from amop_trio._node.links import PeerLink
from amop_trio._security.layout import find_node_certificates, load_signer
from amop_trio._wire.fisco3 import Frame, encode_frame, new_seq
from amop_trio._wire.peer import SignedPart, StatePart

from .conftest import p2p, serve_replies, wait_counts, wait_until
from .proxy import open_proxy

TIMEOUT = 60


def many_topics(seed: int = 7) -> dict[str, int]:
    """20,000 short topics and 300 of 60 kB: 18 MB of names."""
    rng = random.Random(seed)
    counts = {f"short/{i}": rng.randint(1, 3) for i in range(20_000)}
    for i in range(300):
        counts[f"long/{i}/" + "x" * 60_000] = rng.randint(1, 3)
    return counts


def test_huge_topic_sets_make_small_signed_parts_and_exact_counts(network_certs: Path) -> None:
    signer = load_signer(find_node_certificates(network_certs / "node0" / "conf").identity)
    counts = many_topics()
    built = build_parts(
        signer.node_id, (5, 1), neighbours=("n1", "n2"), counts=counts, signer=signer
    )
    assert built.left_out == 0
    assert len(built.parts) > 1
    assert max(len(p) for p in built.parts) <= MAX_PART_BYTES
    assert sum(len(p) for p in built.parts) < 2 * 1024 * 1024  # digests, not 18 MB of names
    # A receiver puts them back together, in any order, and counts exactly.
    assembler = Assembler()
    order = list(built.parts)
    random.Random(1).shuffle(order)
    outcomes = []
    for payload in order:
        part = StatePart.decode(SignedPart.decode(payload).body)
        outcome, done = assembler.offer(part, payload, None)
        outcomes.append(outcome)
    assert outcomes[-1] is Offer.COMPLETE
    assert done is not None
    assert all(o is Offer.PARTIAL for o in outcomes[:-1])
    assert done.parts == built.parts
    for topic, count in counts.items():
        assert done.state.count(topic) == count
    assert done.state.count("short/none") == 0
    assert done.state.count("long/none/" + "x" * 60_000) == 0
    assert set(done.state.neighbours) == {"n1", "n2"}
    # An older or repeated part changes nothing.
    part0 = StatePart.decode(SignedPart.decode(built.parts[0]).body)
    assert assembler.offer(part0, built.parts[0], (5, 1))[0] is Offer.STALE


async def test_a_few_megabytes_of_topics_cross_a_link_in_small_frames(network_certs: Path) -> None:
    sdk = network_certs / "sdk"
    long_topics = [f"big/{i}/" + "y" * 50_000 for i in range(60)]  # 3 MB of names
    short_topics = [f"small/{i}" for i in range(900)]
    limits = NodeLimits(max_topics=2000, connection_topic_bytes=4 << 20)
    with trio.fail_after(TIMEOUT):
        async with (
            open_node(p2p_listen="127.0.0.1:0", certs=network_certs / "node0" / "conf") as a,
            open_node(
                p2p_listen="127.0.0.1:0",
                peers=[p2p(a)],
                certs=network_certs / "node1" / "conf",
                limits=limits,
            ) as b,
        ):
            sizes: list[int] = []
            receive = a.network.flood.on_link_state

            def measured(link: PeerLink, frame: Frame) -> None:
                sizes.append(len(encode_frame(frame)))
                receive(link, frame)

            # Every link state node0 receives is measured on its way in.
            a.network.flood.on_link_state = measured  # type: ignore[method-assign]
            async with (
                open_amop(b.endpoint, certs=sdk, max_frame_size=8 << 20) as subscriber,
                trio.open_nursery() as nursery,
            ):
                await nursery.start(serve_replies, subscriber, long_topics[-1], b"long:")
                held = [subscriber.subscribe(t) for t in short_topics + long_topics[:-1]]
                for subscription in held:
                    subscription.open_nowait()  # one topic set for them all
                await subscriber.sync_topics()
                directory = a.network.directory
                await wait_until(
                    lambda: (
                        len(directory.subscriber_counts(long_topics[0])) == 1
                        and all(directory.subscriber_counts(t) for t in short_topics + long_topics)
                    ),
                    within=20,
                )
                async with open_amop(a.endpoint, certs=sdk, max_frame_size=8 << 20) as publisher:
                    assert await publisher.publish(long_topics[-1], b"1", timeout=5) == b"long:1"
                nursery.cancel_scope.cancel()
            assert sizes
            assert max(sizes) <= MAX_PART_BYTES + 64, max(sizes)
            assert b.network.flood.largest_part <= MAX_PART_BYTES


async def test_an_advertisement_refused_by_a_full_outbox_is_repaired(network_certs: Path) -> None:
    """node1 dials node0 through a proxy; freeze it, fill node1's outbox, subscribe, thaw."""
    sdk = network_certs / "sdk"
    # Frames of a type the peer ignores: large ones, then tiny ones to the last byte.
    fillers = [encode_frame(Frame(0x10FE, new_seq(), b"\0" * n)) for n in (65536, 0)]
    with trio.fail_after(TIMEOUT):
        async with open_node(p2p_listen="127.0.0.1:0", certs=network_certs / "node0" / "conf") as a:
            assert a.p2p_port is not None
            async with (
                open_proxy(a.p2p_port) as proxy,
                open_node(
                    p2p_listen="127.0.0.1:0",
                    peers=[proxy.endpoint],
                    certs=network_certs / "node1" / "conf",
                ) as b,
                open_amop(b.endpoint, certs=sdk) as subscriber,
            ):
                await wait_until(lambda: a.node_id in b.network.links.live_peers(), within=10)
                link = b.network.links.by_peer[a.node_id]
                unsent = b.network.flood.unsent
                full, stop = trio.Event(), trio.Event()

                async def keep_full() -> None:
                    while not stop.is_set():
                        for filler in fillers:
                            while link.send_nowait(filler):
                                pass
                        full.set()
                        await trio.sleep(0.001)

                async with AsyncExitStack() as subscriptions:
                    async with trio.open_nursery() as nursery:
                        proxy.freeze()
                        nursery.start_soon(keep_full)
                        await full.wait()
                        await subscriptions.enter_async_context(subscriber.subscribe("late"))
                        # The advertisement met a full outbox.
                        await wait_until(lambda: b.network.flood.unsent != unsent, within=2)
                        await trio.sleep(0.1)  # and the congestion lasts a while longer
                        stop.set()
                    proxy.thaw()
                    healed = await wait_counts(a, "late", {b.node_id: 1})
                    assert not link.closed  # healed by the sync, not by a new link
        print(f"directory converged {healed:.2f} s after the congestion cleared")
        assert healed < 2.0


def test_the_assembler_takes_each_version_whole_and_only_newer() -> None:
    def parts(seq: int, count: int) -> list[tuple[StatePart, bytes]]:
        built = [StatePart("A", 1, seq, i, count, topics={f"t{seq}.{i}": 1}) for i in range(count)]
        return [(p, p.encode()) for p in built]

    assembler = Assembler()
    v2 = parts(2, 2)
    assert assembler.offer(*v2[0], None)[0] is Offer.PARTIAL
    assert assembler.offer(*v2[0], None)[0] is Offer.DUPLICATE
    # A newer version supersedes the one being built; the older's parts are then stale.
    v3 = parts(3, 2)
    assert assembler.offer(*v3[1], None)[0] is Offer.PARTIAL
    assert assembler.offer(*v2[1], None)[0] is Offer.STALE
    wrong_count = StatePart("A", 1, 3, 0, 5)
    assert assembler.offer(wrong_count, b"", None)[0] is Offer.INVALID
    outcome, done = assembler.offer(*v3[0], None)
    assert outcome is Offer.COMPLETE
    assert done is not None
    assert done.state.topics == {"t3.0": 1, "t3.1": 1}
    assert done.parts == (v3[0][1], v3[1][1])
    assert assembler.building() == {}
    # What is held already, or older, is stale.
    assert assembler.offer(*parts(3, 1)[0], (1, 3))[0] is Offer.STALE
