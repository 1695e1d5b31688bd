"""Links between nodes, the link-state flood, and routing across the network.

Theory of operation
-------------------
Nodes connect over WebSocket links (``PeerLink``) that carry ws frames with
the node packet types of ``_wire.peer``. Both ends open with HELLO naming
their node id; when two nodes dialled each other, the link dialled by the
smaller id survives. Every node floods a ``LinkState`` (its live links and its
clients' topic counts) whenever either changes; ``Directory`` turns the
flooded states into reachability and next hops. Links are pinged twice a
second, so a dead one is noticed within ~1.5 s and the flood reroutes.

Unicast picks a node with probability proportional to its number of
subscribers of the topic (uniform over all subscribers of the network), sends
the request along the shortest path, and the subscriber's node answers back
along its own shortest path. When routes change, requests in flight are sent
again along the new path (the target node answers a repeated request id from
its cache instead of delivering twice); when the target becomes unreachable
or refuses, another node is tried until the publisher's deadline (each
unicast is a ``unicast.RoutedUnicast``, moved on by whichever reader learns
its outcome, and ended by ``deadlines``). Multicast
travels once along the shortest-path tree towards the nodes that have
subscribers; each node delivers a message id at most once.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from .._backoff import backoff_delay
from .._errors import AmopError, WireError
from .._log import log_event
from .._requests import Deadlines
from .._transport import ws_socket
from .._transport.connection import FrameConnection
from .._wire.fisco2 import ChannelVerifyRequest, ChannelVerifyResult
from .._wire.fisco3 import Frame, decode_amop_body, decode_frame, encode_frame, new_seq
from .._wire.peer import (
    Hello,
    LinkState,
    PeerMulticast,
    PeerReply,
    PeerType,
    PeerUnicast,
    VerifyNotice,
)
from .._wire.status import Status
from .._wire.topics import private_of_challenge
from .busy_poll import BusyPoll
from .directory import Directory
from .hub import LocalHub
from .limits import NodeStatistics
from .private import PrivateTopics
from .unicast import Answer, LocalUnicast, RoutedUnicast

logger = logging.getLogger("amop_trio.node")

#: Seconds between pings on a node link, and how long a pong may take.
LINK_PING_INTERVAL = 0.5
LINK_PING_TIMEOUT = 1.0
#: Frames a node link may queue before further multicasts to it are dropped.
LINK_OUTBOX_SIZE = 8192
#: How many request ids and multicast ids a node remembers to drop repeats.
MEMORY_OF_IDS = 65536
#: Unicasts from other nodes this node delivers at once; beyond, it answers 3006.
MAX_SERVED_UNICASTS = 10000
#: Bytes of answers kept to answer a repeated request without delivering it twice.
ANSWER_CACHE_BYTES = 16 * 1024 * 1024
#: Seconds between sweeps that forget unreachable nodes.
SWEEP_INTERVAL = 10.0
#: Seconds within which bursts of topic or link changes share one advertisement.
ADVERTISE_DELAY = 0.005


class PeerLink(FrameConnection):
    """A live link to a neighbouring node."""

    def __init__(
        self,
        sock: ws_socket.FrameSocket,
        peer_id: str,
        *,
        outbound: bool,
        endpoints: tuple[str, ...],
    ) -> None:
        super().__init__(sock, name=f"{peer_id[:12]}@{sock.remote}", outbox_size=LINK_OUTBOX_SIZE)
        self.peer_id = peer_id
        self.outbound = outbound
        self.endpoints = endpoints
        self.since = time.time()


@dataclass(slots=True)
class Dialer:
    """What this node knows of one configured peer address."""

    address: str
    state: str = "connecting"
    peer_id: str | None = None
    error: str = ""
    attempts: int = 0


@dataclass(slots=True)
class RemoteRequest:
    """A unicast this node sent to another node and awaits the answer of."""

    target: str
    packet: bytes
    job: RoutedUnicast
    via: str | None = None


class _IdMemory:
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


class Network:
    """This node's place in the network: its links, directory and routing."""

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
    ) -> None:
        self.node_id = node_id
        self.hub = hub
        self.directory = Directory(node_id)
        self.links: dict[str, PeerLink] = {}
        self.dialers = {address: Dialer(address) for address in peers}
        self.endpoints: tuple[str, ...] = ()
        self.request_timeout = request_timeout
        self.ssl_context = ssl_context
        self.max_frame_size = max_frame_size
        self.link_ping_interval = link_ping_interval
        self.link_ping_timeout = link_ping_timeout
        self.rng = rng
        self._stats = stats
        self._epoch = time.time_ns()
        self._seq = 0
        self._advertise = trio.Event()
        self._links_changed = trio.Event()
        self._directory_changed = trio.Event()
        self._remote: dict[bytes, RemoteRequest] = {}
        #: Ends the unicasts in flight through this node at their deadlines.
        self.deadlines = Deadlines()
        #: Keeps the node's loop awake between frames, if asked to; readers touch it.
        self.busy_poll = BusyPoll(busy_poll)
        self._served = _IdMemory(MEMORY_OF_IDS)
        self._serving = 0
        self._seen_multicasts = _IdMemory(MEMORY_OF_IDS)
        self.private = PrivateTopics(hub.table)
        self.directory.update(self._own_state())

    # -- running ----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Dial the configured peers and keep the directory fresh, until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.deadlines.run)
            nursery.start_soon(self.busy_poll.run)
            nursery.start_soon(self._advertiser)
            nursery.start_soon(self._sweeper)
            nursery.start_soon(self._verifier)
            for address in self.dialers:
                nursery.start_soon(self._dial, address)
            task_status.started()

    async def wait_subscribed(self, topic: str, *, nodes: int = 1) -> None:
        """Wait until ``nodes`` other nodes advertise subscribers of ``topic``."""
        while len(self.directory.subscriber_counts(topic)) < nodes:
            await self._directory_changed.wait()

    def topics_changed(self) -> None:
        """Local subscriptions changed: advertise the new counts soon."""
        self._advertise.set()

    async def close_links(self) -> None:
        for link in list(self.links.values()):
            link.close("node stopping", code=1001)

    # -- links --------------------------------------------------------------

    async def accept(self, sock: ws_socket.FrameSocket) -> None:
        """Serve a link a neighbour opened to this node."""
        link = await self._exchange_hello(sock, outbound=False)
        if link is not None:
            await self._serve_link(link)

    async def _dial(self, address: str) -> None:
        dialer = self.dialers[address]
        scheme = "wss" if self.ssl_context is not None else "ws"
        while True:
            existing = self.links.get(dialer.peer_id or "")
            if existing is not None and not existing.closed:
                dialer.state = "connected (their link)"
                await self._links_changed.wait()
                continue
            try:
                sock = await ws_socket.connect(
                    f"{scheme}://{address}/",
                    ssl_context=self.ssl_context,
                    max_frame_size=self.max_frame_size,
                    connect_timeout=2.0,
                )
                link = await self._exchange_hello(sock, outbound=True)
                if link is not None:
                    dialer.peer_id = link.peer_id
                    if link.peer_id == self.node_id:
                        dialer.state, dialer.error = "refused", "this address is the node itself"
                        return
                    dialer.state, dialer.error, dialer.attempts = "connected", "", 0
                    await self._serve_link(link)
            except (AmopError, OSError, trio.BrokenResourceError) as exc:
                dialer.error = str(exc)
            dialer.state = "connecting"
            dialer.attempts += 1
            await trio.sleep(backoff_delay(dialer.attempts, base=0.05, cap=2.0))

    async def _exchange_hello(
        self, sock: ws_socket.FrameSocket, *, outbound: bool
    ) -> PeerLink | None:
        hello = Hello(self.node_id, self.endpoints)
        try:
            with trio.fail_after(5):
                await sock.send(encode_frame(Frame(PeerType.HELLO, new_seq(), hello.encode())))
                first = decode_frame(await sock.receive(), max_size=self.max_frame_size)
            if first.type != PeerType.HELLO:
                raise WireError(f"expected HELLO on a node link, got packet type {first.type:#x}")
            theirs = Hello.decode(first.payload)
        except (trio.TooSlowError, AmopError) as exc:
            log_event(logger, logging.WARNING, "link_refused", remote=sock.remote, error=repr(exc))
            await sock.aclose(1002, "bad hello")
            return None
        if theirs.node_id == self.node_id and not outbound:
            await sock.aclose(1000, "connected to itself")
            return None
        return PeerLink(sock, theirs.node_id, outbound=outbound, endpoints=theirs.endpoints)

    async def _serve_link(self, link: PeerLink) -> None:
        if link.peer_id == self.node_id:
            await link.sock.aclose(1000, "connected to itself")
            return
        if not self._register(link):
            await link.sock.aclose(1000, "duplicate link")
            return
        log_event(logger, logging.INFO, "link_up", peer=link.peer_id, remote=link.sock.remote)
        for state in self.directory.states():
            link.send_nowait(_link_state_frame(state))
        try:
            reason = await link.run(
                partial(self._read_link, link),
                ping_interval=self.link_ping_interval,
                ping_timeout=self.link_ping_timeout,
            )
        finally:
            self._unregister(link)
        log_event(logger, logging.INFO, "link_down", peer=link.peer_id, reason=reason)

    def _register(self, link: PeerLink) -> bool:
        existing = self.links.get(link.peer_id)
        if existing is not None and not existing.closed:
            # Both ends keep the link dialled by the smaller node id.
            dialer = self.node_id if link.outbound else link.peer_id
            if dialer != min(self.node_id, link.peer_id):
                return False
            existing.close("replaced by the link dialled from the smaller node id")
        self.links[link.peer_id] = link
        self._on_links_changed()
        return True

    def _unregister(self, link: PeerLink) -> None:
        if self.links.get(link.peer_id) is link:
            del self.links[link.peer_id]
            self._on_links_changed()

    def _on_links_changed(self) -> None:
        self._links_changed.set()
        self._links_changed = trio.Event()
        self._advertise.set()

    # -- link state -----------------------------------------------------------

    def _own_state(self) -> LinkState:
        return LinkState(
            self.node_id,
            self._epoch,
            self._seq,
            tuple(sorted(p for p, link in self.links.items() if not link.closed)),
            self.private.advertised(self.hub.topic_counts()),
            self.endpoints,
            tuple(self.private.pending()),
        )

    async def _advertiser(self) -> None:
        while True:
            await self._advertise.wait()
            await trio.sleep(ADVERTISE_DELAY)
            self._advertise = trio.Event()
            self._seq += 1
            state = self._own_state()
            self.directory.update(state)
            self._routes_changed()
            self._flood(_link_state_frame(state), source=None)

    async def _sweeper(self) -> None:
        while True:
            await trio.sleep(SWEEP_INTERVAL)
            for gone in self.directory.forget_unreachable():
                log_event(logger, logging.INFO, "node_forgotten", node=gone)

    def _flood(self, data: bytes, *, source: str | None) -> None:
        for peer_id, link in self.links.items():
            if peer_id != source:
                link.send_nowait(data)

    def _on_link_state(self, link: PeerLink, frame: Frame) -> None:
        state = LinkState.decode(frame.payload)
        if state.origin == self.node_id:
            return
        if self.directory.update(state):
            self._routes_changed()
            self._flood(encode_frame(frame), source=link.peer_id)

    def _routes_changed(self) -> None:
        """Re-send or fail the requests in flight whose path changed."""
        self._directory_changed.set()
        self._directory_changed = trio.Event()
        for request_id, request in list(self._remote.items()):
            hop = self.directory.next_hop(request.target)
            if hop is None:
                if self._remote.pop(request_id, None) is not None:
                    request.job.fail(AmopError(f"node {request.target[:12]} became unreachable"))
            elif hop != request.via or request.via not in self.links:
                self._send_toward(request)

    # -- reading a link -------------------------------------------------------

    async def _read_link(self, link: PeerLink, nursery: trio.Nursery) -> None:
        touch = self.busy_poll.touch
        while True:
            frame = decode_frame(await link.sock.receive(), max_size=self.max_frame_size)
            touch()
            ptype = frame.type
            if ptype == PeerType.MULTICAST:
                self._on_multicast(frame)
            elif ptype == PeerType.UNICAST:
                self._on_unicast(frame)
            elif ptype == PeerType.REPLY:
                self._on_reply(frame)
            elif ptype == PeerType.LINK_STATE:
                self._on_link_state(link, frame)
            elif ptype == PeerType.VERIFY_NOTICE:
                self._on_verify_notice(frame)
            else:
                log_event(logger, logging.DEBUG, "link_frame_ignored", type=hex(ptype))

    # -- unicast --------------------------------------------------------------

    def unicast(self, topic: str, body: bytes, answer: Answer) -> None:
        """Route a unicast to one subscriber anywhere in the network.

        ``answer(status, data)`` is called once, from whichever task learns the
        outcome (possibly this one, at once).
        """
        job = RoutedUnicast(self, topic, body, answer, trio.current_time() + self.request_timeout)
        self.deadlines.add(job.deadline, job)
        job.attempt()

    def send_remote(self, job: RoutedUnicast, node: str) -> bool:
        """Send ``job`` to ``node``; False if there is no route to it."""
        request_id = new_seq()
        remaining_ms = max(1, int((job.deadline - trio.current_time()) * 1000))
        unicast = PeerUnicast(self.node_id, node, remaining_ms, job.body)
        request = RemoteRequest(
            node, encode_frame(Frame(PeerType.UNICAST, request_id, unicast.encode())), job
        )
        if not self._send_toward(request):
            return False
        self._remote[request_id] = request
        job.request_id = request_id
        return True

    def forget_remote(self, request_id: bytes) -> None:
        """Stop waiting for another node's answer to ``request_id``."""
        self._remote.pop(request_id, None)

    def _send_toward(self, request: RemoteRequest) -> bool:
        hop = self.directory.next_hop(request.target)
        link = self.links.get(hop) if hop is not None else None
        if link is None or not link.send_nowait(request.packet):
            return False
        request.via = hop
        return True

    def _on_unicast(self, frame: Frame) -> None:
        unicast = PeerUnicast.decode(frame.payload)
        if unicast.target != self.node_id:
            self._forward(
                unicast.target,
                Frame(PeerType.UNICAST, frame.seq, _hop(unicast).encode()),
                origin=unicast.origin,
                hop=unicast.hop,
            )
            return
        if frame.seq in self._served:
            cached = self._served.get(frame.seq)
            if cached is not None:  # answered already: the answer got lost on the way
                self._send_reply(unicast.origin, cached)
            return
        if self._serving >= MAX_SERVED_UNICASTS:
            refusal = PeerReply(unicast.origin, b"node overloaded: too many unicasts in progress")
            self._send_reply(
                unicast.origin,
                encode_frame(
                    Frame(PeerType.REPLY, frame.seq, refusal.encode(), status=Status.OVERLOADED)
                ),
            )
            return
        self._served.put(frame.seq)
        self._serving += 1
        self._serve_unicast(frame.seq, unicast)

    def _serve_unicast(self, request_id: bytes, unicast: PeerUnicast) -> None:
        """Deliver a unicast another node sent here; its answer goes back to that node."""

        def answer(status: int, data: bytes) -> None:
            self._serving -= 1
            reply = PeerReply(unicast.origin, data)
            frame = encode_frame(Frame(PeerType.REPLY, request_id, reply.encode(), status=status))
            self._served.put(request_id, frame)
            self._send_reply(unicast.origin, frame)

        try:
            topic = decode_amop_body(unicast.body).topic
        except WireError as exc:
            answer(Status.INVALID_REQUEST, str(exc).encode())
            return
        self._stats.unicasts += 1
        job = LocalUnicast(self.hub, topic, unicast.body, answer, self.private.allowed(topic))
        timeout = min(unicast.deadline_ms / 1000, self.request_timeout)
        self.deadlines.add(trio.current_time() + timeout, job)
        job.attempt()

    def _send_reply(self, origin: str, answer: bytes) -> None:
        hop = self.directory.next_hop(origin)
        link = self.links.get(hop) if hop is not None else None
        if link is None or not link.send_nowait(answer):
            log_event(logger, logging.INFO, "reply_undeliverable", origin=origin[:12])

    def _on_reply(self, frame: Frame) -> None:
        reply = PeerReply.decode(frame.payload)
        if reply.target == self.node_id:
            request = self._remote.pop(frame.seq, None)
            if request is not None:
                request.job.remote_outcome(frame.status, reply.data)
            return
        forwarded = PeerReply(reply.target, reply.data, reply.hop - 1)
        self._forward(
            reply.target,
            Frame(PeerType.REPLY, frame.seq, forwarded.encode(), status=frame.status),
            origin=None,
            hop=reply.hop,
        )

    def _forward(self, target: str, frame: Frame, *, origin: str | None, hop: int) -> None:
        """Pass a packet one hop on; a unicast that cannot go on is answered as failed."""
        link = self.links.get(self.directory.next_hop(target) or "")
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

    # -- multicast ------------------------------------------------------------

    def multicast(self, topic: str, body: bytes) -> None:
        """Deliver to every subscriber of the network, each exactly once."""
        self.hub.fan_out(topic, body)
        targets = tuple(self.directory.subscriber_counts(topic))
        if targets:
            message_id = new_seq()
            self._seen_multicasts.put(message_id)
            self._send_multicast(message_id, PeerMulticast(self.node_id, targets, body))

    def _on_multicast(self, frame: Frame) -> None:
        if frame.seq in self._seen_multicasts:
            return
        self._seen_multicasts.put(frame.seq)
        multicast = PeerMulticast.decode(frame.payload)
        if self.node_id in multicast.targets:
            topic = decode_amop_body(multicast.body).topic
            self.hub.fan_out(topic, multicast.body, self.private.allowed(topic))
        rest = tuple(t for t in multicast.targets if t != self.node_id)
        if rest and multicast.hop > 1:
            self._send_multicast(
                frame.seq,
                PeerMulticast(multicast.origin, rest, multicast.body, multicast.hop - 1),
            )

    def _send_multicast(self, message_id: bytes, multicast: PeerMulticast) -> None:
        for hop, group in self.directory.split_by_next_hop(multicast.targets).items():
            part = PeerMulticast(multicast.origin, tuple(group), multicast.body, multicast.hop)
            link = self.links.get(hop)
            if link is None or not link.send_nowait(
                encode_frame(Frame(PeerType.MULTICAST, message_id, part.encode()))
            ):
                self._stats.multicast_dropped += 1

    # -- private topics -------------------------------------------------------

    async def _verifier(self) -> None:
        """Ask local publishers to challenge the unverified subscribers other nodes report."""
        while True:
            with trio.move_on_after(1.0):
                await self._directory_changed.wait()
            pending = {}
            for node in self.directory.reachable():
                state = self.directory.state_of(node)
                if node != self.node_id and state is not None and state.pending:
                    pending[node] = state.pending
            for node, private, challenge, sid in self.private.challenges_due(
                pending, trio.current_time()
            ):
                session = self.hub.sessions.get(sid)
                if session is not None:
                    session.send_nowait(
                        session.verify_request(ChannelVerifyRequest(private, challenge, node))
                    )
                    log_event(
                        logger, logging.INFO, "challenge_requested", node=node[:12], topic=private
                    )
            await trio.sleep(0.05)

    def verification_result(self, result: ChannelVerifyResult) -> None:
        """A local publisher's verdict: pass it to the subscriber's node."""
        challenges = (
            [result.topic_for_cert]
            if result.topic_for_cert
            else [
                challenge
                for node, challenge in self.private.challenged()
                if node == result.node_id and private_of_challenge(challenge) == result.topic
            ]
        )
        for challenge in challenges:
            notice = VerifyNotice(result.node_id, challenge, result.verified)
            self._on_verify_notice(Frame(PeerType.VERIFY_NOTICE, new_seq(), notice.encode()))

    def _on_verify_notice(self, frame: Frame) -> None:
        notice = VerifyNotice.decode(frame.payload)
        if notice.target == self.node_id:
            if self.private.mark(notice.challenge, notice.verified):
                log_event(
                    logger,
                    logging.INFO,
                    "subscriber_verified" if notice.verified else "subscriber_refused",
                    challenge=notice.challenge[-32:],
                )
                self.topics_changed()
            return
        onward = VerifyNotice(notice.target, notice.challenge, notice.verified, notice.hop - 1)
        self._forward(
            notice.target,
            Frame(PeerType.VERIFY_NOTICE, frame.seq, onward.encode()),
            origin=None,
            hop=notice.hop,
        )

    # -- status ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Links, configured peers and the topic directory, for ``amop status``."""
        directory = []
        for node in self.directory.reachable():
            state = self.directory.state_of(node)
            directory.append(
                {
                    "node": node,
                    "distance": self.directory.distance(node),
                    "nextHop": self.directory.next_hop(node),
                    "endpoints": list(state.endpoints) if state else [],
                    "topics": dict(state.topics) if state else {},
                }
            )
        return {
            "links": [
                {
                    "peer": link.peer_id,
                    "remote": link.sock.remote,
                    "direction": "out" if link.outbound else "in",
                    "since": link.since,
                    "queued": link.outbox_used(),
                }
                for link in self.links.values()
            ],
            "peers": [
                {"address": d.address, "state": d.state, "peer": d.peer_id, "error": d.error}
                for d in self.dialers.values()
            ],
            "directory": directory,
        }


def _link_state_frame(state: LinkState) -> bytes:
    return encode_frame(Frame(PeerType.LINK_STATE, new_seq(), state.encode()))


def _hop(unicast: PeerUnicast) -> PeerUnicast:
    return PeerUnicast(
        unicast.origin, unicast.target, unicast.deadline_ms, unicast.body, unicast.hop - 1
    )
