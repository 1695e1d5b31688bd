"""Unicasts between nodes: requests sent to other nodes, and requests served for them.

A unicast from a local publisher to a subscriber on another node travels as
PEER_UNICAST along the shortest path; the subscriber's node delivers it
locally and answers PEER_REPLY along its own shortest path. When routes
change, requests in flight are sent again along the new path; the target
node answers a repeated request id from its cache instead of delivering
twice. A request whose target becomes unreachable fails over to another node
(see ``unicast.RoutedUnicast``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import trio

from .._errors import AmopError, WireError
from .._log import log_event
from .._requests import Deadlines
from .._wire.fisco3 import Frame, decode_amop_body, encode_frame, new_seq
from .._wire.peer import PeerReply, PeerType, PeerUnicast
from .._wire.status import Status
from .directory import Directory
from .hub import LocalHub
from .limits import NodeStatistics
from .links import Links
from .private import PrivateTopics
from .unicast import LocalUnicast, RoutedUnicast

logger = logging.getLogger("amop_trio.node")

#: How many request ids a node remembers to drop repeats.
MEMORY_OF_IDS = 65536
#: Unicasts from other nodes this node delivers at once; beyond, it answers 3006.
MAX_SERVED_UNICASTS = 10000
#: Bytes of answers kept to answer a repeated request without delivering it twice.
ANSWER_CACHE_BYTES = 16 * 1024 * 1024


class IdMemory:
    """Recently seen ids, each with an optional cached answer; oldest forgotten first.

    Bounded in entries and in the bytes of the answers it keeps, so large
    replies cannot make it grow past ``max_bytes``.
    """

    def __init__(self, size: int, max_bytes: int = ANSWER_CACHE_BYTES) -> None:
        self._ids: OrderedDict[bytes, bytes | None] = OrderedDict()
        self._size = size
        self._max_bytes = max_bytes
        self._bytes = 0

    def __contains__(self, key: bytes) -> bool:
        return key in self._ids

    def get(self, key: bytes) -> bytes | None:
        return self._ids.get(key)

    def put(self, key: bytes, value: bytes | None = None) -> None:
        old = self._ids.get(key)
        self._bytes += len(value or b"") - len(old or b"")
        self._ids[key] = value
        self._ids.move_to_end(key)
        while len(self._ids) > self._size or self._bytes > self._max_bytes:
            _, dropped = self._ids.popitem(last=False)
            self._bytes -= len(dropped or b"")


@dataclass(slots=True)
class RemoteRequest:
    """A unicast this node sent to another node and awaits the answer of."""

    target: str
    packet: bytes
    job: RoutedUnicast
    via: str | None = None


class _ServedRequest:
    """Another node's unicast, delivered here: its outcome goes back to that node.

    Its body's ``size`` stays counted in the node's pending budget until then.
    """

    __slots__ = ("_origin", "_remote", "_request_id", "_size")

    def __init__(self, remote: RemoteUnicasts, origin: str, request_id: bytes, size: int) -> None:
        self._remote = remote
        self._origin = origin
        self._request_id = request_id
        self._size = size

    def answer(self, status: int, data: bytes) -> None:
        self._remote.hub.budget.release_served(self._size)
        self._remote.answer_served(self._origin, self._request_id, status, data)


class RemoteUnicasts:
    """Unicasts this node has out on other nodes, and those it serves for them."""

    def __init__(
        self,
        node_id: str,
        directory: Directory,
        links: Links,
        hub: LocalHub,
        private: PrivateTopics,
        deadlines: Deadlines,
        stats: NodeStatistics,
        request_timeout: float,
    ) -> None:
        self.node_id = node_id
        self.directory = directory
        self.links = links
        self.hub = hub
        self.private = private
        self.deadlines = deadlines
        self._stats = stats
        self.request_timeout = request_timeout
        self._out: dict[bytes, RemoteRequest] = {}
        self._served = IdMemory(MEMORY_OF_IDS)
        self._serving = 0

    # -- requests out --------------------------------------------------------

    def send(self, job: RoutedUnicast, node: str) -> bool:
        """Send ``job`` to ``node``; False if there is no route to it."""
        request_id = new_seq()
        remaining_ms = max(1, int((job.deadline - trio.current_time()) * 1000))
        unicast = PeerUnicast(self.node_id, node, remaining_ms, job.body)
        request = RemoteRequest(
            node, encode_frame(Frame(PeerType.UNICAST, request_id, unicast.encode())), job
        )
        if not self._send_toward(request):
            return False
        self._out[request_id] = request
        job.request_id = request_id
        return True

    def forget(self, request_id: bytes) -> None:
        """Stop waiting for another node's answer to ``request_id``."""
        self._out.pop(request_id, None)

    def reroute(self) -> None:
        """Routes changed: re-send the requests whose path changed, fail the unreachable."""
        for request_id, request in list(self._out.items()):
            hop = self.directory.next_hop(request.target)
            if hop is None:
                if self._out.pop(request_id, None) is not None:
                    request.job.fail(AmopError(f"node {request.target[:12]} became unreachable"))
            elif hop != request.via or self.links.get(request.via) is None:
                self._send_toward(request)

    def _send_toward(self, request: RemoteRequest) -> bool:
        hop = self.directory.next_hop(request.target)
        link = self.links.get(hop)
        if link is None or not link.send_nowait(request.packet):
            return False
        request.via = hop
        return True

    def on_reply(self, frame: Frame) -> None:
        reply = PeerReply.decode(frame.payload)
        if reply.target == self.node_id:
            request = self._out.pop(frame.seq, None)
            if request is not None:
                request.job.remote_outcome(frame.status, reply.data)
            return
        forwarded = PeerReply(reply.target, reply.data, reply.hop - 1)
        self.forward(
            reply.target,
            Frame(PeerType.REPLY, frame.seq, forwarded.encode(), status=frame.status),
            origin=None,
            hop=reply.hop,
        )

    # -- requests served -------------------------------------------------------

    def on_unicast(self, frame: Frame) -> None:
        unicast = PeerUnicast.decode(frame.payload)
        if unicast.target != self.node_id:
            onward = PeerUnicast(
                unicast.origin, unicast.target, unicast.deadline_ms, unicast.body, unicast.hop - 1
            )
            self.forward(
                unicast.target,
                Frame(PeerType.UNICAST, frame.seq, onward.encode()),
                origin=unicast.origin,
                hop=unicast.hop,
            )
            return
        if frame.seq in self._served:
            cached = self._served.get(frame.seq)
            if cached is not None:  # answered already: the answer got lost on the way
                self._send_reply(unicast.origin, cached)
            return
        reason = None
        if self._serving >= MAX_SERVED_UNICASTS:
            reason = b"node overloaded: too many unicasts in progress"
        elif (over_budget := self.hub.budget.take_served(len(unicast.body))) is not None:
            reason = f"node overloaded: {over_budget.text}".encode()
        if reason is not None:
            refusal = PeerReply(unicast.origin, reason)
            self._send_reply(
                unicast.origin,
                encode_frame(
                    Frame(PeerType.REPLY, frame.seq, refusal.encode(), status=Status.OVERLOADED)
                ),
            )
            return
        self._served.put(frame.seq)
        self._serving += 1
        self._serve(frame.seq, unicast)

    def _serve(self, request_id: bytes, unicast: PeerUnicast) -> None:
        """Deliver a unicast another node sent here; its answer goes back to that node."""
        requester = _ServedRequest(self, unicast.origin, request_id, len(unicast.body))
        try:
            topic = decode_amop_body(unicast.body).topic
        except WireError as exc:
            requester.answer(Status.INVALID_REQUEST, str(exc).encode())
            return
        self._stats.unicasts += 1
        # Subscribers failing lately are not tried for another node: its unicast goes on to
        # a node with a healthy one, or fails there at once, instead of waiting on them.
        job = LocalUnicast(
            self.hub,
            topic,
            unicast.body,
            requester,
            self.private.allowed(topic),
            last_resort=False,
        )
        timeout = min(unicast.deadline_ms / 1000, self.request_timeout)
        self.deadlines.add(trio.current_time() + timeout, job)
        job.attempt()

    def answer_served(self, origin: str, request_id: bytes, status: int, data: bytes) -> None:
        """The outcome of a unicast served for ``origin``: cache it and send it back."""
        self._serving -= 1
        reply = PeerReply(origin, data)
        frame = encode_frame(Frame(PeerType.REPLY, request_id, reply.encode(), status=status))
        self._served.put(request_id, frame)
        self._send_reply(origin, frame)

    def _send_reply(self, origin: str, answer: bytes) -> None:
        link = self.links.get(self.directory.next_hop(origin))
        if link is None or not link.send_nowait(answer):
            log_event(logger, logging.INFO, "reply_undeliverable", origin=origin[:12])

    # -- passing packets on ----------------------------------------------------

    def forward(self, target: str, frame: Frame, *, origin: str | None, hop: int) -> None:
        """Pass a packet one hop on; a unicast that cannot go on is answered as failed."""
        link = self.links.get(self.directory.next_hop(target))
        if hop > 1 and link is not None and link.send_nowait(encode_frame(frame)):
            self._stats.forwarded += 1
            return
        log_event(logger, logging.INFO, "forward_failed", target=target[:12], hop=hop)
        if origin is not None:
            failure = PeerReply(origin, f"node {target[:12]} is unreachable".encode())
            self._send_reply(
                origin,
                encode_frame(
                    Frame(PeerType.REPLY, frame.seq, failure.encode(), status=Status.SEND_FAILED)
                ),
            )
