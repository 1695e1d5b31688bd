"""Multicast across the network: once along the shortest-path tree, at most once per node.

A multicast from a local publisher reaches the local subscribers at once and
travels as PEER_MULTICAST towards the nodes that advertise subscribers of
its topic, split at each hop by next hop; every node delivers a message id at
most once.
"""

from __future__ import annotations

from .._wire.fisco3 import Frame, decode_amop_body, encode_frame, new_seq
from .._wire.peer import PeerMulticast, PeerType
from .directory import Directory
from .hub import LocalHub
from .limits import NodeStatistics
from .links import Links
from .private import PrivateTopics
from .remote import MEMORY_OF_IDS, IdMemory


class Multicasts:
    """Fans multicasts out to local subscribers and passes them on to other nodes."""

    def __init__(
        self,
        node_id: str,
        directory: Directory,
        links: Links,
        hub: LocalHub,
        private: PrivateTopics,
        stats: NodeStatistics,
    ) -> None:
        self.node_id = node_id
        self.directory = directory
        self.links = links
        self.hub = hub
        self.private = private
        self._stats = stats
        self._seen = IdMemory(MEMORY_OF_IDS)

    def publish(self, topic: str, body: bytes) -> None:
        """Deliver to every subscriber of the network, each exactly once."""
        self.hub.fan_out(topic, body)
        targets = tuple(self.directory.subscriber_counts(topic))
        if targets:
            message_id = new_seq()
            self._seen.put(message_id)
            self._send(message_id, PeerMulticast(self.node_id, targets, body))

    def on_multicast(self, frame: Frame) -> None:
        if frame.seq in self._seen:
            return
        self._seen.put(frame.seq)
        multicast = PeerMulticast.decode(frame.payload)
        if self.node_id in multicast.targets:
            topic = decode_amop_body(multicast.body).topic
            self.hub.fan_out(topic, multicast.body, self.private.allowed(topic))
        rest = tuple(t for t in multicast.targets if t != self.node_id)
        if rest and multicast.hop > 1:
            self._send(
                frame.seq,
                PeerMulticast(multicast.origin, rest, multicast.body, multicast.hop - 1),
            )

    def _send(self, message_id: bytes, multicast: PeerMulticast) -> None:
        for hop, group in self.directory.split_by_next_hop(multicast.targets).items():
            part = PeerMulticast(multicast.origin, tuple(group), multicast.body, multicast.hop)
            link = self.links.get(hop)
            if link is None or not link.send_nowait(
                encode_frame(Frame(PeerType.MULTICAST, message_id, part.encode()))
            ):
                self._stats.multicast_dropped += 1
