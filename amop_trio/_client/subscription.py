"""Subscriptions: per-topic bounded queues, and the registry of the client's topics.

A ``Subscription`` is the application's end: a bounded memory channel that
the client's reader feeds without ever blocking (a full queue drops
multicasts, counting them, and refuses unicasts so the node can pick another
subscriber). ``TopicRegistry`` knows every open subscription by wire topic,
turns deliveries into messages on them, and versions the topic set so the
client's connection can tell when the node must hear it again.
"""

from __future__ import annotations

import contextlib
import logging
import random
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

import trio

from .._errors import AmopError, ClientClosedError
from .._log import log_event
from .._wire.status import Status
from .._wire.topics import PRIVATE_PREFIX, new_challenge_topic
from .message import Message, MessageKind

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from .events import Delivery
    from .uplink import Uplink

logger = logging.getLogger("amop_trio.client")

#: Queued messages a subscription hands out before it lets other tasks run.
RECEIVE_BATCH = 64


class SubscriptionHost(Protocol):
    """What a subscription needs of its client."""

    @property
    def registry(self) -> TopicRegistry: ...

    async def sync_topics(self) -> None:
        """Send the topic set to the node now, if it changed; return once it has it."""

    def sync_topics_soon(self) -> None:
        """Send the topic set to the node soon, without waiting."""

    def start_challenge_answerer(
        self, challenges: Subscription, key: ec.EllipticCurvePrivateKey
    ) -> None:
        """Answer, for as long as ``challenges`` is open, the challenges sent to it."""


class SubscriptionStatistics:
    """Counters of one subscription, as returned by ``Subscription.statistics()``."""

    __slots__ = ("busy", "dropped", "queued")

    def __init__(self, queued: int, dropped: int, busy: int) -> None:
        self.queued = queued
        self.dropped = dropped
        self.busy = busy

    def __repr__(self) -> str:
        return (
            f"SubscriptionStatistics(queued={self.queued}, dropped={self.dropped}, "
            f"busy={self.busy})"
        )


