"""Unicasts in flight through this node, each a small state machine.

A unicast is tried on one subscriber after another until one answers, the
candidates run out or the deadline passes. Nothing waits on it: ``attempt``
sends it to a subscriber not tried yet, and whoever learns the outcome moves
it on. The reader that receives the subscriber's reply calls ``resolve``,
which answers the publisher at once from that reader; a subscriber leaving
or a route breaking calls ``fail``, which tries the next one; the node's
``Deadlines`` calls ``expire``. So a round trip costs no task, no cancel
scope and no hand-off between tasks in the node.

The outcome goes to a ``Requester``, exactly once: ``answer(status, data)``
with status 0 and the subscriber's reply, or a ``Status`` code with a UTF-8
reason. The state machines know the rest of the node only through the
narrow ``LocalSubscribers`` and ``Router`` protocols below.
"""

from __future__ import annotations

import random
import time
from typing import Protocol

import trio

from .._errors import AmopError
from .._requests import Deadlines
from .._wire.fisco3 import Frame, new_seq
from .._wire.status import Status
from .limits import NodeStatistics
from .selection import choose_unicast, choose_weighted
from .session import Delivered, Session

#: Seconds a subscriber that failed (silent, or its outbox full) is tried only last.
AVOID_FOR = 30.0


class Requester(Protocol):
    """Whoever asked for a unicast, and is owed its outcome."""

    def answer(self, status: int, data: bytes) -> None:
        """The outcome: 0 and the reply, or a status code and a reason."""


class LocalSubscribers(Protocol):
    """What a unicast needs to reach this node's own subscribers (``LocalHub``)."""

    rng: random.Random
    #: True once the node stops: unicasts in flight are dropped, not answered.
    stopping: bool
    #: Checks on subscribers that hold a unicast (``subscriber_timeout`` after delivery).
    deadlines: Deadlines
    subscriber_timeout: float

    @property
    def stats(self) -> NodeStatistics: ...

    def subscribers(self, topic: str) -> list[int]: ...

    def session(self, sid: int) -> Session | None: ...


class Router(Protocol):
    """What a unicast needs to reach subscribers anywhere in the network (``Network``)."""

    node_id: str
    rng: random.Random
    request_timeout: float

    @property
    def hub(self) -> LocalSubscribers: ...

    def subscriber_counts(self, topic: str) -> dict[str, int]:
        """Subscribers of ``topic`` on each reachable node, this one included."""

    def send_remote(self, job: RoutedUnicast, node: str) -> bool:
        """Send ``job`` to ``node``; False if there is no route to it."""

    def forget_remote(self, request_id: bytes) -> None:
        """Stop waiting for another node's answer to ``request_id``."""


