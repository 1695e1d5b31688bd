"""Links to neighbouring nodes: dialling, accepting, and one live link per peer.

Nodes connect over WebSocket links (``PeerLink``) that carry ws frames with
the node packet types of ``_wire.peer``. Both ends open with HELLO naming
their node id; when two nodes dialled each other, the link dialled by the
smaller id survives. A configured peer address is dialled for ever, with
backoff, while no link to that peer is up. What a link carries is the
``LinkOwner``'s business (the ``Network``).

On a TLS network a peer's id is not what its HELLO says but what its
certificate says: right after the TLS handshake, on both the accepting and
the dialling side, the peer's certificate must be a node certificate
(``require_node_certificate``: serverAuth present; SDK certificates are
refused, and logged), and the node id is derived from its key. A HELLO
naming another id is refused. So a link can only be registered under the id
of the key that opened it, and nobody can take over another node's link.
On a plain network, HELLO is all there is.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from .._backoff import backoff_delay
from .._errors import AmopError, PeerRefusedError, WireError
from .._log import log_event
from .._transport import ws_socket
from .._transport.connection import FrameConnection
from .._transport.fd_stream import open_stream
from .._wire.fisco3 import Frame, decode_frame, encode_frame, new_seq
from .._wire.peer import Hello, PeerType

logger = logging.getLogger("amop_trio.node")

#: Seconds between pings on a node link, and how long a pong may take.
LINK_PING_INTERVAL = 0.5
LINK_PING_TIMEOUT = 1.0
#: Frames a node link may queue before further multicasts to it are dropped.
LINK_OUTBOX_SIZE = 8192
#: Seconds a new link has to exchange HELLO.
HELLO_TIMEOUT = 5.0
#: Seconds a dial (TCP, TLS and WebSocket upgrade) may take.
DIAL_TIMEOUT = 2.0


def identify_peer(stream: trio.abc.Stream) -> str:
    """The node id of the peer on a TLS stream whose handshake is done.

    Raises ``PeerRefusedError`` (saying why) unless the peer presented a node
    certificate; see the module docstring.
    """
    from .._security.identity import require_node_certificate

    if not isinstance(stream, trio.SSLStream):
        raise PeerRefusedError("node links on this network need TLS")
    return require_node_certificate(stream.getpeercert(binary_form=True))


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


class LinkOwner(Protocol):
    """What the links need of the node they belong to (the ``Network``)."""

    node_id: str
    endpoints: tuple[str, ...]

    def link_up(self, link: PeerLink) -> None:
        """A new link is registered: tell the peer what this node knows."""

    def links_changed(self) -> None:
        """A link came or went."""

    def link_down(self, link: PeerLink) -> None:
        """A registered link ended: forget what was kept about it."""

    async def read_link(self, link: PeerLink) -> None:
        """Read and handle the link's frames until it ends."""