class Subscription:
    """Messages of one topic, in arrival order, through a bounded queue.

    Use it as ``async with client.subscribe(topic) as sub: async for msg in sub``:
    leaving the ``async with`` unsubscribes, and the node has the new topic set
    when it exits. ``async for msg in client.subscribe(topic)`` works too: the
    subscription opens on the first iteration, and closes when the client
    closes or, after the loop is left, when the subscription is garbage
    collected (its finalizer only hands the unsubscription to the event loop).
    When the queue is full, further multicasts are dropped (see
    ``statistics().dropped``) and unicasts are refused with status 3003 so the
    node can pick another subscriber (``statistics().busy``).
    """

    def __init__(
        self,
        host: SubscriptionHost,
        topic: str,
        buffer: int,
        *,
        private_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> None:
        if not topic:
            raise ValueError("topic must not be empty")
        self.topic = topic
        self._host = host
        self._key = private_key
        self._challenges: Subscription | None = None
        self._send, self._recv = trio.open_memory_channel[Message](buffer)
        self._state = "new"  # new -> open -> closed
        self._last: Message | None = None
        self._dropped = 0
        self._busy = 0
        self._batched = 0
        #: Hands the unsubscription of a forgotten subscription to the event loop.
        self._token: trio.lowlevel.TrioToken | None = None
        #: Why the subscription ended, if the client ended it (raised by the next receive).
        self._error: AmopError | None = None

    def __repr__(self) -> str:
        return f"<Subscription topic={self.topic!r} {self._state}>"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        if self._state == "new":
            await self.open()
        self._settle_last()
        try:
            if self._batched < RECEIVE_BATCH:
                # Queued messages are handed out without a scheduler pass each, so a
                # busy subscriber drains its queue in bursts instead of one message
                # per pass while the reader keeps filling it.
                await trio.lowlevel.checkpoint_if_cancelled()
                try:
                    message = self._recv.receive_nowait()
                    self._batched += 1
                except trio.WouldBlock:
                    self._batched = 0
                    message = await self._recv.receive()
            else:
                self._batched = 0
                message = await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self._error is not None:
                raise self._error from None
            raise StopAsyncIteration from None
        self._last = message
        return message

    async def receive(self) -> Message:
        """The next message; raises ``ClientClosedError`` once unsubscribed."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise ClientClosedError(f"subscription to {self.topic!r} is closed") from None

    def statistics(self) -> SubscriptionStatistics:
        return SubscriptionStatistics(
            self._recv.statistics().current_buffer_used, self._dropped, self._busy
        )

    @property
    def is_open(self) -> bool:
        return self._state == "open"

    async def open(self) -> None:
        """Subscribe: the node has the topic once this returns (a cancel point)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._state != "new":
            return
        self.open_nowait()
        await self._host.sync_topics()
        if self._error is not None:
            raise self._error

    def open_nowait(self) -> None:
        """Register the subscription with the client; the node hears of it at the next sync."""
        if self._state != "new":
            return
        self._state = "open"
        self._token = trio.lowlevel.current_trio_token()
        host = self._host
        if self._key is not None:
            # Proves the key to publishers' nodes: they send random bytes here to sign.
            challenges = Subscription(host, new_challenge_topic(self.topic), 16)
            challenges.open_nowait()
            self._challenges = challenges
            host.start_challenge_answerer(challenges, self._key)
        host.registry.add(self)

    def _settle_last(self) -> None:
        if self._last is not None:
            self._last.settle()
            self._last = None

    def close_nowait(self) -> bool:
        """Unsubscribe without telling the node yet; True if this call did close it."""
        if self._state != "open":
            self._state = "closed"
            return False
        self._state = "closed"
        self._host.registry.remove(self)
        if self._challenges is not None:
            self._challenges.close_nowait()
        self._send.close()
        self._settle_last()
        # Unicasts nobody has seen go back to the node, which tries another subscriber.
        while True:
            try:
                message = self._recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            message.settle(Status.NO_SUBSCRIBER_CLIENT)
        return True

    def fail(self, error: AmopError) -> None:
        """End the subscription with ``error``: the next receive raises it."""
        if self._state == "open":
            self._error = error
            self.close_nowait()
            self._host.sync_topics_soon()

    async def aclose(self) -> None:
        """Unsubscribe; the node gets the new topic set before this returns.

        A cancel point; once it has begun it finishes even if cancelled, within
        the client's timeout.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.close_nowait():
            with trio.CancelScope(shield=True):
                await self._host.sync_topics()

    def _forgotten(self) -> None:
        if self.close_nowait():
            self._host.sync_topics_soon()

    def __del__(self) -> None:
        # A finalizer may run anywhere, even in another thread: it only asks the
        # event loop to unsubscribe, and does nothing once that loop is gone.
        token = getattr(self, "_token", None)
        if token is not None and getattr(self, "_state", None) == "open":
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._forgotten)

    def offer(self, message: Message) -> bool:
        """Hand a message to the application without blocking; False if the queue is full."""
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            if message.kind is MessageKind.MULTICAST:
                self._dropped += 1
                if self._dropped % 10000 == 1:
                    log_event(
                        logger,
                        logging.WARNING,
                        "multicast_dropped",
                        topic=self.topic,
                        dropped=self._dropped,
                        reason="subscription queue full",
                    )
            else:
                self._busy += 1
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True


class TopicRegistry:
    """The client's open subscriptions by wire topic, and the version of that set."""

    def __init__(self) -> None:
        # Weak, so a subscription left by ``break`` can be collected and unsubscribe.
        self._by_topic: dict[str, weakref.WeakSet[Subscription]] = {}
        #: Grows whenever the set of topics changes.
        self.version = 0
        self.closed = False

    @property
    def topics(self) -> list[str]:
        """The wire topics subscribed to, sorted."""
        return sorted(self._by_topic)

    def subscriptions(self) -> list[Subscription]:
        """Every open subscription."""
        return [sub for subs in self._by_topic.values() for sub in subs]

    def add(self, sub: Subscription) -> None:
        if self.closed:
            raise ClientClosedError("the client is closed")
        subs = self._by_topic.setdefault(sub.topic, weakref.WeakSet())
        subs.add(sub)
        if len(subs) == 1:
            self.version += 1

    def remove(self, sub: Subscription) -> None:
        subs = self._by_topic.get(sub.topic)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._by_topic[sub.topic]
            self.version += 1

    def deliver(self, uplink: Uplink, delivery: Delivery) -> bytes | None:
        """Queue a message on its subscriptions; the frame refusing a unicast nobody took."""
        kind = MessageKind.MULTICAST if delivery.multicast else MessageKind.UNICAST
        topic = delivery.topic
        shown = topic.removeprefix(PRIVATE_PREFIX)
        message = Message(shown, delivery.data, kind, uplink, delivery.seq, topic)
        subs = self._by_topic.get(topic)
        if kind is MessageKind.MULTICAST:
            for sub in subs or ():
                sub.offer(message)
            return None
        if not subs:
            status = Status.NO_SUBSCRIBER_CLIENT
        else:
            candidates = list(subs)
            if len(candidates) > 1:
                random.shuffle(candidates)
            if any(sub.offer(message) for sub in candidates):
                uplink.unanswered += 1
                return None
            status = Status.SEND_FAILED
        return message.reply_frame(b"", status)
