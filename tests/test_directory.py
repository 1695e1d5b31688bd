"""The link-state directory and the bounded id memory, without sockets."""

from __future__ import annotations

from amop_trio._node.directory import Directory
from amop_trio._node.remote import IdMemory
from amop_trio._wire.peer import LinkState


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
