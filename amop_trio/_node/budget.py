"""A node's byte budgets: what its clients make it hold, counted before it is taken.

Theory of operation
-------------------
A client can make a node keep three kinds of state: its topics (the table
and what is advertised of it), the bodies of its unicasts in flight, and
the bytes of a frame it has begun to send and not finished. Each is counted
in bytes, per connection (``ConnectionBudget``, one per client connection)
and for the node (``NodeBudget``), against the budgets of ``NodeLimits``,
and checked *before* the state is taken, so a refusal costs nothing: the
connection keeps what it had. A refusal (``Refusal``) says which budget and
by how much; past a connection's own budget the request could never pass
(3005, or 3006 for unicasts, which may pass later), past the node's it may
pass later (3006). Unicasts this node delivers for other nodes are counted
against the node's pending budget alone.

Counters only ever move together with what they count: the services take
and release topic and pending bytes, the decoders hold and release partial
frames (``_wire.budget.BufferBudget``), and ``ConnectionBudget.close`` gives
back what a closed connection can no longer hold. Its unicasts still in
flight stay counted until they end (answered, or at their deadline), since
their bodies stay in memory until then. Pure: no Trio, no I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .._errors import WireError
from .._log import log_event
from .._wire.status import Status
from .limits import NodeLimits, NodeStatistics

logger = logging.getLogger("amop_trio.node")

#: What a publisher gets instead of an answer that its unread answers leave no room for
#: (``FrameConnection.answer_fits``), with status 3006 (2.x: 103).
ANSWER_DROPPED = (
    b"answer dropped: the publisher's connection holds too many answers it has not read"
)

#: Bytes each topic counts beside its UTF-8 name: what the node keeps for it in its
#: table and link state. Short topics would otherwise cost many times what is counted.
TOPIC_OVERHEAD = 256

#: A partial frame this small is always taken (and counted, even past the budget):
#: any frame may arrive in pieces, and one read takes this much at once, so a
#: client's ordinary traffic never depends on what other clients hold.
ALWAYS_HELD = 64 * 1024


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request does not fit a budget: its status code, and a text saying by how much."""

    status: Status
    text: str

    def error(self) -> WireError:
        return WireError(self.text, status=self.status)


def _over(what: str, size: int, whose: str, name: str, limit: int, held: int) -> str:
    """The text of a refusal: which budget, and by how much."""
    return (
        f"{what} of {size:,} bytes exceed{'s' if what.startswith('a ') else ''} {whose} "
        f"budget {name} of {limit:,} bytes by {held + size - limit:,} bytes "
        f"({held:,} bytes already held)"
    )


class NodeBudget:
    """The node's byte counters, and the connections' accounts that feed them."""

    def __init__(self, limits: NodeLimits, stats: NodeStatistics) -> None:
        self.limits = limits
        self.stats = stats
        self.topic_bytes = 0
        self.pending_bytes = 0
        self.partial_bytes = 0

    @property
    def total_bytes(self) -> int:
        return self.topic_bytes + self.pending_bytes + self.partial_bytes

    def account(self, name: str) -> ConnectionBudget:
        """A new connection's account; ``close`` it when the connection ends."""
        return ConnectionBudget(self, name)

    def check(self, kind: str, what: str, grow: int) -> Refusal | None:
        """Whether the node can hold ``grow`` more bytes of ``kind`` (topic, pending, partial)."""
        limits = self.limits
        name = f"node_{kind}_bytes" if kind != "partial" else "node_partial_frame_bytes"
        held: int = getattr(self, f"{kind}_bytes")
        limit: int = getattr(limits, name)
        if held + grow > limit:
            return Refusal(Status.OVERLOADED, _over(what, grow, "the node's", name, limit, held))
        total, limit = self.total_bytes, limits.node_total_bytes
        if total + grow > limit:
            text = _over(what, grow, "the node's", "node_total_bytes", limit, total)
            return Refusal(Status.OVERLOADED, text)
        return None

    def take_served(self, size: int) -> Refusal | None:
        """Count a unicast delivered here for another node; a refusal if it does not fit."""
        refusal = self.check("pending", "a unicast for another node", size)
        if refusal is None:
            self.pending_bytes += size
        return refusal

    def release_served(self, size: int) -> None:
        """A unicast delivered for another node has ended."""
        self.pending_bytes -= size

    def status(self) -> dict[str, Any]:
        """What the counters hold and the budgets, for ``Node.status``."""
        return {
            "topicBytes": self.topic_bytes,
            "pendingBytes": self.pending_bytes,
            "partialFrameBytes": self.partial_bytes,
            "totalBytes": self.total_bytes,
            "limits": self.limits.budgets(),
        }


