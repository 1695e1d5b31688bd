"""One SDK client connected to this node, and the frames that reach it."""

from __future__ import annotations

from typing import ClassVar, Protocol

from .._errors import AmopError, ConnectionLostError
from .._transport.connection import FrameConnection, FrameTransport
from .._wire.fisco2_json import (
    ChannelVerifyRequest,
)
from .._wire.fisco3 import DEFAULT_MAX_FRAME_SIZE, Frame, PacketType, encode_frame, new_seq
from .._wire.peer import PeerType


class Delivered(Protocol):
    """A unicast handed to a session, waiting for that subscriber's answer."""

    def resolve(self, reply: Frame) -> None:
        """The subscriber answered (a refusal, if the frame carries a status)."""

    def fail(self, error: AmopError) -> None:
        """The subscriber went away before answering."""


class Session(FrameConnection):
    """One SDK client connected to this node, speaking ws.

    Messages travel through the node as ws AMOP bodies; the ``*_frame``
    methods turn them into this client's frames, so a subclass speaking
    another protocol (``channel_service.ChannelSession``) overrides those alone.
    """

    #: Sessions of one protocol share the frames of a multicast.
    protocol: ClassVar[str] = "ws"

    def __init__(
        self,
        sid: int,
        sock: FrameTransport,
        outbox_size: int,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        super().__init__(sock, name=sock.remote, outbox_size=outbox_size)
        self.id = sid
        #: The largest frame this node sends a client, as it takes none larger: a
        #: message that grows past it on the way (a 2.x body made a ws one) is not sent.
        self.max_frame_size = max_frame_size
        #: amop_trio extensions this client asked for and got in its handshake.
        self.extras: frozenset[str] = frozenset()
        #: Requests of this client in flight: each owes it one answer.
        self.requests = 0
        self.dropped = 0
        #: Until when (trio time) unicasts prefer other subscribers: this one failed.
        self.avoid_until = 0.0
        #: node seqs of unicasts delivered to this session and not answered yet.
        self.deliveries: dict[bytes, Delivered] = {}

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.name}>"

    def verify_request(self, request: ChannelVerifyRequest) -> bytes:
        """The frame that asks this publisher to challenge a private-topic subscriber."""
        return encode_frame(Frame(PeerType.VERIFY_REQUEST, new_seq(), request.encode()))

    def request_frame(self, seq: bytes, body: bytes) -> bytes | None:
        """The frame delivering unicast ``body`` under ``seq``; None if it cannot carry it."""
        return self.within_limit(encode_frame(Frame(PacketType.AMOP_REQUEST, seq, body)))

    def multicast_frame(self, body: bytes) -> bytes | None:
        """The frame delivering multicast ``body``; None if it cannot carry it."""
        return self.within_limit(encode_frame(Frame(PacketType.AMOP_BROADCAST, new_seq(), body)))

    def within_limit(self, frame: bytes) -> bytes | None:
        """``frame``, or None if it is larger than ``max_frame_size``."""
        return frame if len(frame) <= self.max_frame_size else None

    def on_close(self, reason: str) -> None:
        deliveries, self.deliveries = self.deliveries, {}
        for unicast in deliveries.values():  # each tries another subscriber
            unicast.fail(ConnectionLostError(f"subscriber {self.name} disconnected: {reason}"))
