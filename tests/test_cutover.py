"""``Cutover`` alone: whatever the interleaving of the two links, each multicast counts once.

A model of the node: one stream of multicasts on topic ``t`` and of numbered
markers. The old link receives every multicast, and the markers from the moment
it subscribed the marker topic; the new link receives everything from the moment
the node registered it. The client reads the two links in any interleaving.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from amop_trio._client.cutover import Cutover, Side
from amop_trio._client.events import Delivery

MARKER = "_amop_trio_cutover_test"


def multicast(topic: str, data: bytes) -> Delivery:
    return Delivery(b"", topic, data, True)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Delivery], list[Delivery], list[Side], int]:
    """(old link's frames, new link's frames, the order the client reads them in, messages)."""
    messages = draw(st.integers(0, 30))
    # Where, among the messages, the node registers the new link, the old link's marker
    # subscription, and each marker the client sends on the new link: they follow its
    # subscription, and go on until one follows the old link's too.
    new_at = draw(st.integers(0, messages))
    old_at = draw(st.integers(new_at, messages))
    early = draw(st.lists(st.integers(new_at, old_at), max_size=3))
    markers = sorted([*early, draw(st.integers(old_at, messages))])
    stream: list[tuple[int, Delivery]] = []
    number = 0
    for i in range(messages + 1):
        for _ in range(markers.count(i)):
            number += 1
            stream.append((i, multicast(MARKER, str(number).encode())))
        if i < messages:
            stream.append((i, multicast("t", b"%d" % i)))
    old = [d for i, d in stream if d.topic == "t" or i >= old_at]
    new = [d for i, d in stream if i >= new_at]
    order = draw(st.permutations([Side.OLD] * len(old) + [Side.NEW] * len(new)))
    return old, new, list(order), messages


@settings(deadline=None)
@given(scenarios())
def test_each_multicast_is_delivered_once_whatever_the_interleaving(
    scenario: tuple[list[Delivery], list[Delivery], list[Side], int],
) -> None:
    old, new, order, messages = scenario
    cut = Cutover(MARKER)
    queues = {Side.OLD: list(old), Side.NEW: list(new)}
    delivered: list[bytes] = []
    for side in order:
        delivered += [d.data for d in cut.route(side, queues[side].pop(0))]
    assert sorted(delivered, key=int) == [b"%d" % i for i in range(messages)]
    assert cut.known.is_set()
    assert cut.done.is_set()  # both links are past the cut: the old one can go


def test_a_cut_that_never_comes_releases_what_the_new_link_holds() -> None:
    cut = Cutover(MARKER)
    assert cut.route(Side.OLD, multicast("t", b"0")) == [multicast("t", b"0")]
    assert cut.route(Side.NEW, multicast(MARKER, b"1")) == []
    assert cut.seen_by(Side.NEW)
    assert not cut.seen_by(Side.OLD)
    assert cut.route(Side.NEW, multicast("t", b"1")) == []  # held until the cut is known
    assert cut.abandon() == [multicast("t", b"1")]
    assert cut.done.is_set()
    assert not cut.known.is_set()


def test_a_marker_that_is_not_a_number_is_ignored() -> None:
    cut = Cutover(MARKER)
    assert cut.route(Side.NEW, multicast(MARKER, b"not a number")) == []
    assert not cut.seen_by(Side.NEW)
