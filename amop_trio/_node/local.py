"""The clients connected to this node: their sessions, topics and local delivery.

``LocalHub`` knows every SDK session and the topic table, and fans
multicasts out to them without waiting on any subscriber's bounded outbox
(unicasts to them are ``unicast.LocalUnicast``). It neither reads frames nor
knows other nodes.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import trio

from .._errors import ConnectionLostError, WireError
from .._log import log_event
from .._transport.connection import FrameConnection, FrameTransport
from .._wire.channel import ChannelVerifyRequest
from .._wire.peer import PeerType
from .._wire.status import Status
from .._wire.ws import Frame, PacketType, encode_frame, new_seq
from .router import TopicTable

if TYPE_CHECKING:
    from .unicast import LocalUnicast

logger = logging.getLogger("amop_trio.node")


@dataclass(slots=True)
class NodeStatistics:
    """Counters of a node since it started."""

    connections: int = 0
    unicasts: int = 0
    multicasts: int = 0
    multicast_dropped: int = 0
    refused: int = 0
    forwarded: int = 0


class Session(FrameConnection):
    """One SDK client connected to this node, speaking ws.

    Messages travel through the node as ws AMOP bodies; the ``*_frame``
    methods turn them into this client's frames, so a subclass speaking
    another protocol (``channel.ChannelSession``) overrides those alone.
    """

    #: Sessions of one protocol share the frames of a multicast.
    protocol: ClassVar[str] = "ws"

    def __init__(self, sid: int, sock: FrameTransport, outbox_size: int) -> None:
        super().__init__(sock, name=sock.remote, outbox_size=outbox_size)
        self.id = sid
        self.acks = False
        self.requests = 0
        self.dropped = 0
        #: node seqs of unicasts delivered to this session and not answered yet.
        self.deliveries: dict[bytes, LocalUnicast] = {}

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.name}>"

    def verify_request(self, request: ChannelVerifyRequest) -> bytes:
        """The frame that asks this publisher to challenge a private-topic subscriber."""
        return encode_frame(Frame(PeerType.VERIFY_REQUEST, new_seq(), request.encode()))

    def request_frame(self, seq: bytes, body: bytes) -> bytes | None:
        """The frame delivering unicast ``body`` under ``seq``; None if it cannot carry it."""
        return encode_frame(Frame(PacketType.AMOP_REQUEST, seq, body))

    def multicast_frame(self, body: bytes) -> bytes | None:
        """The frame delivering multicast ``body``; None if it cannot carry it."""
        return encode_frame(Frame(PacketType.AMOP_BROADCAST, new_seq(), body))

    def on_close(self, reason: str) -> None:
        deliveries, self.deliveries = self.deliveries, {}
        for unicast in deliveries.values():  # each tries another subscriber
            unicast.fail(ConnectionLostError(f"subscriber {self.name} disconnected: {reason}"))


class LocalHub:
    """Sessions of this node and delivery to them."""

    def __init__(self, rng: random.Random, stats: NodeStatistics) -> None:
        self.table = TopicTable()
        self.sessions: dict[int, Session] = {}
        self.stats = stats
        self.rng = rng
        self._session_ended = trio.Event()
        #: Set when the node stops: unicasts in flight are dropped, not answered.
        self.stopping = False

    def add(self, session: Session) -> None:
        self.sessions[session.id] = session
        self.stats.connections += 1

    def remove(self, session: Session) -> set[str]:
        """Forget a session; returns the topics it held."""
        self.sessions.pop(session.id, None)
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
            while self.sessions:
                await self._session_ended.wait()

    def set_topics(self, session: int, topics: list[str], *, max_topics: int) -> bool:
        """Replace a session's topic set; True if it changed. ``WireError`` past the limit."""
        if len(topics) > max_topics:
            raise WireError(
                f"{len(topics)} topics exceed the limit of {max_topics} per connection",
                status=Status.INVALID_REQUEST,
            )
        added, removed = self.table.set_topics(session, topics)
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
