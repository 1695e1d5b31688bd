"""Private topics: which subscribers have proved an approved key.

A private topic T travels as ``#!$TopicNeedVerify_T``. Its subscriber also
subscribes to a challenge topic ``#!$VerifyChannel_#!$TopicNeedVerify_T_<uuid>``;
its publisher registers ``#!$PushChannel_#!$TopicNeedVerify_T``.

The subscriber's node advertises, in its link state, the challenge topics of
its subscribers that are not verified yet. The publisher's node asks its
publisher to challenge each of them (VERIFY_REQUEST); the publisher unicasts a
random number to the challenge topic, checks the signature that comes back
against its approved keys, and tells its node (VERIFY_RESULT), which tells
the subscriber's node. Messages of a private topic that come from another
node are delivered only to verified subscribers, and only verified ones are
counted in the link state, so unicasts never pick the others. Publisher and
subscriber on the same node need no verification.

``PrivateTopics`` holds the state and decides, without I/O or a clock;
``Verifier`` acts on it: it pushes challenges to local publishers, and
carries verdicts to the subscribers' nodes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, NoReturn

import trio

from .._log import log_event
from .._wire.fisco2_json import (
    ChannelVerifyRequest,
    ChannelVerifyResult,
)
from .._wire.fisco3 import Frame, new_seq
from .._wire.peer import PeerType, VerifyNotice
from .._wire.topics import PUSH_PREFIX, is_private, private_of_challenge
from .topic_table import TopicTable

if TYPE_CHECKING:
    from .directory import Directory
    from .hub import LocalHub

logger = logging.getLogger("amop_trio.node")

#: Seconds before a publisher's node challenges the same subscriber again.
RECHALLENGE_AFTER = 5.0
#: Seconds after a verdict before the same challenge may be pushed again, should its
#: node still report it pending: the verdict reached a session that had gone (its
#: subscriber reconnected meanwhile), and the new session waits for a challenge.
RECHALLENGE_AFTER_VERDICT = 0.5


class PrivateTopics:
    """Verification state of this node's private-topic subscribers and publishers."""

    def __init__(self, table: TopicTable) -> None:
        self._table = table
        self._verified: dict[int, set[str]] = {}
        self._challenged: dict[tuple[str, str], float] = {}

    # -- the subscribers' side ----------------------------------------------

    def _challenges_of(self, session: int) -> dict[str, str]:
        """{challenge topic: private topic} of one session, for topics it subscribes."""
        topics = self._table.topics_of(session)
        found = {}
        for topic in topics:
            private = private_of_challenge(topic)
            if private is not None and private in topics:
                found[topic] = private
        return found

    def pending(self) -> list[str]:
        """Challenge topics of local subscribers that are not verified yet."""
        result = []
        for session in self._sessions_with_private():
            verified = self._verified.get(session, set())
            for challenge, private in self._challenges_of(session).items():
                if private not in verified:
                    result.append(challenge)
        return sorted(result)

    def allowed(self, topic: str) -> set[int] | None:
        """Sessions a message of ``topic`` from another node may reach (None: all)."""
        if not is_private(topic):
            return None
        return {s for s in self._table.subscribers(topic) if topic in self._verified.get(s, ())}

    def advertised(self, counts: dict[str, int]) -> dict[str, int]:
        """Topic counts for the link state: private topics count verified subscribers only."""
        result = {t: n for t, n in counts.items() if not is_private(t)}
        for topic in counts:
            if is_private(topic):
                allowed = self.allowed(topic)
                if allowed:
                    result[topic] = len(allowed)
        return result

    def mark(self, challenge: str, verified: bool) -> bool:
        """Record a publisher's verdict on the subscriber of ``challenge``; True if known."""
        private = private_of_challenge(challenge)
        if private is None:
            return False
        known = False
        for session in self._table.subscribers(challenge):
            known = True
            topics = self._verified.setdefault(session, set())
            if verified:
                topics.add(private)
            else:
                topics.discard(private)
        return known

    def forget(self, session: int) -> None:
        self._verified.pop(session, None)

    def _sessions_with_private(self) -> Iterable[int]:
        sessions: set[int] = set()
        for topic in self._table.topics():
            if is_private(topic):
                sessions.update(self._table.subscribers(topic))
        return sessions

    # -- the publishers' side -------------------------------------------------

    def challenged(self) -> list[tuple[str, str]]:
        """(node, challenge topic) pairs pushed to publishers and still pending."""
        return list(self._challenged)

    def publishers(self, private: str) -> list[int]:
        """Local sessions that publish ``private`` with a list of approved keys."""
        return self._table.subscribers(PUSH_PREFIX + private)

    def challenges_due(
        self, pending_by_node: Mapping[str, Iterable[str]], now: float
    ) -> list[tuple[str, str, str, int]]:
        """(node, private topic, challenge, publisher session) to push to publishers now.

        ``pending_by_node`` is each remote node's advertised pending challenges.
        A challenge is pushed again only after ``RECHALLENGE_AFTER`` seconds;
        one that is no longer pending is forgotten, so a subscriber that
        reconnects is challenged at once.
        """
        due = []
        current = set()
        for node, challenges in pending_by_node.items():
            for challenge in challenges:
                private = private_of_challenge(challenge)
                if private is None:
                    continue
                publishers = self.publishers(private)
                if not publishers:
                    continue
                key = (node, challenge)
                current.add(key)
                last = self._challenged.get(key)
                if last is None or now - last >= RECHALLENGE_AFTER:
                    self._challenged[key] = now
                    due.append((node, private, challenge, publishers[0]))
        for key in [k for k in self._challenged if k not in current]:
            del self._challenged[key]
        return due

    def answered(self, node: str, challenge: str, now: float) -> None:
        """A publisher gave its verdict on ``challenge``: due again soon if still pending."""
        key = (node, challenge)
        if key in self._challenged:
            self._challenged[key] = now - RECHALLENGE_AFTER + RECHALLENGE_AFTER_VERDICT

    def next_due(self) -> float:
        """When ``challenges_due`` may next have something to push again (inf: never)."""
        if not self._challenged:
            return math.inf
        return min(self._challenged.values()) + RECHALLENGE_AFTER


