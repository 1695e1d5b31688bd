"""The network's topic directory and routes, from link-state advertisements.

Every node floods a ``LinkState`` naming its live links and its clients'
topics (with subscriber counts), in signed parts (``advert``). Each node
keeps the newest complete advertisement of every origin, with the parts it
came in (to hand on as they are: only the origin can sign them), and
derives, with a breadth-first search over links that both ends confirm,
which nodes are reachable and the first hop of the shortest path to each.
A node that dies drops out as soon as one neighbour stops listing it;
advertisements of unreachable nodes are forgotten on the next sweep. Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable

from .._wire.peer import LinkState, advertised_by_name, topic_digest


class Directory:
    """Link-state database of one node, with the routes it implies."""

    def __init__(self, self_id: str) -> None:
        self.self_id = self_id
        self._states: dict[str, LinkState] = {}
        self._parts: dict[str, tuple[bytes, ...]] = {}
        self._digest: str | None = None
        self._next_hop: dict[str, str] = {}
        self._distance: dict[str, int] = {self_id: 0}

    def __contains__(self, node_id: str) -> bool:
        return node_id in self._distance

    def states(self) -> list[LinkState]:
        """Every advertisement held, to hand to a new neighbour."""
        return list(self._states.values())

    def state_of(self, node_id: str) -> LinkState | None:
        return self._states.get(node_id)

    def parts_of(self, node_id: str) -> tuple[bytes, ...]:
        """The signed parts the held advertisement of ``node_id`` came in."""
        return self._parts.get(node_id, ())

    def version_of(self, node_id: str) -> tuple[int, int] | None:
        state = self._states.get(node_id)
        return state.version if state is not None else None

    def update(self, state: LinkState, parts: tuple[bytes, ...] = ()) -> bool:
        """Store ``state`` if it is newer than what is held; True if it was."""
        held = self._states.get(state.origin)
        if held is not None and held.version >= state.version:
            return False
        self._states[state.origin] = state
        self._parts[state.origin] = parts
        self._recompute()
        return True

    def versions(self) -> list[tuple[str, int, int]]:
        """(origin, epoch, seq) of every reachable node's advertisement, sorted."""
        return sorted(
            (node, state.epoch, state.seq)
            for node in self._distance
            if (state := self._states.get(node)) is not None
        )

    def digest(self) -> str:
        """A digest of ``versions()``: equal on two nodes that hold the same states."""
        if self._digest is None:
            text = "\n".join(f"{o} {e} {s}" for o, e, s in self.versions())
            self._digest = hashlib.sha256(text.encode()).hexdigest()[:32]
        return self._digest

    def reachable(self) -> list[str]:
        """Nodes reachable from this one, itself included, nearest first."""
        return list(self._distance)

    def distance(self, node_id: str) -> int | None:
        return self._distance.get(node_id)

    def next_hop(self, node_id: str) -> str | None:
        """The neighbour to send to for ``node_id``, or None if unreachable."""
        return self._next_hop.get(node_id)

    def subscriber_counts(self, topic: str) -> dict[str, int]:
        """Subscribers of ``topic`` on each reachable node other than this one."""
        by_name = advertised_by_name(topic)
        key = topic if by_name else topic_digest(topic)
        counts = {}
        for node_id in self._distance:
            if node_id == self.self_id:
                continue
            state = self._states.get(node_id)
            if state is None:
                continue
            count = (state.topics if by_name else state.digests).get(key, 0)
            if count > 0:
                counts[node_id] = count
        return counts

    def split_by_next_hop(self, targets: Iterable[str]) -> dict[str, list[str]]:
        """Group remote targets by the neighbour their shortest path starts with."""
        groups: dict[str, list[str]] = {}
        for target in targets:
            hop = self._next_hop.get(target)
            if hop is not None:
                groups.setdefault(hop, []).append(target)
        return groups

    def _confirmed_neighbours(self, node_id: str) -> list[str]:
        state = self._states.get(node_id)
        if state is None:
            return []
        return sorted(
            n
            for n in state.neighbours
            if (other := self._states.get(n)) is not None and node_id in other.neighbours
        )

    def _recompute(self) -> None:
        distance = {self.self_id: 0}
        next_hop: dict[str, str] = {}
        queue = deque([self.self_id])
        while queue:
            node = queue.popleft()
            for neighbour in self._confirmed_neighbours(node):
                if neighbour in distance:
                    continue
                distance[neighbour] = distance[node] + 1
                next_hop[neighbour] = neighbour if node == self.self_id else next_hop[node]
                queue.append(neighbour)
        self._distance = distance
        self._next_hop = next_hop
        self._digest = None

    def forget_unreachable(self) -> list[str]:
        """Drop advertisements of nodes that cannot be reached; returns their ids.

        Called on a timer rather than on every change, so that advertisements
        arriving out of order while two parts of the network join are kept.
        """
        gone = [origin for origin in self._states if origin not in self._distance]
        for origin in gone:
            del self._states[origin]
            self._parts.pop(origin, None)
        return gone
