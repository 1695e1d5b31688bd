"""2.x SDK sessions: what a node does with the frames of channel clients.

A ``ChannelSession`` is a ``Session`` like any ws client's: it joins the same
``LocalHub`` and topic table, and its messages route through the same
``Network``, so ws and channel clients reach each other on one node and
across nodes. Inside the node a message is always a ws AMOP body; the session
turns it into channel frames on the way out (``request_frame``,
``multicast_frame``, ``verify_request``), and ``ChannelService`` turns
channel frames into calls on the way in (docs/PROTOCOL.md section 2).

Towards a client the node behaves as a FISCO BCOS 2.x node: it answers the
JSON-RPC calls SDKs make on connect (``rpc``), heartbeats by the session's
negotiated protocol, handshakes with a 2.x ``nodeVersion``, and it answers
nothing else a 2.x node leaves unanswered (subscriptions, verification
results, unknown packet types). A client need not handshake (protocol 1 SDKs
never do), and the node never pings: the client's heartbeats keep the session
alive (``StreamSocket.ping``). A frame that cannot be parsed closes the
connection; a unicast, multicast or handshake with a bad body is answered
with a 2.x result code and a UTF-8 error text, and logged. A topic set or a
unicast past a byte budget (``budget``) is refused before anything is
taken: a unicast with 103, a topic set (0x32, never answered by a 2.x node)
with a log line, or, for a client that asked for ``acks`` in its handshake,
with an answer in kind: 104 past the connection's topic budget, 103 past the
node's (0 when the set is in place).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from .._errors import EncodeError, WireError
from .._log import log_event
from .._wire.extensions import ACKS, CHANNEL_EXTRAS, STATUS, Grant, decode_status_query
from .._wire.fisco2 import (
    HEADER_SIZE,
    MAX_CHANNEL_TOPIC_BYTES,
    ChannelFrame,
    ChannelType,
    TopicBody,
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
    decode_subscription,
    heartbeat_answer,
)
from .._wire.fisco3 import Frame, PacketType, decode_amop_body, encode_amop_body
from .._wire.peer import PeerType
from .._wire.status import Status
from .budget import ANSWER_DROPPED, ConnectionBudget
from .hub import LocalHub
from .limits import NodeLimits, NodeStatistics
from .network import Network
from .rpc import SUPPORTED_VERSION, channel_rpc_answer
from .service import Service, frame_handler
from .session import Session

logger = logging.getLogger("amop_trio.node")

#: Channel protocol versions this node speaks (heartbeat "0"/"1" is version 1).
PROTOCOL_MIN = 1
PROTOCOL_MAX = 3
#: Topics 2.x SDKs subscribe to on connect to get block numbers; accepted, ignored.
BLOCK_NOTIFY_PREFIX = "_block_notify_"
#: Packet types whose bad bodies are answered with an error (the client waits for
#: an answer to them); bad bodies of the others are only logged, as a 2.x node does.
_ANSWERED = frozenset({ChannelType.HANDSHAKE, ChannelType.AMOP_REQUEST, ChannelType.AMOP_MULTICAST})
#: Packet type of the answer to each request type; others are answered in kind.
_ANSWER_TYPES: dict[int, int] = {
    ChannelType.AMOP_REQUEST: ChannelType.AMOP_RESPONSE,
    ChannelType.AMOP_MULTICAST: ChannelType.AMOP_RESPONSE,
}


def _answer_frame(frame: ChannelFrame, result: int = 0, data: bytes = b"") -> bytes:
    """The answer to ``frame`` under its seq: AMOP requests get AMOP_RESPONSE, others in kind."""
    ftype = _ANSWER_TYPES.get(frame.type, frame.type)
    return encode_channel_frame(ChannelFrame(ftype, frame.seq, result, data))


class ChannelSession(Session):
    """One 2.x SDK client: a ``Session`` whose frames are channel frames."""

    protocol: ClassVar[str] = "channel"
    #: The channel protocol version negotiated by HANDSHAKE (1 until then).
    version: int = 1

    def __repr__(self) -> str:
        return f"<ChannelSession {self.id} {self.name}>"

    def verify_request(self, request: ChannelVerifyRequest) -> bytes:
        return encode_channel_frame(
            ChannelFrame(ChannelType.VERIFY_REQUEST, new_channel_seq(), data=request.encode())
        )

    def request_frame(self, seq: bytes, body: bytes) -> bytes | None:
        data = _topic_body_of(body)
        if data is None:
            return None
        return self.within_limit(
            encode_channel_frame(ChannelFrame(ChannelType.AMOP_REQUEST, seq, data=data))
        )

    def multicast_frame(self, body: bytes) -> bytes | None:
        data = _topic_body_of(body)
        if data is None:
            return None
        return self.within_limit(
            encode_channel_frame(
                ChannelFrame(ChannelType.AMOP_MULTICAST, new_channel_seq(), data=data)
            )
        )


def _topic_body_of(amop_body: bytes) -> bytes | None:
    """A ws AMOP body as a channel topic body; None if the topic does not fit one."""
    try:
        body = decode_amop_body(amop_body)
        return encode_topic_body(body.topic, body.data)
    except (WireError, EncodeError) as exc:
        log_event(logger, logging.DEBUG, "channel_undeliverable", error=exc)
        return None


def _decode_topic_body(data: bytes) -> TopicBody:
    """``decode_topic_body``, saying why when a too-long topic wrapped topicLen to 0."""
    try:
        return decode_topic_body(data)
    except WireError as exc:
        if data[:1] == b"\x00" and len(data) > MAX_CHANNEL_TOPIC_BYTES:
            raise WireError(
                f"{exc} (was the topic 255 bytes long? a topic body holds at most "
                f"{MAX_CHANNEL_TOPIC_BYTES} bytes of topic)",
                status=exc.status,
            ) from None
        raise


class _ChannelRequest:
    """A channel client's unicast: its outcome is answered under the request's seq.

    It keeps the seq, not the frame: the body travels on as a ws AMOP body,
    whose bytes stay counted on ``account`` until then.
    """

    __slots__ = ("_account", "_seq", "_session", "_size", "_topic")

    def __init__(
        self,
        session: ChannelSession,
        seq: bytes,
        topic: str,
        account: ConnectionBudget,
        size: int,
    ) -> None:
        self._session = session
        self._seq = seq
        self._topic = topic
        self._account = account
        self._size = size

    def answer(self, status: int, data: bytes) -> None:
        session = self._session
        session.requests -= 1
        self._account.release_pending(self._size)
        payload = encode_topic_body(self._topic, data) if status == 0 else data
        if not session.answer_fits(len(payload) + HEADER_SIZE):
            self._account.node.stats.answers_dropped += 1
            status, payload = Status.OVERLOADED, ANSWER_DROPPED
        result = channel_result_from_status(status)
        session.send_answer_nowait(
            encode_channel_frame(
                ChannelFrame(ChannelType.AMOP_RESPONSE, self._seq, result, payload)
            )
        )


ChannelHandler = Callable[["ChannelService", ChannelSession, ChannelFrame], Awaitable[None]]


class ChannelService(Service):
    """Serves the channel protocol on sessions, routing through ``network``."""

    def __init__(
        self,
        hub: LocalHub,
        network: Network,
        limits: NodeLimits,
        stats: NodeStatistics,
        status: Callable[[int], dict[str, Any]],
    ) -> None:
        super().__init__(hub, network, limits, stats, status)
        #: Longest topic a channel client may use: what a topic body can carry.
        self.max_topic_bytes = min(MAX_CHANNEL_TOPIC_BYTES, limits.max_topic_length)

    async def serve(self, session: ChannelSession) -> None:
        """Read and answer the session's frames until it closes."""
        max_size = self.limits.max_frame_size
        touch = self.network.busy_poll.touch
        while True:
            frame = decode_channel_frame(await session.sock.receive(), max_size=max_size)
            touch()
            served = _HANDLERS.get(frame.type)
            if served is None or (served[1] is not None and served[1] not in session.extras):
                # A 2.x node logs "unknown client message" and answers nothing.
                log_event(
                    logger,
                    logging.DEBUG,
                    "packet_ignored",
                    session=session.id,
                    type=hex(frame.type),
                )
                continue
            try:
                await served[0](self, session, frame)
            except WireError as exc:
                status = exc.status or Status.INVALID_REQUEST
                if frame.type in _ANSWERED or (
                    frame.type == ChannelType.AMOP_SUBSCRIBE and ACKS in session.extras
                ):
                    await self._refuse(session, frame, status, str(exc))
                else:
                    self.stats.refused += 1
                    log_event(
                        logger,
                        logging.INFO,
                        "channel_request_refused",
                        session=session.id,
                        type=hex(frame.type),
                        error=exc,
                    )

    async def _answer(
        self, session: ChannelSession, frame: ChannelFrame, result: int = 0, data: bytes = b""
    ) -> None:
        """Answer ``frame`` under its seq (see ``_answer_frame``)."""
        await session.send(_answer_frame(frame, result, data))

    async def _refuse(
        self,
        session: ChannelSession,
        frame: ChannelFrame,
        status: int,
        error: str,
        *,
        level: int = logging.INFO,
    ) -> None:
        """Answer with the 2.x result code for ``status`` and the error text; log it."""
        self.stats.refused += 1
        result = channel_result_from_status(status)
        log_event(
            logger,
            level,
            "channel_request_refused",
            session=session.id,
            type=hex(frame.type),
            result=int(result),
            error=error,
        )
        await self._answer(session, frame, result, error.encode("utf-8"))

    # -- handlers -------------------------------------------------------------

    @frame_handler
    async def _on_heartbeat(self, session: ChannelSession, frame: ChannelFrame) -> None:
        answer = heartbeat_answer(session.version, frame.data)
        if answer is not None:  # protocol 1 answers only "0"; the frame counted as life anyway
            await self._answer(session, frame, 0, answer)

    @frame_handler
    async def _on_handshake(self, session: ChannelSession, frame: ChannelFrame) -> None:
        request = ChannelHandshakeRequest.decode(frame.data)
        version = request.choose_protocol(PROTOCOL_MIN, PROTOCOL_MAX)
        if version is None:
            # As a 2.x node: no overlap, no answer; the connection is dropped.
            error = (
                f"the client speaks channel protocol versions {request.minimum_support} to "
                f"{request.maximum_support}, this node {PROTOCOL_MIN} to {PROTOCOL_MAX}"
            )
            log_event(logger, logging.WARNING, "channel_handshake_failed", error=error)
            session.close(f"handshake failed: {error}")
            return
        session.version = version
        session.extras = request.extras & CHANNEL_EXTRAS
        grant = None
        if request.extras:
            grant = Grant(session.extras, self.network.node_id, self.limits.max_frame_size)
        log_event(
            logger,
            logging.INFO,
            "channel_handshake",
            session=session.id,
            protocol=version,
            client=request.client_type or "-",
        )
        answer = ChannelHandshakeResponse(version, SUPPORTED_VERSION, grant)
        await self._answer(session, frame, 0, answer.encode())

    @frame_handler
    async def _on_subscribe(self, session: ChannelSession, frame: ChannelFrame) -> None:
        acks = ACKS in session.extras
        accepted, refused = [], []
        for topic in decode_subscription(frame.data):
            if topic.startswith(BLOCK_NOTIFY_PREFIX):
                continue  # no blocks here: nothing to notify
            if 1 <= len(topic.encode("utf-8")) <= self.max_topic_bytes:
                accepted.append(topic)
            else:
                refused.append(topic)
        error = None
        if refused:
            shown = ", ".join(repr(t[:40] + "…" if len(t) > 40 else t) for t in refused[:5])
            error = f"a channel topic is 1 to {self.max_topic_bytes} bytes of UTF-8: {shown}"
            if acks:  # a client that hears the outcome gets all or nothing, as over ws
                raise WireError(error, status=Status.INVALID_REQUEST)
        try:
            if self.hub.set_topics(session.id, accepted, max_topics=self.limits.max_topics):
                self.network.topics_changed()
        except WireError as exc:
            if acks:
                raise
            refused, error = accepted, str(exc)  # the session keeps its previous set
        if error is not None:
            # 0x32 is never answered, even to say what was refused: log it.
            self.stats.refused += 1
            log_event(
                logger,
                logging.WARNING,
                "topics_refused",
                session=session.id,
                count=len(refused),
                error=error,
            )
        if acks:
            await self._answer(session, frame)

    @frame_handler
    async def _on_request(self, session: ChannelSession, frame: ChannelFrame) -> None:
        body = _decode_topic_body(frame.data)
        if self.publisher_gone(session, "unicast"):
            return
        await session.wait_room()  # bounds the answers queued past the outbox's limits
        if session.requests >= self.limits.max_pending:
            await self._refuse(
                session,
                frame,
                Status.OVERLOADED,
                f"more than {self.limits.max_pending} requests pending on this connection",
            )
            return
        amop_body = encode_amop_body(body.topic, body.data)
        account = self.hub.account(session.id)
        refusal = account.take_pending(len(amop_body))
        if refusal is not None:
            await self._refuse(session, frame, refusal.status, refusal.text)
            return
        session.requests += 1
        self.stats.unicasts += 1
        requester = _ChannelRequest(session, frame.seq, body.topic, account, len(amop_body))
        self.network.unicast(body.topic, amop_body, requester)

    @frame_handler
    async def _on_multicast(self, session: ChannelSession, frame: ChannelFrame) -> None:
        body = _decode_topic_body(frame.data)
        self.stats.multicasts += 1
        self.network.multicast(body.topic, encode_amop_body(body.topic, body.data))
        await self._answer(session, frame, 0, frame.data)  # real nodes echo the body

    @frame_handler
    async def _on_response(self, session: ChannelSession, frame: ChannelFrame) -> None:
        waiter = session.deliveries.pop(frame.seq, None)
        if waiter is None:
            return  # late, or an answer to a multicast some SDKs send
        status: int = status_from_channel_result(frame.result)
        data = b""
        if frame.result == 0:
            try:
                data = decode_topic_body(frame.data).data
            except WireError as exc:
                log_event(logger, logging.WARNING, "bad_reply", session=session.id, error=exc)
                status, data = Status.SEND_FAILED, str(exc).encode()
        waiter.resolve(Frame(PacketType.AMOP_RESPONSE, frame.seq, data, status=status))

    @frame_handler
    async def _on_verify_request(self, session: ChannelSession, frame: ChannelFrame) -> None:
        """Some SDKs acknowledge the node's 0x37; nothing to do."""

    @frame_handler
    async def _on_verify_result(self, session: ChannelSession, frame: ChannelFrame) -> None:
        self.network.verification_result(ChannelVerifyResult.decode(frame.data))

    @frame_handler
    async def _on_rpc(self, session: ChannelSession, frame: ChannelFrame) -> None:
        # A 2.x node answers every request in a 0x12 frame with result 0, errors too.
        answer = channel_rpc_answer(frame.data, chain_id=self.limits.chain_id)
        log_event(logger, logging.DEBUG, "rpc", session=session.id)
        await self._answer(session, frame, 0, answer)

    @frame_handler
    async def _on_status(self, session: ChannelSession, frame: ChannelFrame) -> None:
        status = self._status(decode_status_query(frame.data))
        await self._answer(session, frame, 0, json.dumps(status).encode())


#: Packet types served: the handler, and the extension a client needs for it (or None).
_HANDLERS: dict[int, tuple[ChannelHandler, str | None]] = {
    ChannelType.RPC: (ChannelService._on_rpc, None),
    ChannelType.HEARTBEAT: (ChannelService._on_heartbeat, None),
    ChannelType.HANDSHAKE: (ChannelService._on_handshake, None),
    ChannelType.AMOP_REQUEST: (ChannelService._on_request, None),
    ChannelType.AMOP_RESPONSE: (ChannelService._on_response, None),
    ChannelType.AMOP_SUBSCRIBE: (ChannelService._on_subscribe, None),
    ChannelType.AMOP_MULTICAST: (ChannelService._on_multicast, None),
    ChannelType.VERIFY_REQUEST: (ChannelService._on_verify_request, None),
    ChannelType.VERIFY_RESULT: (ChannelService._on_verify_result, None),
    # amop_trio's own status query, the same packet type as on ws.
    PeerType.NODE_STATUS: (ChannelService._on_status, STATUS),
}
