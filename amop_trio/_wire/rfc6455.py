"""The WebSocket framing protocol (RFC 6455 sections 5 to 7), sans-I/O.

``WsConnection`` is one end of a WebSocket once the upgrade is done
(``ws_upgrade`` does the upgrade): received bytes go in, whole messages and
control frames come out, and it knows where the closing handshake stands
(``ConnectionState``, as in wsproto). It refuses what wsproto refuses, in the
same order: reserved opcodes, fragmented or over-long control frames,
lengths not in their shortest form or with the top bit set, reserved bits
(no extension is ever agreed), frames masked the wrong way, continuations
out of place, Close payloads of one byte, close codes a peer may not send,
and text that is not UTF-8, in messages and in close reasons. Each refusal
is a ``WebSocketError`` carrying the close code to answer it with: 1002 for
a protocol error, 1007 for invalid text, 1009 for a message too big.

AMOP sends one binary message per frame, so a final, unfragmented binary
frame with a 7- or 16-bit length takes a short path of branch checks on its
header and one copy of its payload; anything else (control frames,
fragments, text, 64-bit lengths, anything wrong) takes the general path.
A general WebSocket library spends more per message on events and
generators than a whole AMOP hop is worth.

Limits: a message over ``max_message`` bytes is refused from the header that
says so, before its payload is buffered, and a message may come in at most
``MAX_FRAGMENTS`` frames. Fragments are gathered in one buffer, so even
empty ones cost no memory; each one is handed back as ``FRAGMENT``, so the
caller can count the work and let other tasks run. Given a ``budget``
(``budget.BufferBudget``), the decoder holds from it the bytes of a frame it
has begun to receive (with the message's earlier fragments) while it waits
for the rest, and refuses the frame (1009) if the budget cannot hold them; a
frame that arrives whole in one read costs the budget nothing.
"""

from __future__ import annotations

import codecs
import os
import struct
from enum import Enum
from typing import NamedTuple

from .._errors import EncodeError, FrameTooLargeError, WireError
from .budget import BufferBudget

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_KNOWN = frozenset({CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG})

# Close codes (RFC 6455 section 7.4.1).
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
UNSUPPORTED_DATA = 1003
#: Stands for "the Close frame carried no code"; never sent.
NO_STATUS_RCVD = 1005
INVALID_PAYLOAD = 1007
MESSAGE_TOO_BIG = 1009
#: Codes of 1000-2999 a peer may send, as wsproto knows them: 1004 is reserved,
#: 1005, 1006 and 1015 are for local use only, the rest unassigned.
_DEFINED_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013})
_LOCAL_ONLY_CODES = frozenset({1005, 1006, 1015})

#: Largest payload of a control frame.
MAX_CONTROL_PAYLOAD = 125
#: Largest close reason, in bytes of UTF-8 (a code takes the other two).
MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2
#: Most frames one message may come in. boost beast (the FISCO C++ SDK) splits
#: what it sends into frames of its write buffer, 4 KiB by default, so a 32 MiB
#: message is 8192 frames; twice that leaves room and still ends a flood of
#: empty fragments within a few hundred kilobytes.
MAX_FRAGMENTS = 16384

_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


