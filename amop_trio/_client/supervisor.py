"""The client's connection supervisor: one uplink to a node, kept up for the client's life.

``Supervisor.run`` opens an uplink (ws, or channel for ``channel://``
endpoints), handshakes, and serves it: the uplink's own reader, writer and
pinger run in the uplink's nursery, and the reader dispatches what the node
sends (deliveries to the ``TopicRegistry``, answers to the requests waiting
on the uplink, verification requests to the client's private-topic worker).
When the uplink dies, every request in flight on it fails at once with
``ConnectionLostError``; the supervisor reconnects with exponential backoff
and jitter, handshakes again and sends the complete topic set.

A node that cannot drop topics from a connection (a real 3.x node) is told
of a smaller topic set by a new uplink: the supervisor opens it with the new
set, hands over to it (``cutover.Cutover``) and retires the old uplink once
nothing waits on it. Each uplink runs in a task of the supervisor's nursery.
"""

from __future__ import annotations

import logging
import ssl
import uuid
from typing import NoReturn

import trio

from .._backoff import backoff_delay
from .._errors import (
    AmopError,
    AmopTimeoutError,
    ClientClosedError,
    ConnectError,
    ConnectionLostError,
    NotSupportedError,
)
from .._log import log_event
from .._requests import Deadlines
from .._transport import channel_socket
from .._wire.fisco2_json import (
    ChannelVerifyRequest,
)
from .._wire.topics import is_private_family
from .channel_uplink import open_channel_uplink
from .config import ClientConfig
from .cutover import Cutover, Side
from .events import Answer, Delivery
from .subscription import TopicRegistry
from .uplink import Uplink, check_answer
from .ws_uplink import open_ws_uplink

logger = logging.getLogger("amop_trio.client")

#: Seconds a closing client gives its uplink to say goodbye (its own close is bounded).
_CLOSE_WAIT = 2.0


