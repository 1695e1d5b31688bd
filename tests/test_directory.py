"""The link-state directory, its packets and the bounded id memory, without sockets."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amop_trio._errors import WireError
from amop_trio._node.directory import Directory
from amop_trio._node.remote import IdMemory
from amop_trio._wire.peer import LinkState, SignedPart, StatePart, Summary, Sync, topic_digest


def state(
    origin: str, seq: int, neighbours: str, topics: dict[str, int] | None = None
) -> LinkState:
    return LinkState(origin, 1, seq, tuple(neighbours), topics or {})


def line_abcd() -> Directory:
    directory = Directory("A")
    directory.update(state("A", 1, "B"))
    directory.update(state("B", 1, "AC"))
    directory.update(state("C", 1, "BD"))
    directory.update(state("D", 1, "C", {"t": 2}))
    return directory


def test_routes_follow_the_line_and_counts_come_from_far_nodes() -> None:
    directory = line_abcd()
    assert directory.reachable() == ["A", "B", "C", "D"]
    assert [directory.next_hop(n) for n in "BCD"] == ["B", "B", "B"]
    assert directory.distance("D") == 3
    assert directory.subscriber_counts("t") == {"D": 2}
    assert directory.split_by_next_hop(["C", "D", "Z"]) == {"B": ["C", "D"]}


def test_a_link_counts_only_when_both_ends_list_it() -> None:
    directory = line_abcd()
    assert directory.update(state("C", 2, "D"))  # C no longer lists B
    assert directory.reachable() == ["A", "B"]
    assert directory.next_hop("D") is None
    assert directory.subscriber_counts("t") == {}
    assert directory.forget_unreachable() == ["C", "D"]
    assert directory.state_of("D") is None


def test_only_newer_advertisements_are_taken() -> None:
    directory = line_abcd()
    assert not directory.update(state("D", 1, "C", {"t": 5}))
    assert directory.subscriber_counts("t") == {"D": 2}
    assert directory.update(LinkState("D", 2, 0, ("C",), {"t": 5}))  # a restarted node
    assert directory.subscriber_counts("t") == {"D": 5}


def test_id_memory_is_bounded_in_entries_and_in_bytes() -> None:
    memory = IdMemory(10, max_bytes=100)
    for i in range(5):
        memory.put(bytes([i]), b"x" * 40)
    assert bytes([4]) in memory
    assert bytes([3]) in memory
    assert bytes([2]) not in memory
    for i in range(20):
        memory.put(bytes([100 + i]))
    assert bytes([119]) in memory
    assert bytes([4]) not in memory
    assert memory.get(bytes([119])) is None


def test_long_topics_are_counted_by_digest() -> None:
    long_topic = "t" * 65
    directory = Directory("A")
    directory.update(state("A", 1, "B"))
    directory.update(
        LinkState("B", 1, 1, ("A",), {"short": 1}, digests={topic_digest(long_topic): 3})
    )
    assert directory.subscriber_counts("short") == {"B": 1}
    assert directory.subscriber_counts(long_topic) == {"B": 3}
    assert directory.subscriber_counts("t" * 66) == {}
    assert directory.subscriber_counts(topic_digest(long_topic)) == {}  # a name is not a digest


def test_versions_and_their_digest_cover_reachable_nodes() -> None:
    one, two = line_abcd(), line_abcd()
    assert one.versions() == [("A", 1, 1), ("B", 1, 1), ("C", 1, 1), ("D", 1, 1)]
    assert one.digest() == two.digest()
    two.update(state("D", 2, "C", {"t": 9}))
    assert one.digest() != two.digest()
    one.update(LinkState("Z", 1, 1, ("Q",)))  # unreachable: not in the versions
    one.update(state("D", 2, "C", {"t": 9}))
    assert one.digest() == two.digest()


@pytest.mark.parametrize("count", [1, 3])
def test_peer_control_packets_round_trip(count: int) -> None:
    part = StatePart("A", 7, 2, count - 1, count, ("B",), {"x": 1}, {"ab" * 16: 2}, ("ws://e",))
    assert StatePart.decode(part.encode()) == part
    signed = SignedPart(part.encode(), b"sig", (b"cert1", b"cert2"))
    assert SignedPart.decode(signed.encode()) == signed
    assert SignedPart.decode(SignedPart(b"{}").encode()) == SignedPart(b"{}")
    summary = Summary((("A", 1, 2), ("B", 3, 4)), 1, 2)
    assert Summary.decode(summary.encode()) == summary
    assert Sync.decode(Sync("d" * 32).encode()) == Sync("d" * 32)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x01\x00\x00\x00\x00",
        b"\x02\x00\x00\x00\x09{}",
        b'{"origin":"A","epoch":1,"seq":1}',  # the unsigned JSON of older nodes
        SignedPart(b"{}").encode() + b"x",
    ],
)
def test_malformed_envelopes_are_wire_errors(payload: bytes) -> None:
    with pytest.raises(WireError):
        SignedPart.decode(payload)


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_wire_error(data: bytes) -> None:
    for decode in (SignedPart.decode, StatePart.decode, Summary.decode, Sync.decode):
        with contextlib.suppress(WireError):
            decode(data)


def test_state_parts_refuse_bad_numbers() -> None:
    good = StatePart("A", 1, 1, 0, 1)
    for key, value in (("epoch", -1), ("seq", 1 << 64), ("part", 1), ("parts", "1")):
        obj = json.loads(good.encode())
        obj[key] = value
        with pytest.raises(WireError):
            StatePart.decode(json.dumps(obj).encode())
