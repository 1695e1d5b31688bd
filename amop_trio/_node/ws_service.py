"""SDK sessions: what a node does with the frames its ws (3.x) clients send.

Each client connection is a ``Session``; ``SdkService.serve`` reads its
frames and answers them as a FISCO BCOS 3.x node does (docs/PROTOCOL.md
section 1): AMOP_SUBTOPIC and AMOP_BROADCAST get no answer, JSON-RPC gets a
JSON-RPC error in a frame of type 0, packet types the node does not serve are
ignored. amop_trio's own extras (``_wire.extensions``: acknowledgements,
status queries, private topics over ws) exist only for a client that asked
for them in its handshake, so a real SDK never meets them.

The first frame must be a HANDSHAKE within ``handshake_timeout``. A frame
that cannot be parsed closes that connection only; a readable frame with a bad
payload is answered with an error status where the node answers that packet
anyway (or the client asked for acknowledgements), else logged and dropped.
Routing is the ``Network``'s job; this module only turns frames into calls and
results into frames. A topic set or a unicast that would go past a byte budget
(``budget``) is refused before anything is taken: 3005 past the
connection's own topic budget, 3006 past the node's or past a pending budget.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._errors import WireError
from .._log import log_event
from .._wire.extensions import (
    ACKS,
    EXTENSIONS_KEY,
    PRIVATE,
    STATUS,
    WS_EXTRAS,
    Grant,
    decode_status_query,
)
from .._wire.fisco2_json import (
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
    decode_subtopic,
    encode_frame,
)
from .._wire.peer import PeerType
from .._wire.status import Status
from .budget import ANSWER_DROPPED, ConnectionBudget
from .rpc import ws_rpc_answer
from .service import Service, frame_handler
from .session import Session

logger = logging.getLogger("amop_trio.node")

#: Highest ws protocol version this node speaks.
PROTOCOL_VERSION = 2
#: Packet type of the answer to each request type; others are answered in kind.
_ANSWER_TYPES: dict[int, int] = {
    PacketType.AMOP_REQUEST: PacketType.AMOP_RESPONSE,
    PacketType.AMOP_BROADCAST: PacketType.AMOP_RESPONSE,
}


WsHandler = Callable[["SdkService", Session, Frame], Awaitable[None]]


def _answer_frame(frame: Frame, status: int = 0, payload: bytes = b"") -> bytes:
    """The answer to ``frame`` under its seq: AMOP requests get AMOP_RESPONSE, others in kind."""
    ptype = _ANSWER_TYPES.get(frame.type, frame.type)
    return encode_frame(Frame(ptype, frame.seq, payload, status=status, ext=EXT_RESPONSE))


class _WsRequest:
    """A ws client's unicast: its outcome is answered under the request's seq.

    Its body's bytes stay counted on ``account`` until then.
    """

    __slots__ = ("_account", "_frame", "_session", "_size")

    def __init__(
        self, session: Session, frame: Frame, account: ConnectionBudget, size: int
    ) -> None:
        self._session = session
        self._frame = frame
        self._account = account
        self._size = size

    def answer(self, status: int, data: bytes) -> None:
        session = self._session
        session.requests -= 1
        self._account.release_pending(self._size)
        answer = _answer_frame(self._frame, status, data)
        if not session.answer_fits(len(answer)):
            self._account.node.stats.answers_dropped += 1
            answer = _answer_frame(self._frame, Status.OVERLOADED, ANSWER_DROPPED)
        session.send_answer_nowait(answer)


class SdkService(Service):
    """Serves the ws SDK protocol on sessions, routing through ``network``."""

    async def serve(self, session: Session) -> None:
        """Read and answer the session's frames until it closes."""
        limits = self.limits
        with trio.move_on_after(limits.handshake_timeout) as scope:
            first = decode_frame(await session.sock.receive(), max_size=limits.max_frame_size)
        if scope.cancelled_caught:
            session.close(f"no handshake within {limits.handshake_timeout:g} s", code=1008)
            log_event(logger, logging.WARNING, "handshake_timeout", remote=session.name)
            return
        if first.type != PacketType.HANDSHAKE:
            await self._answer(
                session, first, Status.UNSUPPORTED_TYPE, b"the first frame must be a HANDSHAKE"
            )
            raise WireError(f"first frame has type {first.type:#x}, expected HANDSHAKE (0x100)")
        await self._on_handshake(session, first)
        touch = self.network.busy_poll.touch
        while True:
            frame = decode_frame(await session.sock.receive(), max_size=limits.max_frame_size)
            touch()
            served = _HANDLERS.get(frame.type)
            if served is None or (frame.is_response and frame.type != PacketType.AMOP_RESPONSE):
                _ignore(session, frame, "packet type not served")
                continue
            handler, extra = served
            if extra is not None and extra not in session.extras:
                _ignore(session, frame, f"needs the {extra!r} extension")
                continue
            try:
                await handler(self, session, frame)
            except WireError as exc:
                self.stats.refused += 1
                status = exc.status or Status.INVALID_REQUEST
                if _answers_errors(session, frame.type):
                    await self._answer(session, frame, status, str(exc).encode())
                else:
                    log_event(
                        logger,
                        logging.INFO,
                        "request_refused",
                        session=session.id,
                        type=hex(frame.type),
                        status=int(status),
                        error=exc,
                    )

    async def _answer(
        self, session: Session, frame: Frame, status: int = 0, payload: bytes = b""
    ) -> None:
        """Answer ``frame`` under its seq (see ``_answer_frame``)."""
        await session.send(_answer_frame(frame, status, payload))

    # -- handlers -------------------------------------------------------------

    @frame_handler
    async def _on_handshake(self, session: Session, frame: Frame) -> None:
        request = HandshakeRequest.decode(frame.payload)
        # Real nodes answer min(their max, the client's max), even 0, which leaves
        # a cpp-sdk deaf to pushes; amop_trio answers at least 1.
        version = max(1, min(PROTOCOL_VERSION, request.max_version))
        session.extras = request.extras & WS_EXTRAS
        extra: dict[str, Any] = {"groupBlockNumber": [], "groupInfoList": []}
        if request.extras:
            grant = Grant(session.extras, self.network.node_id, self.limits.max_frame_size)
            extra[EXTENSIONS_KEY] = grant.to_json()
        await self._answer(session, frame, 0, HandshakeResponse(version, extra).encode())

    @frame_handler
    async def _on_subtopic(self, session: Session, frame: Frame) -> None:
        topics = decode_subtopic(frame.payload)
        limits = self.limits
        for topic in topics:
            if not topic or len(topic.encode("utf-8")) > limits.max_topic_length:
                raise WireError(
                    f"topic {topic[:40]!r} must be 1 to {limits.max_topic_length} bytes long",
                    status=Status.INVALID_REQUEST,
                )
        if self.hub.set_topics(session.id, topics, max_topics=limits.max_topics):
            self.network.topics_changed()
        if ACKS in session.extras:
            await self._answer(session, frame)

    @frame_handler
    async def _on_request(self, session: Session, frame: Frame) -> None:
        body = decode_amop_body(frame.payload)
        if self.publisher_gone(session, "unicast"):
            return
        await session.wait_room()  # bounds the answers queued past the outbox's limits
        if session.requests >= self.limits.max_pending:
            self.stats.refused += 1
            await self._answer(
                session,
                frame,
                Status.OVERLOADED,
                f"more than {self.limits.max_pending} requests pending on this connection".encode(),
            )
            return
        account = self.hub.account(session.id)
        size = len(frame.payload)
        refusal = account.take_pending(size)
        if refusal is not None:
            self.stats.refused += 1
            await self._answer(session, frame, refusal.status, refusal.text.encode())
            return
        session.requests += 1
        self.stats.unicasts += 1
        requester = _WsRequest(session, frame, account, size)
        self.network.unicast(body.topic, frame.payload, requester)

    @frame_handler
    async def _on_broadcast(self, session: Session, frame: Frame) -> None:
        body = decode_amop_body(frame.payload)
        if ACKS in session.extras and self.publisher_gone(session, "multicast"):
            return  # it waited for an acknowledgement that never came: it was told it failed
        self.stats.multicasts += 1
        if ACKS in session.extras:  # accepted: the publisher need not wait for the fan-out
            await self._answer(session, frame)
        self.network.multicast(body.topic, frame.payload)

    @frame_handler
    async def _on_response(self, session: Session, frame: Frame) -> None:
        waiter = session.deliveries.pop(frame.seq, None)
        if waiter is not None:
            waiter.resolve(frame)

    @frame_handler
    async def _on_rpc(self, session: Session, frame: Frame) -> None:
        # A 3.x node answers with a new message: type 0, the request's seq, version and ext.
        answer = Frame(
            0,
            frame.seq,
            ws_rpc_answer(frame.payload),
            ext=frame.ext | EXT_RESPONSE,
            version=frame.version,
        )
        log_event(logger, logging.DEBUG, "rpc_refused", session=session.id)
        await session.send(encode_frame(answer))

    @frame_handler
    async def _on_verify_result(self, session: Session, frame: Frame) -> None:
        self.network.verification_result(ChannelVerifyResult.decode(frame.payload))

    @frame_handler
    async def _on_status(self, session: Session, frame: Frame) -> None:
        status = self._status(decode_status_query(frame.payload))
        await self._answer(session, frame, 0, json.dumps(status).encode())