class Supervisor:
    """Keeps one uplink to a node up, and the node informed of the client's topics."""

    def __init__(
        self,
        config: ClientConfig,
        registry: TopicRegistry,
        verify_requests: trio.MemorySendChannel[ChannelVerifyRequest],
    ) -> None:
        self.config = config
        self.registry = registry
        self._verify_requests = verify_requests
        self.uplink: Uplink | None = None
        self._uplink_changed = trio.Event()
        #: Times out the requests of every uplink of this client.
        self.deadlines = Deadlines()
        self.closed = False
        self.reconnects = 0
        self._topic_lock = trio.Lock()
        self._sync_wanted = trio.Event()
        self._uplinks: trio.Nursery | None = None
        self._plain_logged = False

    @property
    def connected(self) -> bool:
        uplink = self.uplink
        return uplink is not None and not uplink.closed

    # -- the current uplink -------------------------------------------------

    async def wait_uplink(self) -> Uplink:
        """The live uplink, once there is one; ``ClientClosedError`` once the client closed."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self.closed:
                raise ClientClosedError("the client is closed")
            uplink = self.uplink
            if uplink is not None and not uplink.closed:
                return uplink
            await self._uplink_changed.wait()

    def live_uplink(self) -> Uplink | None:
        """The current uplink if it is up, without waiting."""
        uplink = self.uplink
        return None if uplink is None or uplink.closed else uplink

    async def wait_uplink_until(self, deadline: float) -> Uplink:
        """The live uplink once there is one; ``AmopTimeoutError`` if none comes by ``deadline``."""
        with trio.move_on_at(deadline):
            return await self.wait_uplink()
        raise AmopTimeoutError("no connection in time")

    async def wait_disconnected(self) -> None:
        """Return once the current uplink is lost (at once if none is up)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while self.connected and not self.closed:
            await self._uplink_changed.wait()

    def _set_uplink(self, uplink: Uplink | None) -> None:
        if uplink is not None:
            uplink.deadlines = self.deadlines
        self.uplink = uplink
        self._uplink_changed.set()
        self._uplink_changed = trio.Event()

    async def close(self) -> None:
        """Stop for good: close the uplink politely while its reader can still see the answer."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self.closed = True
        self.registry.closed = True
        self._uplink_changed.set()
        uplink = self.uplink
        if uplink is not None:
            # The uplink's own task says goodbye, while its reader can still see the answer.
            uplink.close("client closed")
            with trio.move_on_after(_CLOSE_WAIT):
                await uplink.ended.wait()

    # -- the topic set ----------------------------------------------------

    async def sync_topics(self) -> None:
        """Send the complete topic set to the node if it has changed since last sent."""
        async with self._topic_lock:
            uplink = self.uplink
            version = self.registry.version
            if uplink is None or uplink.closed or uplink.topics_version == version:
                return
            if not uplink.private_topics:
                self._refuse_private(uplink)
            topics = self.registry.topics
            try:
                if not uplink.topics_replace and not uplink.topics_sent <= set(topics):
                    await self._replace(uplink, topics, version)
                    return
                with trio.move_on_after(self.config.timeout):
                    answer = await uplink.send_topics(topics)
                    if answer is not None and answer.status != 0:
                        self._topics_refused(uplink, answer)
                    uplink.topics_sent = frozenset(topics)
                    uplink.topics_version = version
            except ConnectionLostError:
                return  # the next uplink sends the set after its handshake

    def _topics_refused(self, uplink: Uplink, answer: Answer) -> NoReturn:
        """The node refused the topic set (a limit or budget) and kept the one it had.

        The subscriptions it did not take end with the node's error, raised
        here too; the set without them is sent next.
        """
        try:
            check_answer(answer, "(subscription)")
        except AmopError as error:
            for sub in self.registry.subscriptions():
                if sub.topic not in uplink.topics_sent:
                    sub.fail(error)
            raise
        raise AssertionError("a failure answer raises")

    def _refuse_private(self, uplink: Uplink) -> None:
        """Fail the private-topic subscriptions a node cannot enforce, rather than degrade."""
        error = NotSupportedError(
            f"the node at {uplink.endpoint} cannot enforce private topics (FISCO BCOS 3.x has "
            "none): subscribing would let anyone receive them; use a 2.x (channel://) or "
            "amop_trio node"
        )
        for sub in self.registry.subscriptions():
            if is_private_family(sub.topic):
                sub.fail(error)

    def sync_topics_soon(self) -> None:
        """Have ``run_topic_syncer`` send the topic set; never blocks."""
        self._sync_wanted.set()

    async def run_topic_syncer(self) -> NoReturn:
        """Send the topic set whenever ``sync_topics_soon`` asks, for ever."""
        while True:
            await self._sync_wanted.wait()
            self._sync_wanted = trio.Event()
            try:
                await self.sync_topics()
            except AmopError as exc:
                log_event(logger, logging.DEBUG, "topic_sync_failed", error=exc)

    # -- supervision ------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep one uplink up for the client's whole life; started once the first is up."""
        urls = self.config.urls
        started = False
        attempt = 0
        index = 0
        async with trio.open_nursery() as uplinks:
            self._uplinks = uplinks
            while True:
                url = urls[index % len(urls)]
                index += 1
                failure: AmopError
                try:
                    uplink = await self._open_uplink(url)
                    if started:
                        self.reconnects += 1
                    else:
                        started = True
                        task_status.started()
                    attempt = 0
                    await self._serve_until_lost(uplink)
                except AmopError as error:
                    failure = error
                else:
                    failure = ConnectionLostError(f"connection to {url} lost")
                if self.closed:
                    break
                if (not started and index >= len(urls)) or (started and not self.config.reconnect):
                    uplinks.cancel_scope.cancel()
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
            uplinks.cancel_scope.cancel()

    async def _serve_until_lost(self, uplink: Uplink) -> None:
        """Make ``uplink`` current; return once it (or its successor) is lost."""
        await trio.lowlevel.checkpoint_if_cancelled()
        assert self._uplinks is not None
        self._set_uplink(uplink)
        self._uplinks.start_soon(self._run_uplink, uplink)
        self.sync_topics_soon()
        while self.uplink is not None:
            await self._uplink_changed.wait()

    async def _open_uplink(self, url: str) -> Uplink:
        """Open an uplink to ``url``; once TLS is in play, a TLS failure is final for that try."""
        context = self.config.ssl_context
        if context is None and not self._plain_logged:
            self._plain_logged = True
            log_event(
                logger,
                logging.INFO,
                "plain_connection",
                endpoint=url,
                reason=self.config.tls_choice,
            )
        return await self._connect(url, context)

    async def _connect(self, url: str, ssl_context: ssl.SSLContext | None) -> Uplink:
        """Open the connection and handshake; ``ConnectError`` says why not."""
        config = self.config
        opener = (
            open_channel_uplink if url.startswith(f"{channel_socket.SCHEME}://") else open_ws_uplink
        )
        return await opener(
            url,
            ssl_context=ssl_context,
            max_frame_size=config.max_frame_size,
            connect_timeout=config.connect_timeout,
            outbox_size=config.outbox_size,
        )

    async def _run_uplink(self, uplink: Uplink) -> None:
        """Serve one uplink until it ends; the current uplink's end is a lost connection."""

        async def read_loop(_: trio.Nursery) -> None:
            await self._reader(uplink)

        try:
            reason = await uplink.run(
                read_loop,
                ping_interval=self.config.ping_interval,
                ping_timeout=self.config.ping_timeout,
            )
        finally:
            if self.uplink is uplink:
                self._set_uplink(None)
        log_event(logger, logging.INFO, "disconnected", endpoint=uplink.endpoint, reason=reason)

    # -- replacing an uplink (unsubscribing on a 3.x node) ------------------------------

    async def _replace(self, old: Uplink, topics: list[str], version: int) -> None:
        """Hand over from ``old`` to a new uplink that holds only ``topics``.

        Unicasts keep arriving on both uplinks and are answered on the one they
        came by; multicasts are counted once (``Cutover``). If the new uplink
        cannot be opened, the old one stays and the unsubscription is retried
        at the next change.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        assert self._uplinks is not None
        try:
            new = await self._connect(old.endpoint, self.config.ssl_context)
        except ConnectError as exc:
            log_event(logger, logging.WARNING, "unsubscribe_deferred", error=exc)
            return
        if self.closed:  # the client closed while the new uplink opened: its nursery is gone
            await new.sock.aclose()
            return
        marker = f"_amop_trio_cutover_{uuid.uuid4().hex}"
        cut = Cutover(marker)
        old.cutover, old.cutover_side = cut, Side.OLD
        new.cutover, new.cutover_side = cut, Side.NEW
        new.deadlines = self.deadlines
        self._uplinks.start_soon(self._run_uplink, new)
        with trio.move_on_after(self.config.timeout):
            await new.send_topics([*topics, marker])
            await old.send_topics(sorted(old.topics_sent | {marker}))
            number = 0
            while not cut.known.is_set() and not (old.closed and new.closed):
                number += 1
                await new.broadcast(marker, str(number).encode())
                with trio.move_on_after(0.05):
                    await cut.known.wait()
        if not cut.known.is_set():
            if not cut.seen_by(Side.NEW) or new.closed:
                log_event(logger, logging.WARNING, "unsubscribe_deferred", endpoint=old.endpoint)
                old.cutover = new.cutover = None
                new.close("replacement not taken up")
                return
            for delivery in cut.abandon():
                self.registry.deliver(new, delivery)
        new.topics_sent = frozenset([*topics, marker])
        new.topics_version = version
        if not old.closed:
            self._set_uplink(new)
        self._uplinks.start_soon(self._retire, old, new, cut)

    async def _retire(self, old: Uplink, new: Uplink, cut: Cutover) -> None:
        """Close ``old`` once nothing waits on it and it is past the cut (or in time)."""
        with trio.move_on_after(self.config.timeout):
            await old.wait_idle()
            await cut.done.wait()
        old.close("replaced by an uplink with fewer topics")
        if new.cutover is cut:
            cut.abandon()
            new.cutover = None

    async def _reader(self, uplink: Uplink) -> None:
        """Dispatch each frame from the node, until the uplink ends."""
        while True:
            event = uplink.decode(await uplink.sock.receive())
            if isinstance(event, Delivery):
                cut = uplink.cutover
                if cut is not None and (event.multicast or event.topic == cut.topic):
                    for delivery in cut.route(uplink.cutover_side, event):
                        self.registry.deliver(uplink, delivery)
                    continue
                refusal = self.registry.deliver(uplink, event)
                if refusal is not None:
                    await uplink.send(refusal)
            elif isinstance(event, Answer):
                if not uplink.resolve(event):
                    log_event(logger, logging.DEBUG, "frame_ignored", status=event.status)
            elif isinstance(event, ChannelVerifyRequest):
                try:
                    self._verify_requests.send_nowait(event)
                except trio.WouldBlock:
                    log_event(logger, logging.WARNING, "challenge_dropped", topic=event.topic)
