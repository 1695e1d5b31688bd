"""The link-state flood: every node tells every other its links and its clients' topics.

Every node floods its ``LinkState`` (live links, clients' topics with
subscriber counts, endpoints) whenever it changes, in bounded parts that it
signs with its node key (``advert``), and passes on every part newer than
what it holds. ``Directory`` turns the states into reachability and next
hops. Bursts of changes within ``ADVERTISE_DELAY`` (times the parts of the
last advertisement: a large state is sent less often) share one advertisement;
states of nodes that cannot be reached are forgotten every ``SWEEP_INTERVAL``.

Trust: on a TLS network a part is taken only if it is signed by the node it
names as its origin, with a node certificate of this chain (``AdvertVerifier``);
anything else is dropped, logged and not passed on. On a plain network there
is nothing to check a signature against: parts go unsigned and are believed.

Versions: ``(epoch, seq)``, the epoch taken from the wall clock at start.
A node that hears a genuine advertisement of its own id with a version at or
above its own (its former self, started with a clock further ahead) takes
that version and advertises above it at once, as OSPF does with
self-originated LSAs, so a restart is heard whatever the clock says.

Healing: a part refused by a full outbox is not lost for good. Every
``SYNC_INTERVAL`` each node sends each neighbour a digest of the versions it
holds (``Sync``); a neighbour whose digest differs answers with the versions
themselves (``Summary``), and each side sends the other every state it holds
newer. The cost is one small frame per link per interval while the network
agrees, and summaries at most once per interval per link while it does not.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

import trio

from .._errors import WireError
from .._log import log_event
from .._wire.fisco3 import Frame, encode_frame, new_seq
from .._wire.peer import PeerType, SignedPart, StatePart, Summary, Sync
from .advert import MAX_PART_BYTES, Assembler, BuiltAdvert, Offer, build_parts
from .directory import Directory
from .hub import LocalHub
from .links import Links, PeerLink
from .private import PrivateTopics

if TYPE_CHECKING:
    from .._security.identity import AdvertVerifier, NodeSigner

logger = logging.getLogger("amop_trio.node")

#: Seconds between sweeps that forget unreachable nodes.
SWEEP_INTERVAL = 10.0
#: Seconds within which bursts of topic or link changes share one advertisement.
ADVERTISE_DELAY = 0.005
#: Seconds between version digests sent to each neighbour (anti-entropy).
SYNC_INTERVAL = 0.5
#: Versions per summary frame (each at most ~300 bytes of JSON).
SUMMARY_VERSIONS = 96
#: Most summary frames one summary may have.
MAX_SUMMARY_PARTS = 256
#: Seconds between two raises of this node's version within which the second is a
#: conflict (another live node with this node's key) and waits.
RAISE_INTERVAL = 1.0
#: Seconds between two log lines about refused parts from one neighbour.
REFUSAL_LOG_INTERVAL = 1.0


def frame_of(ptype: PeerType, payload: bytes) -> bytes:
    return encode_frame(Frame(ptype, new_seq(), payload))


class Flood:
    """This node's advertisements, the states it passes on, and their repair."""

    def __init__(
        self,
        node_id: str,
        directory: Directory,
        links: Links,
        hub: LocalHub,
        private: PrivateTopics,
        *,
        routes_changed: Callable[[], None],
        signer: NodeSigner | None = None,
        verifier: AdvertVerifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_id = node_id
        self.directory = directory
        self.links = links
        self.hub = hub
        self.private = private
        self.endpoints: tuple[str, ...] = ()
        self.signer = signer
        self.verifier = verifier
        self._routes_changed = routes_changed
        self._epoch = int(clock() * 1_000_000_000)
        self._seq = 0
        self._advertise = trio.Event()
        self._assembler = Assembler()
        self._stale_builds: set[str] = set()
        self._last_raise = -math.inf
        self._advertise_not_before = -math.inf
        #: peer id -> (parts expected, parts received) of the summary coming in.
        self._summaries: dict[str, tuple[int, dict[int, Summary]]] = {}
        self._summary_sent: dict[str, float] = {}
        self._refusals: dict[str, tuple[float, int]] = {}
        #: Parts refused by this node (bad signature, wrong origin...), and parts a
        #: full outbox would not take (repaired by the sync).
        self.refused = 0
        self.unsent = 0
        #: Largest LINK_STATE payload this node has sent.
        self.largest_part = 0
        self._publish(bump=False)

    @property
    def version(self) -> tuple[int, int]:
        return (self._epoch, self._seq)

    def own_state(self) -> BuiltAdvert:
        return build_parts(
            self.node_id,
            self.version,
            neighbours=self.links.live_peers(),
            counts=self.private.advertised(self.hub.topic_counts()),
            endpoints=self.endpoints,
            pending=self.private.pending(),
            signer=self.signer,
        )

    def advertise_soon(self) -> None:
        """Links or local subscriptions changed: advertise the new state soon."""
        self._advertise.set()

    def _publish(self, *, bump: bool = True) -> None:
        if bump:
            self._seq += 1
        built = self.own_state()
        if built.left_out:
            log_event(logger, logging.ERROR, "advert_truncated", entries=built.left_out)
        self.largest_part = max([self.largest_part, *map(len, built.parts)])
        self.directory.update(built.state, built.parts)

    def _send(self, link: PeerLink | None, parts: tuple[bytes, ...], source: str = "") -> None:
        for payload in parts:
            data = frame_of(PeerType.LINK_STATE, payload)
            if link is None:
                self.unsent += self.links.send_all_nowait(data, source=source or None)
            elif not link.send_nowait(data):
                self.unsent += 1

    def send_states(self, link: PeerLink) -> None:
        """Tell a new neighbour every state this node holds."""
        for state in self.directory.states():
            self._send(link, self.directory.parts_of(state.origin))

    async def run_advertiser(self) -> NoReturn:
        while True:
            await self._advertise.wait()
            # Large states go out less often: at most one part per ADVERTISE_DELAY.
            await trio.sleep(ADVERTISE_DELAY * len(self.directory.parts_of(self.node_id)))
            await trio.sleep_until(self._advertise_not_before)
            self._advertise = trio.Event()
            self._publish()
            self._routes_changed()
            self._send(None, self.directory.parts_of(self.node_id))

    async def run_sweeper(self) -> NoReturn:
        while True:
            await trio.sleep(SWEEP_INTERVAL)
            for gone in self.directory.forget_unreachable():
                log_event(logger, logging.INFO, "node_forgotten", node=gone)
            # A state still incomplete a whole sweep later is not coming.
            building = set(self._assembler.building())
            self._assembler.forget(building & self._stale_builds)
            self._stale_builds = building

    # -- receiving parts ----------------------------------------------------------

    def on_link_state(self, link: PeerLink, frame: Frame) -> None:
        if len(frame.payload) > MAX_PART_BYTES:
            raise WireError(f"link state part of {len(frame.payload)} bytes is too large")
        signed = SignedPart.decode(frame.payload)
        part = StatePart.decode(signed.body)
        held = self.directory.version_of(part.origin)
        if part.origin != self.node_id and not self._assembler.is_news(part, held):
            return  # a copy through another neighbour, or old: nothing to check or pass on
        if self.verifier is not None:
            why = self.verifier.check(part.origin, signed.body, signed.signature, signed.chain)
            if why:
                self._refuse(link, part, why)
                return
        if part.origin == self.node_id:
            self._heard_self(part)
            return
        outcome, built = self._assembler.offer(part, frame.payload, held)
        if outcome is Offer.INVALID:
            self._refuse(link, part, "disagrees with the other parts of its version")
            return
        if outcome in (Offer.PARTIAL, Offer.COMPLETE):
            self._send(None, (frame.payload,), source=link.peer_id)
        if built is not None and self.directory.update(built.state, built.parts):
            self._routes_changed()

    def _heard_self(self, part: StatePart) -> None:
        """Our own id with a version above ours: a former self; go above it.

        Two live nodes with one key would outbid each other for ever: after
        the first raise, raises wait ``RAISE_INTERVAL`` and are logged as a
        conflict, so that costs one advertisement a second, not a storm.
        """
        if part.version <= self.version:
            return
        now = trio.current_time()
        conflict = now - self._last_raise < RAISE_INTERVAL
        log_event(
            logger,
            logging.WARNING if conflict else logging.INFO,
            "advert_version_conflict" if conflict else "advert_version_raised",
            heard=f"{part.epoch}.{part.seq}",
            was=f"{self._epoch}.{self._seq}",
        )
        self._epoch, self._seq = part.version
        self._last_raise = now
        if conflict:
            self._advertise_not_before = now + RAISE_INTERVAL
        self.advertise_soon()

    def _refuse(self, link: PeerLink, part: StatePart, why: str) -> None:
        self.refused += 1
        now = trio.current_time()
        last, suppressed = self._refusals.get(link.peer_id, (-REFUSAL_LOG_INTERVAL, 0))
        if now - last < REFUSAL_LOG_INTERVAL:
            self._refusals[link.peer_id] = (last, suppressed + 1)
            return
        self._refusals[link.peer_id] = (now, 0)
        log_event(
            logger,
            logging.WARNING,
            "advert_refused",
            origin=part.origin[:16],
            via=link.peer_id[:16],
            remote=link.sock.remote,
            reason=why,
            suppressed=suppressed,
        )

    # -- anti-entropy --------------------------------------------------------------

    async def run_syncer(self) -> NoReturn:
        """Send each neighbour the digest of the versions held, every ``SYNC_INTERVAL``."""
        while True:
            await trio.sleep(SYNC_INTERVAL)
            data = frame_of(PeerType.SYNC, Sync(self.directory.digest()).encode())
            self.links.send_all_nowait(data)

    def on_sync(self, link: PeerLink, frame: Frame) -> None:
        theirs = Sync.decode(frame.payload)
        if theirs.digest == self.directory.digest():
            return
        now = trio.current_time()
        if now - self._summary_sent.get(link.peer_id, -SYNC_INTERVAL) < SYNC_INTERVAL / 2:
            return
        self._summary_sent[link.peer_id] = now
        versions = self.directory.versions()
        chunks = [
            versions[i : i + SUMMARY_VERSIONS] for i in range(0, len(versions), SUMMARY_VERSIONS)
        ][:MAX_SUMMARY_PARTS] or [[]]
        for index, chunk in enumerate(chunks):
            summary = Summary(tuple(chunk), index, len(chunks))
            link.send_nowait(frame_of(PeerType.SUMMARY, summary.encode()))

    def on_summary(self, link: PeerLink, frame: Frame) -> None:
        part = Summary.decode(frame.payload)
        if part.count > MAX_SUMMARY_PARTS:
            raise WireError(f"summary of {part.count} parts")
        expected, received = self._summaries.get(link.peer_id, (part.count, {}))
        if part.index == 0 or expected != part.count:
            expected, received = part.count, {}
        received[part.index] = part
        if len(received) < expected:
            self._summaries[link.peer_id] = (expected, received)
            return
        self._summaries.pop(link.peer_id, None)
        theirs = {o: (e, s) for p in received.values() for o, e, s in p.versions}
        for origin, epoch, seq in self.directory.versions():
            their_version = theirs.get(origin)
            if their_version is None or their_version < (epoch, seq):
                self._send(link, self.directory.parts_of(origin))

    def forget_link(self, peer_id: str) -> None:
        """A link went down: drop what was kept about it."""
        self._summaries.pop(peer_id, None)
        self._summary_sent.pop(peer_id, None)
        self._refusals.pop(peer_id, None)
