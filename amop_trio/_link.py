"""The client's connection to one node, in the protocol its endpoint names.

``AmopClient`` works in terms of topics, data, ws ``Status`` codes and seqs;
a ``Link`` turns those into frames and back. ``WsLink`` speaks ws (PROTOCOL.md
section 1, ``ws://``/``wss://`` endpoints), ``ChannelLink`` the 2.x channel
protocol (section 2, ``channel://``). ``decode`` turns each frame from the
node into one ``Inbound`` event for the client's reader: a ``Delivery`` for
its subscriptions, an ``Answer`` to a request, or a ``ChannelVerifyRequest``
(the node asks this publisher to challenge a private-topic subscriber).
Answers always carry a ws ``Status``: a channel result code is converted, so
the client raises the same errors over both protocols.
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import trio

from ._errors import (
    AmopTimeoutError,
    ConnectError,
    ConnectionLostError,
    RejectedError,
    WireError,
)
from ._log import log_event
from ._requests import Deadlines, Pending
from ._transport import channel_socket, ws_socket
from ._transport.connection import FrameConnection, FrameTransport
from ._wire.fisco2 import (
    ChannelFrame,
    ChannelHandshakeRequest,
    ChannelHandshakeResponse,
    ChannelType,
    ChannelVerifyRequest,
    ChannelVerifyResult,
    channel_result_from_status,
    decode_channel_frame,
    decode_topic_body,
    encode_channel_frame,
    encode_subscription,
    encode_topic_body,
    heartbeat_request,
    new_channel_seq,
    status_from_channel_result,
)
from ._wire.fisco3 import (
    EXT_RESPONSE,
    Frame,
    HandshakeRequest,
    HandshakeResponse,
    PacketType,
    decode_amop_body,
    decode_frame,
    encode_amop_body,
    encode_frame,
    encode_subtopic,
    new_seq,
)
from ._wire.peer import PeerType
from ._wire.status import Status

logger = logging.getLogger("amop_trio.client")

#: ``nodeVersion`` with which amop_trio nodes answer a channel handshake.
AMOP_TRIO_NODE_VERSION = "amop_trio"


@dataclass(frozen=True, slots=True)
class Answer:
    """The node's answer to a request: a ws ``Status`` code and the payload."""

    seq: bytes
    status: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message for this client's subscriptions; ``topic`` is the wire topic."""

    seq: bytes
    topic: str
    data: bytes
    multicast: bool


Inbound = Answer | Delivery | ChannelVerifyRequest | None


