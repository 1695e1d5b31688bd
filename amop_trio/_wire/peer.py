"""Node-to-node packets: amop_trio's own types, carried in ordinary ws frames.

Links between nodes reuse the ws frame (``ws.Frame``) with packet types in
the reserved range 0x1000-0x10FF, which FISCO BCOS does not use. Control
packets (hello, sync, summary, status) carry JSON; a link-state part is JSON
inside a signed binary envelope (``SignedPart``); data packets carry a small
binary routing header followed by the AMOP body untouched.

Routing header of PEER_UNICAST: ``hop u8 | deadline_ms u32 | origin | target``;
of PEER_REPLY: ``hop u8 | target``; of PEER_MULTICAST: ``hop u8 | origin |
count u16 | target*count``. A node id is ``len u8`` + ASCII bytes.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeGuard

from .._errors import EncodeError, WireError
from .json_payload import decode_json_object, encode_json

#: Hops a packet may travel before it is dropped (loop guard).
DEFAULT_HOP_LIMIT = 32
MAX_NODE_ID_BYTES = 255
#: Bytes a node link frame may hold beyond the largest client frame: a client's body
#: travels with the origin's and target's ids, a hop count and a deadline around it.
LINK_FRAME_OVERHEAD = 4 * MAX_NODE_ID_BYTES + 1024
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
    #: Digest of the link-state versions a node holds (anti-entropy).
    SYNC = 0x1006
    #: The link-state versions a node holds, answering a SYNC that differs.
    SUMMARY = 0x1007
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
        return encode_json({"nodeId": self.node_id, "endpoints": list(self.endpoints)})

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        obj = decode_json_object(payload, "hello")
        node_id = _node_id_field(obj, "nodeId", "hello")
        return cls(node_id, _str_tuple(obj.get("endpoints", []), "hello endpoints"))


#: Topics longer than this (UTF-8 bytes) are advertised by digest, not by name.
TOPIC_NAME_LIMIT = 64
#: Bytes of SHA-256 kept in a topic digest (as hex in advertisements).
TOPIC_DIGEST_BYTES = 16
#: Longest challenge topic an advertisement carries by name (longer ones cannot be
#: verified: 2.x topics are at most 254 bytes).
MAX_PENDING_NAME = 1024


def topic_digest(topic: str) -> str:
    """How a topic longer than ``TOPIC_NAME_LIMIT`` bytes appears in advertisements."""
    return hashlib.sha256(topic.encode("utf-8")).digest()[:TOPIC_DIGEST_BYTES].hex()


def advertised_by_name(topic: str) -> bool:
    # A character is at most 4 bytes of UTF-8: most names need no encoding to tell.
    return len(topic) * 4 <= TOPIC_NAME_LIMIT or len(topic.encode("utf-8")) <= TOPIC_NAME_LIMIT


@dataclass(frozen=True, slots=True)
class LinkState:
    """A node's advertisement, assembled from its parts: links, topics, endpoints.

    ``(epoch, seq)`` orders advertisements of one origin: the epoch is set at
    node start from the wall clock, and raised above any version of its own id
    the node hears of (so a restarted node supersedes its former self even
    with its clock set back); the seq grows with each change. ``topics`` maps
    short topic names to subscriber counts, ``digests`` long topics' digests
    (``topic_digest``) to theirs: ``count`` looks a topic up in the right one.
    """

    origin: str
    epoch: int
    seq: int
    neighbours: tuple[str, ...] = ()
    topics: dict[str, int] = field(default_factory=dict)
    endpoints: tuple[str, ...] = ()
    #: challenge topics of private-topic subscribers not verified yet.
    pending: tuple[str, ...] = ()
    digests: dict[str, int] = field(default_factory=dict)

    @property
    def version(self) -> tuple[int, int]:
        return (self.epoch, self.seq)

    def count(self, topic: str) -> int:
        """Subscribers of ``topic`` this state advertises."""
        if advertised_by_name(topic):
            return self.topics.get(topic, 0)
        return self.digests.get(topic_digest(topic), 0)


@dataclass(frozen=True, slots=True)
class StatePart:
    """One part of an advertisement: the version, which part, and some of its entries.

    An advertisement of any size travels as ``count`` parts, each a frame far
    below the frame limit (see ``_node.advert``); the parts of one version
    together hold every entry once.
    """

    origin: str
    epoch: int
    seq: int
    index: int
    count: int
    neighbours: tuple[str, ...] = ()
    topics: dict[str, int] = field(default_factory=dict)
    digests: dict[str, int] = field(default_factory=dict)
    endpoints: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()

    @property
    def version(self) -> tuple[int, int]:
        return (self.epoch, self.seq)

    def encode(self) -> bytes:
        return encode_json(
            {
                "origin": self.origin,
                "epoch": self.epoch,
                "seq": self.seq,
                "part": self.index,
                "parts": self.count,
                "neighbours": list(self.neighbours),
                "topics": self.topics,
                "digests": self.digests,
                "endpoints": list(self.endpoints),
                "verify": list(self.pending),
            }
        )

    @classmethod
    def decode(cls, payload: bytes) -> StatePart:
        obj = decode_json_object(payload, "link state")
        origin = _node_id_field(obj, "origin", "link state")
        epoch, seq, index, count = (obj.get(k) for k in ("epoch", "seq", "part", "parts"))
        if not (_is_u64(epoch) and _is_u64(seq) and _is_u64(index) and _is_u64(count)):
            raise WireError("link state: epoch, seq, part and parts must be unsigned 64-bit")
        if not index < count:
            raise WireError(f"link state: part {index} of {count}")
        return cls(
            origin,
            epoch,
            seq,
            index,
            count,
            _str_tuple(obj.get("neighbours", []), "link state neighbours"),
            _counts(obj.get("topics", {}), "topics"),
            _counts(obj.get("digests", {}), "digests"),
            _str_tuple(obj.get("endpoints", []), "link state endpoints"),
            _str_tuple(obj.get("verify", []), "link state verify"),
        )


_ENVELOPE_HEAD = struct.Struct(">BI")
_U32 = struct.Struct(">I")
#: First byte of a signed part's envelope.
ENVELOPE_FORMAT = 2


@dataclass(frozen=True, slots=True)
class SignedPart:
    """What a LINK_STATE packet carries: a ``StatePart``'s bytes, signed by its origin.

    ``format u8 (2) | body_len u32 | body | sig_len u16 | signature | n u8 |
    (len u16 | certificate DER) * n``: the signature covers the body bytes as
    they are, the certificates (leaf first) let any node check it. On networks
    without TLS, signature and chain are empty.
    """

    body: bytes
    signature: bytes = b""
    chain: tuple[bytes, ...] = ()

    def encode(self) -> bytes:
        if len(self.signature) > 0xFFFF or len(self.chain) > 0xFF:
            raise EncodeError("signature or certificate chain too long for a link state")
        parts = [
            _ENVELOPE_HEAD.pack(ENVELOPE_FORMAT, len(self.body)),
            self.body,
            _U16.pack(len(self.signature)),
            self.signature,
            _U8.pack(len(self.chain)),
        ]
        for cert in self.chain:
            if len(cert) > 0xFFFF:
                raise EncodeError("certificate too long for a link state")
            parts += [_U16.pack(len(cert)), cert]
        return b"".join(parts)

    @classmethod
    def decode(cls, payload: bytes) -> SignedPart:
        view = memoryview(payload)
        if len(view) < _ENVELOPE_HEAD.size:
            raise WireError("link state envelope too short")
        fmt, size = _ENVELOPE_HEAD.unpack_from(view)
        if fmt != ENVELOPE_FORMAT:
            raise WireError(f"link state envelope format {fmt}, expected {ENVELOPE_FORMAT}")
        at = _ENVELOPE_HEAD.size
        body, at = _take(view, at, size, "body")
        (sig_size,) = _unpack(_U16, view, at, "signature length")
        signature, at = _take(view, at + 2, sig_size, "signature")
        (count,) = _unpack(_U8, view, at, "certificate count")
        at += 1
        chain = []
        for _ in range(count):
            (cert_size,) = _unpack(_U16, view, at, "certificate length")
            cert, at = _take(view, at + 2, cert_size, "certificate")
            chain.append(cert)
        if at != len(view):
            raise WireError(f"link state envelope has {len(view) - at} trailing bytes")
        return cls(body, signature, tuple(chain))


@dataclass(frozen=True, slots=True)
class Sync:
    """Sent to each neighbour now and then: a digest of the versions this node holds.

    A neighbour whose digest differs answers with a ``Summary``; each side
    then sends the other the states it holds newer (anti-entropy), so an
    advertisement lost on a congested link is repaired within an interval.
    """

    digest: str

    def encode(self) -> bytes:
        return encode_json({"digest": self.digest})

    @classmethod
    def decode(cls, payload: bytes) -> Sync:
        obj = decode_json_object(payload, "sync")
        digest = obj.get("digest")
        if not isinstance(digest, str) or len(digest) > 128:
            raise WireError("sync: digest must be a short string")
        return cls(digest)


@dataclass(frozen=True, slots=True)
class Summary:
    """The versions (origin, epoch, seq) of the states a node holds: part ``index`` of ``count``."""

    versions: tuple[tuple[str, int, int], ...]
    index: int = 0
    count: int = 1

    def encode(self) -> bytes:
        return encode_json(
            {
                "versions": [list(v) for v in self.versions],
                "part": self.index,
                "parts": self.count,
            }
        )

    @classmethod
    def decode(cls, payload: bytes) -> Summary:
        obj = decode_json_object(payload, "summary")
        raw, index, count = obj.get("versions"), obj.get("part"), obj.get("parts")
        if not isinstance(raw, list) or not _is_u64(index) or not _is_u64(count):
            raise WireError("summary: needs versions, part and parts")
        if not index < count:
            raise WireError(f"summary: part {index} of {count}")
        versions = []
        for entry in raw:
            if (
                not isinstance(entry, list)
                or len(entry) != 3
                or not isinstance(entry[0], str)
                or not 0 < len(entry[0]) <= MAX_NODE_ID_BYTES
                or not (_is_u64(entry[1]) and _is_u64(entry[2]))
            ):
                raise WireError("summary: each version is [origin, epoch, seq]")
            versions.append((entry[0], entry[1], entry[2]))
        return cls(tuple(versions), index, count)


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
        return encode_json(
            {
                "target": self.target,
                "topicForCert": self.challenge,
                "verified": self.verified,
                "hop": self.hop,
            }
        )

    @classmethod
    def decode(cls, payload: bytes) -> VerifyNotice:
        obj = decode_json_object(payload, "verify notice")
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


def _is_u64(value: Any) -> TypeGuard[int]:
    return _is_uint(value) and value < 1 << 64


def _counts(value: Any, what: str) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and _is_u64(v) for k, v in value.items()
    ):
        raise WireError(f"link state: {what} must map names to subscriber counts")
    return value


def _take(view: memoryview, at: int, size: int, what: str) -> tuple[bytes, int]:
    end = at + size
    if end > len(view):
        raise WireError(f"link state envelope: {what} runs past the end")
    return bytes(view[at:end]), end


def _unpack(fmt: struct.Struct, view: memoryview, at: int, what: str) -> tuple[int, ...]:
    if at + fmt.size > len(view):
        raise WireError(f"link state envelope: {what} missing")
    return fmt.unpack_from(view, at)
