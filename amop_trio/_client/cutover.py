"""Replacing an uplink by another without losing or repeating a multicast.

A FISCO BCOS 3.x node only ever adds topics to a connection (docs/PROTOCOL.md,
"AMOP_SUBTOPIC"), so to unsubscribe the client opens a second uplink with the
smaller topic set and then closes the first. While both are open, a multicast
on a topic of both sets reaches the client twice, and one the node sent just
before it registered the new uplink reaches the client on the old uplink only.

``Cutover`` makes each multicast count once. Both uplinks subscribe a fresh
marker topic, and the client multicasts numbered markers on it until both
uplinks have seen one. The node writes to each connection in order, so a
marker that reached both uplinks cuts the node's stream of multicasts in two:
whatever it sent before the cut arrives on the old uplink ahead of the marker,
whatever it sent after arrives on the new uplink behind it. The old uplink
delivers up to the cut, the new one from the cut. Until the cut is known, a
uplink holds what arrives after its first marker.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from .events import Delivery


class Side(enum.IntEnum):
    OLD = 0
    NEW = 1


class _Phase(enum.Enum):
    BEFORE_FIRST = "no marker seen yet"
    HOLDING = "marker seen, cut not known"
    BEFORE_CUT = "cut known, not reached"
    AFTER_CUT = "cut reached"


class Cutover:
    """Which multicasts of the old and the new uplink to deliver while one replaces the other."""

    def __init__(self, marker_topic: str) -> None:
        self.topic = marker_topic
        self._first: list[int | None] = [None, None]
        self._phase = [_Phase.BEFORE_FIRST, _Phase.BEFORE_FIRST]
        #: What each side received since its first marker: markers (ints) and deliveries.
        self._held: tuple[list[int | Delivery], list[int | Delivery]] = ([], [])
        self.cut: int | None = None
        #: Set once the cut is known: the new uplink takes over.
        self.known = trio.Event()
        #: Set once both uplinks are past the cut: the old one can go.
        self.done = trio.Event()

    def route(self, side: Side, delivery: Delivery) -> list[Delivery]:
        """The multicasts to hand to subscriptions now, ``delivery`` having arrived on ``side``."""
        if delivery.topic == self.topic:
            try:
                marker = int(delivery.data)
            except ValueError:
                return []
            return self._on_marker(side, marker)
        phase = self._phase[side]
        if phase is _Phase.HOLDING:
            self._held[side].append(delivery)
            return []
        # Before its first marker, or before the cut, the old uplink's stream is
        # before the cut and the new uplink's a copy of it; after, the reverse.
        before = phase in (_Phase.BEFORE_FIRST, _Phase.BEFORE_CUT)
        return [delivery] if before == (side is Side.OLD) else []

    def _on_marker(self, side: Side, marker: int) -> list[Delivery]:
        phase = self._phase[side]
        if phase is _Phase.BEFORE_FIRST:
            self._first[side] = marker
            self._phase[side] = _Phase.HOLDING
            self._held[side].append(marker)
        elif phase is _Phase.HOLDING:
            self._held[side].append(marker)
        elif phase is _Phase.BEFORE_CUT and self.cut is not None and marker >= self.cut:
            self._phase[side] = _Phase.AFTER_CUT
            self._check_done()
        first_old, first_new = self._first
        if self.cut is not None or first_old is None or first_new is None:
            return []
        self.cut = max(first_old, first_new)
        self.known.set()
        return self._release(Side.OLD) + self._release(Side.NEW)

    def seen_by(self, side: Side) -> bool:
        """Whether ``side`` has received a marker."""
        return self._first[side] is not None

    def _release(self, side: Side) -> list[Delivery]:
        """The cut is known: deliver or drop what ``side`` held, on its side of the cut."""
        assert self.cut is not None
        held = list(self._held[side])
        self._held[side].clear()
        self._phase[side] = _Phase.BEFORE_CUT
        released = []
        for item in held:
            if isinstance(item, int):
                if item >= self.cut:
                    self._phase[side] = _Phase.AFTER_CUT
                continue
            before = self._phase[side] is _Phase.BEFORE_CUT
            if before == (side is Side.OLD):
                released.append(item)
        self._check_done()
        return released

    def _check_done(self) -> None:
        if all(phase is _Phase.AFTER_CUT for phase in self._phase):
            self.done.set()

    def abandon(self) -> list[Delivery]:
        """The cut never came (an uplink stopped answering): release what the new uplink holds."""
        released = [item for item in self._held[Side.NEW] if not isinstance(item, int)]
        self._held[Side.NEW].clear()
        self._phase = [_Phase.AFTER_CUT, _Phase.AFTER_CUT]
        self.done.set()
        return released