class Link(FrameConnection):
    """One live connection to a node, with the requests in flight on it."""

    def __init__(
        self, sock: FrameTransport, endpoint: str, outbox_size: int, max_frame_size: int
    ) -> None:
        super().__init__(sock, name=endpoint, outbox_size=outbox_size)
        self.endpoint = endpoint
        #: Whether the node answers each multicast (amop_trio nodes and 2.x nodes do).
        self.acks_multicast = False
        self.max_frame_size = max_frame_size
        self.pending: dict[bytes, Pending[Answer]] = {}
        #: Times out requests given a deadline (the client's).
        self.deadlines: Deadlines | None = None
        #: The client's topic version last sent on this link.
        self.topics_version = -1

    async def request(self, seq: bytes, frame: bytes, deadline: float = math.inf) -> Answer:
        """Send ``frame`` and wait for the answer to ``seq``.

        Past ``deadline`` (trio time), ``AmopTimeoutError``; that needs
        ``deadlines`` set, or the caller's own cancel scope.
        """
        if self.closed:
            raise ConnectionLostError(f"connection to {self.endpoint} lost: {self.reason}")
        waiter: Pending[Answer] = Pending()
        self.pending[seq] = waiter
        if deadline < math.inf and self.deadlines is not None:
            self.deadlines.add(deadline, waiter)
        try:
            await self._send_by(frame, deadline)
            await waiter.wait()
        finally:
            self.pending.pop(seq, None)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.result is not None
        return waiter.result

    def resolve(self, answer: Answer) -> bool:
        """Hand ``answer`` to the request waiting for it; False if none is."""
        waiter = self.pending.pop(answer.seq, None)
        if waiter is None:
            return False
        waiter.resolve(answer)
        return True

    def on_close(self, reason: str) -> None:
        for waiter in self.pending.values():
            waiter.fail(ConnectionLostError(f"connection to {self.endpoint} lost: {reason}"))
        self.pending.clear()

    async def publish(self, topic: str, data: bytes, deadline: float = math.inf) -> Answer:
        """Unicast and wait for the reply; ``EncodeError`` if the protocol cannot carry it."""
        seq = new_seq()
        return await self.request(seq, self.unicast_frame(seq, topic, data), deadline)

    async def broadcast(self, topic: str, data: bytes, deadline: float = math.inf) -> Answer | None:
        """Multicast; the node's answer, or None from a node that sends none."""
        seq = new_seq()
        frame = self.multicast_frame(seq, topic, data)
        if self.acks_multicast:
            return await self.request(seq, frame, deadline)
        await self._send_by(frame, deadline)
        return None

    async def _send_by(self, frame: bytes, deadline: float) -> None:
        """Send now if the outbox has room, else wait for room until ``deadline``."""
        if self.send_nowait(frame):
            return
        with trio.move_on_at(deadline) as scope:
            await self.send(frame)
        if scope.cancelled_caught:
            raise AmopTimeoutError(f"the outbox to {self.endpoint} stayed full")

    # -- what each protocol defines -------------------------------------------

    def decode(self, data: bytes) -> Inbound:
        """One frame from the node as an event; ``WireError`` if it is not a frame."""
        raise NotImplementedError

    def unicast_frame(self, seq: bytes, topic: str, data: bytes) -> bytes:
        raise NotImplementedError

    def multicast_frame(self, seq: bytes, topic: str, data: bytes) -> bytes:
        raise NotImplementedError

    def reply_frame(self, seq: bytes, topic: str, data: bytes, status: int = 0) -> bytes:
        """The answer to the unicast ``seq`` on ``topic`` (a failure if ``status``)."""
        raise NotImplementedError

    def verify_result_frame(self, result: ChannelVerifyResult) -> bytes:
        raise NotImplementedError

    async def send_topics(self, topics: Sequence[str]) -> Answer | None:
        """Send the complete topic set; the node's answer, if it sends one."""
        raise NotImplementedError

    async def node_status(self) -> Answer:
        raise NotImplementedError


class WsLink(Link):
    """A link speaking ws (FISCO BCOS 3.x)."""

    def __init__(
        self, sock: FrameTransport, endpoint: str, outbox_size: int, max_frame_size: int
    ) -> None:
        super().__init__(sock, endpoint, outbox_size, max_frame_size)
        #: Whether the node acknowledges AMOP_SUBTOPIC (and AMOP_BROADCAST): amop_trio nodes.
        self.acks = False

    def decode(self, data: bytes) -> Inbound:
        frame = decode_frame(data, max_size=self.max_frame_size)
        ptype = frame.type
        if ptype in (PacketType.AMOP_REQUEST, PacketType.AMOP_BROADCAST) and not frame.is_response:
            try:
                body = decode_amop_body(frame.payload)
            except WireError as exc:
                log_event(logger, logging.WARNING, "bad_message_from_node", error=exc)
                return None
            multicast = ptype == PacketType.AMOP_BROADCAST
            return Delivery(frame.seq, body.topic, body.data, multicast)
        if ptype == PeerType.VERIFY_REQUEST:
            return ChannelVerifyRequest.decode(frame.payload)
        # Answers are matched by seq alone: real nodes send failures with type 0.
        return Answer(frame.seq, frame.status, frame.payload)

    def unicast_frame(self, seq: bytes, topic: str, data: bytes) -> bytes:
        return encode_frame(Frame(PacketType.AMOP_REQUEST, seq, encode_amop_body(topic, data)))

    def multicast_frame(self, seq: bytes, topic: str, data: bytes) -> bytes:
        return encode_frame(Frame(PacketType.AMOP_BROADCAST, seq, encode_amop_body(topic, data)))

    def reply_frame(self, seq: bytes, topic: str, data: bytes, status: int = 0) -> bytes:
        return encode_frame(
            Frame(PacketType.AMOP_RESPONSE, seq, data, status=status, ext=EXT_RESPONSE)
        )

    def verify_result_frame(self, result: ChannelVerifyResult) -> bytes:
        return encode_frame(Frame(PeerType.VERIFY_RESULT, new_seq(), result.encode()))

    async def send_topics(self, topics: Sequence[str]) -> Answer | None:
        seq = new_seq()
        frame = encode_frame(Frame(PacketType.AMOP_SUBTOPIC, seq, encode_subtopic(list(topics))))
        if self.acks:
            return await self.request(seq, frame)
        await self.send(frame)
        return None

    async def node_status(self) -> Answer:
        seq = new_seq()
        return await self.request(seq, encode_frame(Frame(PeerType.NODE_STATUS, seq, b"{}")))


