"""SDK sessions: what a node does with the frames its clients send.

Each client connection is a ``Session``; ``SdkService.serve`` reads its
frames and answers them. The first frame must be a HANDSHAKE within
``handshake_timeout``. A frame that cannot be parsed closes that connection
only; a readable frame with a bad payload is answered with an error status
and the connection goes on. Routing is the ``Network``'s job; this module
only turns frames into calls and results into frames.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._errors import WireError
from .._log import log_event
from .._wire.fisco2 import ChannelVerifyResult
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
from .service import Service
from .session import Session

logger = logging.getLogger("amop_trio.node")

#: Highest ws protocol version this node speaks.
PROTOCOL_VERSION = 2
#: Packet type of the answer to each request type; others are answered in kind.
_ANSWER_TYPES: dict[int, int] = {
    PacketType.AMOP_REQUEST: PacketType.AMOP_RESPONSE,
    PacketType.AMOP_BROADCAST: PacketType.AMOP_RESPONSE,
}


Handler = Callable[["SdkService", Session, Frame], Awaitable[None]]


def _answer_frame(frame: Frame, status: int = 0, payload: bytes = b"") -> bytes:
    """The answer to ``frame`` under its seq: AMOP requests get AMOP_RESPONSE, others in kind."""
    ptype = _ANSWER_TYPES.get(frame.type, frame.type)
    return encode_frame(Frame(ptype, frame.seq, payload, status=status, ext=EXT_RESPONSE))


class _WsRequest:
    """A ws client's unicast: its outcome is answered under the request's seq."""

    __slots__ = ("_frame", "_session")

    def __init__(self, session: Session, frame: Frame) -> None:
        self._session = session
        self._frame = frame

    def answer(self, status: int, data: bytes) -> None:
        session = self._session
        session.requests -= 1
        session.answer_nowait(_answer_frame(self._frame, status, data))


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
            handler = _HANDLERS.get(frame.type)
            if handler is None or (frame.is_response and frame.type != PacketType.AMOP_RESPONSE):
                await self._answer(
                    session,
                    frame,
                    Status.UNSUPPORTED_TYPE,
                    f"packet type {frame.type:#x} is not supported".encode(),
                )
                continue
            try:
                await handler(self, session, frame)
            except WireError as exc:
                self.stats.refused += 1
                await self._answer(
                    session, frame, exc.status or Status.INVALID_REQUEST, str(exc).encode()
                )

    async def _answer(
        self, session: Session, frame: Frame, status: int = 0, payload: bytes = b""
    ) -> None:
        """Answer ``frame`` under its seq (see ``_answer_frame``)."""
        await session.send(_answer_frame(frame, status, payload))

    # -- handlers -------------------------------------------------------------

    async def _on_handshake(self, session: Session, frame: Frame) -> None:
        request = HandshakeRequest.decode(frame.payload)
        version = max(1, min(PROTOCOL_VERSION, request.max_version))
        session.acks = request.amop_acks
        extra: dict[str, Any] = {
            "groupInfoList": [],
            "groupBlockNumber": [],
            "amopAcks": True,
            "nodeID": self.network.node_id,
        }
        await self._answer(session, frame, 0, HandshakeResponse(version, extra).encode())

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
        if session.acks:
            await self._answer(session, frame)

    async def _on_request(self, session: Session, frame: Frame) -> None:
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
        self.network.unicast(body.topic, frame.payload, _WsRequest(session, frame))

    async def _on_broadcast(self, session: Session, frame: Frame) -> None:
        body = decode_amop_body(frame.payload)
        self.stats.multicasts += 1
        await self._answer(session, frame)  # accepted: the publisher need not wait for the fan-out
        self.network.multicast(body.topic, frame.payload)

    async def _on_response(self, session: Session, frame: Frame) -> None:
        waiter = session.deliveries.pop(frame.seq, None)
        if waiter is not None:
            waiter.resolve(frame)

    async def _on_verify_result(self, session: Session, frame: Frame) -> None:
        self.network.verification_result(ChannelVerifyResult.decode(frame.payload))

    async def _on_status(self, session: Session, frame: Frame) -> None:
        await self._answer(session, frame, 0, json.dumps(self._status()).encode())


_HANDLERS: dict[int, Handler] = {
    PacketType.HANDSHAKE: SdkService._on_handshake,
    PacketType.AMOP_SUBTOPIC: SdkService._on_subtopic,
    PacketType.AMOP_REQUEST: SdkService._on_request,
    PacketType.AMOP_BROADCAST: SdkService._on_broadcast,
    PacketType.AMOP_RESPONSE: SdkService._on_response,
    PeerType.NODE_STATUS: SdkService._on_status,
    PeerType.VERIFY_RESULT: SdkService._on_verify_result,
}
