"""Advertisements of bounded size: split into signed parts, and put back together.

A node's link state can be large (tens of thousands of topics, some of them
tens of kilobytes long), but no frame on a node link may be: a frame of many
megabytes costs every node on the way its size several times over, and one
past the frame limit breaks the link. So:

* topics longer than ``TOPIC_NAME_LIMIT`` bytes are advertised by a 128-bit
  digest (``topic_digest``), and looked up the same way (``LinkState.count``),
  so routing stays exact whatever the names;
* the entries (neighbours, endpoints, pending challenges, topics, digests)
  are packed into parts of at most ``MAX_PART_BYTES``, each signed on its own
  by the origin (``build_parts``), so each can be checked and passed on as it
  comes;
* a receiver keeps the newest complete state of each origin and builds the
  next one from its parts (``Assembler``); the old state stays in force until
  every part of the new one has arrived.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from .._wire.peer import (
    MAX_PENDING_NAME,
    LinkState,
    SignedPart,
    StatePart,
    advertised_by_name,
    topic_digest,
)

if TYPE_CHECKING:
    from .._security.identity import NodeSigner

#: Largest LINK_STATE payload (signed envelope) a node sends: far below any frame limit.
MAX_PART_BYTES = 32 * 1024
#: Most parts one advertisement may have (with digests, over half a million topics).
MAX_PARTS = 1024
#: Bytes a part's envelope may need besides the body: header, signature, chain sizes.
_ENVELOPE_SLACK = 64
#: Room for a part's fixed fields: origin (up to 255 escaped bytes), numbers, keys.
_HEAD_SLACK = 6 * 255 + 256


_quoted = json.encoder.encode_basestring_ascii  # what json.dumps does to a str, in C


@dataclass(slots=True)
class _Draft:
    neighbours: list[str] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    topics: dict[str, int] = field(default_factory=dict)
    digests: dict[str, int] = field(default_factory=dict)
    size: int = 0


@dataclass(frozen=True, slots=True)
class BuiltAdvert:
    """An advertisement ready to send: its state, its encoded parts, what was left out."""

    state: LinkState
    parts: tuple[bytes, ...]
    left_out: int = 0


def split_topics(counts: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Topic counts as (short names, digests of long names)."""
    topics: dict[str, int] = {}
    digests: dict[str, int] = {}
    for topic, count in counts.items():
        if advertised_by_name(topic):
            topics[topic] = count
        else:
            key = topic_digest(topic)
            digests[key] = digests.get(key, 0) + count
    return topics, digests


def body_budget(signer: NodeSigner | None) -> int:
    """Bytes of JSON body one part may hold, given what the signature and chain take."""
    extra = _ENVELOPE_SLACK
    if signer is not None:
        extra += 600 + sum(len(c) + 2 for c in signer.chain)  # RSA-4096 signatures are 512
    budget = MAX_PART_BYTES - extra - _HEAD_SLACK
    if budget < 8 * 1024:
        raise ValueError("the node's certificate chain is too large for link-state parts")
    return budget


def build_parts(
    origin: str,
    version: tuple[int, int],
    *,
    neighbours: Iterable[str],
    counts: Mapping[str, int],
    endpoints: Iterable[str] = (),
    pending: Iterable[str] = (),
    signer: NodeSigner | None = None,
) -> BuiltAdvert:
    """Pack a node's state into signed parts of at most ``MAX_PART_BYTES`` each.

    Entries are sorted, so the same state gives the same parts. Entries that
    cannot be carried (challenge topics longer than ``MAX_PENDING_NAME``,
    anything beyond ``MAX_PARTS``) are left out and counted in ``left_out``.
    """
    budget = body_budget(signer)
    topics, digests = split_topics(counts)
    entries: list[tuple[str, str, int]] = []
    entries += [("neighbours", n, 0) for n in sorted(set(neighbours))]
    entries += [("endpoints", e, 0) for e in endpoints if len(e) <= MAX_PENDING_NAME]
    left_out = 0
    for challenge in sorted(set(pending)):
        if len(challenge.encode("utf-8")) <= MAX_PENDING_NAME:
            entries.append(("pending", challenge, 0))
        else:
            left_out += 1
    entries += [("topics", t, n) for t, n in sorted(topics.items()) if n > 0]
    entries += [("digests", d, n) for d, n in sorted(digests.items()) if n > 0]

    drafts = [_Draft()]
    draft = drafts[0]
    quoted = _quoted
    for kind, key, count in entries:
        cost = len(quoted(key)) + 1
        if count:
            cost += len(str(count)) + 1
        if draft.size + cost > budget:
            if len(drafts) == MAX_PARTS:
                left_out += 1
                continue
            draft = _Draft()
            drafts.append(draft)
        draft.size += cost
        if kind == "topics":
            draft.topics[key] = count
        elif kind == "digests":
            draft.digests[key] = count
        else:
            getattr(draft, kind).append(key)

    state_parts = _as_parts(origin, version, drafts)
    payloads = []
    for part in state_parts:
        body = part.encode()
        signed = SignedPart(body, signer.sign(body), signer.chain) if signer else SignedPart(body)
        payload = signed.encode()
        assert len(payload) <= MAX_PART_BYTES, (len(payload), MAX_PART_BYTES)
        payloads.append(payload)
    return BuiltAdvert(_merge(state_parts), tuple(payloads), left_out)


