"""Node-to-node packets: amop_trio's own types, carried in ordinary ws frames.

Links between nodes reuse the ws frame (``ws.Frame``) with packet types in
the reserved range 0x1000-0x10FF, which FISCO BCOS does not use. Control
packets (hello, link-state advertisements, status) carry JSON; data packets
carry a small binary routing header followed by the AMOP body untouched.

Routing header of PEER_UNICAST: ``hop u8 | deadline_ms u32 | origin | target``;
of PEER_REPLY: ``hop u8 | target``; of PEER_MULTICAST: ``hop u8 | origin |
count u16 | target*count``. A node id is ``len u8`` + ASCII bytes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeGuard

from .._errors import EncodeError, WireError
from .status import Status

#: Hops a packet may travel before it is dropped (loop guard).
DEFAULT_HOP_LIMIT = 32
MAX_NODE_ID_BYTES = 255
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_UNICAST_HEAD = struct.Struct(">BI")


class PeerType(IntEnum):
    """Packet types of node-to-node links and of node queries (0x1000-0x10FF)."""

    HELLO = 0x1000
    LINK_STATE = 0x1001
    UNICAST = 0x1002
    REPLY = 0x1003
    MULTICAST = 0x1004
    #: A publisher's verdict on a private-topic subscriber, on its way to that node.
    VERIFY_NOTICE = 0x1005
    #: SDK port: ask a node for its id, links and topic directory (JSON answer).
    NODE_STATUS = 0x1010
    #: SDK port, node to publisher: challenge this private-topic subscriber (2.x: 0x37).
    VERIFY_REQUEST = 0x1011
    #: SDK port, publisher to node: the challenge's outcome (2.x: 0x38).
    VERIFY_RESULT = 0x1012


@dataclass(frozen=True, slots=True)
class Hello:
    """First packet on a node link, sent by both ends."""

    node_id: str
    endpoints: tuple[str, ...] = ()

    def encode(self) -> bytes:
        return _encode_json({"nodeId": self.node_id, "endpoints": list(self.endpoints)})

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        obj = _decode_json_object(payload, "hello")
        node_id = _node_id_field(obj, "nodeId", "hello")
        return cls(node_id, _str_tuple(obj.get("endpoints", []), "hello endpoints"))


@dataclass(frozen=True, slots=True)
class LinkState:
    """A node's advertisement: its live links and its clients' topics.

    ``(epoch, seq)`` orders advertisements of one origin: the epoch is fixed
    at node start (so a restarted node supersedes its former self), the seq
    grows with each change.
    """

    origin: str
    epoch: int
    seq: int
    neighbours: tuple[str, ...] = ()
    topics: dict[str, int] = field(default_factory=dict)
    endpoints: tuple[str, ...] = ()
    #: challenge topics of private-topic subscribers not verified yet.
    pending: tuple[str, ...] = ()

    @property
    def version(self) -> tuple[int, int]:
        return (self.epoch, self.seq)

    def encode(self) -> bytes:
        return _encode_json(
            {
                "origin": self.origin,
                "epoch": self.epoch,
                "seq": self.seq,
                "neighbours": list(self.neighbours),
                "topics": self.topics,
                "endpoints": list(self.endpoints),
                "verify": list(self.pending),
            }
        )

    @classmethod
    def decode(cls, payload: bytes) -> LinkState:
        obj = _decode_json_object(payload, "link state")
        origin = _node_id_field(obj, "origin", "link state")
        epoch, seq = obj.get("epoch"), obj.get("seq")
        if not _is_uint(epoch) or not _is_uint(seq):
            raise WireError("link state: epoch and seq must be non-negative integers")
        topics = obj.get("topics", {})
        if not isinstance(topics, dict) or not all(
            isinstance(k, str) and _is_uint(v) for k, v in topics.items()
        ):
            raise WireError("link state: topics must map topic names to subscriber counts")
        return cls(
            origin,
            epoch,
            seq,
            _str_tuple(obj.get("neighbours", []), "link state neighbours"),
            topics,
            _str_tuple(obj.get("endpoints", []), "link state endpoints"),
            _str_tuple(obj.get("verify", []), "link state verify"),
        )


@dataclass(frozen=True, slots=True)
class PeerUnicast:
    """A unicast on its way from the publisher's node to the chosen subscriber's node."""

    origin: str
    target: str
    deadline_ms: int
    body: bytes
    hop: int = DEFAULT_HOP_LIMIT

    def encode(self) -> bytes:
        if not 0 <= self.deadline_ms <= 0xFFFFFFFF:
            raise EncodeError(f"deadline of {self.deadline_ms} ms does not fit in u32")
        return b"".join(
            (
                _UNICAST_HEAD.pack(self.hop, self.deadline_ms),
                _encode_id(self.origin),
                _encode_id(self.target),
                self.body,
            )
        )

    @classmethod
    def decode(cls, payload: bytes) -> PeerUnicast:
        if len(payload) < _UNICAST_HEAD.size:
            raise WireError(f"peer unicast too short: {len(payload)} bytes")
        hop, deadline = _UNICAST_HEAD.unpack_from(payload)
        origin, at = _decode_id(payload, _UNICAST_HEAD.size, "origin")
        target, at = _decode_id(payload, at, "target")
        return cls(origin, target, deadline, bytes(payload[at:]), hop)


@dataclass(frozen=True, slots=True)
class PeerReply:
    """A subscriber's answer on its way back to the publisher's node."""

    target: str
    data: bytes
    hop: int = DEFAULT_HOP_LIMIT

    def encode(self) -> bytes:
        return b"".join((_U8.pack(self.hop), _encode_id(self.target), self.data))

    @classmethod
    def decode(cls, payload: bytes) -> PeerReply:
        if not payload:
            raise WireError("peer reply is empty")
        target, at = _decode_id(payload, 1, "target")
        return cls(target, bytes(payload[at:]), payload[0])


@dataclass(frozen=True, slots=True)
class PeerMulticast:
    """A multicast for the subscribers of ``targets``, split at each hop by next hop."""

    origin: str
    targets: tuple[str, ...]
    body: bytes
    hop: int = DEFAULT_HOP_LIMIT

    def encode(self) -> bytes:
        if len(self.targets) > 0xFFFF:
            raise EncodeError(f"{len(self.targets)} targets exceed the limit of 65535")
        return b"".join(
            (
                _U8.pack(self.hop),
                _encode_id(self.origin),
                _U16.pack(len(self.targets)),
                *(_encode_id(t) for t in self.targets),
                self.body,
            )
        )

    @classmethod
    def decode(cls, payload: bytes) -> PeerMulticast:
        if not payload:
            raise WireError("peer multicast is empty")
        origin, at = _decode_id(payload, 1, "origin")
        if at + _U16.size > len(payload):
            raise WireError("peer multicast: target count runs past the end")
        (count,) = _U16.unpack_from(payload, at)
        at += _U16.size
        targets = []
        for _ in range(count):
            target, at = _decode_id(payload, at, "target")
            targets.append(target)
        return cls(origin, tuple(targets), bytes(payload[at:]), payload[0])


@dataclass(frozen=True, slots=True)
class VerifyNotice:
    """Tells ``target`` whether the subscriber of ``challenge`` proved an approved key."""

    target: str
    challenge: str
    verified: bool
    hop: int = DEFAULT_HOP_LIMIT

    def encode(self) -> bytes:
        return _encode_json(
            {
                "target": self.target,
                "topicForCert": self.challenge,
                "verified": self.verified,
                "hop": self.hop,
            }
        )

    @classmethod
    def decode(cls, payload: bytes) -> VerifyNotice:
        obj = _decode_json_object(payload, "verify notice")
        target = _node_id_field(obj, "target", "verify notice")
        challenge, verified, hop = obj.get("topicForCert"), obj.get("verified"), obj.get("hop")
        if not isinstance(challenge, str) or not isinstance(verified, bool) or not _is_uint(hop):
            raise WireError("verify notice: needs topicForCert, verified and hop")
        return cls(target, challenge, verified, hop)


def _encode_id(node_id: str) -> bytes:
    raw = node_id.encode("ascii", "strict")
    if not 0 < len(raw) <= MAX_NODE_ID_BYTES:
        raise EncodeError(f"node id must be 1 to {MAX_NODE_ID_BYTES} ASCII bytes")
    return _U8.pack(len(raw)) + raw


def _decode_id(payload: bytes, at: int, what: str) -> tuple[str, int]:
    if at >= len(payload):
        raise WireError(f"peer packet: {what} id missing at byte {at} of {len(payload)}")
    size = payload[at]
    end = at + 1 + size
    if size == 0 or end > len(payload):
        raise WireError(f"peer packet: {what} id of {size} bytes runs past the end")
    try:
        return payload[at + 1 : end].decode("ascii"), end
    except UnicodeDecodeError:
        raise WireError(f"peer packet: {what} id is not ASCII") from None


def _encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _decode_json_object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError(f"{what}: invalid JSON ({exc})", status=Status.INVALID_REQUEST) from None
    if not isinstance(value, dict):
        raise WireError(f"{what}: expected a JSON object", status=Status.INVALID_REQUEST)
    return value


def _node_id_field(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NODE_ID_BYTES or not value.isascii():
        raise WireError(f"{what}: {key} must be a node id of 1 to 255 ASCII characters")
    return value


def _str_tuple(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WireError(f"{what} must be a JSON array of strings")
    return tuple(value)


def _is_uint(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
