"""The client's connection supervisor: one link to a node, kept up for the client's life.

``Supervisor.run`` opens a link (ws, or channel for ``channel://``
endpoints), handshakes, and serves it: the link's own reader, writer and
pinger run in the link's nursery, and the reader dispatches what the node
sends (deliveries to the ``TopicRegistry``, answers to the requests waiting
on the link, verification requests to the client's private-topic worker).
When the link dies, every request in flight on it fails at once with
``ConnectionLostError``; the supervisor reconnects with exponential backoff
and jitter, handshakes again and sends the complete topic set.

A node that cannot drop topics from a connection (a real 3.x node) is told
of a smaller topic set by a new link: the supervisor opens it with the new
set, hands over to it (``cutover.Cutover``) and retires the old link once
nothing waits on it. Each link runs in a task of the supervisor's nursery.
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
from .._wire.fisco2 import ChannelVerifyRequest
from .._wire.topics import is_private_family
from .channel_link import open_channel_link
from .config import ClientConfig
from .cutover import Cutover, Side
from .events import Answer, Delivery
from .link import Link, check_answer
from .subscription import TopicRegistry
from .ws_link import open_ws_link

logger = logging.getLogger("amop_trio.client")

#: Seconds a closing client gives its link to say goodbye (the link's own close is bounded).
_CLOSE_WAIT = 2.0


class Supervisor:
    """Keeps one link to a node up, and the node informed of the client's topics."""

    def __init__(
        self,
        config: ClientConfig,
        registry: TopicRegistry,
        verify_requests: trio.MemorySendChannel[ChannelVerifyRequest],
    ) -> None:
        self.config = config
        self.registry = registry
        self._verify_requests = verify_requests
        self.link: Link | None = None
        self._link_changed = trio.Event()
        #: Times out the requests of every link of this client.
        self.deadlines = Deadlines()
        self.closed = False
        self.reconnects = 0
        self._topic_lock = trio.Lock()
        self._sync_wanted = trio.Event()
        self._links: trio.Nursery | None = None
        self._plain_logged = False

    @property
    def connected(self) -> bool:
        link = self.link
        return link is not None and not link.closed

    # -- the current link -------------------------------------------------

    async def wait_link(self) -> Link:
        """The live link, once there is one; ``ClientClosedError`` once the client closed."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self.closed:
                raise ClientClosedError("the client is closed")
            link = self.link
            if link is not None and not link.closed:
                return link
            await self._link_changed.wait()

    def live_link(self) -> Link | None:
        """The current link if it is up, without waiting."""
        link = self.link
        return None if link is None or link.closed else link

    async def wait_link_until(self, deadline: float) -> Link:
        """The live link once there is one; ``AmopTimeoutError`` if none comes by ``deadline``."""
        with trio.move_on_at(deadline):
            return await self.wait_link()
        raise AmopTimeoutError("no connection in time")

    async def wait_disconnected(self) -> None:
        """Return once the current link is lost (at once if none is up)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while self.connected and not self.closed:
            await self._link_changed.wait()

    def _set_link(self, link: Link | None) -> None:
        if link is not None:
            link.deadlines = self.deadlines
        self.link = link
        self._link_changed.set()
        self._link_changed = trio.Event()

    async def close(self) -> None:
        """Stop for good: close the link politely while its reader can still see the answer."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self.closed = True
        self.registry.closed = True
        self._link_changed.set()
        link = self.link
        if link is not None:
            # The link's own task says goodbye, while its reader can still see the answer.
            link.close("client closed")
            with trio.move_on_after(_CLOSE_WAIT):
                await link.ended.wait()

    # -- the topic set ----------------------------------------------------

    async def sync_topics(self) -> None:
        """Send the complete topic set to the node if it has changed since last sent."""
        async with self._topic_lock:
            link = self.link
            version = self.registry.version
            if link is None or link.closed or link.topics_version == version:
                return
            if not link.private_topics:
                self._refuse_private(link)
            topics = self.registry.topics
            try:
                if not link.topics_replace and not link.topics_sent <= set(topics):
                    await self._replace(link, topics, version)
                    return
                with trio.move_on_after(self.config.timeout):
                    answer = await link.send_topics(topics)
                    if answer is not None:
                        check_answer(answer, "(subscription)")
                    link.topics_sent = frozenset(topics)
                    link.topics_version = version
            except ConnectionLostError:
                return  # the next link sends the set after its handshake

    def _refuse_private(self, link: Link) -> None:
        """Fail the private-topic subscriptions a node cannot enforce, rather than degrade."""
        error = NotSupportedError(
            f"the node at {link.endpoint} cannot enforce private topics (FISCO BCOS 3.x has "
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
        """Keep one link up for the client's whole life; started once the first is up."""
        urls = self.config.urls
        started = False
        attempt = 0
        index = 0
        async with trio.open_nursery() as links:
            self._links = links
            while True:
                url = urls[index % len(urls)]
                index += 1
                failure: AmopError
                try:
                    link = await self._open_link(url)
                    if started:
                        self.reconnects += 1
                    else:
                        started = True
                        task_status.started()
                    attempt = 0
                    await self._serve_until_lost(link)
                except AmopError as error:
                    failure = error
                else:
                    failure = ConnectionLostError(f"connection to {url} lost")
                if self.closed:
                    break
                if (not started and index >= len(urls)) or (started and not self.config.reconnect):
                    links.cancel_scope.cancel()
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
            links.cancel_scope.cancel()

    async def _serve_until_lost(self, link: Link) -> None:
        """Make ``link`` current; return once the current link (it, or its successor) is lost."""
        await trio.lowlevel.checkpoint_if_cancelled()
        assert self._links is not None
        self._set_link(link)
        self._links.start_soon(self._run_link, link)
        self.sync_topics_soon()
        while self.link is not None:
            await self._link_changed.wait()

    async def _open_link(self, url: str) -> Link:
        """Open a link to ``url``; once TLS is in play, a TLS failure is final for that try."""
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

    async def _connect(self, url: str, ssl_context: ssl.SSLContext | None) -> Link:
        """Open the connection and handshake; ``ConnectError`` says why not."""
        config = self.config
        opener = (
            open_channel_link if url.startswith(f"{channel_socket.SCHEME}://") else open_ws_link
        )
        return await opener(
            url,
            ssl_context=ssl_context,
            max_frame_size=config.max_frame_size,
            connect_timeout=config.connect_timeout,
            outbox_size=config.outbox_size,
        )

    async def _run_link(self, link: Link) -> None:
        """Serve one link until it ends; the current link's end is a lost connection."""

        async def read_loop(_: trio.Nursery) -> None:
            await self._reader(link)

        try:
            reason = await link.run(
                read_loop,
                ping_interval=self.config.ping_interval,
                ping_timeout=self.config.ping_timeout,
            )
        finally:
            if self.link is link:
                self._set_link(None)
        log_event(logger, logging.INFO, "disconnected", endpoint=link.endpoint, reason=reason)

    # -- replacing a link (unsubscribing on a 3.x node) ------------------------------

    async def _replace(self, old: Link, topics: list[str], version: int) -> None:
        """Hand over from ``old`` to a new link that holds only ``topics``.

        Unicasts keep arriving on both links and are answered on the one they
        came by; multicasts are counted once (``Cutover``). If the new link
        cannot be opened, the old one stays and the unsubscription is retried
        at the next change.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        assert self._links is not None
        try:
            new = await self._connect(old.endpoint, self.config.ssl_context)
        except ConnectError as exc:
            log_event(logger, logging.WARNING, "unsubscribe_deferred", error=exc)
            return
        if self.closed:  # the client closed while the new link opened: its nursery is gone
            await new.sock.aclose()
            return
        marker = f"_amop_trio_cutover_{uuid.uuid4().hex}"
        cut = Cutover(marker)
        old.cutover, old.cutover_side = cut, Side.OLD
        new.cutover, new.cutover_side = cut, Side.NEW
        new.deadlines = self.deadlines
        self._links.start_soon(self._run_link, new)
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
            self._set_link(new)
        self._links.start_soon(self._retire, old, new, cut)

    async def _retire(self, old: Link, new: Link, cut: Cutover) -> None:
        """Close ``old`` once nothing waits on it and it is past the cut (or in time)."""
        with trio.move_on_after(self.config.timeout):
            await old.wait_idle()
            await cut.done.wait()
        old.close("replaced by a link with fewer topics")
        if new.cutover is cut:
            cut.abandon()
            new.cutover = None

    async def _reader(self, link: Link) -> None:
        """Dispatch each frame from the node, until the link ends."""
        while True:
            event = link.decode(await link.sock.receive())
            if isinstance(event, Delivery):
                cut = link.cutover
                if cut is not None and (event.multicast or event.topic == cut.topic):
                    for delivery in cut.route(link.cutover_side, event):
                        self.registry.deliver(link, delivery)
                    continue
                refusal = self.registry.deliver(link, event)
                if refusal is not None:
                    await link.send(refusal)
            elif isinstance(event, Answer):
                if not link.resolve(event):
                    log_event(logger, logging.DEBUG, "frame_ignored", status=event.status)
            elif isinstance(event, ChannelVerifyRequest):
                try:
                    self._verify_requests.send_nowait(event)
                except trio.WouldBlock:
                    log_event(logger, logging.WARNING, "challenge_dropped", topic=event.topic)
