"""The client's uplink in the channel protocol of FISCO BCOS 2.x (PROTOCOL.md section 2)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence

from .._errors import ConnectError, RejectedError, WireError
from .._log import log_event
from .._transport import channel_socket
from .._wire.extensions import ACKS, CHANNEL_EXTRAS, STATUS, encode_status_query
from .._wire.fisco2 import (
    ChannelFrame,
    ChannelType,
    channel_result_from_status,
    decode_channel_frame,
    decode_topic_body,
    encode_channel_frame,
    encode_topic_body,
    new_channel_seq,
    status_from_channel_result,
)
from .._wire.fisco2_json import (
    ChannelHandshakeRequest,
    ChannelHandshakeResponse,
    ChannelVerifyRequest,
    ChannelVerifyResult,
    encode_subscription,
    heartbeat_request,
)
from .._wire.peer import PeerType
from .._wire.status import Status
from .events import Answer, Delivery, Inbound
from .uplink import Uplink, handshake

logger = logging.getLogger("amop_trio.client")


class ChannelUplink(Uplink):
    """An uplink speaking the 2.x channel protocol."""

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
        #: Whether the node answers each topic set (an amop_trio node that grants ``acks``).
        self.acks = False

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
            # Acknowledged at once, as the Java SDK does: a 2.x node waits 5 s for
            # it before it asks another publisher.
            ack = ChannelFrame(ChannelType.VERIFY_REQUEST, frame.seq, 0, b"")
            self.send_nowait(encode_channel_frame(ack))
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
        seq = new_channel_seq()
        frame = ChannelFrame(ChannelType.AMOP_SUBSCRIBE, seq, data=encode_subscription(topics))
        if self.acks:  # the node says whether it took the set
            return await self.request(seq, encode_channel_frame(frame))
        await self.send(encode_channel_frame(frame))
        # 0x32 has no answer, but a node handles a connection's frames in order:
        # once a heartbeat sent after it is answered, the topic set is in place.
        seq = new_channel_seq()
        await self.request(seq, self.heartbeat_frame(seq))
        return None

    async def node_status(self, topics_from: int = 0) -> Answer:
        if not self.amop_trio_node:
            raise RejectedError(
                Status.UNSUPPORTED_TYPE,
                "status queries need an amop_trio node; this channel node does not answer them",
            )
        seq = new_channel_seq()
        frame = ChannelFrame(PeerType.NODE_STATUS, seq, data=encode_status_query(topics_from))
        return await self.request(seq, encode_channel_frame(frame))


async def open_channel_uplink(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None,
    max_frame_size: int,
    connect_timeout: float,
    outbox_size: int,
) -> ChannelUplink:
    """Open a channel connection (TLS if ``ssl_context``) and handshake."""
    sock = await channel_socket.connect(
        url, ssl_context=ssl_context, max_frame_size=max_frame_size, connect_timeout=connect_timeout
    )
    uplink = ChannelUplink(sock, url, outbox_size, max_frame_size)
    seq = new_channel_seq()
    hello = ChannelHandshakeRequest(extras=CHANNEL_EXTRAS)  # real nodes ignore the extensions
    request = ChannelFrame(ChannelType.HANDSHAKE, seq, data=hello.encode())

    def accept(answer: Answer) -> ChannelHandshakeResponse:
        if answer.status != 0:
            detail = answer.payload[:200].decode("utf-8", "replace")
            raise ConnectError(f"node at {url} refused the channel handshake: {detail}")
        return ChannelHandshakeResponse.decode(answer.payload)

    info = await handshake(uplink, url, seq, encode_channel_frame(request), accept, connect_timeout)
    uplink.version = info.protocol
    grant = info.grant  # only an amop_trio node grants anything
    uplink.amop_trio_node = grant is not None and STATUS in grant.extras
    uplink.acks = grant is not None and ACKS in grant.extras
    if grant is not None and grant.max_frame_size > 0:
        uplink.max_send_size = min(max_frame_size, grant.max_frame_size)
    sock.heartbeat = uplink.heartbeat_frame
    log_event(
        logger,
        logging.INFO,
        "connected",
        endpoint=url,
        protocol=info.protocol,
        tls=ssl_context is not None,
    )
    return uplink
