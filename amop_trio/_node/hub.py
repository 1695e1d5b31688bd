"""The clients connected to this node: their topics and local delivery.

``LocalHub`` knows every SDK session, its byte account (``budget``) and the
topic table, and fans multicasts out to them without waiting on any
subscriber's bounded outbox (unicasts to them are ``unicast.LocalUnicast``).
It neither reads frames nor knows other nodes.
"""

from __future__ import annotations

import logging
import random

import trio

from .._errors import WireError
from .._log import log_event
from .._requests import Deadlines
from .._wire.status import Status
from .budget import TOPIC_OVERHEAD, ConnectionBudget, NodeBudget
from .limits import NodeLimits, NodeStatistics
from .session import Session
from .topic_table import TopicTable

logger = logging.getLogger("amop_trio.node")


class LocalHub:
    """Sessions of this node and delivery to them."""

    def __init__(
        self,
        rng: random.Random,
        stats: NodeStatistics,
        deadlines: Deadlines,
        limits: NodeLimits | None = None,
    ) -> None:
        self.table = TopicTable()
        self.sessions: dict[int, Session] = {}
        #: The byte budgets of the node, and each session's account.
        limits = limits or NodeLimits()
        self.budget = NodeBudget(limits, stats)
        self.accounts: dict[int, ConnectionBudget] = {}
        self.stats = stats
        self.rng = rng
        #: Ends unicasts in flight, and checks on subscribers that hold one.
        self.deadlines = deadlines
        self.subscriber_timeout = limits.subscriber_timeout
        self._session_ended = trio.Event()
        #: Set when the node stops: unicasts in flight are dropped, not answered.
        self.stopping = False

    def add(self, session: Session, account: ConnectionBudget | None = None) -> None:
        """Take a session, with the account its connection's bytes are counted on."""
        self.sessions[session.id] = session
        self.accounts[session.id] = account or self.budget.account(session.name)
        self.stats.connections += 1

    def account(self, sid: int) -> ConnectionBudget:
        """The account of session ``sid``."""
        return self.accounts[sid]

    def remove(self, session: Session) -> set[str]:
        """Forget a session; returns the topics it held."""
        self.sessions.pop(session.id, None)
        account = self.accounts.pop(session.id, None)
        if account is not None:
            account.set_topics(0)
        topics = self.table.remove_session(session.id)
        self._session_ended.set()
        self._session_ended = trio.Event()
        return topics

    async def close_all(self, timeout: float) -> None:
        """Close every session politely and wait, at most ``timeout``, for them to end."""
        self.stopping = True
        for session in list(self.sessions.values()):
            session.close("node stopping", code=1001)
        with trio.move_on_after(timeout):
            await trio.lowlevel.checkpoint_if_cancelled()
            while self.sessions:
                await self._session_ended.wait()

    def set_topics(self, session: int, topics: list[str], *, max_topics: int) -> bool:
        """Replace a session's topic set; True if it changed.

        ``WireError`` past the limit or a byte budget: the session keeps its set.
        """
        if len(topics) > max_topics:
            raise WireError(
                f"{len(topics)} topics exceed the limit of {max_topics} per connection",
                status=Status.INVALID_REQUEST,
            )
        wanted = set(topics)
        size = sum(len(t.encode()) for t in wanted) + TOPIC_OVERHEAD * len(wanted)
        refusal = self.accounts[session].set_topics(size)
        if refusal is not None:
            raise refusal.error()
        added, removed = self.table.set_topics(session, wanted)
        if added or removed:
            log_event(
                logger,
                logging.INFO,
                "topics",
                session=session,
                added=",".join(sorted(added)),
                removed=",".join(sorted(removed)),
            )
        return bool(added or removed)

    def subscribers(self, topic: str) -> list[int]:
        """Sessions subscribed to ``topic``, in subscription order."""
        return self.table.subscribers(topic)

    def session(self, sid: int) -> Session | None:
        return self.sessions.get(sid)

    def topic_counts(self) -> dict[str, int]:
        return self.table.topics()

    def fan_out(self, topic: str, body: bytes, only: set[int] | None = None) -> int:
        """Queue a multicast on every local subscriber (of ``only``, if given)."""
        frames: dict[str, bytes | None] = {}  # one encoding per protocol
        delivered = 0
        for sid in self.table.subscribers(topic):
            if only is not None and sid not in only:
                continue
            target = self.sessions.get(sid)
            if target is None or target.closed:
                continue
            if target.protocol not in frames:
                frames[target.protocol] = target.multicast_frame(body)
            data = frames[target.protocol]
            if data is None:
                continue
            if target.send_nowait(data):
                delivered += 1
                continue
            target.dropped += 1
            self.stats.multicast_dropped += 1
            if target.dropped % 10000 == 1:
                log_event(
                    logger,
                    logging.WARNING,
                    "multicast_dropped",
                    session=target.id,
                    topic=topic,
                    dropped=target.dropped,
                    reason="subscriber outbox full",
                )
        return delivered

    def subscriber_count(self, topic: str, only: set[int] | None = None) -> int:
        subscribers = self.table.subscribers(topic)
        if only is None:
            return len(subscribers)
        return sum(1 for s in subscribers if s in only)
