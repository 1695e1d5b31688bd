"""``open_amop`` and ``AmopClient``: the client's public API.

Theory of operation
-------------------
``open_amop`` owns a nursery holding the client's tasks: the ``Supervisor``
that keeps one connection (a ``Uplink``) to a node up, the timer that times out
requests (``Deadlines``), the task that tells the node when the topic set
changes, and the worker that challenges private-topic subscribers for the
node. ``AmopClient`` turns calls into requests on the current uplink and
subscriptions into entries of the ``TopicRegistry``, which the uplink's reader
feeds. Subscriptions outlive uplinks: a new uplink gets the whole topic set.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from .._errors import (
    AmopError,
    AmopTimeoutError,
    ClientClosedError,
    EncodeError,
    NotSupportedError,
)
from .._groups import unwrapped_errors
from .._log import log_event
from .._security.paths import StrPath
from .._wire.fisco2 import (
    MAX_CHANNEL_TOPIC_BYTES,
)
from .._wire.fisco2_json import (
    ChannelVerifyRequest,
)
from .._wire.fisco3 import DEFAULT_MAX_FRAME_SIZE
from .._wire.topics import PUSH_PREFIX, VERIFY_PREFIX, private_topic
from .config import CertSource, ClientConfig, make_config
from .message import Data, as_bytes
from .private import PrivatePublisher, answer_challenges
from .subscription import Subscription, TopicRegistry
from .supervisor import Supervisor
from .uplink import Uplink, check_answer

if TYPE_CHECKING:  # cryptography loads only when TLS or private topics are used
    from cryptography.hazmat.primitives.asymmetric import ec

    #: A secp256k1 private key, or the PEM file or bytes holding it.
    KeySource = ec.EllipticCurvePrivateKey | StrPath | bytes
    #: A secp256k1 public key, or the PEM file or bytes holding it.
    PublicKeySource = ec.EllipticCurvePublicKey | StrPath | bytes

logger = logging.getLogger("amop_trio.client")

#: Default seconds a publish waits for its reply.
DEFAULT_TIMEOUT = 10.0
#: Verification requests from the node waiting for the private-topic worker.
_VERIFY_QUEUE = 64


class AmopClient:
    """A connection to an AMOP node, kept alive across node restarts.

    Create it with ``open_amop``; all methods are safe to call from many
    tasks. Every async method is a cancel point, and a schedule point only
    when it waits.
    """

    def __init__(self, config: ClientConfig, nursery: trio.Nursery) -> None:
        self._config = config
        self._nursery = nursery
        self._registry = TopicRegistry()
        self._verify_send, self._verify_receive = trio.open_memory_channel[ChannelVerifyRequest](
            _VERIFY_QUEUE
        )
        self._supervisor = Supervisor(config, self._registry, self._verify_send)
        self._private = PrivatePublisher()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("connected" if self.connected else "connecting")
        return f"<AmopClient {self.endpoint} {state}>"

    # -- what a subscription needs (``SubscriptionHost``) ------------------

    @property
    def registry(self) -> TopicRegistry:
        return self._registry

    async def sync_topics(self) -> None:
        await self._supervisor.sync_topics()

    def sync_topics_soon(self) -> None:
        self._supervisor.sync_topics_soon()

    def start_challenge_answerer(
        self, challenges: Subscription, key: ec.EllipticCurvePrivateKey
    ) -> None:
        self._nursery.start_soon(answer_challenges, challenges, key)

    # -- state --------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._supervisor.closed

    @property
    def connected(self) -> bool:
        """True while a connection to a node is up."""
        return self._supervisor.connected

    @property
    def endpoint(self) -> str:
        """The URL of the node currently (or last) connected to."""
        uplink = self._supervisor.uplink
        return uplink.endpoint if uplink is not None else self._config.urls[0]

    @property
    def topics(self) -> list[str]:
        """The topics this client subscribes to, sorted."""
        return self._registry.topics

    @property
    def reconnects(self) -> int:
        """How many times the connection was re-established."""
        return self._supervisor.reconnects

    async def wait_connected(self) -> None:
        """Wait until a connection to a node is up."""
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._supervisor.wait_uplink()

    async def wait_disconnected(self) -> None:
        """Wait until the current connection is lost (at once if none is up).

        With ``wait_connected`` this lets an application say when its node
        goes away and when the client is back, without polling.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._supervisor.wait_disconnected()

    # -- subscriptions ------------------------------------------------------

    def subscribe(
        self, topic: str, *, buffer: int | None = None, private_key: KeySource | None = None
    ) -> Subscription:
        """A subscription to ``topic``; see ``Subscription`` for how to use it.

        With ``private_key`` (a secp256k1 key, or a PEM file from ``amop keys
        new``) it subscribes to the private topic ``topic``: publishers on
        other nodes reach it once it has proved, with that key, that it is one
        of their approved subscribers.
        """
        if self.closed:
            raise ClientClosedError("the client is closed")
        size = self._config.subscription_buffer if buffer is None else buffer
        if private_key is None:
            self._check_topic(topic)
            return Subscription(self, topic, size)
        from .._security.keys import as_private_key

        key = as_private_key(private_key)
        # The challenge topic is the longest topic a private subscription uses.
        self._check_topic(f"{VERIFY_PREFIX}{private_topic(topic)}_{'0' * 32}", topic)
        return Subscription(self, private_topic(topic), size, private_key=key)

    def _check_topic(self, wire_topic: str, topic: str | None = None) -> None:
        """``EncodeError`` now, rather than a failing subscription later, for a channel node."""
        if not self._config.channel:
            return
        size = len(wire_topic.encode("utf-8", "surrogatepass"))
        if size > MAX_CHANNEL_TOPIC_BYTES:
            shown = topic if topic is not None else wire_topic
            raise EncodeError(
                f"topic {shown[:40]!r} is too long for the channel protocol: it takes "
                f"{size} bytes on the wire, at most {MAX_CHANNEL_TOPIC_BYTES} fit"
            )

    # -- private topics -------------------------------------------------------

    async def declare_private_topic(
        self, topic: str, public_keys: Sequence[PublicKeySource]
    ) -> None:
        """Publish on private topic ``topic`` to subscribers holding one of ``public_keys``.

        The node then asks this client to challenge each subscriber on another
        node; only those that sign with an approved key receive the topic's
        messages. Send them with ``publish(topic, data, private=True)`` or
        ``broadcast(..., private=True)``.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        from .._security.keys import as_public_key

        keys = [as_public_key(k) for k in public_keys]
        wire = private_topic(topic)
        self._check_topic(PUSH_PREFIX + wire, topic)
        registration = self._private.registration(wire)
        if registration is not None:
            self._private.declare(wire, keys, registration)
            return
        registration = Subscription(self, PUSH_PREFIX + wire, 1)
        self._private.declare(wire, keys, registration)
        await registration.open()

    async def _challenge_subscribers(self) -> None:
        """Challenge each subscriber the node asks about, and report the verdict."""
        async for request in self._verify_receive:
            challenge = self._private.new_challenge(request)
            if challenge is None:
                continue
            try:
                signature = await self.publish(request.topic_for_cert, challenge)
                uplink = await self._supervisor.wait_uplink()
                result = self._private.verdict(request, challenge, signature)
                await uplink.send(uplink.verify_result_frame(result))
            except AmopError as exc:
                log_event(logger, logging.INFO, "challenge_failed", topic=request.topic, error=exc)

    # -- messages -------------------------------------------------------------

    def _outgoing(
        self, topic: str, data: Data, timeout: float | None, private: bool
    ) -> tuple[str, bytes, float]:
        """The wire topic, the bytes and the timeout of a message to send."""
        topic = private_topic(topic) if private else topic
        return topic, as_bytes(data), self._config.timeout if timeout is None else timeout

    async def publish(
        self, topic: str, data: Data, *, timeout: float | None = None, private: bool = False
    ) -> bytes:
        """Unicast ``data`` to one random subscriber of ``topic``; return its reply.

        Raises ``NoSubscriberError``, ``AmopTimeoutError``, ``ConnectionLostError``
        or ``RejectedError`` (with the node's status code). ``private`` sends on
        the private topic ``topic`` (see ``declare_private_topic``).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        topic, payload, timeout = self._outgoing(topic, data, timeout, private)
        try:
            deadline = trio.current_time() + timeout
            supervisor = self._supervisor
            uplink = supervisor.live_uplink() or await supervisor.wait_uplink_until(deadline)
            if private:
                _require_private_topics(uplink)
            answer = await uplink.publish(topic, payload, deadline)
        except AmopTimeoutError:
            raise AmopTimeoutError(f"no reply on topic {topic!r} within {timeout:g} s") from None
        check_answer(answer, topic)
        return answer.payload

    async def broadcast(
        self, topic: str, data: Data, *, timeout: float | None = None, private: bool = False
    ) -> None:
        """Multicast ``data`` to every subscriber of ``topic``.

        Returns once the node accepted it (amop_trio nodes acknowledge each
        multicast; with a real FISCO node, once it was written to the socket).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        topic, payload, timeout = self._outgoing(topic, data, timeout, private)
        try:
            deadline = trio.current_time() + timeout
            supervisor = self._supervisor
            uplink = supervisor.live_uplink() or await supervisor.wait_uplink_until(deadline)
            if private:
                _require_private_topics(uplink)
            answer = await uplink.broadcast(topic, payload, deadline)
        except AmopTimeoutError:
            raise AmopTimeoutError(
                f"node did not accept the multicast on {topic!r} within {timeout:g} s"
            ) from None
        if answer is not None:
            check_answer(answer, topic)

    async def node_status(
        self, *, timeout: float | None = None, topics_from: int = 0
    ) -> dict[str, Any]:
        """The node's id, links, budgets and topic directory (amop_trio nodes only).

        The answer is bounded: ``topics`` is one page of the node's own topics
        in name order (long names shortened), from the ``topics_from``-th on,
        and ``topicCount`` says how many there are.

        Raises ``RejectedError`` with status 3004 from a node that does not
        answer status queries, such as a real FISCO BCOS node (over channel,
        without asking: only amop_trio nodes say who they are in the handshake).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        timeout = self._config.timeout if timeout is None else timeout
        with trio.move_on_after(timeout) as scope:
            answer = await (await self._supervisor.wait_uplink()).node_status(topics_from)
        if scope.cancelled_caught:
            raise AmopTimeoutError(f"node did not answer the status query within {timeout:g} s")
        check_answer(answer, "(status)")
        status: dict[str, Any] = json.loads(answer.payload)
        return status


def _require_private_topics(uplink: Uplink) -> None:
    if not uplink.private_topics:
        raise NotSupportedError(
            f"the node at {uplink.endpoint} cannot enforce private topics (FISCO BCOS 3.x has "
            "none): a private message would reach anyone; use a 2.x (channel://) or "
            "amop_trio node"
        )


@asynccontextmanager
async def open_amop(
    endpoints: str | Sequence[str],
    *,
    ssl_context: ssl.SSLContext | None = None,
    certs: CertSource | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    connect_timeout: float = 10.0,
    ping_interval: float = 1.0,
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
    With neither, every endpoint but ``ws://`` ones uses the SDK certificates
    found in ``$AMOP_SDK_CERTS``, ``./nodes/sdk`` (written by ``amop chain``)
    or ``./conf`` (the FISCO SDK default). Plain text is used only for
    ``ws://`` endpoints or when no certificates are found (logged once). Once
    TLS is in play it is never given up: a TLS failure is a ``ConnectError``
    that says why. A wrong
    ``$AMOP_SDK_CERTS`` is a ``CertificateError``. The first connection must
    succeed (``ConnectError`` otherwise); later drops are repaired in the
    background when ``reconnect`` is true. ``timeout`` is the default for
    ``publish`` and ``broadcast``. A silent connection is declared dead after
    ``ping_interval + ping_timeout`` seconds (2 by default, about what nodes
    take to notice a dead neighbour); requests in flight on it then fail with
    ``ConnectionLostError``. A message larger than the node accepts fails at
    once with ``FrameTooLargeError`` and nothing is sent.
    """
    config = make_config(
        endpoints,
        ssl_context=ssl_context,
        certs=certs,
        timeout=timeout,
        connect_timeout=connect_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        reconnect=reconnect,
        max_frame_size=max_frame_size,
        subscription_buffer=subscription_buffer,
        outbox_size=outbox_size,
    )
    with unwrapped_errors():
        async with trio.open_nursery() as nursery:
            client = AmopClient(config, nursery)
            supervisor = client._supervisor
            nursery.start_soon(supervisor.deadlines.run)
            nursery.start_soon(supervisor.run_topic_syncer)
            nursery.start_soon(client._challenge_subscribers)
            await nursery.start(supervisor.serve)
            try:
                yield client
            finally:
                with trio.CancelScope(shield=True):
                    await supervisor.close()
                nursery.cancel_scope.cancel()
