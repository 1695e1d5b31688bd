"""The JSON bodies of 2.x channel frames: heartbeat, handshake, subscription, verification.

Pure functions and frozen dataclasses of bytes, no I/O. Each ``encode``
writes the bytes the real SDK or node writes (field order, newline: see
docs/PROTOCOL.md sections 2 and 5); each ``decode`` accepts what real peers
send and raises ``WireError`` with ``status=Status.INVALID_REQUEST`` for
anything else. Asking to encode what the wire cannot carry raises
``EncodeError``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeGuard

from .._errors import WireError
from .extensions import EXTENSIONS_KEY, Grant, requested_extras
from .fisco2 import channel_topic_bytes
from .json_payload import decode_json, decode_json_object, encode_json
from .jsoncpp import fast_writer
from .status import Status

#: Heartbeat bodies of protocol version 1 (bare ASCII digits).
HEARTBEAT_REQUEST_V1 = b"0"
HEARTBEAT_ANSWER_V1 = b"1"
#: Heartbeat bodies of protocol version 2 and later (JSON). A node writes its
#: answer with jsoncpp's FastWriter, hence the newline (FB2 ChannelRPCServer.cpp).
HEARTBEAT_REQUEST = b'{"heartBeat":0}'
HEARTBEAT_ANSWER = b'{"heartBeat":1}\n'

_I32_MAX = 0x7FFFFFFF
_I32_MIN = -0x80000000


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _utf8_text(value: str, what: str) -> str:
    # JSON can spell lone surrogates ("\ud800"); no UTF-8 wire field can carry them.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise WireError(
            f"{what}: {value[:40]!r} is not valid UTF-8 text", status=Status.INVALID_REQUEST
        ) from None
    return value


def _str_field(obj: dict[str, Any], key: str, what: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise WireError(
            f"{what}: {key} must be a string, got {value!r:.50}",
            status=Status.INVALID_REQUEST,
        )
    return _utf8_text(value, f"{what}: {key}")


def _i32_field(
    obj: dict[str, Any], key: str, what: str, default: int | None = None, *, lo: int = _I32_MIN
) -> int:
    value = obj.get(key, default)
    if not _is_int(value) or not lo <= value <= _I32_MAX:
        raise WireError(
            f"{what}: {key} must be an integer from {lo} to {_I32_MAX}, got {value!r:.50}",
            status=Status.INVALID_REQUEST,
        )
    return value


def heartbeat_request(protocol: int) -> bytes:
    """The heartbeat body a client of the negotiated ``protocol`` version sends."""
    return HEARTBEAT_REQUEST_V1 if protocol <= 1 else HEARTBEAT_REQUEST


def heartbeat_answer(protocol: int, request_data: bytes | bytearray | memoryview) -> bytes | None:
    """What a 2.x node answers to a heartbeat on a session of the negotiated ``protocol``.

    As FISCO BCOS 2.x does (``ChannelRPCServer::onClientHeartbeat``): the answer
    depends on the session's protocol, not on the body's form. Protocol 1 (no
    handshake, or a failed one): ``"1"`` to a body of exactly ``"0"``, and
    ``None`` (no answer at all) to anything else, the empty body included.
    Protocol 2 and later: ``HEARTBEAT_ANSWER`` to any body.
    """
    if protocol >= 2:
        return HEARTBEAT_ANSWER
    return HEARTBEAT_ANSWER_V1 if bytes(request_data) == HEARTBEAT_REQUEST_V1 else None


def is_heartbeat_answer(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` is a node's heartbeat answer (``"1"`` or ``{"heartBeat":1}``)."""
    text = bytes(data).strip()
    if text == HEARTBEAT_ANSWER_V1:
        return True
    try:
        obj = decode_json_object(text, "heartbeat answer")
    except WireError:
        return False
    beat = obj.get("heartBeat")
    return _is_int(beat) and beat == 1


@dataclass(frozen=True, slots=True)
class ChannelHandshakeRequest:
    """Payload of the client's HANDSHAKE (0x14): the protocol versions it speaks.

    Decoding fills missing fields the way a 2.x node does: versions default
    to 1 and ``clientType`` to the empty string. ``extras`` are the amop_trio
    extensions asked for (``extensions.EXTENSIONS_KEY``); real nodes ignore the key.
    """

    minimum_support: int = 1
    maximum_support: int = 3
    client_type: str = "amop_trio"
    extras: frozenset[str] = frozenset()

    def encode(self) -> bytes:
        # go-sdk's field order (json.Marshal of its struct), then the extensions.
        obj: dict[str, Any] = {
            "minimumSupport": self.minimum_support,
            "maximumSupport": self.maximum_support,
            "clientType": self.client_type,
        }
        if self.extras:
            obj[EXTENSIONS_KEY] = sorted(self.extras)
        return encode_json(obj)

    @classmethod
    def decode(cls, payload: bytes | bytearray | memoryview) -> ChannelHandshakeRequest:
        what = "handshake request"
        obj = decode_json_object(payload, what)
        return cls(
            minimum_support=_i32_field(obj, "minimumSupport", what, 1, lo=0),
            maximum_support=_i32_field(obj, "maximumSupport", what, 1, lo=0),
            client_type=_str_field(obj, "clientType", what, ""),
            extras=requested_extras(obj),
        )

    def choose_protocol(self, minimum: int, maximum: int) -> int | None:
        """The version a node speaking ``minimum..maximum`` picks, or ``None``.

        Like a 2.x node: the highest version both sides support; ``None`` when
        the ranges do not overlap (the node then drops the connection).
        """
        if maximum < self.minimum_support or minimum > self.maximum_support:
            return None
        return min(maximum, self.maximum_support)


