"""The channel frame of FISCO BCOS 2.x and the AMOP payloads it carries.

Theory of operation: the 2.x protocol puts frames back to back on one TLS
byte stream, so unlike ws the receiving side has to find frame boundaries
itself. ``ChannelDecoder`` does that in the style of h11's receive buffer:
``feed()`` appends whatever bytes arrived, ``next_frame()`` returns the next
complete ``ChannelFrame`` or ``None`` when more bytes are needed. The length
prefix is checked as soon as its 4 bytes are known, so a bogus or oversized
length fails at once instead of making the decoder wait for (and buffer) a
body that will never be valid; given a ``budget`` (``budget.BufferBudget``),
it holds a frame's announced length from it while the frame is incomplete,
and fails at once (``FrameTooLargeError``) if the budget cannot hold it.
Consumed bytes are skipped with an offset and
the buffer is compacted only when at least half of it is dead, which keeps
decoding many small frames linear in the input size. Once the decoder has
raised, it stays broken: the stream has lost its framing and cannot recover.

Everything else here is a pure function of bytes: ``encode_channel_frame`` /
``decode_channel_frame`` for one whole frame, and the topic body of
0x30/0x31/0x35 (the JSON bodies of the other types are in ``fisco2_json``).
No Trio, no sockets, no clock. All integers are big-endian (docs/PROTOCOL.md
section 2).

Errors: peer bytes that do not parse raise ``WireError`` (``FrameTooLargeError``
for an oversized length). Errors in a request's body carry
``status=Status.INVALID_REQUEST``, a ws code, like the ws codec does; a node
answering on a channel connection converts it with
``channel_result_from_status``. Asking to encode something the wire cannot
carry raises ``EncodeError``.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import NoReturn

from .._errors import EncodeError, FrameTooLargeError, WireError
from .budget import BufferBudget
from .fisco3 import DEFAULT_MAX_FRAME_SIZE
from .status import Status

#: length u32, type u16, seq 32 bytes, result i32.
_HEADER = struct.Struct(">IH32si")
_LENGTH = struct.Struct(">I")
_TYPE = struct.Struct(">H")
_RESULT = struct.Struct(">i")

#: Size of the fixed frame header; the smallest valid ``length``.
HEADER_SIZE = _HEADER.size
#: Size of the ``seq`` field: 32 ASCII hex chars.
SEQ_SIZE = 32
#: Longest topic a topic body can carry: topicLen is a u8 that counts itself.
MAX_CHANNEL_TOPIC_BYTES = 254

# Compact the decoder's buffer only when the dead prefix is at least this big
# (or the buffer is fully consumed); smaller prefixes are not worth a memmove.
_COMPACT_MIN = 64 * 1024


class ChannelType(IntEnum):
    """Packet types of the channel protocol (docs/PROTOCOL.md section 2)."""

    #: JSON-RPC request/answer (not AMOP).
    RPC = 0x12
    HEARTBEAT = 0x13
    HANDSHAKE = 0x14
    #: Unicast request, topic body.
    AMOP_REQUEST = 0x30
    #: Unicast answer (and multicast acknowledgement), topic body, same seq.
    AMOP_RESPONSE = 0x31
    #: The client's complete topic set, a JSON array; no answer.
    AMOP_SUBSCRIBE = 0x32
    #: Multicast, topic body; the node answers with AMOP_RESPONSE.
    AMOP_MULTICAST = 0x35
    #: Node to publisher: verify a private-topic subscriber (JSON).
    VERIFY_REQUEST = 0x37
    #: Publisher to node: outcome of a verification (JSON).
    VERIFY_RESULT = 0x38


class ChannelResult(IntEnum):
    """Result codes of the channel protocol (FISCO BCOS 2.x)."""

    SUCCESS = 0
    #: No reachable node has a subscriber for the topic.
    REMOTE_PEER_UNAVAILABLE = 100
    #: The chosen node has no usable client for the topic.
    REMOTE_CLIENT_UNAVAILABLE = 101
    TIMEOUT = 102
    #: Rejected: bandwidth limit exceeded (amop_trio also uses it for overload).
    REJECTED = 103
    SEND_FAILED = 104


_RESULT_DESCRIPTIONS = {
    ChannelResult.SUCCESS: "success",
    ChannelResult.REMOTE_PEER_UNAVAILABLE: "no reachable node has a subscriber for the topic",
    ChannelResult.REMOTE_CLIENT_UNAVAILABLE: "the chosen node has no usable client for the topic",
    ChannelResult.TIMEOUT: "timed out waiting for the subscriber's reply",
    ChannelResult.REJECTED: "rejected: bandwidth limit exceeded",
    ChannelResult.SEND_FAILED: "sending to the subscriber failed",
}

_STATUS_TO_RESULT = {
    Status.SUCCESS: ChannelResult.SUCCESS,
    Status.NO_SUBSCRIBER_NODE: ChannelResult.REMOTE_PEER_UNAVAILABLE,
    Status.NO_SUBSCRIBER_CLIENT: ChannelResult.REMOTE_CLIENT_UNAVAILABLE,
    Status.TIMEOUT: ChannelResult.TIMEOUT,
    Status.BANDWIDTH_LIMIT: ChannelResult.REJECTED,
    Status.OVERLOADED: ChannelResult.REJECTED,
    Status.SEND_FAILED: ChannelResult.SEND_FAILED,
}

_RESULT_TO_STATUS = {
    ChannelResult.SUCCESS: Status.SUCCESS,
    ChannelResult.REMOTE_PEER_UNAVAILABLE: Status.NO_SUBSCRIBER_NODE,
    ChannelResult.REMOTE_CLIENT_UNAVAILABLE: Status.NO_SUBSCRIBER_CLIENT,
    ChannelResult.TIMEOUT: Status.TIMEOUT,
    ChannelResult.REJECTED: Status.BANDWIDTH_LIMIT,
    ChannelResult.SEND_FAILED: Status.SEND_FAILED,
}


def channel_result_from_status(status: int) -> ChannelResult:
    """The 2.x result code that says what the ws ``Status`` code says.

    0→0, 3001→100, 3002→101, 1000→102, 1004→103, 3003→104. amop_trio's
    OVERLOADED (3006) becomes 103 (rejected: try later). Every other code,
    including UNSUPPORTED_TYPE, INVALID_REQUEST and codes this library does
    not know, becomes 104 (sending failed): 2.x has nothing closer, and it is
    a failure either way.
    """
    try:
        return _STATUS_TO_RESULT[Status(status)]
    except (ValueError, KeyError):
        return ChannelResult.SEND_FAILED


def status_from_channel_result(result: int) -> Status:
    """The ws ``Status`` code that says what the 2.x result code says.

    The inverse of ``channel_result_from_status`` on the six 2.x codes
    (103 maps back to BANDWIDTH_LIMIT); an unknown result code becomes
    SEND_FAILED (3003), a generic failure.
    """
    try:
        return _RESULT_TO_STATUS[ChannelResult(result)]
    except ValueError:
        return Status.SEND_FAILED


def describe_channel_result(result: int) -> str:
    """A short human text for a 2.x result code, known or not."""
    try:
        return _RESULT_DESCRIPTIONS[ChannelResult(result)]
    except ValueError:
        return "unknown result code"


# ---------------------------------------------------------------------------
# frames


@dataclass(frozen=True, slots=True)
class ChannelFrame:
    """One channel frame. ``seq`` is the raw 32 bytes, exactly as on the wire."""

    type: int
    seq: bytes
    result: int = 0
    data: bytes = b""


def new_channel_seq() -> bytes:
    """A fresh request id: 32 lowercase hex ASCII bytes, a UUID4 without dashes."""
    return uuid.uuid4().hex.encode("ascii")


def encode_channel_frame(frame: ChannelFrame) -> bytes:
    """The bytes of one frame; ``EncodeError`` if a field does not fit."""
    seq = frame.seq
    if not isinstance(seq, bytes | bytearray) or len(seq) != SEQ_SIZE:
        got = f"{len(seq)} bytes" if isinstance(seq, bytes | bytearray) else type(seq).__name__
        raise EncodeError(f"channel frame seq must be exactly {SEQ_SIZE} bytes, got {got}")
    length = HEADER_SIZE + len(frame.data)
    if length > 0xFFFFFFFF:
        raise EncodeError(f"channel frame of {length} bytes does not fit the u32 length field")
    try:
        head = _HEADER.pack(length, frame.type, bytes(seq), frame.result)
    except struct.error as exc:
        raise EncodeError(
            f"channel frame field out of range: {exc} (type={frame.type!r:.30}, "
            f"result={frame.result!r:.30})"
        ) from None
    return head + frame.data


def _check_length(length: int, max_size: int) -> None:
    if length < HEADER_SIZE:
        raise WireError(
            f"frame length field {length} is smaller than the {HEADER_SIZE}-byte header"
        )
    if length > max_size:
        raise FrameTooLargeError(
            f"frame length field {length} exceeds the maximum of {max_size} bytes"
        )


def _parse(buf: bytes | bytearray | memoryview, at: int, length: int) -> ChannelFrame:
    """The frame of ``length`` bytes at offset ``at``, all of which is in ``buf``."""
    _, ftype, seq, result = _HEADER.unpack_from(buf, at)
    with memoryview(buf) as view, view[at + HEADER_SIZE : at + length] as body:
        data = body.tobytes()
    return ChannelFrame(type=ftype, seq=seq, result=result, data=data)


def decode_channel_frame(
    buf: bytes | bytearray | memoryview, *, max_size: int = DEFAULT_MAX_FRAME_SIZE
) -> ChannelFrame:
    """Parse exactly one whole frame; ``WireError`` if it is malformed or too large.

    The length field must equal the number of bytes given: for a stream, use
    ``ChannelDecoder``.
    """
    size = len(buf) if not isinstance(buf, memoryview) else buf.nbytes
    if size > max_size:
        raise FrameTooLargeError(f"frame of {size} bytes exceeds the maximum of {max_size} bytes")
    if size < HEADER_SIZE:
        raise WireError(f"frame too short: {size} bytes, the header needs {HEADER_SIZE}")
    (length,) = _LENGTH.unpack_from(buf)
    if length != size:
        raise WireError(f"frame length field {length} does not match the {size} bytes given")
    return _parse(buf, 0, length)


class ChannelDecoder:
    """Incremental decoder of a channel byte stream.

    ``feed()`` the bytes as they arrive, then call ``next_frame()`` until it
    returns ``None`` (or iterate ``frames()``). Call ``feed_eof()`` when the
    stream ends: the remaining complete frames are still returned, then
    ``next_frame()`` raises ``WireError`` if a partial frame is left over.

    A length field below the 42-byte header or above ``max_frame_size`` raises
    from ``next_frame()`` as soon as its 4 bytes are buffered, without waiting
    for the body, and so does one that ``budget`` cannot hold while the frame
    is incomplete. After any ``WireError`` the decoder is broken for good:
    ``feed()`` and ``next_frame()`` raise again.
    """

    __slots__ = ("_budget", "_buf", "_eof", "_error", "_held", "_max", "_pos")

    def __init__(
        self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, budget: BufferBudget | None = None
    ) -> None:
        if isinstance(max_frame_size, bool) or not isinstance(max_frame_size, int):
            raise TypeError(f"max_frame_size must be an int, got {max_frame_size!r:.50}")
        if max_frame_size < HEADER_SIZE:
            raise ValueError(
                f"max_frame_size must be at least the {HEADER_SIZE}-byte header, "
                f"got {max_frame_size}"
            )
        self._max = max_frame_size
        self._buf = bytearray()
        self._pos = 0
        self._eof = False
        self._error: WireError | None = None
        self._budget = budget
        #: Bytes held from ``budget`` for the frame not complete yet.
        self._held = 0

    def __repr__(self) -> str:
        state = "broken" if self._error else "eof" if self._eof else "open"
        return (
            f"<ChannelDecoder {state}, {self.pending_bytes} bytes pending, "
            f"max_frame_size={self._max}>"
        )

    @property
    def max_frame_size(self) -> int:
        return self._max

    @property
    def pending_bytes(self) -> int:
        """Bytes fed but not yet returned as frames."""
        return len(self._buf) - self._pos

    @property
    def broken(self) -> bool:
        """Whether the decoder has raised a ``WireError`` and will only raise again."""
        return self._error is not None

    def _raise_broken(self) -> NoReturn:
        err = self._error
        assert err is not None
        raise type(err)(f"channel decoder already failed: {err}", status=err.status)

    def _fail(self, err: WireError) -> NoReturn:
        self._error = err
        raise err

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes received from the stream (any chunking, empty allowed)."""
        if self._error is not None:
            self._raise_broken()
        if self._eof:
            raise RuntimeError("ChannelDecoder.feed() called after feed_eof()")
        pos = self._pos
        if pos and (pos >= _COMPACT_MIN and 2 * pos >= len(self._buf)):
            # Amortised linear: the bytes moved (< pos) were paid for by the
            # pos bytes consumed since the last compaction.
            del self._buf[:pos]
            self._pos = 0
        self._buf += data

    def feed_eof(self) -> None:
        """Mark the end of the stream; idempotent."""
        self._eof = True

    def next_frame(self) -> ChannelFrame | None:
        """The next complete frame, or ``None`` if more bytes are needed."""
        length = self._next_length()
        if length is None:
            return None
        frame = _parse(self._buf, self._pos, length)
        self._consume(length)
        return frame

    def next_frame_bytes(self) -> bytes | None:
        """Like ``next_frame``, but the frame's bytes, header included, unparsed.

        For transports that hand whole frames to a reader that decodes them
        itself (``decode_channel_frame``); the same checks apply.
        """
        length = self._next_length()
        if length is None:
            return None
        with memoryview(self._buf) as view, view[self._pos : self._pos + length] as frame:
            data = frame.tobytes()
        self._consume(length)
        return data

    def _next_length(self) -> int | None:
        """The length of the complete frame at the front of the buffer, or ``None``."""
        if self._error is not None:
            self._raise_broken()
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < _LENGTH.size:
            if self._eof and avail:
                self._fail(WireError(f"stream ended inside a frame's length field ({avail} bytes)"))
            return None
        (length,) = _LENGTH.unpack_from(buf, pos)
        try:
            _check_length(length, self._max)
        except WireError as exc:
            self._fail(exc)
        if avail < length:
            if self._eof:
                self._fail(
                    WireError(f"stream ended inside a frame: {avail} of its {length} bytes arrived")
                )
            if length > self._held:
                self._hold(length)
            return None
        return int(length)

    def _hold(self, length: int) -> None:
        """Hold ``length`` bytes of the budget for the incomplete frame, or fail."""
        budget = self._budget
        if budget is None:
            return
        if not budget.hold(length):
            self._buf = bytearray()
            self._pos = 0
            self._fail(
                FrameTooLargeError(
                    f"channel frame of {length} bytes refused: no room left in the budget "
                    "for partial frames"
                )
            )
        self._held = length

    def _consume(self, length: int) -> None:
        pos = self._pos + length
        if pos == len(self._buf):
            self._buf.clear()
            pos = 0
        self._pos = pos
        if self._held:
            self._held = 0
            if self._budget is not None:
                self._budget.hold(0)

    def frames(self) -> Iterator[ChannelFrame]:
        """Every complete frame buffered now, in order."""
        while (frame := self.next_frame()) is not None:
            yield frame