class LocalUnicast:
    """A unicast delivered to this node's own subscribers of ``topic`` (of ``only``, if set)."""

    __slots__ = (
        "_holder",
        "_registered",
        "body",
        "done",
        "hub",
        "last_resort",
        "last_status",
        "requester",
        "topic",
        "tried",
    )

    def __init__(
        self,
        hub: LocalSubscribers,
        topic: str,
        body: bytes,
        requester: Requester,
        only: set[int] | None = None,
        *,
        last_resort: bool = True,
    ) -> None:
        self.hub = hub
        #: Whether subscribers failing lately may be tried when no other is left: not when
        #: another node may have a healthy one, which a quick refusal lets the unicast reach.
        self.last_resort = last_resort
        self.topic = topic
        self.body = body
        self.requester = requester
        self.done = False
        self.last_status: int = Status.NO_SUBSCRIBER_CLIENT
        self.tried: set[int] = set()
        if only is not None:
            self.tried.update(s for s in hub.subscribers(topic) if s not in only)
        #: The ``deliveries`` dict of the session holding this unicast, and its key there.
        self._registered: tuple[dict[bytes, Delivered], bytes] | None = None
        #: The session holding it, while one does.
        self._holder: Session | None = None

    def _avoided(self, sid: int) -> bool:
        session = self.hub.session(sid)
        return session is not None and session.avoid_until > trio.current_time()

    def attempt(self) -> None:
        """Send to a local subscriber not tried yet; if none is left, answer the last failure.

        Subscribers that failed lately are tried last (``Session.avoid_until``).
        """
        hub = self.hub
        while not self.done:
            sid = choose_unicast(
                hub.subscribers(self.topic),
                self.tried,
                hub.rng,
                self._avoided,
                last_resort=self.last_resort,
            )
            if sid is None:
                if self.last_status == Status.NO_SUBSCRIBER_CLIENT and hub.subscribers(self.topic):
                    self.last_status = Status.SEND_FAILED  # all there are failing lately
                self.finish(
                    self.last_status, f"no local subscriber of {self.topic!r} answered".encode()
                )
                return
            self.tried.add(sid)
            target = hub.session(sid)
            if target is None or target.closed:
                continue
            seq = new_seq()
            data = target.request_frame(seq, self.body)
            if data is None:
                continue
            if not target.send_nowait(data):  # its outbox is full: busy
                self.last_status = Status.SEND_FAILED
                target.avoid_until = trio.current_time() + AVOID_FOR
                continue
            target.deliveries[seq] = self
            self._registered = (target.deliveries, seq)
            self._holder = target
            now = trio.current_time()
            hub.deadlines.add(now + hub.subscriber_timeout, _Silence(self, target, seq))
            return

    def check_silence(self, holder: Session, seq: bytes) -> None:
        """``subscriber_timeout`` after delivery: move on if nothing came from the holder.

        A subscriber heard from (any frame, ping or pong) within the last
        ``subscriber_timeout`` keeps the unicast: it is slow, not gone. One
        that was silent is skipped and avoided for ``AVOID_FOR``; its answer,
        should it come, is ignored. Without another subscriber to try here,
        the unicast fails over to the next node (or fails, at the last one),
        instead of waiting out the whole request timeout.
        """
        hub = self.hub
        now = trio.current_time()
        silent_for = time.monotonic() - holder.sock.heard_at
        if silent_for < hub.subscriber_timeout and not holder.closed:
            hub.deadlines.add(now + hub.subscriber_timeout, _Silence(self, holder, seq))
            return
        holder.avoid_until = now + AVOID_FOR
        holder.deliveries.pop(seq, None)
        self._registered = None
        self._holder = None
        self.last_status = Status.TIMEOUT
        hub.stats.silent_subscribers += 1
        self.attempt()

    def resolve(self, reply: Frame) -> None:
        """The subscriber answered (or refused, with a status)."""
        self._registered = None
        holder, self._holder = self._holder, None
        if holder is not None:
            holder.avoid_until = 0.0
        if reply.status == 0:
            self.finish(0, reply.payload)
            return
        if reply.status != Status.NO_SUBSCRIBER_CLIENT:
            self.last_status = Status.SEND_FAILED
        self.attempt()

    def fail(self, error: AmopError) -> None:
        """The subscriber went away before answering: try another (unless the node stops)."""
        self._registered = None
        self._holder = None
        if self.hub.stopping:  # its publisher is about to lose its connection too
            self.done = True
            return
        self.attempt()

    def expire(self) -> None:
        reason = f"no local subscriber of {self.topic!r} answered in time"
        self.finish(Status.TIMEOUT, reason.encode())

    def finish(self, status: int, data: bytes) -> None:
        if self.done:
            return
        self.done = True
        if self._registered is not None:
            deliveries, seq = self._registered
            deliveries.pop(seq, None)
            self._registered = None
        self._holder = None
        self.body = b""
        self.requester.answer(status, data)


