"""The client's uplink in the ws protocol of FISCO BCOS 3.x (PROTOCOL.md section 1)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence

from .._errors import ConnectError, RejectedError, WireError
from .._log import log_event
from .._transport import ws_socket
from .._transport.connection import FrameTransport
from .._wire.extensions import ACKS, PRIVATE, STATUS, WS_EXTRAS, encode_status_query
from .._wire.fisco2_json import (
    ChannelVerifyRequest,
    ChannelVerifyResult,
)
from .._wire.fisco3 import (
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
from .._wire.peer import PeerType
from .._wire.status import Status
from .events import Answer, Delivery, Inbound
from .uplink import Uplink, handshake

logger = logging.getLogger("amop_trio.client")


class WsUplink(Uplink):
    """An uplink speaking ws (FISCO BCOS 3.x)."""

    def __init__(
        self, sock: FrameTransport, endpoint: str, outbox_size: int, max_frame_size: int
    ) -> None:
        super().__init__(sock, endpoint, outbox_size, max_frame_size)
        #: Whether the node acknowledges AMOP_SUBTOPIC (and AMOP_BROADCAST): amop_trio nodes.
        self.acks = False
        #: The amop_trio extensions the node granted (none from a real node).
        self.extras: frozenset[str] = frozenset()

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

    async def node_status(self, topics_from: int = 0) -> Answer:
        if STATUS not in self.extras:
            raise RejectedError(
                Status.UNSUPPORTED_TYPE,
                "status queries need an amop_trio node; this node does not answer them",
            )
        seq = new_seq()
        query = encode_status_query(topics_from)
        return await self.request(seq, encode_frame(Frame(PeerType.NODE_STATUS, seq, query)))


async def open_ws_uplink(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None,
    max_frame_size: int,
    connect_timeout: float,
    outbox_size: int,
) -> WsUplink:
    """Open a WebSocket and handshake; ``ConnectError`` says why not."""
    sock = await ws_socket.connect(
        url,
        ssl_context=ssl_context if url.startswith("wss://") else None,
        max_frame_size=max_frame_size,
        connect_timeout=connect_timeout,
    )
    uplink = WsUplink(sock, url, outbox_size, max_frame_size)
    seq = new_seq()
    hello = HandshakeRequest(extras=WS_EXTRAS)  # real nodes ignore the extensions key
    request = Frame(PacketType.HANDSHAKE, seq, hello.encode())

    def accept(answer: Answer) -> HandshakeResponse:
        if answer.status != 0:
            raise ConnectError(f"node at {url} refused the handshake with status {answer.status}")
        return HandshakeResponse.decode(answer.payload)

    info = await handshake(uplink, url, seq, encode_frame(request), accept, connect_timeout)
    # Only an amop_trio node grants extras: a real 3.x node answers no multicast and
    # no topic set, keeps every topic a connection ever sent, and has no private topics.
    grant = info.grant
    uplink.extras = grant.extras if grant is not None else frozenset()
    uplink.acks = uplink.acks_multicast = ACKS in uplink.extras
    uplink.topics_replace = grant is not None
    uplink.private_topics = PRIVATE in uplink.extras
    if grant is not None and grant.max_frame_size > 0:
        uplink.max_send_size = min(max_frame_size, grant.max_frame_size)
    log_event(logger, logging.INFO, "connected", endpoint=url, protocol=info.protocol_version)
    return uplink