class ConnectionBudget:
    """What one client connection holds against its budgets and the node's.

    It is the ``BufferBudget`` of the connection's decoder (``hold``), and
    the account its topics and unicasts are taken on.
    """

    __slots__ = ("closed", "name", "node", "partial_bytes", "pending_bytes", "topic_bytes")

    def __init__(self, node: NodeBudget, name: str) -> None:
        self.node = node
        self.name = name
        self.topic_bytes = 0
        self.pending_bytes = 0
        self.partial_bytes = 0
        self.closed = False

    def __repr__(self) -> str:
        return (
            f"<ConnectionBudget {self.name} topics={self.topic_bytes} "
            f"pending={self.pending_bytes} partial={self.partial_bytes}>"
        )

    def set_topics(self, size: int) -> Refusal | None:
        """Make ``size`` bytes this connection's topic bytes; a refusal leaves them as they were."""
        node = self.node
        limit = node.limits.connection_topic_bytes
        if size > limit:
            text = _over("topics", size, "this connection's", "connection_topic_bytes", limit, 0)
            return Refusal(Status.INVALID_REQUEST, text)
        grow = size - self.topic_bytes
        if grow > 0:
            refusal = node.check("topic", "new topics", grow)
            if refusal is not None:
                return refusal
        self.topic_bytes = size
        node.topic_bytes += grow
        return None

    def take_pending(self, size: int) -> Refusal | None:
        """Count a unicast of ``size`` bytes now in flight; a refusal if it does not fit."""
        node = self.node
        limits = node.limits
        if (  # every unicast passes here: the common case without a call or a string
            self.pending_bytes + size <= limits.connection_pending_bytes
            and node.pending_bytes + size <= limits.node_pending_bytes
            and node.topic_bytes + node.pending_bytes + node.partial_bytes + size
            <= limits.node_total_bytes
        ):
            self.pending_bytes += size
            node.pending_bytes += size
            return None
        limit = limits.connection_pending_bytes
        if self.pending_bytes + size > limit:
            text = _over(
                "a unicast",
                size,
                "this connection's",
                "connection_pending_bytes",
                limit,
                self.pending_bytes,
            )
            return Refusal(Status.OVERLOADED, text)
        refusal = node.check("pending", "a unicast", size)
        if refusal is None:
            self.pending_bytes += size
            node.pending_bytes += size
        return refusal

    def release_pending(self, size: int) -> None:
        """A unicast counted by ``take_pending`` has ended (even after ``close``)."""
        self.pending_bytes -= size
        self.node.pending_bytes -= size

    def hold(self, size: int) -> bool:
        """``BufferBudget.hold``: bytes of the frame this connection's decoder waits for."""
        node = self.node
        grow = size - self.partial_bytes
        if grow > 0:
            refusal = None if size <= ALWAYS_HELD else node.check("partial", "a frame", grow)
            if refusal is not None or self.closed:
                node.stats.refused += 1
                log_event(
                    logger,
                    logging.WARNING,
                    "partial_frame_refused",
                    remote=self.name,
                    announced=size,
                    node_partial_bytes=node.partial_bytes,
                    node_total_bytes=node.total_bytes,
                    budget=node.limits.node_partial_frame_bytes,
                    total_budget=node.limits.node_total_bytes,
                    error=refusal.text if refusal is not None else "connection closed",
                )
                return False
        self.partial_bytes = size
        node.partial_bytes += grow
        return True

    def close(self) -> None:
        """The connection ended: give back its topic and partial-frame bytes.

        Its unicasts in flight are given back as each ends.
        """
        self.closed = True
        node = self.node
        node.topic_bytes -= self.topic_bytes
        node.partial_bytes -= self.partial_bytes
        self.topic_bytes = self.partial_bytes = 0