class _Silence:
    """A look, ``subscriber_timeout`` after a delivery, at whether its subscriber still speaks."""

    __slots__ = ("_holder", "_seq", "_unicast")

    def __init__(self, unicast: LocalUnicast, holder: Session, seq: bytes) -> None:
        self._unicast = unicast
        self._holder = holder
        self._seq = seq

    @property
    def done(self) -> bool:
        """The unicast was answered, ended or moved on since."""
        registered = self._unicast._registered
        return self._unicast.done or registered is None or registered[1] != self._seq

    def expire(self) -> None:
        self._unicast.check_silence(self._holder, self._seq)


class RoutedUnicast:
    """A unicast from a publisher on this node, to one subscriber anywhere in the network.

    Nodes are picked with probability proportional to their subscribers of
    the topic, so every subscriber of the network is equally likely; a node
    that fails is not picked again.
    """

    __slots__ = (
        "body",
        "deadline",
        "done",
        "last_status",
        "local",
        "request_id",
        "requester",
        "router",
        "topic",
        "tried",
    )

    def __init__(
        self, router: Router, topic: str, body: bytes, requester: Requester, deadline: float
    ) -> None:
        self.router = router
        self.topic = topic
        self.body = body
        self.requester = requester
        self.deadline = deadline
        self.done = False
        self.last_status: int = Status.NO_SUBSCRIBER_CLIENT
        self.tried: set[str] = set()
        #: The local part while this node's own subscribers are being tried.
        self.local: LocalUnicast | None = None
        #: The id under which another node has it, while one does.
        self.request_id: bytes | None = None

    def attempt(self) -> None:
        """Send to a node not tried yet; answer with the last failure if none is left."""
        router = self.router
        while not self.done:
            counts = router.subscriber_counts(self.topic)
            for node in self.tried:
                counts.pop(node, None)
            if not counts:
                if not self.tried:
                    self.finish(
                        Status.NO_SUBSCRIBER_NODE, f"no subscriber for {self.topic!r}".encode()
                    )
                else:
                    self.finish(
                        self.last_status, f"no subscriber of {self.topic!r} answered".encode()
                    )
                return
            node = choose_weighted(counts, router.rng)
            self.tried.add(node)
            if node == router.node_id:
                self.local = LocalUnicast(
                    router.hub,
                    self.topic,
                    self.body,
                    _LocalPart(self),
                    last_resort=len(counts) == 1,
                )
                self.local.attempt()
                return
            if router.send_remote(self, node):
                return
            self.last_status = Status.SEND_FAILED

    def local_outcome(self, status: int, data: bytes) -> None:
        """This node's own subscribers answered (a failure, if ``status``)."""
        self.local = None
        self._outcome(status, data)

    def remote_outcome(self, status: int, data: bytes) -> None:
        """The other node tried last answered (a failure, if ``status``)."""
        self.request_id = None
        self._outcome(status, data)

    def fail(self, error: AmopError) -> None:
        """The other node tried last became unreachable."""
        self.remote_outcome(Status.SEND_FAILED, str(error).encode())

    def _outcome(self, status: int, data: bytes) -> None:
        """Done on success, else on to the next node."""
        if self.done:
            return
        if status == 0:
            self.finish(0, data)
            return
        self.last_status = status
        self.attempt()

    def expire(self) -> None:
        timeout = self.router.request_timeout
        self.finish(Status.TIMEOUT, f"no reply on {self.topic!r} within {timeout:g} s".encode())

    def finish(self, status: int, data: bytes) -> None:
        if self.done:
            return
        self.done = True
        local, self.local = self.local, None
        if local is not None:
            local.finish(Status.TIMEOUT, b"")  # its outcome is ignored: this one is done
        if self.request_id is not None:
            self.router.forget_remote(self.request_id)
            self.request_id = None
        self.body = b""
        self.requester.answer(status, data)


class _LocalPart:
    """The requester of a routed unicast's local attempt: its outcome moves the unicast on."""

    __slots__ = ("_job",)

    def __init__(self, job: RoutedUnicast) -> None:
        self._job = job

    def answer(self, status: int, data: bytes) -> None:
        self._job.local_outcome(status, data)
