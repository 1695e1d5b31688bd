"""This node's place in the network: links, the link-state flood, and routing.

Theory of operation
-------------------
``Network`` composes the parts, each in its own module: ``Links`` (links to
neighbours, one per peer), ``Flood`` (link-state advertisements, from which
``Directory`` derives reachability and next hops), ``RemoteUnicasts``
(unicasts to and from other nodes), ``Multicasts`` and the private-topic
``Verifier``. It reads every link and hands each packet to its part, and it
is the ``Router`` that unicasts (``unicast.RoutedUnicast``) go through: a
node is picked with probability proportional to its subscribers of the
topic, so every subscriber of the network is equally likely. Links are
pinged twice a second, so a dead one is noticed within ~1.5 s and the flood
reroutes.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from .._log import log_event
from .._transport import ws_socket
from .._wire.fisco2_json import (
    ChannelVerifyResult,
)
from .._wire.fisco3 import Frame, decode_frame
from .._wire.peer import PeerType
from .busy_poll import BusyPoll
from .directory import Directory
from .flood import Flood
from .hub import LocalHub
from .limits import NodeStatistics
from .links import LINK_PING_INTERVAL, LINK_PING_TIMEOUT, Links, PeerLink
from .multicast import Multicasts
from .private import PrivateTopics, Verifier
from .remote import RemoteUnicasts
from .unicast import Requester, RoutedUnicast

if TYPE_CHECKING:
    from .._security.identity import AdvertVerifier, NodeSigner

logger = logging.getLogger("amop_trio.node")


class Network:
    """This node's links, directory and routing."""

    def __init__(
        self,
        node_id: str,
        hub: LocalHub,
        *,
        rng: random.Random,
        stats: NodeStatistics,
        request_timeout: float,
        peers: tuple[str, ...] = (),
        ssl_context: ssl.SSLContext | None = None,
        max_frame_size: int,
        link_ping_interval: float = LINK_PING_INTERVAL,
        link_ping_timeout: float = LINK_PING_TIMEOUT,
        busy_poll: float = 0.0,
        signer: NodeSigner | None = None,
        verifier: AdvertVerifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_id = node_id
        self.hub = hub
        self.rng = rng
        self.request_timeout = request_timeout
        self.max_frame_size = max_frame_size
        self.directory = Directory(node_id)
        self.private = PrivateTopics(hub.table)
        #: Ends the unicasts in flight through this node at their deadlines.
        self.deadlines = hub.deadlines
        #: Keeps the node's loop awake between frames, if asked to; readers touch it.
        self.busy_poll = BusyPoll(busy_poll)
        self.links = Links(
            self,
            peers=peers,
            ssl_context=ssl_context,
            max_frame_size=max_frame_size,
            ping_interval=link_ping_interval,
            ping_timeout=link_ping_timeout,
        )
        self.flood = Flood(
            node_id,
            self.directory,
            self.links,
            hub,
            self.private,
            routes_changed=self._routes_changed,
            signer=signer,
            verifier=verifier,
            clock=clock,
        )
        self.remote = RemoteUnicasts(
            node_id,
            self.directory,
            self.links,
            hub,
            self.private,
            self.deadlines,
            stats,
            request_timeout,
        )
        self.multicasts = Multicasts(node_id, self.directory, self.links, hub, self.private, stats)
        self.verifier = Verifier(
            node_id,
            self.private,
            self.directory,
            hub,
            forward=self._forward_notice,
            topics_changed=self.topics_changed,
        )
        self._directory_changed = trio.Event()

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The SDK URLs this node advertises."""
        return self.flood.endpoints

    @endpoints.setter
    def endpoints(self, value: tuple[str, ...]) -> None:
        self.flood.endpoints = value

    # -- running ----------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Dial the configured peers and keep the directory fresh, until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.deadlines.run)
            nursery.start_soon(self.busy_poll.run)
            nursery.start_soon(self.flood.run_advertiser)
            nursery.start_soon(self.flood.run_sweeper)
            nursery.start_soon(self.flood.run_syncer)
            nursery.start_soon(self.verifier.run)
            for address in self.links.dialers:
                nursery.start_soon(self.links.dial, address)
            task_status.started()

    async def accept(self, sock: ws_socket.FrameSocket, certified: str | None = None) -> None:
        """Serve a link a neighbour opened to this node (``certified``: its certificate's id)."""
        await self.links.accept(sock, certified)

    def close_links(self) -> None:
        self.links.close_all()

    async def wait_subscribed(self, topic: str, *, nodes: int = 1) -> None:
        """Wait until ``nodes`` other nodes advertise subscribers of ``topic``."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while len(self.directory.subscriber_counts(topic)) < nodes:
            await self._directory_changed.wait()

    def topics_changed(self) -> None:
        """Local subscriptions changed: advertise the new counts soon."""
        self.flood.advertise_soon()

    # -- what the links need (``LinkOwner``) ----------------------------------

    def link_up(self, link: PeerLink) -> None:
        self.flood.send_states(link)

    def links_changed(self) -> None:
        self.flood.advertise_soon()

    def link_down(self, link: PeerLink) -> None:
        self.flood.forget_link(link.peer_id)

    async def read_link(self, link: PeerLink) -> None:
        touch = self.busy_poll.touch
        max_size = self.max_frame_size
        while True:
            frame = decode_frame(await link.sock.receive(), max_size=max_size)
            touch()
            ptype = frame.type
            if ptype == PeerType.MULTICAST:
                self.multicasts.on_multicast(frame)
            elif ptype == PeerType.UNICAST:
                self.remote.on_unicast(frame)
            elif ptype == PeerType.REPLY:
                self.remote.on_reply(frame)
            elif ptype == PeerType.LINK_STATE:
                self.flood.on_link_state(link, frame)
            elif ptype == PeerType.VERIFY_NOTICE:
                self.verifier.on_notice(frame)
            elif ptype == PeerType.SYNC:
                self.flood.on_sync(link, frame)
            elif ptype == PeerType.SUMMARY:
                self.flood.on_summary(link, frame)
            else:
                log_event(logger, logging.DEBUG, "link_frame_ignored", type=hex(ptype))

    def _routes_changed(self) -> None:
        """Wake whoever waits on the directory; re-send requests whose path changed."""
        self._directory_changed.set()
        self._directory_changed = trio.Event()
        self.verifier.wake()
        self.remote.reroute()

    def _forward_notice(self, target: str, frame: Frame, hop: int) -> None:
        self.remote.forward(target, frame, origin=None, hop=hop)

    # -- unicast (the ``Router`` of ``RoutedUnicast``) -------------------------

    def unicast(self, topic: str, body: bytes, requester: Requester) -> None:
        """Route a unicast to one subscriber anywhere in the network.

        ``requester.answer(status, data)`` is called once, from whichever task
        learns the outcome (possibly this one, at once).
        """
        job = RoutedUnicast(
            self, topic, body, requester, trio.current_time() + self.request_timeout
        )
        self.deadlines.add(job.deadline, job)
        job.attempt()

    def subscriber_counts(self, topic: str) -> dict[str, int]:
        """Subscribers of ``topic`` on each reachable node, this one included."""
        counts = self.directory.subscriber_counts(topic)
        local = self.hub.subscriber_count(topic)
        if local:
            counts[self.node_id] = local
        return counts

    def send_remote(self, job: RoutedUnicast, node: str) -> bool:
        return self.remote.send(job, node)

    def forget_remote(self, request_id: bytes) -> None:
        self.remote.forget(request_id)

    # -- multicast and private topics ---------------------------------------------

    def multicast(self, topic: str, body: bytes) -> None:
        """Deliver to every subscriber of the network, each exactly once."""
        self.multicasts.publish(topic, body)

    def verification_result(self, result: ChannelVerifyResult) -> None:
        """A local publisher's verdict on a private-topic subscriber."""
        self.verifier.verification_result(result)