class ChannelLink(Link):
    """A link speaking the 2.x channel protocol."""

    def __init__(
        self,
        sock: channel_socket.StreamSocket,
        endpoint: str,
        outbox_size: int,
        max_frame_size: int,
    ) -> None:
        super().__init__(sock, endpoint, outbox_size, max_frame_size)
        self.acks_multicast = True
        #: The protocol version the node chose in the handshake.
        self.version = 1
        #: Whether the node is an amop_trio node (which answers status queries).
        self.amop_trio_node = False

    def heartbeat_frame(self, seq: bytes | None = None) -> bytes:
        data = heartbeat_request(self.version)
        frame = ChannelFrame(ChannelType.HEARTBEAT, seq or new_channel_seq(), data=data)
        return encode_channel_frame(frame)

    def decode(self, data: bytes) -> Inbound:
        frame = decode_channel_frame(data, max_size=self.max_frame_size)
        ptype = frame.type
        if ptype in (ChannelType.AMOP_REQUEST, ChannelType.AMOP_MULTICAST):
            try:
                body = decode_topic_body(frame.data)
            except WireError as exc:
                log_event(logger, logging.WARNING, "bad_message_from_node", error=exc)
                return None
            multicast = ptype == ChannelType.AMOP_MULTICAST
            return Delivery(frame.seq, body.topic, body.data, multicast)
        if ptype == ChannelType.VERIFY_REQUEST:
            return ChannelVerifyRequest.decode(frame.data)
        if ptype == ChannelType.HEARTBEAT and frame.seq not in self.pending:
            return None  # a keep-alive answer: the socket has counted it already
        payload = frame.data
        if ptype == ChannelType.AMOP_RESPONSE and frame.result == 0:
            try:
                payload = decode_topic_body(frame.data).data
            except WireError as exc:
                error = f"malformed answer from the node: {exc}".encode()
                return Answer(frame.seq, Status.SEND_FAILED, error)
        return Answer(frame.seq, status_from_channel_result(frame.result), payload)

    def unicast_frame(self, seq: bytes, topic: str, data: bytes) -> bytes:
        body = encode_topic_body(topic, data)
        return encode_channel_frame(ChannelFrame(ChannelType.AMOP_REQUEST, seq, data=body))

    def multicast_frame(self, seq: bytes, topic: str, data: bytes) -> bytes:
        body = encode_topic_body(topic, data)
        return encode_channel_frame(ChannelFrame(ChannelType.AMOP_MULTICAST, seq, data=body))

    def reply_frame(self, seq: bytes, topic: str, data: bytes, status: int = 0) -> bytes:
        result = channel_result_from_status(status)
        body = encode_topic_body(topic, data)
        return encode_channel_frame(ChannelFrame(ChannelType.AMOP_RESPONSE, seq, result, body))

    def verify_result_frame(self, result: ChannelVerifyResult) -> bytes:
        return encode_channel_frame(
            ChannelFrame(ChannelType.VERIFY_RESULT, new_channel_seq(), data=result.encode())
        )

    async def send_topics(self, topics: Sequence[str]) -> Answer | None:
        frame = ChannelFrame(
            ChannelType.AMOP_SUBSCRIBE, new_channel_seq(), data=encode_subscription(topics)
        )
        await self.send(encode_channel_frame(frame))
        # 0x32 has no answer, but a node handles a connection's frames in order:
        # once a heartbeat sent after it is answered, the topic set is in place.
        seq = new_channel_seq()
        await self.request(seq, self.heartbeat_frame(seq))
        return None

    async def node_status(self) -> Answer:
        if not self.amop_trio_node:
            raise RejectedError(
                Status.UNSUPPORTED_TYPE,
                "status queries need an amop_trio node; this channel node does not answer them",
            )
        seq = new_channel_seq()
        frame = ChannelFrame(PeerType.NODE_STATUS, seq, data=b"{}")
        return await self.request(seq, encode_channel_frame(frame))