def _ignore(session: Session, frame: Frame, why: str) -> None:
    """What a 3.x node does with a packet it does not serve: nothing (it logs a warning)."""
    log_event(
        logger, logging.DEBUG, "packet_ignored", session=session.id, type=hex(frame.type), why=why
    )


def _answers_errors(session: Session, ptype: int) -> bool:
    """Whether a malformed packet of ``ptype`` is answered with its error (else only logged).

    Where the node answers the packet anyway (the client waits for that
    answer), or where the client asked for acknowledgements. A real SDK
    expects no answer to AMOP_SUBTOPIC or AMOP_BROADCAST, and would take one
    for a late answer (or, of type 0x112, for an incoming broadcast).
    """
    if ptype in (PacketType.AMOP_SUBTOPIC, PacketType.AMOP_BROADCAST):
        return ACKS in session.extras
    return True


#: Packet types served: the handler, and the extension a client needs for it (or None).
_HANDLERS: dict[int, tuple[WsHandler, str | None]] = {
    PacketType.HANDSHAKE: (SdkService._on_handshake, None),
    PacketType.RPC_REQUEST: (SdkService._on_rpc, None),
    PacketType.AMOP_SUBTOPIC: (SdkService._on_subtopic, None),
    PacketType.AMOP_REQUEST: (SdkService._on_request, None),
    PacketType.AMOP_BROADCAST: (SdkService._on_broadcast, None),
    PacketType.AMOP_RESPONSE: (SdkService._on_response, None),
    PeerType.NODE_STATUS: (SdkService._on_status, STATUS),
    PeerType.VERIFY_RESULT: (SdkService._on_verify_result, PRIVATE),
}