def _as_parts(origin: str, version: tuple[int, int], drafts: list[_Draft]) -> list[StatePart]:
    epoch, seq = version
    return [
        StatePart(
            origin,
            epoch,
            seq,
            i,
            len(drafts),
            tuple(d.neighbours),
            d.topics,
            d.digests,
            tuple(d.endpoints),
            tuple(d.pending),
        )
        for i, d in enumerate(drafts)
    ]


def _merge(parts: list[StatePart]) -> LinkState:
    """The state the parts of one version hold together."""
    first = parts[0]
    neighbours: list[str] = []
    endpoints: list[str] = []
    pending: list[str] = []
    topics: dict[str, int] = {}
    digests: dict[str, int] = {}
    for part in parts:
        neighbours += part.neighbours
        endpoints += part.endpoints
        pending += part.pending
        topics.update(part.topics)
        digests.update(part.digests)
    return LinkState(
        first.origin,
        first.epoch,
        first.seq,
        tuple(neighbours),
        topics,
        tuple(endpoints),
        tuple(pending),
        digests,
    )


class Offer(Enum):
    """What became of a part offered to the ``Assembler``."""

    STALE = "stale"  # not newer than what is held or being built
    DUPLICATE = "duplicate"  # this part of this version is already here
    INVALID = "invalid"  # disagrees with the other parts of its version
    PARTIAL = "partial"  # kept; the state is not complete yet
    COMPLETE = "complete"  # completed a newer state


@dataclass(slots=True)
class _Building:
    version: tuple[int, int]
    count: int
    parts: dict[int, tuple[StatePart, bytes]] = field(default_factory=dict)


class Assembler:
    """Builds each origin's next state from its parts, one version at a time."""

    def __init__(self) -> None:
        self._building: dict[str, _Building] = {}

    def offer(
        self, part: StatePart, payload: bytes, held: tuple[int, int] | None
    ) -> tuple[Offer, BuiltAdvert | None]:
        """Take one part (``payload``: its signed bytes); ``held``: the version in force.

        Returns the outcome and, when it completes a state, the new state
        with its parts (in order) to store and hand on.
        """
        if held is not None and part.version <= held:
            return Offer.STALE, None
        if part.count > MAX_PARTS:
            return Offer.INVALID, None
        building = self._building.get(part.origin)
        if building is None or part.version > building.version:
            building = _Building(part.version, part.count)
            self._building[part.origin] = building
        elif part.version < building.version:
            return Offer.STALE, None
        if part.count != building.count:
            return Offer.INVALID, None
        if part.index in building.parts:
            return Offer.DUPLICATE, None
        building.parts[part.index] = (part, payload)
        if len(building.parts) < building.count:
            return Offer.PARTIAL, None
        del self._building[part.origin]
        ordered = [building.parts[i] for i in range(building.count)]
        state = _merge([p for p, _ in ordered])
        return Offer.COMPLETE, BuiltAdvert(state, tuple(payload for _, payload in ordered))

    def is_news(self, part: StatePart, held: tuple[int, int] | None) -> bool:
        """Whether ``offer`` could take ``part``: a cheap test before checking its signature."""
        if held is not None and part.version <= held:
            return False
        building = self._building.get(part.origin)
        return (
            building is None
            or part.version > building.version
            or (part.version == building.version and part.index not in building.parts)
        )

    def forget(self, origins: Iterable[str]) -> None:
        """Drop what was being built for ``origins`` (unreachable, or superseded)."""
        for origin in origins:
            self._building.pop(origin, None)

    def building(self) -> dict[str, tuple[tuple[int, int], int, int]]:
        """{origin: (version, parts received, parts expected)}, for status and tests."""
        return {o: (b.version, len(b.parts), b.count) for o, b in self._building.items()}
