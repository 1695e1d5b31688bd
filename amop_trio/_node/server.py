"""The node: accepts SDK connections over WebSocket and routes AMOP between them.

Theory of operation
-------------------
Every accepted WebSocket becomes a ``Session`` (a ``FrameConnection``) run by
its own handler task: one reader, one writer, one pinger, and the unicast
tasks its reader started. The first frame must be a HANDSHAKE, within
``handshake_timeout``. The topic table (``router.TopicTable``) says who
subscribes to what; routing choices come from ``router`` and never await.

Unicast: the publisher's session starts one task per request. It picks a
random subscriber, sends it the request under a fresh seq and waits for the
AMOP_RESPONSE with that seq. If the subscriber disconnects or answers with a
failure status, another subscriber is tried, until one answers or the node's
``request_timeout`` runs out (status 1000). No subscriber at all: 3001.

Multicast: the frame is encoded once and queued, without waiting, on every
subscriber's outbox. A subscriber whose outbox is full misses that message
(it is counted in ``Session.dropped`` and logged): a slow reader costs itself
messages, never the node's memory or the other clients' latency. The
publisher gets an AMOP_RESPONSE with status 0.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio
import trio_websocket

from .._errors import ConnectionLostError, WireError
from .._log import log_event
from .._transport.connection import FrameConnection
from .._transport.websocket import CLOSE_TIMEOUT, HANDSHAKE_TIMEOUT, FrameSocket
from .._util import Pending, unwrap_group, unwrapped_errors
from .._wire.status import Status
from .._wire.ws import (
    DEFAULT_MAX_FRAME_SIZE,
    EXT_RESPONSE,
    AmopBody,
    Frame,
    HandshakeRequest,
    HandshakeResponse,
    PacketType,
    decode_amop_body,
    decode_frame,
    decode_subtopic,
    encode_frame,
    new_seq,
)
from .router import TopicTable, choose_unicast

logger = logging.getLogger("amop_trio.node")

#: Highest ws protocol version this node speaks.
PROTOCOL_VERSION = 2
#: Packet type of the answer to each request type; others are answered in kind.
_ANSWER_TYPES: dict[int, int] = {
    PacketType.AMOP_REQUEST: PacketType.AMOP_RESPONSE,
    PacketType.AMOP_BROADCAST: PacketType.AMOP_RESPONSE,
}


@dataclass(frozen=True, slots=True)
class NodeLimits:
    """What one connection may ask of the node; beyond it, requests are refused."""

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_topics: int = 1000
    max_topic_length: int = 65535
    max_pending: int = 1024
    outbox_size: int = 512
    handshake_timeout: float = HANDSHAKE_TIMEOUT


@dataclass(slots=True)
class NodeStatistics:
    """Counters of a node since it started."""

    connections: int = 0
    unicasts: int = 0
    multicasts: int = 0
    multicast_dropped: int = 0
    refused: int = 0
    topics: dict[str, int] = field(default_factory=dict)


class Session(FrameConnection):
    """One SDK client connected to this node."""

    def __init__(self, sid: int, sock: FrameSocket, outbox_size: int) -> None:
        super().__init__(sock, name=sock.remote, outbox_size=outbox_size)
        self.id = sid
        self.handshaken = False
        self.acks = False
        self.requests = 0
        self.dropped = 0
        #: node seqs of unicasts delivered to this session and not answered yet.
        self.deliveries: dict[bytes, Pending[Frame]] = {}

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.name}>"

    def on_close(self, reason: str) -> None:
        for waiter in self.deliveries.values():
            waiter.fail(ConnectionLostError(f"subscriber {self.name} disconnected: {reason}"))
        self.deliveries.clear()


class Node:
    """An AMOP node. Build it with ``open_node``, or run ``serve`` in a nursery."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 20200,
        ssl_context: ssl.SSLContext | None = None,
        request_timeout: float = 10.0,
        ping_interval: float = 10.0,
        ping_timeout: float | None = None,
        limits: NodeLimits | None = None,
        seed: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.request_timeout = request_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_interval if ping_timeout is None else ping_timeout
        self.limits = limits or NodeLimits()
        self.table = TopicTable()
        self.sessions: dict[int, Session] = {}
        self.stats = NodeStatistics()
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._ready = trio.Event()
        self._session_ended = trio.Event()

    @property
    def endpoint(self) -> str:
        """``host:port`` clients connect to (the real port once listening)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{self.endpoint}"

    def statistics(self) -> NodeStatistics:
        self.stats.topics = self.table.topics()
        return self.stats

    async def serve(self, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; reports ``self`` once listening."""
        tcp_listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = tcp_listeners[0].socket.getsockname()[1]
        listeners: list[trio.abc.Listener[Any]] = list(tcp_listeners)
        if self.ssl_context is not None:
            listeners = [trio.SSLListener(lst, self.ssl_context) for lst in tcp_listeners]
        log_event(logger, logging.INFO, "listening", endpoint=self.url)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    trio.serve_listeners, self._serve_stream, listeners, handler_nursery=nursery
                )
            )
            self._ready.set()
            task_status.started(self)

    async def close_sessions(self) -> None:
        """Close every client connection politely, all at once, in well under a second."""
        for session in list(self.sessions.values()):
            session.close("node stopping", code=1001)
        with trio.move_on_after(2 * CLOSE_TIMEOUT):
            while self.sessions:
                await self._session_ended.wait()

    # -- sessions ---------------------------------------------------------

    async def _serve_stream(self, stream: trio.abc.Stream) -> None:
        """Own one accepted connection: its WebSocket, its session, every task of both."""
        try:
            async with trio.open_nursery() as nursery:
                ws = None
                with trio.move_on_after(self.limits.handshake_timeout):
                    request = await trio_websocket.wrap_server_stream(
                        nursery,
                        stream,
                        message_queue_size=1,
                        max_message_size=self.limits.max_frame_size,
                        receive_buffer_size=65536,
                    )
                    ws = await request.accept()
                if ws is None:
                    log_event(
                        logger,
                        logging.WARNING,
                        "upgrade_timeout",
                        seconds=self.limits.handshake_timeout,
                    )
                else:
                    await self._run_session(
                        FrameSocket(ws, max_frame_size=self.limits.max_frame_size)
                    )
                nursery.cancel_scope.cancel()
        except Exception as exc:
            # Nothing one connection does may take the node down.
            error = unwrap_group(exc)
            if isinstance(
                error,
                (
                    trio.BrokenResourceError,
                    trio.ClosedResourceError,
                    OSError,
                    trio_websocket.ConnectionClosed,
                    ssl.SSLError,
                ),
            ):
                log_event(logger, logging.INFO, "connection_failed", error=repr(error))
            else:
                logger.exception("connection handler failed")
        finally:
            await trio.aclose_forcefully(stream)

    async def _run_session(self, sock: FrameSocket) -> None:
        session = Session(next(self._ids), sock, self.limits.outbox_size)
        self.sessions[session.id] = session
        self.stats.connections += 1
        log_event(logger, logging.INFO, "client_connected", session=session.id, remote=session.name)
        try:
            reason = await session.run(
                partial(self._read_loop, session),
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
            )
        finally:
            self.sessions.pop(session.id, None)
            self.table.remove_session(session.id)
            self._session_ended.set()
            self._session_ended = trio.Event()
        log_event(logger, logging.INFO, "client_disconnected", session=session.id, reason=reason)

    async def _read_loop(self, session: Session, nursery: trio.Nursery) -> None:
        limits = self.limits
        with trio.move_on_after(limits.handshake_timeout) as scope:
            first = decode_frame(await session.sock.receive(), max_size=limits.max_frame_size)
        if scope.cancelled_caught:
            session.close(f"no handshake within {limits.handshake_timeout:g} s", code=1008)
            log_event(logger, logging.WARNING, "handshake_timeout", remote=session.name)
            return
        if first.type != PacketType.HANDSHAKE:
            await self._answer(
                session,
                first,
                Status.UNSUPPORTED_TYPE,
                b"the first frame must be a HANDSHAKE (0x100)",
            )
            raise WireError(f"first frame has type {first.type:#x}, expected HANDSHAKE (0x100)")
        await self._on_handshake(session, first)
        while True:
            frame = decode_frame(await session.sock.receive(), max_size=limits.max_frame_size)
            handler = self._handlers.get(frame.type)
            if handler is None or (frame.is_response and frame.type != PacketType.AMOP_RESPONSE):
                await self._answer(
                    session,
                    frame,
                    Status.UNSUPPORTED_TYPE,
                    f"packet type {frame.type:#x} is not supported".encode(),
                )
                continue
            try:
                await handler(self, session, frame, nursery)
            except WireError as exc:
                # A readable frame with a bad payload: answer it, keep the connection.
                self.stats.refused += 1
                await self._answer(
                    session, frame, exc.status or Status.INVALID_REQUEST, str(exc).encode()
                )

    async def _answer(
        self, session: Session, frame: Frame, status: int = 0, payload: bytes = b""
    ) -> None:
        """Answer ``frame`` under its seq: AMOP requests with AMOP_RESPONSE, others in kind."""
        ptype = _ANSWER_TYPES.get(frame.type, frame.type)
        await session.send(
            encode_frame(Frame(ptype, frame.seq, payload, status=status, ext=EXT_RESPONSE))
        )

    # -- handlers ---------------------------------------------------------

    async def _on_handshake(self, session: Session, frame: Frame, _: Any = None) -> None:
        request = HandshakeRequest.decode(frame.payload)
        version = max(1, min(PROTOCOL_VERSION, request.max_version))
        session.handshaken = True
        session.acks = request.amop_acks
        extra: dict[str, Any] = {"groupInfoList": [], "groupBlockNumber": [], "amopAcks": True}
        await self._answer(session, frame, 0, HandshakeResponse(version, extra).encode())

    async def _on_subtopic(self, session: Session, frame: Frame, _: trio.Nursery) -> None:
        topics = decode_subtopic(frame.payload)
        limits = self.limits
        if len(topics) > limits.max_topics:
            raise WireError(
                f"{len(topics)} topics exceed the limit of {limits.max_topics} per connection",
                status=Status.INVALID_REQUEST,
            )
        for topic in topics:
            if not topic or len(topic.encode("utf-8")) > limits.max_topic_length:
                raise WireError(
                    f"topic {topic[:40]!r} must be 1 to {limits.max_topic_length} bytes long",
                    status=Status.INVALID_REQUEST,
                )
        added, removed = self.table.set_topics(session.id, topics)
        if added or removed:
            log_event(
                logger,
                logging.INFO,
                "topics",
                session=session.id,
                added=",".join(sorted(added)),
                removed=",".join(sorted(removed)),
            )
        if session.acks:
            await self._answer(session, frame)

    async def _on_request(self, session: Session, frame: Frame, nursery: trio.Nursery) -> None:
        body = decode_amop_body(frame.payload)
        if session.requests >= self.limits.max_pending:
            self.stats.refused += 1
            await self._answer(
                session,
                frame,
                Status.OVERLOADED,
                f"more than {self.limits.max_pending} requests pending on this connection".encode(),
            )
            return
        session.requests += 1
        self.stats.unicasts += 1
        nursery.start_soon(self._unicast, session, frame, body)

    async def _on_broadcast(self, session: Session, frame: Frame, _: trio.Nursery) -> None:
        body = decode_amop_body(frame.payload)
        self.stats.multicasts += 1
        data = encode_frame(Frame(PacketType.AMOP_BROADCAST, new_seq(), frame.payload))
        for sid in self.table.subscribers(body.topic):
            target = self.sessions.get(sid)
            if target is not None and not target.send_nowait(data) and not target.closed:
                target.dropped += 1
                self.stats.multicast_dropped += 1
                if target.dropped % 10000 == 1:
                    log_event(
                        logger,
                        logging.WARNING,
                        "multicast_dropped",
                        session=target.id,
                        topic=body.topic,
                        dropped=target.dropped,
                        reason="subscriber outbox full",
                    )
        await self._answer(session, frame)

    async def _on_response(self, session: Session, frame: Frame, _: trio.Nursery) -> None:
        waiter = session.deliveries.pop(frame.seq, None)
        if waiter is not None:
            waiter.resolve(frame)

    _handlers: dict[int, Callable[[Node, Session, Frame, trio.Nursery], Awaitable[None]]] = {
        PacketType.HANDSHAKE: _on_handshake,
        PacketType.AMOP_SUBTOPIC: _on_subtopic,
        PacketType.AMOP_REQUEST: _on_request,
        PacketType.AMOP_BROADCAST: _on_broadcast,
        PacketType.AMOP_RESPONSE: _on_response,
    }

    # -- unicast ------------------------------------------------------------

    async def _unicast(self, publisher: Session, frame: Frame, body: AmopBody) -> None:
        try:
            status, payload = await self._route_unicast(body.topic, frame.payload)
            with contextlib.suppress(ConnectionLostError):  # the publisher left
                await self._answer(publisher, frame, status, payload)
        finally:
            publisher.requests -= 1

    async def _route_unicast(self, topic: str, payload: bytes) -> tuple[int, bytes]:
        """Deliver to one subscriber after another until one answers; (status, reply)."""
        tried: set[int] = set()
        last_status = Status.NO_SUBSCRIBER_CLIENT
        with trio.move_on_after(self.request_timeout):
            while True:
                sid = choose_unicast(self.table.subscribers(topic), tried, self._rng)
                if sid is None:
                    if not tried:
                        return (
                            Status.NO_SUBSCRIBER_NODE,
                            f"no subscriber for topic {topic!r}".encode(),
                        )
                    return last_status, f"no subscriber of topic {topic!r} answered".encode()
                tried.add(sid)
                target = self.sessions.get(sid)
                reply = await self._deliver(target, payload) if target is not None else None
                if reply is not None and reply.status == 0:
                    return 0, reply.payload
                if reply is not None:
                    last_status = (
                        Status.SEND_FAILED
                        if reply.status != Status.NO_SUBSCRIBER_CLIENT
                        else Status.NO_SUBSCRIBER_CLIENT
                    )
        return (
            Status.TIMEOUT,
            f"no reply on topic {topic!r} within {self.request_timeout:g} s".encode(),
        )

    async def _deliver(self, target: Session, payload: bytes) -> Frame | None:
        """Send one unicast to ``target``; its reply, or None if it went away."""
        seq = new_seq()
        waiter: Pending[Frame] = Pending()
        target.deliveries[seq] = waiter
        try:
            await target.send(encode_frame(Frame(PacketType.AMOP_REQUEST, seq, payload)))
            await waiter.event.wait()
        except ConnectionLostError:
            return None
        finally:
            target.deliveries.pop(seq, None)
        return waiter.result


@asynccontextmanager
async def open_node(
    listen: str = "127.0.0.1:0",
    *,
    ssl_context: ssl.SSLContext | None = None,
    request_timeout: float = 10.0,
    ping_interval: float = 10.0,
    ping_timeout: float | None = None,
    limits: NodeLimits | None = None,
    seed: int | None = None,
) -> AsyncIterator[Node]:
    """Run a node for the duration of the block; ``listen`` is ``host:port`` (port 0 picks one)."""
    host, port = parse_listen(listen)
    node = Node(
        host=host,
        port=port,
        ssl_context=ssl_context,
        request_timeout=request_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        limits=limits,
        seed=seed,
    )
    with unwrapped_errors():
        async with trio.open_nursery() as nursery:
            await nursery.start(node.serve)
            try:
                yield node
            finally:
                with trio.CancelScope(shield=True):
                    await node.close_sessions()
                nursery.cancel_scope.cancel()


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) as a (host, port) pair."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(
            f"listen address {listen!r}: expected host:port, for example 127.0.0.1:20200"
        )
    return host.strip("[]") or "0.0.0.0", int(port_text)
