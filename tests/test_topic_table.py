"""Routing decisions, without sockets: the topic table and the unicast choice."""

import random
from collections import Counter

from amop_trio._node.selection import choose_unicast
from amop_trio._node.topic_table import TopicTable


def test_set_topics_reports_changes_and_replaces_the_whole_set() -> None:
    table = TopicTable()
    assert table.set_topics(1, ["a", "b"]) == ({"a", "b"}, set())
    assert table.set_topics(1, ["b", "c"]) == ({"c"}, {"a"})
    assert table.subscribers("a") == []
    assert table.subscribers("b") == [1]
    assert table.topics_of(1) == frozenset({"b", "c"})


def test_subscribers_keep_order_and_sessions_leave_cleanly() -> None:
    table = TopicTable()
    for session in (3, 1, 2):
        table.set_topics(session, ["t"])
    assert table.subscribers("t") == [3, 1, 2]
    assert table.remove_session(1) == {"t"}
    assert table.subscribers("t") == [3, 2]
    table.remove_session(3)
    table.remove_session(2)
    assert table.topics() == {}
    assert len(table) == 0


def test_choose_unicast_skips_tried_and_ends_with_none() -> None:
    rng = random.Random(1)
    assert choose_unicast([1, 2, 3], {1, 2}, rng) == 3
    assert choose_unicast([1, 2], {1, 2}, rng) is None
    assert choose_unicast([], set(), rng) is None


def test_choose_unicast_is_uniform() -> None:
    rng = random.Random(7)
    counts = Counter(choose_unicast([1, 2, 3, 4], set(), rng) for _ in range(8000))
    assert set(counts) == {1, 2, 3, 4}
    assert all(1700 < n < 2300 for n in counts.values()), counts


def test_choose_unicast_tries_failing_subscribers_last_and_only_as_a_last_resort() -> None:
    rng = random.Random(3)
    failing = {1, 2}.__contains__
    assert {choose_unicast([1, 2, 3], set(), rng, failing) for _ in range(50)} == {3}
    assert choose_unicast([1, 2, 3], {3}, rng, failing) in {1, 2}
    assert choose_unicast([1, 2, 3], {3}, rng, failing, last_resort=False) is None
    assert choose_unicast([1, 3], set(), rng, failing, last_resort=False) == 3
