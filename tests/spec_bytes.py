"""The ws byte tables of docs/PROTOCOL.md section 1, written from the spec for raw-client tests.

Deliberately independent of amop_trio's codec, so tests built on it check the
node against the spec rather than against itself.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

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
EXT_RESPONSE = 0x0001

HEAD = struct.Struct(">HHhH")  # version, type, status, seqLen
EXT = struct.Struct(">H")
BODY_HEAD = struct.Struct(">IH")  # body version, topicLen


def new_seq() -> bytes:
    return uuid.uuid4().hex.encode("ascii")


def pack_frame(
    ptype: int,
    seq: bytes,
    payload: bytes = b"",
    *,
    status: int = 0,
    ext: int = 0,
    version: int = 0,
    seq_len: int | None = None,
) -> bytes:
    """A frame; ``seq_len`` lies about the seq's length when given."""
    n = len(seq) if seq_len is None else seq_len
    return HEAD.pack(version, ptype, status, n) + seq + EXT.pack(ext) + payload


def pack_body(
    topic: str | bytes, data: bytes = b"", *, version: int = 0, topic_len: int | None = None
) -> bytes:
    """An AMOP body; ``topic_len`` lies about the topic's length when given."""
    raw = topic.encode("utf-8") if isinstance(topic, str) else topic
    return BODY_HEAD.pack(version, len(raw) if topic_len is None else topic_len) + raw + data


@dataclass(frozen=True)
class RawFrame:
    version: int
    type: int
    status: int
    seq: bytes
    ext: int
    payload: bytes


def parse_frame(data: bytes) -> RawFrame | None:
    """A frame as docs/PROTOCOL.md section 1 defines it, or None when it is malformed."""
    if len(data) < HEAD.size + EXT.size:
        return None
    version, ptype, status, seq_len = HEAD.unpack_from(data)
    ext_at = HEAD.size + seq_len
    if ext_at + EXT.size > len(data):
        return None
    (ext,) = EXT.unpack_from(data, ext_at)
    return RawFrame(
        version, ptype, status, data[HEAD.size : ext_at], ext, data[ext_at + EXT.size :]
    )


def parse_body(payload: bytes) -> tuple[int, str, bytes] | None:
    """(version, topic, data) of an AMOP body, or None when it is malformed."""
    if len(payload) < BODY_HEAD.size:
        return None
    version, topic_len = BODY_HEAD.unpack_from(payload)
    end = BODY_HEAD.size + topic_len
    if end > len(payload):
        return None
    try:
        return version, payload[BODY_HEAD.size : end].decode("utf-8"), payload[end:]
    except UnicodeDecodeError:
        return None
