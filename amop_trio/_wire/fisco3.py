"""The ws frame of FISCO BCOS 3.x and the AMOP payloads it carries.

Theory of operation: one WebSocket binary message holds exactly one frame, so
decoding never buffers; ``decode_frame`` takes a whole message and returns a
``Frame`` or raises ``WireError`` naming the field at fault. Payloads are
decoded by the type-specific helpers below only when a frame's type calls for
them. All integers are big-endian (see docs/PROTOCOL.md section 1).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

from .._errors import EncodeError, FrameTooLargeError, WireError
from .extensions import EXTENSIONS_KEY, Grant, requested_extras
from .json_payload import decode_json_object
from .jsoncpp import fast_writer
from .status import Status

#: version u16, type u16, status i16, seqLen u16.
_HEADER = struct.Struct(">HHhH")
_EXT = struct.Struct(">H")
#: version u32, topicLen u16.
_BODY_HEADER = struct.Struct(">IH")

HEADER_SIZE = _HEADER.size
MIN_FRAME_SIZE = _HEADER.size + _EXT.size
#: Default cap on one frame: 32 MiB, the WebSocket message limit of FISCO 3.x nodes.
DEFAULT_MAX_FRAME_SIZE = 32 * 1024 * 1024
#: ``ext`` flag that marks a response packet.
EXT_RESPONSE = 0x0001
MAX_TOPIC_BYTES = 0xFFFF


class PacketType(IntEnum):
    """Packet types of the ws protocol."""

    HANDSHAKE = 0x100
    BLOCK_NOTIFY = 0x101
    RPC_REQUEST = 0x102
    GROUP_NOTIFY = 0x103
    AMOP_SUBTOPIC = 0x110
    AMOP_REQUEST = 0x111
    AMOP_BROADCAST = 0x112
    AMOP_RESPONSE = 0x113
    EVENT_SUBSCRIBE = 0x120
    EVENT_UNSUBSCRIBE = 0x121
    EVENT_PUSH = 0x122


class Frame(NamedTuple):
    """One ws frame. ``seq`` is kept as raw bytes, exactly as on the wire.

    An immutable tuple rather than a dataclass: frames are made and taken
    apart on every hop, and a tuple costs a fraction of the time.
    """

    type: int
    seq: bytes
    payload: bytes = b""
    status: int = 0
    ext: int = 0
    version: int = 0

    @property
    def is_response(self) -> bool:
        return bool(self.ext & EXT_RESPONSE)


class AmopBody(NamedTuple):
    """The body of AMOP_REQUEST and AMOP_BROADCAST: a topic and opaque data."""

    topic: str
    data: bytes
    version: int = 0


def new_seq() -> bytes:
    """A fresh request id: 32 lowercase hex chars, a UUID4 without dashes."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.hex().encode("ascii")


def encode_frame(frame: Frame) -> bytes:
    """The bytes of one frame; ``EncodeError`` if a field does not fit."""
    try:
        head = _HEADER.pack(frame.version, frame.type, frame.status, len(frame.seq))
        ext = _EXT.pack(frame.ext)
    except struct.error as exc:
        raise EncodeError(f"frame field out of range: {exc} ({frame!r:.200})") from None
    return b"".join((head, frame.seq, ext, frame.payload))


