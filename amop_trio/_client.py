"""The AMOP client: ``open_amop``, subscriptions, unicast and multicast.

Theory of operation
-------------------
``open_amop`` owns a nursery holding one *supervisor* task. The supervisor
opens a connection (a ``Link``: ws, or the 2.x channel protocol for
``channel://`` endpoints), handshakes, and runs three tasks for it: a reader
that decodes frames and dispatches them, a writer that drains the link's
bounded outbox onto the socket, and a pinger that declares the link dead when
a WebSocket ping (a channel heartbeat) is not answered in time. When a link
dies, every request in flight on it fails at once with ``ConnectionLostError``;
the supervisor then reconnects with exponential backoff and jitter,
handshakes again and resends the complete topic set.

Subscriptions outlive links: each has a bounded memory channel that the
reader feeds without ever blocking, so one slow subscriber cannot stall the
connection (a full queue answers unicasts with a failure status, so the node
can pick another subscriber, and drops multicasts, counting them).
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import math
import os
import random
import ssl
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import trio

from ._backoff import backoff_delay
from ._errors import (
    AmopError,
    AmopTimeoutError,
    ClientClosedError,
    ConnectError,
    ConnectionLostError,
    EncodeError,
    NoSubscriberError,
    RejectedError,
)
from ._groups import unwrapped_errors
from ._link import Answer, Delivery, Link, open_channel_link, open_ws_link
from ._log import log_event
from ._requests import Deadlines
from ._transport import channel_socket, ws_socket
from ._wire.fisco2 import MAX_TOPIC_BYTES, ChannelVerifyRequest, ChannelVerifyResult
from ._wire.fisco3 import DEFAULT_MAX_FRAME_SIZE
from ._wire.status import Status
from ._wire.topics import (
    PRIVATE_PREFIX,
    PUSH_PREFIX,
    VERIFY_PREFIX,
    new_challenge_topic,
    private_topic,
)

logger = logging.getLogger("amop_trio.client")

#: Default seconds a publish waits for its reply.
DEFAULT_TIMEOUT = 10.0
#: Queued messages a subscription hands out before it lets other tasks run.
RECEIVE_BATCH = 64
#: Status codes real nodes use for a timed-out request (3.x ``WsError::TimeOut``, tars).
_TIMEOUT_STATUSES = frozenset({Status.TIMEOUT, -4008, -1})
_NO_SUBSCRIBER_STATUSES = frozenset({Status.NO_SUBSCRIBER_NODE, Status.NO_SUBSCRIBER_CLIENT})

Data = bytes | bytearray | memoryview | str
_Path = str | os.PathLike[str]
#: A certificate directory in the FISCO layout, or (CA, certificate, key) paths.
CertSource = _Path | tuple[_Path, _Path, _Path]
if TYPE_CHECKING:  # cryptography loads only when TLS or private topics are used
    from cryptography.hazmat.primitives.asymmetric import ec

    #: A secp256k1 private key, or the PEM file or bytes holding it.
    KeySource = ec.EllipticCurvePrivateKey | str | os.PathLike[str] | bytes
    #: A secp256k1 public key, or the PEM file or bytes holding it.
    PublicKeySource = ec.EllipticCurvePublicKey | str | os.PathLike[str] | bytes
#: What a directory needs to hold to serve as SDK certificates.
SDK_CERT_FILES = ("ca.crt", "sdk.crt", "sdk.key")


def as_bytes(data: bytes | bytearray | memoryview | str) -> bytes:
    """Message data as bytes; text is encoded as UTF-8."""
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)


class MessageKind(enum.Enum):
    """How a message was sent: to one subscriber, or to all of them."""

    UNICAST = "unicast"
    MULTICAST = "multicast"


class Message:
    """A message received on a subscription.

    ``topic`` and ``data`` are what the publisher sent; ``kind`` says whether
    it was a unicast or a multicast. A unicast expects exactly one
    ``await message.reply(data)``; when the application moves on without
    replying, the subscription sends an empty reply so the publisher never
    waits in vain.
    """

    __slots__ = ("_link", "_replied", "_seq", "_wire_topic", "data", "kind", "topic")

    def __init__(
        self, topic: str, data: bytes, kind: MessageKind, link: Link, seq: bytes, wire_topic: str
    ) -> None:
        self.topic = topic
        self.data = data
        self.kind = kind
        self._link = link
        self._seq = seq
        self._wire_topic = wire_topic
        self._replied = kind is MessageKind.MULTICAST

    def __repr__(self) -> str:
        return f"<Message {self.kind.value} topic={self.topic!r} data={self.data[:32]!r}>"

    @property
    def replied(self) -> bool:
        """True once the message needs no reply any more."""
        return self._replied

    def _reply_frame(self, data: bytes, status: int = 0) -> bytes:
        return self._link.reply_frame(self._seq, self._wire_topic, data, status)

    async def reply(self, data: Data) -> None:
        """Answer a unicast; the publisher's ``publish`` returns ``data``."""
        if self.kind is not MessageKind.UNICAST:
            raise AmopError("only unicast messages take a reply; this one was a multicast")
        if self._replied:
            raise AmopError(f"this message on topic {self.topic!r} has already been answered")
        self._replied = True
        frame = self._reply_frame(as_bytes(data))
        if not self._link.send_nowait(frame):  # the outbox is full: wait for room
            await self._link.send(frame)

    def _settle(self, status: int = 0) -> None:
        """Answer with an empty reply (or a failure status) if nobody did; never blocks."""
        if not self._replied:
            self._replied = True
            self._link.send_nowait(self._reply_frame(b"", status))


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

    Use it as ``async with client.subscribe(topic) as sub: async for msg in sub``
    or directly as ``async for msg in client.subscribe(topic)``. Leaving the
    ``async with``, or dropping the subscription after leaving the loop,
    unsubscribes. When the queue is full, further multicasts are dropped (see
    ``statistics().dropped``) and unicasts are refused with status 3003 so the
    node can pick another subscriber (``statistics().busy``).
    """

    def __init__(
        self,
        client: AmopClient,
        topic: str,
        buffer: int,
        *,
        private_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> None:
        if not topic:
            raise ValueError("topic must not be empty")
        self.topic = topic
        self._client = client
        self._key = private_key
        self._challenges: Subscription | None = None
        self._send, self._recv = trio.open_memory_channel[Message](buffer)
        self._state = "new"  # new -> open -> closed
        self._last: Message | None = None
        self._dropped = 0
        self._busy = 0
        self._batched = 0

    def __repr__(self) -> str:
        return f"<Subscription topic={self.topic!r} {self._state}>"

    async def __aenter__(self) -> Self:
        await self._open()
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
            await self._open()
        self._settle_last()
        try:
            message = None
            if self._batched < RECEIVE_BATCH:
                # Queued messages are handed out without a scheduler pass each, so a
                # busy subscriber drains its queue in bursts instead of one message
                # per pass while the reader keeps filling it.
                await trio.lowlevel.checkpoint_if_cancelled()
                with contextlib.suppress(trio.WouldBlock):
                    message = self._recv.receive_nowait()
                    self._batched += 1
            if message is None:
                self._batched = 0
                message = await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
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

    async def _open(self) -> None:
        if self._state != "new":
            return
        self._state = "open"
        client = self._client
        if self._key is not None:
            # Proves the key to publishers' nodes: they send random bytes here to sign.
            challenges = Subscription(client, new_challenge_topic(self.topic), 16)
            challenges._state = "open"
            client._add_subscription(challenges)
            self._challenges = challenges
            assert client._nursery is not None
            client._nursery.start_soon(_answer_challenges, challenges, self._key)
        client._add_subscription(self)
        await client._sync_topics()

    def _settle_last(self) -> None:
        if self._last is not None:
            self._last._settle()
            self._last = None

    def _close_now(self) -> bool:
        """Unsubscribe without blocking; True if this call did close it."""
        if self._state != "open":
            self._state = "closed"
            return False
        self._state = "closed"
        self._client._remove_subscription(self)
        if self._challenges is not None:
            self._challenges._close_now()
        self._send.close()
        self._settle_last()
        # Unicasts nobody has seen go back to the node, which tries another subscriber.
        while True:
            try:
                message = self._recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            message._settle(Status.NO_SUBSCRIBER_CLIENT)
        return True

    async def aclose(self) -> None:
        """Unsubscribe; the node gets the new topic set before this returns."""
        if self._close_now():
            with trio.CancelScope(shield=True), trio.move_on_after(self._client._timeout):
                await self._client._sync_topics()

    def __del__(self) -> None:
        if getattr(self, "_state", None) == "open" and self._close_now():
            self._client._schedule_topic_sync()

    def _offer(self, message: Message) -> bool:
        """Hand a message to the application without blocking; False if the queue is full."""
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            if message.kind is MessageKind.MULTICAST:
                self._dropped += 1
            else:
                self._busy += 1
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True


class AmopClient:
    """A connection to an AMOP node, kept alive across node restarts.

    Create it with ``open_amop``; all methods are safe to call from many tasks.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        ssl_context: ssl.SSLContext | None,
        implicit_tls: bool,
        timeout: float,
        connect_timeout: float,
        ping_interval: float,
        ping_timeout: float,
        reconnect: bool,
        max_frame_size: int,
        subscription_buffer: int,
        outbox_size: int,
    ) -> None:
        self._urls = [_endpoint_url(e, tls=ssl_context is not None) for e in endpoints]
        if not self._urls:
            raise ValueError("open_amop needs at least one endpoint")
        #: Whether any endpoint speaks channel, whose topics are at most 254 bytes.
        self._channel = any(url.startswith(f"{channel_socket.SCHEME}://") for url in self._urls)
        self._ssl_context = ssl_context
        self._implicit_tls = implicit_tls
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._reconnect = reconnect
        self._max_frame_size = max_frame_size
        self._subscription_buffer = subscription_buffer
        self._outbox_size = outbox_size
        # Weak, so a subscription left by ``break`` is collected and unsubscribes.
        self._subscriptions: dict[str, weakref.WeakSet[Subscription]] = {}
        #: private topics this client publishes: approved keys and the registration.
        self._private_topics: dict[str, tuple[list[ec.EllipticCurvePublicKey], Subscription]] = {}
        self._topics_version = 0
        self._topic_lock = trio.Lock()
        self._link: Link | None = None
        self._link_changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._deadlines = Deadlines()
        self._closed = False
        self._reconnects = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("connected" if self.connected else "connecting")
        return f"<AmopClient {self.endpoint} {state}>"

    # -- public API -------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a connection to a node is up."""
        return self._link is not None and not self._link.closed

    @property
    def endpoint(self) -> str:
        """The URL of the node currently (or last) connected to."""
        return self._link.endpoint if self._link is not None else self._urls[0]

    @property
    def topics(self) -> list[str]:
        """The topics this client subscribes to, sorted."""
        return sorted(self._subscriptions)

    @property
    def reconnects(self) -> int:
        """How many times the connection was re-established."""
        return self._reconnects

    def subscribe(
        self, topic: str, *, buffer: int | None = None, private_key: KeySource | None = None
    ) -> Subscription:
        """A subscription to ``topic``; see ``Subscription`` for how to use it.

        With ``private_key`` (a secp256k1 key, or a PEM file from ``amop keys
        new``) it subscribes to the private topic ``topic``: publishers on
        other nodes reach it once it has proved, with that key, that it is one
        of their approved subscribers.
        """
        if self._closed:
            raise ClientClosedError("the client is closed")
        size = self._subscription_buffer if buffer is None else buffer
        if private_key is None:
            self._check_topic(topic)
            return Subscription(self, topic, size)
        from ._security.keys import as_private_key

        key = as_private_key(private_key)
        # The challenge topic is the longest topic a private subscription uses.
        self._check_topic(f"{VERIFY_PREFIX}{private_topic(topic)}_{'0' * 32}", topic)
        return Subscription(self, private_topic(topic), size, private_key=key)

    async def declare_private_topic(
        self, topic: str, public_keys: Sequence[PublicKeySource]
    ) -> None:
        """Publish on private topic ``topic`` to subscribers holding one of ``public_keys``.

        The node then asks this client to challenge each subscriber on another
        node; only those that sign with an approved key receive the topic's
        messages. Send them with ``publish(topic, data, private=True)`` or
        ``broadcast(..., private=True)``.
        """
        from ._security.keys import as_public_key

        keys = [as_public_key(k) for k in public_keys]
        wire = private_topic(topic)
        self._check_topic(PUSH_PREFIX + wire, topic)
        if wire in self._private_topics:
            self._private_topics[wire] = (keys, self._private_topics[wire][1])
            return
        registration = Subscription(self, PUSH_PREFIX + wire, 1)
        self._private_topics[wire] = (keys, registration)
        await registration._open()

    async def _verify_subscriber(self, request: ChannelVerifyRequest) -> None:
        """Challenge one subscriber on behalf of the node, and report the verdict."""
        entry = self._private_topics.get(request.topic)
        if entry is None:
            return
        keys = entry[0]
        challenge = os.urandom(16)
        try:
            signature = await self.publish(request.topic_for_cert, challenge)
            link = await self._wait_link()
        except AmopError as exc:
            log_event(logger, logging.INFO, "challenge_failed", topic=request.topic, error=exc)
            return
        from ._security.keys import verify_signature

        verified = any(verify_signature(key, challenge, signature) for key in keys)
        result = ChannelVerifyResult(
            0 if verified else 1, request.node_id, request.topic, request.topic_for_cert
        )
        log_event(
            logger, logging.INFO, "subscriber_checked", topic=request.topic, verified=verified
        )
        await link.send(link.verify_result_frame(result))

    async def publish(
        self, topic: str, data: Data, *, timeout: float | None = None, private: bool = False
    ) -> bytes:
        """Unicast ``data`` to one random subscriber of ``topic``; return its reply.

        Raises ``NoSubscriberError``, ``AmopTimeoutError``, ``ConnectionLostError``
        or ``RejectedError`` (with the node's status code). ``private`` sends on
        the private topic ``topic`` (see ``declare_private_topic``).
        """
        topic, payload, timeout = self._outgoing(topic, data, timeout, private)
        try:
            link, deadline = await self._link_until(timeout)
            answer = await link.publish(topic, payload, deadline)
        except AmopTimeoutError:
            raise AmopTimeoutError(f"no reply on topic {topic!r} within {timeout:g} s") from None
        _check_status(answer, topic)
        return answer.payload

    async def _link_until(self, timeout: float) -> tuple[Link, float]:
        """The live link, and the deadline ``timeout`` seconds from now for a request on it.

        ``AmopTimeoutError`` if no link comes up in time. Requests then time out
        through the client's ``Deadlines`` rather than a cancel scope each.
        """
        deadline = trio.current_time() + timeout
        link = self._link
        if link is None or link.closed:
            with trio.move_on_at(deadline):
                return await self._wait_link(), deadline
            raise AmopTimeoutError("no connection in time")
        return link, deadline

    def _outgoing(
        self, topic: str, data: Data, timeout: float | None, private: bool
    ) -> tuple[str, bytes, float]:
        """The wire topic, the bytes and the timeout of a message to send."""
        topic = private_topic(topic) if private else topic
        return topic, as_bytes(data), self._timeout if timeout is None else timeout

    async def broadcast(
        self, topic: str, data: Data, *, timeout: float | None = None, private: bool = False
    ) -> None:
        """Multicast ``data`` to every subscriber of ``topic``.

        Returns once the node accepted it (amop_trio nodes acknowledge each
        multicast; with a real FISCO node, once it was written to the socket).
        """
        topic, payload, timeout = self._outgoing(topic, data, timeout, private)
        try:
            link, deadline = await self._link_until(timeout)
            answer = await link.broadcast(topic, payload, deadline)
        except AmopTimeoutError:
            raise AmopTimeoutError(
                f"node did not accept the multicast on {topic!r} within {timeout:g} s"
            ) from None
        if answer is not None:
            _check_status(answer, topic)

    async def node_status(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The node's id, links and topic directory (amop_trio nodes only).

        Raises ``RejectedError`` with status 3004 from a node that does not
        answer status queries, such as a real FISCO BCOS node (over channel,
        without asking: only amop_trio nodes say who they are in the handshake).
        """
        timeout = self._timeout if timeout is None else timeout
        with trio.move_on_after(timeout) as scope:
            answer = await (await self._wait_link()).node_status()
        if scope.cancelled_caught:
            raise AmopTimeoutError(f"node did not answer the status query within {timeout:g} s")
        _check_status(answer, "(status)")
        status: dict[str, Any] = json.loads(answer.payload)
        return status

    async def wait_connected(self) -> None:
        """Wait until a connection to a node is up (a cancel point when it already is)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._wait_link()

    async def wait_disconnected(self) -> None:
        """Wait until the current connection is lost (at once if none is up).

        With ``wait_connected`` this lets an application say when its node
        goes away and when the client is back, without polling.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while self.connected and not self._closed:
            await self._link_changed.wait()

    # -- subscriptions ----------------------------------------------------

    def _add_subscription(self, sub: Subscription) -> None:
        if self._closed:
            raise ClientClosedError("the client is closed")
        subs = self._subscriptions.setdefault(sub.topic, weakref.WeakSet())
        subs.add(sub)
        if len(subs) == 1:
            self._topics_version += 1

    def _remove_subscription(self, sub: Subscription) -> None:
        subs = self._subscriptions.get(sub.topic)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subscriptions[sub.topic]
            self._topics_version += 1

    def _check_topic(self, wire_topic: str, topic: str | None = None) -> None:
        """``EncodeError`` now, rather than a failing subscription later, for a channel node."""
        if not self._channel:
            return
        size = len(wire_topic.encode("utf-8", "surrogatepass"))
        if size > MAX_TOPIC_BYTES:
            shown = topic if topic is not None else wire_topic
            raise EncodeError(
                f"topic {shown[:40]!r} is too long for the channel protocol: it takes "
                f"{size} bytes on the wire, at most {MAX_TOPIC_BYTES} fit"
            )

    def _schedule_topic_sync(self) -> None:
        if self._nursery is not None and not self._closed:
            with contextlib.suppress(RuntimeError):  # the nursery is closing
                self._nursery.start_soon(self._sync_topics_quietly)

    async def _sync_topics_quietly(self) -> None:
        try:
            with trio.move_on_after(self._timeout):
                await self._sync_topics()
        except AmopError as exc:
            log_event(logger, logging.DEBUG, "topic_sync_failed", error=exc)

    async def _sync_topics(self) -> None:
        """Send the complete topic set to the node if it has changed since last sent."""
        async with self._topic_lock:
            link = self._link
            if link is None or link.closed or link.topics_version == self._topics_version:
                return
            version = self._topics_version
            try:
                answer = await link.send_topics(self.topics)
                if answer is not None:
                    _check_status(answer, "(subscription)")
            except ConnectionLostError:
                return  # the next link sends the set after its handshake
            link.topics_version = version

    # -- connection supervision ---------------------------------------------

    async def _wait_link(self) -> Link:
        while True:
            if self._closed:
                raise ClientClosedError("the client is closed")
            link = self._link
            if link is not None and not link.closed:
                return link
            await self._link_changed.wait()

    async def _close_link(self) -> None:
        """Close the current connection politely while its reader can still see the answer."""
        link = self._link
        if link is not None:
            link.close("client closed")
            await link.sock.aclose(1000, "client closed")

    def _set_link(self, link: Link | None) -> None:
        if link is not None:
            link.deadlines = self._deadlines
        self._link = link
        self._link_changed.set()
        self._link_changed = trio.Event()

    async def _supervise(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep one link up for the client's whole life."""
        started = False
        attempt = 0
        index = 0
        while True:
            url = self._urls[index % len(self._urls)]
            index += 1
            failure: AmopError
            try:
                link = await self._open_link(url)
                if started:
                    self._reconnects += 1
                else:
                    started = True
                    task_status.started()
                attempt = 0
                await self._run_link(link)
            except AmopError as error:
                failure = error
            else:
                failure = ConnectionLostError(f"connection to {url} lost")
            if self._closed:
                return
            if not started and index >= len(self._urls):
                raise failure
            if started and not self._reconnect:
                raise failure
            if not started:
                continue
            delay = backoff_delay(attempt)
            attempt += 1
            log_event(
                logger,
                logging.INFO,
                "reconnecting",
                endpoint=url,
                error=failure,
                delay=f"{delay:.2f}",
            )
            await trio.sleep(delay)

    async def _open_link(self, url: str) -> Link:
        context = self._ssl_context
        try:
            return await self._connect(url, context)
        except ConnectError:
            if not self._implicit_tls:
                raise
            # Certificates were found, not asked for: the node may simply not use TLS.
            if url.startswith("wss://"):
                plain = "ws://" + url.removeprefix("wss://")
            elif url.startswith(f"{channel_socket.SCHEME}://"):
                plain = url
            else:
                raise
            try:
                return await self._connect(plain, None)
            except ConnectError:
                pass
            raise

    async def _connect(self, url: str, ssl_context: ssl.SSLContext | None) -> Link:
        """Open the connection and handshake; ``ConnectError`` says why not."""
        if url.startswith(f"{channel_socket.SCHEME}://"):
            return await open_channel_link(
                url,
                ssl_context=ssl_context,
                max_frame_size=self._max_frame_size,
                connect_timeout=self._connect_timeout,
                outbox_size=self._outbox_size,
            )
        return await open_ws_link(
            url,
            ssl_context=ssl_context,
            max_frame_size=self._max_frame_size,
            connect_timeout=self._connect_timeout,
            outbox_size=self._outbox_size,
        )

    async def _run_link(self, link: Link) -> None:
        self._set_link(link)

        async def read_loop(nursery: trio.Nursery) -> None:
            nursery.start_soon(self._sync_topics_quietly)
            await self._reader(link)

        try:
            reason = await link.run(
                read_loop, ping_interval=self._ping_interval, ping_timeout=self._ping_timeout
            )
        finally:
            if self._link is link:
                self._set_link(None)
        log_event(logger, logging.INFO, "disconnected", endpoint=link.endpoint, reason=reason)

    async def _reader(self, link: Link) -> None:
        while True:
            event = link.decode(await link.sock.receive())
            if isinstance(event, Delivery):
                refusal = self._deliver(link, event)
                if refusal is not None:
                    await link.send(refusal)
            elif isinstance(event, Answer):
                if not link.resolve(event):
                    log_event(logger, logging.DEBUG, "frame_ignored", status=event.status)
            elif isinstance(event, ChannelVerifyRequest) and self._nursery is not None:
                self._nursery.start_soon(self._verify_subscriber, event)

    def _deliver(self, link: Link, delivery: Delivery) -> bytes | None:
        """Queue a message on its subscriptions; the frame refusing a unicast nobody took."""
        kind = MessageKind.MULTICAST if delivery.multicast else MessageKind.UNICAST
        topic = delivery.topic
        shown = topic.removeprefix(PRIVATE_PREFIX)
        message = Message(shown, delivery.data, kind, link, delivery.seq, topic)
        subs = self._subscriptions.get(topic)
        if kind is MessageKind.MULTICAST:
            for sub in subs or ():
                if not sub._offer(message) and sub._dropped % 10000 == 1:
                    log_event(
                        logger,
                        logging.WARNING,
                        "multicast_dropped",
                        topic=topic,
                        dropped=sub._dropped,
                        reason="subscription queue full",
                    )
            return None
        if not subs:
            status = Status.NO_SUBSCRIBER_CLIENT
        else:
            candidates = list(subs)
            if len(candidates) > 1:
                random.shuffle(candidates)
            if any(sub._offer(message) for sub in candidates):
                return None
            status = Status.SEND_FAILED
        return message._reply_frame(b"", status)


async def _answer_challenges(challenges: Subscription, key: ec.EllipticCurvePrivateKey) -> None:
    """Sign every challenge a publisher sends to this subscriber's challenge topic."""
    from ._security.keys import sign_recoverable

    async for message in challenges:
        if message.kind is MessageKind.UNICAST:
            with contextlib.suppress(AmopError):
                await message.reply(sign_recoverable(key, message.data))


def find_sdk_certs() -> Path | None:
    """The first SDK certificate directory among the usual places, if any."""
    candidates = [os.environ.get("AMOP_SDK_CERTS"), "nodes/sdk", "conf"]
    for candidate in candidates:
        if candidate and all((Path(candidate) / f).is_file() for f in SDK_CERT_FILES):
            return Path(candidate)
    return None


def _check_status(answer: Answer, topic: str) -> None:
    status = answer.status
    if status == 0:
        return
    detail = answer.payload[:1000].decode("utf-8", "replace")
    if status in _TIMEOUT_STATUSES:
        raise AmopTimeoutError(
            f"the subscriber of {topic!r} did not reply in time (status {status})"
        )
    if status in _NO_SUBSCRIBER_STATUSES:
        raise NoSubscriberError(status, detail or f"nobody subscribes to {topic!r}")
    raise RejectedError(status, detail)


_WS_SCHEMES = ("ws://", "wss://")


def _endpoint_url(endpoint: str, *, tls: bool) -> str:
    """The URL of an endpoint: ``channel://host:port`` or a WebSocket URL."""
    if endpoint.startswith(f"{channel_socket.SCHEME}://"):
        return channel_socket.endpoint_url(endpoint)
    return ws_socket.endpoint_url(endpoint, tls=tls)


@asynccontextmanager
async def open_amop(
    endpoints: str | Sequence[str],
    *,
    ssl_context: ssl.SSLContext | None = None,
    certs: CertSource | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    connect_timeout: float = 10.0,
    ping_interval: float = 5.0,
    ping_timeout: float | None = None,
    reconnect: bool = True,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    subscription_buffer: int = 1000,
    outbox_size: int = 256,
) -> AsyncIterator[AmopClient]:
    """Connect to an AMOP node and keep the connection up until the block exits.

    ``endpoints`` is ``host:port``, ``ws://host:port`` or ``wss://host:port``
    (FISCO BCOS 3.x protocol), or ``channel://host:port`` (the 2.x channel
    protocol, for 2.x nodes), or a list of them tried in turn. For TLS, pass
    ``certs``, a directory in the FISCO layout (``ca.crt``, ``sdk.crt``,
    ``sdk.key``) or a (CA, certificate, key) tuple of paths, or an
    ``ssl_context``; ``channel://`` then runs over TLS.
    With neither, ``host:port`` and ``channel://`` endpoints use the SDK
    certificates found in ``$AMOP_SDK_CERTS``, ``./nodes/sdk`` (written by
    ``amop chain``) or ``./conf`` (the FISCO SDK default), and fall back to
    plain TCP if the node does not speak TLS. The first connection must succeed
    (``ConnectError`` otherwise); later drops are repaired in the background
    when ``reconnect`` is true. ``timeout`` is the default for ``publish`` and
    ``broadcast``; a silent connection is declared dead after
    ``ping_interval + ping_timeout`` seconds.
    """
    if isinstance(endpoints, str):
        endpoints = [endpoints]
    cert_dir = certs
    implicit_tls = False
    if (
        certs is None
        and ssl_context is None
        and not any(e.startswith(_WS_SCHEMES) for e in endpoints)
    ):
        cert_dir = find_sdk_certs()
        implicit_tls = cert_dir is not None
    if isinstance(cert_dir, tuple):
        from ._security.tls import client_context

        ssl_context = client_context(*cert_dir)
    elif cert_dir is not None:
        from ._security.tls import client_context_from_dir

        ssl_context = client_context_from_dir(cert_dir)
    if not (math.isfinite(ping_interval) and ping_interval > 0):
        raise ValueError(f"ping_interval must be a positive number of seconds, not {ping_interval}")
    client = AmopClient(
        endpoints,
        ssl_context=ssl_context,
        implicit_tls=implicit_tls,
        timeout=timeout,
        connect_timeout=connect_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_interval if ping_timeout is None else ping_timeout,
        reconnect=reconnect,
        max_frame_size=max_frame_size,
        subscription_buffer=subscription_buffer,
        outbox_size=outbox_size,
    )
    with unwrapped_errors():
        async with trio.open_nursery() as nursery:
            client._nursery = nursery
            nursery.start_soon(client._deadlines.run)
            await nursery.start(client._supervise)
            try:
                yield client
            finally:
                client._closed = True
                client._link_changed.set()
                with trio.CancelScope(shield=True):
                    await client._close_link()
                nursery.cancel_scope.cancel()