#: Seconds the verifier waits after acting, so bursts of changes share one pass.
_VERIFY_PAUSE = 0.05


class Verifier:
    """Pushes challenges to local publishers and carries their verdicts to other nodes."""

    def __init__(
        self,
        node_id: str,
        private: PrivateTopics,
        directory: Directory,
        hub: LocalHub,
        *,
        forward: Callable[[str, Frame, int], None],
        topics_changed: Callable[[], None],
    ) -> None:
        self.node_id = node_id
        self.private = private
        self.directory = directory
        self.hub = hub
        self._forward = forward
        self._topics_changed = topics_changed
        self._wake = trio.Event()

    def wake(self) -> None:
        """The directory changed: look for subscribers to challenge."""
        self._wake.set()

    async def run(self) -> NoReturn:
        """Ask local publishers to challenge the unverified subscribers other nodes report.

        Sleeps until the directory changes, or until a challenge that went
        unanswered is due again: with no private topic anywhere, it never wakes.
        """
        while True:
            with trio.move_on_at(self.private.next_due()):
                await self._wake.wait()
            self._wake = trio.Event()
            self._push_due()
            await trio.sleep(_VERIFY_PAUSE)  # changes meanwhile set ``_wake`` again

    def _push_due(self) -> None:
        pending = {}
        for node in self.directory.reachable():
            state = self.directory.state_of(node)
            if node != self.node_id and state is not None and state.pending:
                pending[node] = state.pending
        for node, private, challenge, sid in self.private.challenges_due(
            pending, trio.current_time()
        ):
            session = self.hub.sessions.get(sid)
            if session is not None:
                session.send_nowait(
                    session.verify_request(ChannelVerifyRequest(private, challenge, node))
                )
                log_event(
                    logger, logging.INFO, "challenge_requested", node=node[:12], topic=private
                )

    def verification_result(self, result: ChannelVerifyResult) -> None:
        """A local publisher's verdict: pass it to the subscriber's node."""
        challenges = (
            [result.topic_for_cert]
            if result.topic_for_cert
            else [
                challenge
                for node, challenge in self.private.challenged()
                if node == result.node_id and private_of_challenge(challenge) == result.topic
            ]
        )
        now = trio.current_time()
        for challenge in challenges:
            self.private.answered(result.node_id, challenge, now)
            self._wake.set()  # to sleep until the earlier due time
            notice = VerifyNotice(result.node_id, challenge, result.verified)
            self.on_notice(Frame(PeerType.VERIFY_NOTICE, new_seq(), notice.encode()))

    def on_notice(self, frame: Frame) -> None:
        """A verdict on its way to a subscriber's node: record it here, or pass it on."""
        notice = VerifyNotice.decode(frame.payload)
        if notice.target == self.node_id:
            if self.private.mark(notice.challenge, notice.verified):
                log_event(
                    logger,
                    logging.INFO,
                    "subscriber_verified" if notice.verified else "subscriber_refused",
                    challenge=notice.challenge[-32:],
                )
                self._topics_changed()
            return
        onward = VerifyNotice(notice.target, notice.challenge, notice.verified, notice.hop - 1)
        self._forward(
            notice.target, Frame(PeerType.VERIFY_NOTICE, frame.seq, onward.encode()), notice.hop
        )
