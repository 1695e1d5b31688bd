"""The node: listens for SDK clients and for neighbouring nodes, and runs them.

Theory of operation
-------------------
``Node.serve`` opens the SDK port and, when configured, the P2P port, and
owns one nursery for everything: the listeners, one task per accepted
connection (which owns that connection's socket, reader, writer and
pinger), and the network's dialers and advertiser. ``LocalHub`` holds the
local clients, ``Network`` the links and routes, ``SdkService`` speaks the
ws SDK protocol and ``ChannelService`` the 2.x channel protocol, on the same
port: after TLS, the first bytes of a connection say which (``sniff``). The
node wires them together and reports its status.

Nothing one connection does can take the node down: each connection's task
catches and logs its own failure, bad frames cost only that connection, and
every queue is bounded (see ``LocalHub`` and ``Network`` for the policies).
Each client connection has a byte account (``budget.ConnectionBudget``),
opened before its first frame is read, so that its decoder's partial frames,
its topics and its unicasts in flight count against the node's budgets; it
is closed when the connection ends. A status answer is bounded whatever the
node holds (``status``).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from .._errors import ConnectionLostError, FrameTooLargeError, PeerRefusedError, WireError
from .._groups import unwrap_group, unwrapped_errors
from .._log import log_event
from .._requests import Deadlines
from .._security.clienthello import read_client_hello
from .._security.paths import StrPath
from .._security.server_tls import ServerTLS
from .._transport.channel_socket import StreamSocket
from .._transport.fd_stream import connection_stream
from .._transport.sniff import Protocol, sniff
from .._transport.ws_socket import CLOSE_TIMEOUT, FrameSocket, server_handshake
from .._wire.peer import LINK_FRAME_OVERHEAD
from .budget import ConnectionBudget
from .channel_service import ChannelService, ChannelSession
from .hub import LocalHub
from .limits import NodeLimits, NodeStatistics
from .links import identify_peer
from .network import Network
from .session import Session
from .status import node_status
from .topic_table import TopicTable
from .ws_service import SdkService

if TYPE_CHECKING:
    from .._security.identity import AdvertVerifier, NodeSigner

logger = logging.getLogger("amop_trio.node")

__all__ = ["Node", "open_node", "parse_listen"]


class Node:
    """An AMOP node. Build it with ``open_node``, or run ``serve`` in a nursery."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 20200,
        p2p_host: str | None = None,
        p2p_port: int | None = None,
        peers: Sequence[str] = (),
        node_id: str | None = None,
        ssl_context: ssl.SSLContext | ServerTLS | None = None,
        p2p_ssl_context: ssl.SSLContext | ServerTLS | None = None,
        p2p_client_ssl_context: ssl.SSLContext | None = None,
        request_timeout: float = 10.0,
        ping_interval: float = 10.0,
        ping_timeout: float | None = None,
        limits: NodeLimits | None = None,
        seed: int | None = None,
        busy_poll: float = 0.0,
        signer: NodeSigner | None = None,
        verifier: AdvertVerifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.port = port
        self.p2p_host = p2p_host
        self.p2p_port = p2p_port
        self.ssl_context = ssl_context
        self.p2p_ssl_context = p2p_ssl_context
        #: TLS of the SDK port and of the P2P port (None: plain).
        self.tls = _server_tls(ssl_context)
        self.p2p_tls = _server_tls(p2p_ssl_context)
        self.request_timeout = request_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_interval if ping_timeout is None else ping_timeout
        self.limits = limits or NodeLimits()
        self.stats = NodeStatistics()
        self.node_id = node_id or default_node_id(host, port, p2p_host, p2p_port)
        rng = random.Random(seed)
        self.hub = LocalHub(rng, self.stats, Deadlines(), self.limits)
        self.network = Network(
            self.node_id,
            self.hub,
            rng=rng,
            stats=self.stats,
            request_timeout=request_timeout,
            peers=tuple(peers),
            ssl_context=p2p_client_ssl_context,
            max_frame_size=self.limits.max_frame_size + LINK_FRAME_OVERHEAD,
            busy_poll=busy_poll,
            signer=signer,
            verifier=verifier,
            clock=clock,
        )
        self.sdk = SdkService(self.hub, self.network, self.limits, self.stats, self.status)
        self.channel = ChannelService(self.hub, self.network, self.limits, self.stats, self.status)
        self._ids = itertools.count(1)

    @property
    def table(self) -> TopicTable:
        """The local topic table."""
        return self.hub.table

    @property
    def sessions(self) -> dict[int, Session]:
        return self.hub.sessions

    @property
    def endpoint(self) -> str:
        """``host:port`` clients connect to (the real port once listening)."""
        return _join(self.host, self.port)

    @property
    def p2p_endpoint(self) -> str | None:
        """``host:port`` other nodes connect to, if this node peers."""
        if self.p2p_port is None:
            return None
        return _join(self.p2p_host or self.host, self.p2p_port)

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{self.endpoint}"

    def statistics(self) -> NodeStatistics:
        return self.stats

    def status(self, topics_from: int = 0) -> dict[str, Any]:
        """Id, endpoints, links, budgets and directory: what ``amop status`` shows.

        The local topics are listed from the ``topics_from``-th in name order,
        one bounded page at a time; the whole answer never exceeds
        ``status.STATUS_MAX_BYTES`` of JSON, whatever the node holds.
        """
        return node_status(self, topics_from)

    async def serve(self, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; reports ``self`` once listening."""
        sdk_listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = sdk_listeners[0].socket.getsockname()[1]
        p2p_listeners = []
        if self.p2p_port is not None:
            p2p_listeners = await trio.open_tcp_listeners(
                self.p2p_port, host=self.p2p_host or self.host
            )
            self.p2p_port = p2p_listeners[0].socket.getsockname()[1]
        self.network.endpoints = (self.url,)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.network.serve)
            await nursery.start(
                partial(
                    trio.serve_listeners,
                    partial(
                        self._serve_stream,
                        self._run_session,
                        channel=self._run_channel,
                        tls=self.tls,
                        budgeted=True,
                    ),
                    sdk_listeners,
                    handler_nursery=nursery,
                )
            )
            if p2p_listeners:
                await nursery.start(
                    partial(
                        trio.serve_listeners,
                        partial(
                            self._serve_stream,
                            self.network.accept,
                            tls=self.p2p_tls,
                            identify=self.p2p_tls is not None,
                        ),
                        p2p_listeners,
                        handler_nursery=nursery,
                    )
                )
            log_event(logger, logging.INFO, "listening", sdk=self.url, p2p=self.p2p_endpoint or "-")
            task_status.started(self)

    async def aclose_connections(self) -> None:
        """Close every client and node link politely, in well under a second."""
        self.network.close_links()
        await self.hub.close_all(2 * CLOSE_TIMEOUT)

    async def _serve_stream(
        self,
        serve: Callable[..., Awaitable[None]],
        stream: trio.abc.Stream,
        *,
        channel: Callable[[StreamSocket, ConnectionBudget | None], Awaitable[None]] | None = None,
        tls: ServerTLS | None = None,
        identify: bool = False,
        budgeted: bool = False,
    ) -> None:
        """Own one accepted connection: its socket and every task serving it.

        With ``channel``, a connection whose first bytes are not an HTTP
        upgrade is a 2.x channel client and goes there instead of ``serve``.
        With ``identify`` (node links over TLS), the peer must present a node
        certificate; ``serve`` gets the node id derived from it. With
        ``budgeted`` (clients), the connection's bytes count against the
        node's budgets on an account ``serve`` and ``channel`` get too.
        """
        remote = _peer_of(stream)
        account = None
        if budgeted:
            account = self.hub.budget.account(remote)
            serve = partial(serve, account=account)
        try:
            sock: FrameSocket | StreamSocket | None = None
            with trio.move_on_after(self.limits.handshake_timeout) as scope:
                if tls is not None:
                    stream = await _accept_tls(tls, stream)
                    if identify:
                        serve = partial(serve, certified=identify_peer(stream))
                sock = await self._open_socket(
                    stream, remote, sniffing=channel is not None, budget=account
                )
            if isinstance(sock, StreamSocket) and channel is not None:
                await channel(sock, account)
            elif isinstance(sock, FrameSocket):
                await serve(sock)
            elif scope.cancelled_caught:
                log_event(logger, logging.WARNING, "handshake_timeout", remote=remote)
            else:
                log_event(logger, logging.INFO, "closed_before_speaking", remote=remote)
        except Exception as exc:
            # Nothing one connection does may take the node down.
            error = unwrap_group(exc)
            tls_error = error if isinstance(error, ssl.SSLError) else error.__cause__
            if isinstance(error, PeerRefusedError):
                log_event(logger, logging.WARNING, "link_refused", remote=remote, reason=error)
            elif isinstance(tls_error, ssl.SSLError):
                quiet = tls_error.reason == "UNEXPECTED_EOF_WHILE_READING"  # a port probe
                log_event(
                    logger,
                    logging.INFO if quiet else logging.WARNING,
                    "tls_refused",
                    remote=remote,
                    reason=tls_error.reason or str(tls_error),
                )
            elif isinstance(
                error,
                (
                    trio.BrokenResourceError,
                    trio.ClosedResourceError,
                    OSError,
                    ConnectionLostError,
                    WireError,
                    ssl.SSLError,
                ),
            ):
                log_event(logger, logging.INFO, "connection_failed", error=repr(error))
            else:
                logger.exception("connection handler failed")
        finally:
            if account is not None:
                account.close()
            await trio.aclose_forcefully(stream)

    async def _open_socket(
        self,
        stream: trio.abc.Stream,
        remote: str,
        *,
        sniffing: bool,
        budget: ConnectionBudget | None = None,
    ) -> FrameSocket | StreamSocket | None:
        """Finish TLS, tell the protocol and open its socket; None if the peer left first."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if isinstance(stream, trio.SSLStream):
            # Finish TLS first, so a refused peer is seen and logged at once.
            await stream.do_handshake()
        protocol, prefix = await sniff(stream) if sniffing else (Protocol.WEBSOCKET, b"")
        if protocol is None:
            return None
        inner = connection_stream(stream, prefix)
        # A node link carries clients' frames with its own fields around them.
        max_size = self.limits.max_frame_size if budget is not None else self.network.max_frame_size
        if protocol is Protocol.CHANNEL:
            return StreamSocket(inner, max_frame_size=max_size, remote=remote, budget=budget)
        return await server_handshake(inner, max_frame_size=max_size, remote=remote, budget=budget)

    async def _run_session(
        self, sock: FrameSocket, account: ConnectionBudget | None = None
    ) -> None:
        session = Session(
            next(self._ids), sock, self.limits.outbox_size, self.limits.max_frame_size
        )
        await self._serve_session(session, account, partial(self.sdk.serve, session))

    async def _run_channel(self, sock: StreamSocket, account: ConnectionBudget | None) -> None:
        session = ChannelSession(
            next(self._ids), sock, self.limits.outbox_size, self.limits.max_frame_size
        )
        # The node never pings a channel client; its heartbeats must keep coming.
        half = self.limits.channel_idle_timeout / 2
        await self._serve_session(
            session, account, partial(self.channel.serve, session), half, half
        )

    async def _serve_session(
        self,
        session: Session,
        account: ConnectionBudget | None,
        read_loop: Callable[[], Awaitable[None]],
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
    ) -> None:
        self.hub.add(session, account)
        log_event(
            logger,
            logging.INFO,
            "client_connected",
            session=session.id,
            remote=session.name,
            protocol=session.protocol,
        )

        async def run_reader(_: trio.Nursery) -> None:
            await read_loop()

        try:
            reason = await session.run(
                run_reader,
                ping_interval=self.ping_interval if ping_interval is None else ping_interval,
                ping_timeout=self.ping_timeout if ping_timeout is None else ping_timeout,
            )
        finally:
            self.network.private.forget(session.id)
            if self.hub.remove(session):
                self.network.topics_changed()
        if isinstance(session.failure, FrameTooLargeError):
            log_event(
                logger,
                logging.WARNING,
                "frame_refused",
                session=session.id,
                remote=session.name,
                error=session.failure,
            )
        log_event(logger, logging.INFO, "client_disconnected", session=session.id, reason=reason)


async def _accept_tls(tls: ServerTLS, stream: trio.abc.Stream) -> trio.SSLStream[trio.abc.Stream]:
    """The server side of a TLS handshake on ``stream``, in the context its client asks for."""
    hello = await read_client_hello(stream) if tls.reads_hello else b""
    secure = trio.SSLStream(
        connection_stream(stream, hello), tls.context_for(hello), server_side=True
    )
    await secure.do_handshake()
    return secure


def _server_tls(context: ssl.SSLContext | ServerTLS | None) -> ServerTLS | None:
    if context is None or isinstance(context, ServerTLS):
        return context
    return ServerTLS(context)


def _peer_of(stream: trio.abc.Stream) -> str:
    inner: Any = getattr(stream, "transport_stream", stream)
    try:
        host, port = inner.socket.getpeername()[:2]
    except (AttributeError, OSError):
        return "unknown peer"
    return f"{host}:{port}"


def _join(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def default_node_id(host: str, port: int, p2p_host: str | None, p2p_port: int | None) -> str:
    """A node id that stays the same as long as the node's addresses do.

    Port 0 (pick any) gives a random id, since the address is not stable.
    """
    if port == 0 or p2p_port == 0:
        return random.getrandbits(256).to_bytes(32, "big").hex()
    key = f"{host}:{port}/{p2p_host or host}:{p2p_port}"
    return hashlib.sha256(key.encode()).hexdigest()


@asynccontextmanager
async def open_node(
    listen: str = "127.0.0.1:0",
    *,
    p2p_listen: str | None = None,
    peers: Sequence[str] = (),
    node_id: str | None = None,
    certs: StrPath | None = None,
    request_timeout: float = 10.0,
    ping_interval: float = 10.0,
    ping_timeout: float | None = None,
    limits: NodeLimits | None = None,
    seed: int | None = None,
    busy_poll: float = 0.0,
    allow_plain: bool = False,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Node]:
    """Run a node for the duration of the block.

    ``listen`` is the SDK address and ``p2p_listen`` the address for other
    nodes, both ``host:port`` (port 0 picks a free one); ``peers`` are P2P
    addresses of nodes to link to. ``certs`` is a certificate directory in
    the FISCO 2.x layout (``ca.crt``, ``node.crt``, ``node.key``), the 3.x
    layout (``ca.crt``, ``ssl.crt``, ``ssl.key``) or both: with it, both
    ports speak mutual TLS and accept only peers with a certificate from the
    chain's CA, the SDK port serves 2.x and 3.x clients alike, the P2P port
    takes node certificates only, the node id is derived from the node's
    certificate and its advertisements are signed (see ``_security``).

    ``clock`` (seconds since the epoch) only sets where this node's
    advertisement versions start; tests set it back to play a clock step.

    ``busy_poll`` (seconds, 0 for off) keeps the node's event loop polling
    instead of sleeping for that long after each frame it reads: a reply that
    follows within the window is read without waking a sleeping process, for
    up to that much CPU after each frame (see ``busy_poll.BusyPoll``).

    Without ``certs`` any process that reaches the ports can join, so a
    non-loopback address is refused (``ConfigError``) unless ``allow_plain``.
    """
    host, port = parse_listen(listen)
    if certs is None and not allow_plain:
        _refuse_plain(host, p2p_listen)
    server_tls = p2p_tls = client_tls = None
    signer = verifier = None
    if certs is not None:
        from .._security.certs import CertificateError
        from .._security.identity import AdvertVerifier
        from .._security.layout import load_anchors, load_signer
        from .._security.tls import node_tls

        contexts = node_tls(Path(certs))
        server_tls, p2p_tls, client_tls = contexts.sdk, contexts.p2p, contexts.dial
        signer = load_signer(contexts.certificates.identity)
        verifier = AdvertVerifier(load_anchors(contexts.certificates.ca))
        if node_id is not None and node_id != signer.node_id:
            raise CertificateError(
                f"node id {node_id[:16]}… is not the id of {contexts.certificates.identity.cert} "
                f"({signer.node_id[:16]}…): with certificates, leave the node id out",
                path=contexts.certificates.identity.cert,
            )
        node_id = signer.node_id
    p2p_host, p2p_port = parse_listen(p2p_listen) if p2p_listen else (None, None)
    node = Node(
        host=host,
        port=port,
        p2p_host=p2p_host,
        p2p_port=p2p_port,
        peers=peers,
        node_id=node_id,
        ssl_context=server_tls,
        p2p_ssl_context=p2p_tls,
        p2p_client_ssl_context=client_tls,
        request_timeout=request_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        limits=limits,
        seed=seed,
        busy_poll=busy_poll,
        signer=signer,
        verifier=verifier,
        clock=clock,
    )
    with unwrapped_errors():
        async with trio.open_nursery() as nursery:
            await nursery.start(node.serve)
            try:
                yield node
            finally:
                with trio.CancelScope(shield=True):
                    await node.aclose_connections()
                nursery.cancel_scope.cancel()


def _refuse_plain(host: str, p2p_listen: str | None) -> None:
    from .._chain import ConfigError, is_loopback

    for address in (host, parse_listen(p2p_listen)[0] if p2p_listen else host):
        if not is_loopback(address):
            raise ConfigError(
                f"refusing to listen on {address} without TLS: any host that reaches it could "
                "join; give certificates, or allow plain WebSocket explicitly "
                "(allow_plain=True, amop node --insecure-plain)"
            )


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) as a (host, port) pair."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"address {listen!r}: expected host:port, for example 127.0.0.1:20200")
    return host.strip("[]") or "0.0.0.0", int(port_text)