@dataclass(frozen=True, slots=True)
class ChannelHandshakeResponse:
    """Payload of the node's HANDSHAKE answer: the chosen protocol version.

    ``node_version`` is the node's *Supported Version* (e.g. ``"2.11.0"``);
    ``grant`` is what an amop_trio node grants a client that asked for extras.
    Encoded as a 2.x node writes it: ``{"nodeVersion":"2.11.0","protocol":3}``
    and a newline (jsoncpp FastWriter), the grant under ``"amopTrio"`` if any.
    """

    protocol: int
    node_version: str = ""
    grant: Grant | None = None

    def encode(self) -> bytes:
        obj: dict[str, Any] = {"nodeVersion": self.node_version, "protocol": self.protocol}
        if self.grant is not None:
            obj[EXTENSIONS_KEY] = self.grant.to_json()
        return fast_writer(obj)

    @classmethod
    def decode(cls, payload: bytes | bytearray | memoryview) -> ChannelHandshakeResponse:
        what = "handshake answer"
        obj = decode_json_object(payload, what)
        return cls(
            protocol=_i32_field(obj, "protocol", what),
            node_version=_str_field(obj, "nodeVersion", what, ""),
            grant=Grant.from_json(obj.get(EXTENSIONS_KEY)),
        )


def encode_subscription(topics: Iterable[str]) -> bytes:
    """Payload of AMOP_SUBSCRIBE (0x32): the client's complete topic set.

    Every topic must fit a topic body (1 to 254 UTF-8 bytes), else
    ``EncodeError``.
    """
    topic_list = list(topics)
    for topic in topic_list:
        channel_topic_bytes(topic)
    return encode_json(topic_list)


def decode_subscription(payload: bytes | bytearray | memoryview) -> list[str]:
    """The topic list of an AMOP_SUBSCRIBE payload (a JSON array of strings)."""
    value = decode_json(payload, "subscription")
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise WireError(
            "subscription: expected a JSON array of topic strings",
            status=Status.INVALID_REQUEST,
        )
    return [_utf8_text(topic, "subscription: topic") for topic in value]


@dataclass(frozen=True, slots=True)
class ChannelVerifyRequest:
    """Payload of VERIFY_REQUEST (0x37), pushed by a node to a private topic's publisher.

    ``topic`` is the wire name ``#!$TopicNeedVerify_<T>``, ``topic_for_cert``
    the subscriber's challenge topic, ``node_id`` the subscriber's node.
    """

    topic: str
    topic_for_cert: str
    node_id: str

    def encode(self) -> bytes:
        # As a 2.x node writes it (FB2 P2PSession.cpp): sorted keys and a newline.
        return fast_writer(
            {"nodeId": self.node_id, "topic": self.topic, "topicForCert": self.topic_for_cert}
        )

    @classmethod
    def decode(cls, payload: bytes | bytearray | memoryview) -> ChannelVerifyRequest:
        what = "verify request"
        obj = decode_json_object(payload, what)
        return cls(
            topic=_str_field(obj, "topic", what),
            topic_for_cert=_str_field(obj, "topicForCert", what),
            node_id=_str_field(obj, "nodeId", what),
        )


@dataclass(frozen=True, slots=True)
class ChannelVerifyResult:
    """Payload of VERIFY_RESULT (0x38): the publisher's verdict on a subscriber.

    ``check_result`` 0 means verified; 2.x nodes treat any other value as failed.
    """

    check_result: int
    node_id: str
    topic: str
    #: amop_trio's addition: which subscriber (its challenge topic); 2.x SDKs omit it.
    topic_for_cert: str = ""

    @property
    def verified(self) -> bool:
        return self.check_result == 0

    def encode(self) -> bytes:
        obj: dict[str, object] = {
            "checkResult": self.check_result,
            "nodeId": self.node_id,
            "topic": self.topic,
        }
        if self.topic_for_cert:
            obj["topicForCert"] = self.topic_for_cert
        return encode_json(obj)

    @classmethod
    def decode(cls, payload: bytes | bytearray | memoryview) -> ChannelVerifyResult:
        what = "verify result"
        obj = decode_json_object(payload, what)
        return cls(
            check_result=_i32_field(obj, "checkResult", what),
            node_id=_str_field(obj, "nodeId", what),
            topic=_str_field(obj, "topic", what),
            topic_for_cert=obj["topicForCert"] if isinstance(obj.get("topicForCert"), str) else "",
        )