def decode_frame(data: bytes, *, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> Frame:
    """Parse one whole frame; ``WireError`` if it is malformed or too large."""
    size = len(data)
    if size > max_size:
        raise FrameTooLargeError(f"frame of {size} bytes exceeds the maximum of {max_size} bytes")
    if size < MIN_FRAME_SIZE:
        raise WireError(
            f"frame too short: {size} bytes, the header needs at least {MIN_FRAME_SIZE}"
        )
    version, ptype, status, seq_len = _HEADER.unpack_from(data)
    ext_at = HEADER_SIZE + seq_len
    if ext_at + _EXT.size > size:
        raise WireError(
            f"seqLen {seq_len} runs past the end of a {size}-byte frame "
            f"(needs {ext_at + _EXT.size} bytes)"
        )
    (ext,) = _EXT.unpack_from(data, ext_at)
    return Frame(
        type=ptype,
        seq=bytes(data[HEADER_SIZE:ext_at]),
        payload=bytes(data[ext_at + _EXT.size :]),
        status=status,
        ext=ext,
        version=version,
    )


def encode_amop_body(topic: str, data: bytes, *, version: int = 0) -> bytes:
    """The payload of AMOP_REQUEST / AMOP_BROADCAST."""
    try:
        raw = topic.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(
            f"topic is not valid Unicode text ({exc.reason} at {exc.start})"
        ) from None
    if len(raw) > MAX_TOPIC_BYTES:
        raise EncodeError(
            f"topic is {len(raw)} bytes in UTF-8, the ws protocol allows at most {MAX_TOPIC_BYTES}"
        )
    if not isinstance(version, int) or not 0 <= version <= 0xFFFFFFFF:
        raise EncodeError(f"body version {version} does not fit in u32")
    return b"".join((_BODY_HEADER.pack(version, len(raw)), raw, data))


def decode_amop_body(payload: bytes) -> AmopBody:
    """Parse the payload of AMOP_REQUEST / AMOP_BROADCAST."""
    size = len(payload)
    if size < _BODY_HEADER.size:
        raise WireError(
            f"AMOP body too short: {size} bytes, its header needs {_BODY_HEADER.size}",
            status=Status.INVALID_REQUEST,
        )
    version, topic_len = _BODY_HEADER.unpack_from(payload)
    end = _BODY_HEADER.size + topic_len
    if end > size:
        raise WireError(
            f"topicLen {topic_len} runs past the end of a {size}-byte AMOP body",
            status=Status.INVALID_REQUEST,
        )
    try:
        topic = payload[_BODY_HEADER.size : end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(
            f"topic is not valid UTF-8 ({exc.reason} at byte {exc.start})",
            status=Status.INVALID_REQUEST,
        ) from None
    return AmopBody(topic=topic, data=bytes(payload[end:]), version=version)


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    """Payload of the client's HANDSHAKE (0x100).

    The defaults are what current FISCO BCOS 3.x SDKs send (protocol versions
    0 to 2, module 2 = RPC service), encoded with the same bytes as the
    cpp-sdk: ``{"maxVersion":2,"minVersion":0,"moduleID":2}`` and a newline.
    ``extras`` are the amop_trio extensions asked for (``extensions``); real
    nodes ignore the key.
    """

    min_version: int = 0
    max_version: int = 2
    module_id: int = 2
    extras: frozenset[str] = frozenset()

    def encode(self) -> bytes:
        obj: dict[str, Any] = {
            "minVersion": self.min_version,
            "maxVersion": self.max_version,
            "moduleID": self.module_id,
        }
        if self.extras:
            obj[EXTENSIONS_KEY] = sorted(self.extras)
        return fast_writer(obj)

    @classmethod
    def decode(cls, payload: bytes) -> HandshakeRequest:
        obj = decode_json_object(payload, "handshake request")
        fields = {}
        for key in ("minVersion", "maxVersion", "moduleID"):
            value = obj.get(key, 0)
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 0 <= value <= 0xFFFFFFFF
            ):
                raise WireError(
                    f"handshake request: {key} must be a u32 integer, got {value!r:.50}",
                    status=Status.INVALID_REQUEST,
                )
            fields[key] = value
        return cls(
            fields["minVersion"],
            fields["maxVersion"],
            fields["moduleID"],
            extras=requested_extras(obj),
        )


@dataclass(frozen=True, slots=True)
class HandshakeResponse:
    """Payload of the node's HANDSHAKE answer.

    ``extra`` keeps whatever else the node sent (real nodes add
    ``groupInfoList`` and ``groupBlockNumber``; an amop_trio node adds its
    ``Grant`` under ``"amopTrio"`` for a client that asked). Encoded as a 3.x
    node writes it: jsoncpp FastWriter, sorted keys and a newline.
    """

    protocol_version: int
    extra: dict[str, Any]

    def encode(self) -> bytes:
        return fast_writer({**self.extra, "protocolVersion": self.protocol_version})

    @classmethod
    def decode(cls, payload: bytes) -> HandshakeResponse:
        obj = decode_json_object(payload, "handshake answer")
        version = obj.pop("protocolVersion", None)
        if not isinstance(version, int) or isinstance(version, bool):
            raise WireError(
                f"handshake answer: protocolVersion must be an integer, got {version!r:.50}"
            )
        return cls(protocol_version=version, extra=obj)

    @property
    def grant(self) -> Grant | None:
        """What an amop_trio node granted; None from a real node."""
        return Grant.from_json(self.extra.get(EXTENSIONS_KEY))


def encode_subtopic(topics: list[str] | tuple[str, ...]) -> bytes:
    """Payload of AMOP_SUBTOPIC: the client's complete topic set.

    The cpp-sdk's bytes: its topics are a ``std::set`` written by FastWriter,
    so sorted, without duplicates, and a newline: ``{"topics":["a","b"]}``.
    """
    return fast_writer({"topics": sorted(set(topics))})


def decode_subtopic(payload: bytes) -> list[str]:
    """The topic list of an AMOP_SUBTOPIC payload."""
    obj = decode_json_object(payload, "subscription")
    topics = obj.get("topics")
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise WireError(
            'subscription: "topics" must be a JSON array of strings',
            status=Status.INVALID_REQUEST,
        )
    for topic in topics:
        try:
            topic.encode("utf-8")
        except UnicodeEncodeError:
            raise WireError(
                f"subscription: topic {topic[:40]!r} is not valid UTF-8 text",
                status=Status.INVALID_REQUEST,
            ) from None
    return topics