class Links:
    """This node's live links by peer id, and the dialers of its configured peers."""

    def __init__(
        self,
        owner: LinkOwner,
        *,
        peers: tuple[str, ...],
        ssl_context: ssl.SSLContext | None,
        max_frame_size: int,
        ping_interval: float = LINK_PING_INTERVAL,
        ping_timeout: float = LINK_PING_TIMEOUT,
    ) -> None:
        self._owner = owner
        self.by_peer: dict[str, PeerLink] = {}
        self.dialers = {address: Dialer(address) for address in peers}
        self.ssl_context = ssl_context
        self.max_frame_size = max_frame_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._changed = trio.Event()

    def get(self, peer_id: str | None) -> PeerLink | None:
        return self.by_peer.get(peer_id) if peer_id is not None else None

    def live_peers(self) -> tuple[str, ...]:
        """Peers with a live link, sorted."""
        return tuple(sorted(p for p, link in self.by_peer.items() if not link.closed))

    def send_all_nowait(self, data: bytes, *, source: str | None = None) -> int:
        """Queue ``data`` on every link but ``source``'s; returns how many (full) refused it."""
        refused = 0
        for peer_id, link in self.by_peer.items():
            if peer_id != source and not link.send_nowait(data):
                refused += 1
        return refused

    def close_all(self) -> None:
        for link in list(self.by_peer.values()):
            link.close("node stopping", code=1001)

    # -- accepting and dialling ------------------------------------------------

    async def accept(self, sock: ws_socket.FrameSocket, certified: str | None = None) -> None:
        """Serve a link a neighbour opened to this node.

        ``certified`` is the node id of the certificate the neighbour presented
        (``identify_peer``); None on a plain network.
        """
        if self.ssl_context is not None and certified is None:
            log_event(logger, logging.WARNING, "link_refused", remote=sock.remote, reason="no TLS")
            await sock.aclose(1008, "node links need TLS")
            return
        link = await self._exchange_hello(sock, outbound=False, certified=certified)
        if link is not None:
            await self._serve(link)

    async def _open(self, address: str) -> tuple[ws_socket.FrameSocket, str | None]:
        """Connect to ``address``; the socket and the node id of its certificate (if TLS)."""
        scheme = "wss" if self.ssl_context is not None else "ws"
        url = f"{scheme}://{address}/"
        host, _, port = address.rpartition(":")
        remote = address
        async with open_stream(
            url, host.strip("[]"), int(port), ssl_context=self.ssl_context, timeout=DIAL_TIMEOUT
        ) as stream:
            certified = identify_peer(stream) if self.ssl_context is not None else None
            sock = await ws_socket.client_handshake(
                stream, address, "/", max_frame_size=self.max_frame_size, remote=remote
            )
        return sock, certified

    async def dial(self, address: str) -> None:
        """Keep a link to the peer at ``address`` up, for ever."""
        dialer = self.dialers[address]
        while True:
            existing = self.by_peer.get(dialer.peer_id or "")
            if existing is not None and not existing.closed:
                dialer.state = "connected (their link)"
                await self._changed.wait()
                continue
            try:
                try:
                    sock, certified = await self._open(address)
                except PeerRefusedError as exc:
                    if dialer.error != str(exc):
                        log_event(
                            logger, logging.WARNING, "link_refused", remote=address, reason=exc
                        )
                    raise
                link = await self._exchange_hello(sock, outbound=True, certified=certified)
                if link is not None:
                    dialer.peer_id = link.peer_id
                    if link.peer_id == self._owner.node_id:
                        dialer.state, dialer.error = "refused", "this address is the node itself"
                        await sock.aclose(1000, "connected to itself")
                        return
                    dialer.state, dialer.error, dialer.attempts = "connected", "", 0
                    await self._serve(link)
            except (AmopError, OSError, trio.BrokenResourceError) as exc:
                dialer.error = str(exc)
            dialer.state = "connecting"
            dialer.attempts += 1
            await trio.sleep(backoff_delay(dialer.attempts, base=0.05, cap=2.0))

    async def _exchange_hello(
        self, sock: ws_socket.FrameSocket, *, outbound: bool, certified: str | None
    ) -> PeerLink | None:
        owner = self._owner
        hello = Hello(owner.node_id, owner.endpoints)
        try:
            with trio.fail_after(HELLO_TIMEOUT):
                await sock.send(encode_frame(Frame(PeerType.HELLO, new_seq(), hello.encode())))
                first = decode_frame(await sock.receive(), max_size=self.max_frame_size)
            if first.type != PeerType.HELLO:
                raise WireError(f"expected HELLO on a node link, got packet type {first.type:#x}")
            theirs = Hello.decode(first.payload)
        except (trio.TooSlowError, AmopError) as exc:
            log_event(logger, logging.WARNING, "link_refused", remote=sock.remote, error=repr(exc))
            await sock.aclose(1002, "bad hello")
            return None
        if certified is not None and theirs.node_id != certified:
            log_event(
                logger,
                logging.WARNING,
                "link_refused",
                remote=sock.remote,
                reason=f"HELLO names node {theirs.node_id[:16]}… but the certificate is "
                f"node {certified[:16]}…",
            )
            await sock.aclose(1008, "node id does not match the certificate")
            return None
        if theirs.node_id == owner.node_id and not outbound:
            await sock.aclose(1000, "connected to itself")
            return None
        return PeerLink(sock, theirs.node_id, outbound=outbound, endpoints=theirs.endpoints)

    async def _serve(self, link: PeerLink) -> None:
        owner = self._owner
        if not self._register(link):
            await link.sock.aclose(1000, "duplicate link")
            return
        log_event(logger, logging.INFO, "link_up", peer=link.peer_id, remote=link.sock.remote)
        owner.link_up(link)

        async def read_loop(_: trio.Nursery) -> None:
            await owner.read_link(link)

        try:
            reason = await link.run(
                read_loop, ping_interval=self.ping_interval, ping_timeout=self.ping_timeout
            )
        finally:
            self._unregister(link)
        log_event(logger, logging.INFO, "link_down", peer=link.peer_id, reason=reason)

    def _register(self, link: PeerLink) -> bool:
        existing = self.by_peer.get(link.peer_id)
        node_id = self._owner.node_id
        if existing is not None and not existing.closed:
            # Both ends keep the link dialled by the smaller node id.
            dialer = node_id if link.outbound else link.peer_id
            if dialer != min(node_id, link.peer_id):
                return False
            existing.close("replaced by the link dialled from the smaller node id")
        self.by_peer[link.peer_id] = link
        self._on_changed()
        return True

    def _unregister(self, link: PeerLink) -> None:
        if self.by_peer.get(link.peer_id) is link:
            del self.by_peer[link.peer_id]
            self._owner.link_down(link)
            self._on_changed()

    def _on_changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        self._owner.links_changed()

    # -- status -----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Links and configured peers, for ``amop status``."""
        return {
            "links": [
                {
                    "peer": link.peer_id,
                    "remote": link.sock.remote,
                    "direction": "out" if link.outbound else "in",
                    "since": link.since,
                    "queued": link.outbox_used(),
                }
                for link in self.by_peer.values()
            ],
            "peers": [
                {"address": d.address, "state": d.state, "peer": d.peer_id, "error": d.error}
                for d in self.dialers.values()
            ],
        }