async def _first_answer(sock: FrameTransport, link: Link, seq: bytes, timeout: float) -> Answer:
    """The node's answer to the handshake ``seq``; other frames before it are skipped."""
    with trio.fail_after(timeout):
        while True:
            event = link.decode(await sock.receive())
            if isinstance(event, Answer) and event.seq == seq:
                return event


_Info = TypeVar("_Info")


async def _handshake(
    link: Link,
    url: str,
    seq: bytes,
    request: bytes,
    accept: Callable[[Answer], _Info],
    timeout: float,
) -> _Info:
    """Send the handshake, read its answer, and let ``accept`` judge it.

    On any failure the socket is closed and the error said as a ``ConnectError``.
    """
    sock = link.sock
    try:
        await sock.send(request)
        try:
            return accept(await _first_answer(sock, link, seq, timeout))
        except WireError as exc:
            raise ConnectError(f"node at {url} sent an invalid handshake answer: {exc}") from None
    except BaseException as exc:
        await sock.aclose()
        error = _handshake_error(exc, url, timeout)
        if error is exc:
            raise
        raise error from None


async def open_ws_link(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None,
    max_frame_size: int,
    connect_timeout: float,
    outbox_size: int,
) -> WsLink:
    """Open a WebSocket and handshake; ``ConnectError`` says why not."""
    sock = await ws_socket.connect(
        url,
        ssl_context=ssl_context if url.startswith("wss://") else None,
        max_frame_size=max_frame_size,
        connect_timeout=connect_timeout,
    )
    link = WsLink(sock, url, outbox_size, max_frame_size)
    seq = new_seq()
    request = Frame(PacketType.HANDSHAKE, seq, HandshakeRequest(amop_acks=True).encode())

    def accept(answer: Answer) -> HandshakeResponse:
        if answer.status != 0:
            raise ConnectError(f"node at {url} refused the handshake with status {answer.status}")
        return HandshakeResponse.decode(answer.payload)

    info = await _handshake(link, url, seq, encode_frame(request), accept, connect_timeout)
    link.acks = link.acks_multicast = info.amop_acks
    log_event(logger, logging.INFO, "connected", endpoint=url, protocol=info.protocol_version)
    return link


async def open_channel_link(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None,
    max_frame_size: int,
    connect_timeout: float,
    outbox_size: int,
) -> ChannelLink:
    """Open a channel connection (TLS if ``ssl_context``) and handshake."""
    sock = await channel_socket.connect(
        url, ssl_context=ssl_context, max_frame_size=max_frame_size, connect_timeout=connect_timeout
    )
    link = ChannelLink(sock, url, outbox_size, max_frame_size)
    seq = new_channel_seq()
    request = ChannelFrame(ChannelType.HANDSHAKE, seq, data=ChannelHandshakeRequest().encode())

    def accept(answer: Answer) -> ChannelHandshakeResponse:
        if answer.status != 0:
            detail = answer.payload[:200].decode("utf-8", "replace")
            raise ConnectError(f"node at {url} refused the channel handshake: {detail}")
        return ChannelHandshakeResponse.decode(answer.payload)

    info = await _handshake(link, url, seq, encode_channel_frame(request), accept, connect_timeout)
    link.version = info.protocol
    link.amop_trio_node = info.node_version.startswith(AMOP_TRIO_NODE_VERSION)
    sock.heartbeat = link.heartbeat_frame
    log_event(
        logger,
        logging.INFO,
        "connected",
        endpoint=url,
        protocol=info.protocol,
        tls=ssl_context is not None,
    )
    return link


def _handshake_error(exc: BaseException, url: str, timeout: float) -> BaseException:
    """What a failed handshake raises: ``ConnectError`` unless it was not about the node."""
    if isinstance(exc, ConnectError):
        return exc
    if isinstance(exc, trio.TooSlowError):
        return ConnectError(f"node at {url} did not answer the handshake within {timeout:g} s")
    if isinstance(exc, (WireError, ConnectionLostError)):
        hint = ""
        if url.startswith("channel://"):
            hint = " (a TLS port? pass certs or an ssl_context)"
        return ConnectError(f"handshake with {url} failed: {exc}{hint}")
    return exc