class WebSocketError(WireError):
    """The peer broke RFC 6455; ``close_code`` is the code to close the connection with."""

    def __init__(self, message: str, close_code: int = PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.close_code = close_code


class MessageTooBigError(WebSocketError, FrameTooLargeError):
    """A message is bigger, or in more fragments, than this end takes (close code 1009)."""

    def __init__(self, message: str, close_code: int = MESSAGE_TOO_BIG) -> None:
        super().__init__(message, close_code)


class ConnectionState(Enum):
    """Where the closing handshake stands."""

    #: Messages go both ways.
    OPEN = "open"
    #: This end sent a Close: the peer's messages may still come, then its Close.
    LOCAL_CLOSING = "local closing"
    #: The peer sent a Close: this end owes one, and nothing more is decoded.
    REMOTE_CLOSING = "remote closing"
    #: Both Closes were sent: only closing the TCP connection is left.
    CLOSED = "closed"


class WsEvent(NamedTuple):
    """A whole message (BINARY or TEXT), a control frame (CLOSE, PING, PONG) or ``FRAGMENT``."""

    opcode: int
    payload: bytes


#: What ``next_event`` returns for a frame that was part of a message not yet whole.
FRAGMENT = WsEvent(CONTINUATION, b"")


def _mask(data: bytes | bytearray, key: bytes | bytearray) -> bytes:
    """``data`` XORed with the repeated masking ``key`` (masking and unmasking alike)."""
    size = len(data)
    if not size:
        return b""
    pad = int.from_bytes(key * ((size + 3) // 4), "big") >> (8 * (-size % 4))
    return (int.from_bytes(data, "big") ^ pad).to_bytes(size, "big")


def encode_frame(opcode: int, payload: bytes, *, mask: bool) -> bytes:
    """One final frame; clients must ``mask``, servers must not."""
    size = len(payload)
    head = bytes((0x80 | opcode,))
    flag = 0x80 if mask else 0
    if size < 126:
        head += bytes((flag | size,))
    elif size < 65536:
        head += bytes((flag | 126,)) + _U16.pack(size)
    else:
        head += bytes((flag | 127,)) + _U64.pack(size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + _mask(payload, key)


def truncate_utf8(data: bytes, size: int) -> bytes:
    """The UTF-8 ``data`` cut to at most ``size`` bytes, never inside a character."""
    if len(data) <= size:
        return data
    return data[:size].decode("utf-8", "ignore").encode("utf-8")


def peer_may_send(code: int) -> bool:
    """Whether ``code`` may stand in a Close frame (RFC 6455 section 7.4, as wsproto checks it)."""
    return code in _DEFINED_CODES or 3000 <= code <= 4999


def encode_close(code: int | None, reason: str = "", *, mask: bool) -> bytes:
    """A Close frame; ``None`` (or 1005) sends no code. The reason is cut to fit, whole characters.

    A local-only code (1006, 1015) becomes 1000, as in wsproto; any other code
    a peer would refuse is an ``EncodeError``.
    """
    if code is None or code == NO_STATUS_RCVD:
        if reason:
            raise EncodeError("a close reason needs a close code")
        return encode_frame(CLOSE, b"", mask=mask)
    if code in _LOCAL_ONLY_CODES:
        code = NORMAL_CLOSURE
    if not peer_may_send(code):
        raise EncodeError(f"{code} is not a close code a WebSocket peer accepts")
    reason_bytes = truncate_utf8(reason.encode("utf-8"), MAX_CLOSE_REASON)
    return encode_frame(CLOSE, _U16.pack(code) + reason_bytes, mask=mask)


def close_code(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a CLOSE payload ``WsConnection`` let through; 1005 when it has none."""
    if len(payload) < 2:
        return NO_STATUS_RCVD, ""
    return _U16.unpack_from(payload)[0], payload[2:].decode("utf-8", "replace")


def _check_close(payload: bytes) -> None:
    """Refuse a Close payload as wsproto does: one byte, a code a peer may not send, bad UTF-8."""
    if not payload:
        return
    if len(payload) == 1:
        raise WebSocketError("WebSocket Close frame with a 1-byte payload")
    code = _U16.unpack_from(payload)[0]
    if not peer_may_send(code):
        raise WebSocketError(f"WebSocket Close frame with code {code}, which peers may not send")
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WebSocketError(
            "WebSocket Close frame whose reason is not UTF-8", INVALID_PAYLOAD
        ) from None


def _check_utf8(data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise WebSocketError("WebSocket text message that is not UTF-8", INVALID_PAYLOAD) from None


class WsConnection:
    """One end of a WebSocket after the upgrade: bytes in, events out, Close frames out.

    ``client`` says which end: a client takes unmasked frames and masks its
    own, a server the other way round. ``feed`` what arrives, then call
    ``next_event`` until it returns None. After the peer's Close, or after a
    ``WebSocketError``, nothing more is decoded: what arrives is dropped, and
    ``next_event`` returns None, or raises the same error again.
    """

    def __init__(
        self, *, client: bool, max_message: int, budget: BufferBudget | None = None
    ) -> None:
        self.client = client
        self._max = max_message
        self._budget = budget
        #: Bytes held from ``budget`` for the frame or message not complete yet.
        self._held = 0
        #: The MASK bit the peer's frames must carry.
        self._mask_bit = 0 if client else 0x80
        self._state = ConnectionState.OPEN
        self._buffer = bytearray()
        self._discard = False
        self._failure: WebSocketError | None = None
        # The fragmented message being received: its opcode (0 when there is none),
        # its payload so far, its frame count and, for text, its UTF-8 decoder.
        self._opcode = 0
        self._parts = bytearray()
        self._fragments = 0
        self._text: codecs.IncrementalDecoder | None = None

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def buffered(self) -> int:
        """Bytes received and not decoded yet."""
        return len(self._buffer)

    @property
    def failed(self) -> bool:
        """True once the peer broke the protocol: nothing more can be read."""
        return self._failure is not None

    def feed(self, data: bytes | bytearray) -> None:
        """Take received bytes (dropped once the peer closed or broke the protocol)."""
        if not self._discard:
            self._buffer += data

    def close(self, code: int | None = NORMAL_CLOSURE, reason: str = "") -> bytes | None:
        """The Close frame to send (see ``encode_close``); None if this end already sent one."""
        if self._state is ConnectionState.OPEN:
            state = ConnectionState.LOCAL_CLOSING
        elif self._state is ConnectionState.REMOTE_CLOSING:
            state = ConnectionState.CLOSED
        else:
            return None
        frame = encode_close(code, reason, mask=self.client)
        self._state = state
        return frame

    def next_event(self) -> WsEvent | None:
        """The next message, control frame or ``FRAGMENT``; None until more bytes arrive."""
        buffer = self._buffer
        size = len(buffer)
        # The common frame: final, binary, no reserved bits, masked as it must be,
        # outside a fragmented message, a 7-bit or shortest 16-bit length.
        if size >= 2 and buffer[0] == 0x82 and not self._opcode:
            second = buffer[1]
            if second & 0x80 == self._mask_bit:
                length = second & 0x7F
                if length < 126:
                    at = 2
                elif length == 126 and size >= 4 and (length := buffer[2] << 8 | buffer[3]) > 125:
                    at = 4
                else:
                    at = 0
                if at and length <= self._max:
                    if self._mask_bit:
                        end = at + 4 + length
                        if size < end:
                            if end > self._held:
                                self._hold(end)
                            return None
                        payload = _mask(buffer[at + 4 : end], buffer[at : at + 4])
                    else:
                        end = at + length
                        if size < end:
                            if end > self._held:
                                self._hold(end)
                            return None
                        payload = bytes(buffer[at:end])
                    del buffer[:end]
                    if self._held:
                        self._release()
                    return WsEvent(BINARY, payload)
        return self._next_event()

    def _next_event(self) -> WsEvent | None:
        """The general path: every check, any frame."""
        buffer = self._buffer
        if len(buffer) < 2:
            if self._failure is not None:
                raise self._failure
            return None
        try:
            return self._parse(buffer)
        except WebSocketError as exc:
            self._failure = exc
            self._stop()
            raise

    def _stop(self) -> None:
        """Decode nothing more: the peer closed or failed."""
        self._discard = True
        self._buffer.clear()
        self._opcode = 0
        self._parts = bytearray()
        self._text = None
        if self._held:
            self._release()

    def _hold(self, size: int) -> None:
        """Hold ``size`` bytes of the budget for what is not complete yet, or refuse it (1009)."""
        budget = self._budget
        if budget is None or size <= self._held:
            return
        if not budget.hold(size):
            error = MessageTooBigError(
                f"WebSocket message of {size} bytes refused: no room left in the budget "
                "for partial messages"
            )
            self._failure = error
            self._stop()
            raise error
        self._held = size

    def _release(self) -> None:
        self._held = 0
        if self._budget is not None:
            self._budget.hold(0)

    def _parse(self, buffer: bytearray) -> WsEvent | None:
        size = len(buffer)
        first, second = buffer[0], buffer[1]
        opcode, fin = first & 0x0F, first & 0x80
        if opcode not in _KNOWN:
            raise WebSocketError(f"WebSocket frame with reserved opcode {opcode:#x}")
        control = opcode >= CLOSE
        if control and not fin:
            raise WebSocketError("fragmented WebSocket control frame")
        length, at = second & 0x7F, 2
        if control and length > MAX_CONTROL_PAYLOAD:
            raise WebSocketError("WebSocket control frame longer than 125 bytes")
        if length == 126:
            if size < 4:
                return None
            length, at = _U16.unpack_from(buffer, 2)[0], 4
            if length < 126:
                raise WebSocketError(f"WebSocket frame of {length} bytes with a 16-bit length")
        elif length == 127:
            if size < 10:
                return None
            length, at = _U64.unpack_from(buffer, 2)[0], 10
            if length < 65536:
                raise WebSocketError(f"WebSocket frame of {length} bytes with a 64-bit length")
            if length >> 63:
                raise WebSocketError("WebSocket frame length with its most significant bit set")
        if first & 0x70:
            raise WebSocketError("WebSocket frame with reserved bits set (no extension was agreed)")
        if second & 0x80 != self._mask_bit:
            raise WebSocketError(
                "unmasked WebSocket frame from a client"
                if self._mask_bit
                else "masked WebSocket frame from a server"
            )
        if self._mask_bit:
            at += 4
            if size < at:  # as wsproto: the whole header, masking key included, comes first
                return None
        if not control:
            self._check_sequence(opcode, length)
        end = at + length
        if size < end:
            if not control:
                self._hold(len(self._parts) + end)
            return None
        if self._mask_bit:
            payload = _mask(buffer[at:end], buffer[at - 4 : at])
        else:
            payload = bytes(buffer[at:end])
        del buffer[:end]
        if control:
            if opcode == CLOSE:
                _check_close(payload)
                if self._state is ConnectionState.LOCAL_CLOSING:
                    self._state = ConnectionState.CLOSED
                else:
                    self._state = ConnectionState.REMOTE_CLOSING
                self._stop()
            return WsEvent(opcode, payload)
        return self._data(opcode, bool(fin), payload)

    def _check_sequence(self, opcode: int, length: int) -> None:
        """Refuse a data frame out of place, or one that makes its message too big."""
        if opcode == CONTINUATION:
            if not self._opcode:
                raise WebSocketError("WebSocket continuation frame with no message to continue")
            if self._fragments >= MAX_FRAGMENTS:
                raise MessageTooBigError(f"WebSocket message in more than {MAX_FRAGMENTS} frames")
        elif self._opcode:
            raise WebSocketError("WebSocket message started before the previous one ended")
        if len(self._parts) + length > self._max:
            raise MessageTooBigError(
                f"WebSocket message of over {self._max} bytes (frame of {length})"
            )

    def _data(self, opcode: int, fin: bool, payload: bytes) -> WsEvent:
        if opcode != CONTINUATION:
            if fin:
                if opcode == TEXT:
                    _check_utf8(payload)
                if self._held:
                    self._release()
                return WsEvent(opcode, payload)
            self._opcode = opcode
            if opcode == TEXT:
                self._text = codecs.getincrementaldecoder("utf-8")()
        self._fragments += 1
        if self._text is not None:
            try:
                self._text.decode(payload, fin)
            except UnicodeDecodeError:
                raise WebSocketError(
                    "WebSocket text message that is not UTF-8", INVALID_PAYLOAD
                ) from None
        self._parts += payload
        if not fin:
            self._hold(len(self._parts))
            return FRAGMENT
        message = WsEvent(self._opcode, bytes(self._parts))
        self._opcode = self._fragments = 0
        self._parts = bytearray()
        self._text = None
        if self._held:
            self._release()
        return message
