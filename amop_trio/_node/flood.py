"""The link-state flood: every node tells every other its links and its clients' topics.

Every node floods a ``LinkState`` naming its live links and its clients'
topics (with subscriber counts) whenever either changes, and passes on every
state newer than the one it holds; ``Directory`` turns the states into
reachability and next hops. Bursts of changes within ``ADVERTISE_DELAY``
share one advertisement; states of nodes that cannot be reached are
forgotten every ``SWEEP_INTERVAL``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NoReturn

import trio

from .._log import log_event
from .._wire.fisco3 import Frame, encode_frame, new_seq
from .._wire.peer import LinkState, PeerType
from .directory import Directory
from .hub import LocalHub
from .links import Links, PeerLink
from .private import PrivateTopics

logger = logging.getLogger("amop_trio.node")

#: Seconds between sweeps that forget unreachable nodes.
SWEEP_INTERVAL = 10.0
#: Seconds within which bursts of topic or link changes share one advertisement.
ADVERTISE_DELAY = 0.005


def link_state_frame(state: LinkState) -> bytes:
    return encode_frame(Frame(PeerType.LINK_STATE, new_seq(), state.encode()))


class Flood:
    """This node's advertisements, and the states it passes on for others."""

    def __init__(
        self,
        node_id: str,
        directory: Directory,
        links: Links,
        hub: LocalHub,
        private: PrivateTopics,
        *,
        routes_changed: Callable[[], None],
    ) -> None:
        self.node_id = node_id
        self.directory = directory
        self.links = links
        self.hub = hub
        self.private = private
        self.endpoints: tuple[str, ...] = ()
        self._routes_changed = routes_changed
        self._epoch = time.time_ns()
        self._seq = 0
        self._advertise = trio.Event()
        self.directory.update(self.own_state())

    def own_state(self) -> LinkState:
        return LinkState(
            self.node_id,
            self._epoch,
            self._seq,
            self.links.live_peers(),
            self.private.advertised(self.hub.topic_counts()),
            self.endpoints,
            tuple(self.private.pending()),
        )

    def advertise_soon(self) -> None:
        """Links or local subscriptions changed: advertise the new state soon."""
        self._advertise.set()

    def send_states(self, link: PeerLink) -> None:
        """Tell a new neighbour every state this node holds."""
        for state in self.directory.states():
            link.send_nowait(link_state_frame(state))

    async def run_advertiser(self) -> NoReturn:
        while True:
            await self._advertise.wait()
            await trio.sleep(ADVERTISE_DELAY)
            self._advertise = trio.Event()
            self._seq += 1
            state = self.own_state()
            self.directory.update(state)
            self._routes_changed()
            self.links.send_all_nowait(link_state_frame(state))

    async def run_sweeper(self) -> NoReturn:
        while True:
            await trio.sleep(SWEEP_INTERVAL)
            for gone in self.directory.forget_unreachable():
                log_event(logger, logging.INFO, "node_forgotten", node=gone)

    def on_link_state(self, link: PeerLink, frame: Frame) -> None:
        state = LinkState.decode(frame.payload)
        if state.origin == self.node_id:
            return
        if self.directory.update(state):
            self._routes_changed()
            self.links.send_all_nowait(encode_frame(frame), source=link.peer_id)