# ---------------------------------------------------------------------------
# topic body (0x30, 0x31, 0x35)


@dataclass(frozen=True, slots=True)
class TopicBody:
    """The data of AMOP_REQUEST, AMOP_RESPONSE and AMOP_MULTICAST.

    An AMOP_RESPONSE whose ``result`` is not 0 usually has empty data (real
    nodes clear it), so decode the body of an answer only when result is 0.
    """

    topic: str
    data: bytes


def channel_topic_bytes(topic: str) -> bytes:
    """``topic`` in UTF-8, if a topic body can carry it (1 to 254 bytes); else ``EncodeError``."""
    if not isinstance(topic, str):
        raise EncodeError(f"topic must be a str, got {type(topic).__name__}")
    try:
        raw = topic.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(
            f"topic is not valid Unicode text ({exc.reason} at {exc.start})"
        ) from None
    if not raw:
        raise EncodeError("topic is empty; the channel protocol needs at least 1 byte")
    if len(raw) > MAX_CHANNEL_TOPIC_BYTES:
        raise EncodeError(
            f"topic is {len(raw)} bytes in UTF-8, the channel protocol allows at most "
            f"{MAX_CHANNEL_TOPIC_BYTES}"
        )
    return raw


def encode_topic_body(topic: str, data: bytes) -> bytes:
    """``topicLen u8`` (= topic bytes + 1), the UTF-8 topic, then ``data``."""
    raw = channel_topic_bytes(topic)
    return b"".join((bytes((len(raw) + 1,)), raw, data))


def decode_topic_body(data: bytes | bytearray | memoryview) -> TopicBody:
    """Parse the data of AMOP_REQUEST / AMOP_RESPONSE / AMOP_MULTICAST."""
    body = bytes(data)
    size = len(body)
    if size < 1:
        raise WireError(
            "topic body is empty: it needs at least the topicLen byte",
            status=Status.INVALID_REQUEST,
        )
    topic_len = body[0]
    if topic_len < 2:
        raise WireError(
            f"topicLen {topic_len} leaves no room for a topic: it counts itself, "
            f"so a topic of at least 1 byte needs topicLen 2 or more",
            status=Status.INVALID_REQUEST,
        )
    if topic_len > size:
        raise WireError(
            f"topicLen {topic_len} runs past the end of a {size}-byte topic body",
            status=Status.INVALID_REQUEST,
        )
    try:
        topic = body[1:topic_len].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(
            f"topic is not valid UTF-8 ({exc.reason} at byte {exc.start})",
            status=Status.INVALID_REQUEST,
        ) from None
    return TopicBody(topic=topic, data=body[topic_len:])
