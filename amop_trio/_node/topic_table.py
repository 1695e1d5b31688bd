"""Which session subscribes to which topic, in both directions.

Sessions are identified by small integers; the server maps them to live
connections. Pure: no Trio, no I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class TopicTable:
    """Which session subscribes to which topic, in both directions."""

    def __init__(self) -> None:
        self._by_topic: dict[str, dict[int, None]] = {}
        self._by_session: dict[int, frozenset[str]] = {}

    def __len__(self) -> int:
        return len(self._by_topic)

    def set_topics(self, session: int, topics: Iterable[str]) -> tuple[set[str], set[str]]:
        """Replace a session's topic set; returns (added, removed)."""
        new = frozenset(topics)
        old = self._by_session.get(session, frozenset())
        added, removed = set(new - old), set(old - new)
        for topic in added:
            self._by_topic.setdefault(topic, {})[session] = None
        for topic in removed:
            self._discard(topic, session)
        if new:
            self._by_session[session] = new
        else:
            self._by_session.pop(session, None)
        return added, removed

    def remove_session(self, session: int) -> set[str]:
        """Forget a session; returns the topics it had."""
        _, removed = self.set_topics(session, ())
        return removed

    def subscribers(self, topic: str) -> list[int]:
        """Sessions subscribed to ``topic``, in subscription order."""
        return list(self._by_topic.get(topic, ()))

    def page(self, start: int, count: int) -> list[tuple[str, int]]:
        """Topics ``start`` to ``start + count`` in name order, with their subscriber counts.

        Costs one pass over the table, never a copy of it sorted.
        """
        names = heapq.nsmallest(start + count, self._by_topic)
        return [(topic, len(self._by_topic[topic])) for topic in names[start:]]

    def topics_of(self, session: int) -> frozenset[str]:
        return self._by_session.get(session, frozenset())

    def topics(self) -> dict[str, int]:
        """Every topic with its number of subscribers."""
        return {topic: len(sessions) for topic, sessions in self._by_topic.items()}

    def _discard(self, topic: str, session: int) -> None:
        sessions = self._by_topic.get(topic)
        if sessions is not None:
            sessions.pop(session, None)
            if not sessions:
                del self._by_topic[topic]
