"""The WebSocket protocol (RFC 6455) as AMOP uses it, sans-I/O.

AMOP sends one binary message per frame, with no extensions and no
subprotocols, so this is a small, strict subset: the HTTP/1.1 upgrade, and
frames of the five opcodes. Being small is the point: a general WebSocket
library spends more time per message on events and generators than the whole
AMOP hop is worth. Anything outside the subset is a ``WireError``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from typing import NamedTuple

from .._errors import FrameTooLargeError, WireError

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Largest HTTP upgrade head accepted, request or answer.
MAX_HEAD_SIZE = 16384

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_CONTROL = frozenset({CLOSE, PING, PONG})
_KNOWN = frozenset({CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG})
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


class WsEvent(NamedTuple):
    """A whole message (BINARY or TEXT) or a control frame (CLOSE, PING, PONG)."""

    opcode: int
    payload: bytes


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` answering ``Sec-WebSocket-Key`` ``key``."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def client_request(host: str, path: str) -> tuple[bytes, bytes]:
    """The upgrade request, and the key the answer must prove it saw."""
    key = base64.b64encode(os.urandom(16))
    head = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    return head.encode("ascii"), key


def _parse_head(head: bytes, what: str) -> tuple[str, dict[str, str]]:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
        raise WireError(f"{what} is not text") from None
    first, *lines = text.split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise WireError(f"{what}: malformed header line {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    return first, headers


def split_head(buffer: bytes, what: str) -> tuple[bytes, bytes] | None:
    """(head, the bytes after it) once ``buffer`` holds a whole HTTP head, else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD_SIZE:
            raise WireError(f"{what} is longer than {MAX_HEAD_SIZE} bytes")
        return None
    return buffer[:end], buffer[end + 4 :]


def check_answer(head: bytes, key: bytes) -> None:
    """Raise ``WireError`` unless ``head`` accepts the upgrade requested with ``key``."""
    first, headers = _parse_head(head, "upgrade answer")
    parts = first.split(" ", 2)
    if len(parts) < 2 or parts[1] != "101":
        raise WireError(f"the upgrade was refused: {first[:80]!r}")
    if headers.get("sec-websocket-accept", "").encode() != accept_key(key):
        raise WireError("the upgrade answer does not prove it saw our key")


def answer_request(head: bytes) -> bytes:
    """The 101 answer to an upgrade request; ``WireError`` if it is not one."""
    first, headers = _parse_head(head, "upgrade request")
    if not first.startswith("GET ") or not first.endswith(" HTTP/1.1"):
        raise WireError(f"not a WebSocket upgrade request: {first[:80]!r}")
    key = headers.get("sec-websocket-key", "")
    if (
        "websocket" not in headers.get("upgrade", "").lower()
        or headers.get("sec-websocket-version") != "13"
        or len(key) != 24
    ):
        raise WireError("not a WebSocket version 13 upgrade request")
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key.encode()).decode()}\r\n\r\n"
    ).encode("ascii")


def _mask(data: bytes, key: bytes) -> bytes:
    size = len(data)
    if not size:
        return b""
    pad = int.from_bytes((key * (size // 4 + 1))[:size], "big")
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


def encode_close(code: int, reason: str, *, mask: bool) -> bytes:
    return encode_frame(CLOSE, _U16.pack(code) + reason.encode("utf-8")[:123], mask=mask)


def close_code(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a CLOSE payload; 1005 when it carries none."""
    if len(payload) < 2:
        return 1005, ""
    return _U16.unpack_from(payload)[0], payload[2:].decode("utf-8", "replace")


class FrameDecoder:
    """Turns received bytes into whole messages and control frames.

    ``masked`` says whether the peer must mask (a server decoding a client).
    A frame or message over ``max_message`` raises as soon as its header says
    so, before its payload is buffered.
    """

    def __init__(self, *, masked: bool, max_message: int) -> None:
        self._masked = masked
        self._max = max_message
        self._buffer = bytearray()
        self._parts: list[bytes] = []
        self._parts_size = 0
        self._opcode = 0

    def feed(self, data: bytes | bytearray) -> None:
        self._buffer += data

    def next_event(self) -> WsEvent | None:
        """The next message or control frame, or None until more bytes arrive."""
        while True:
            buffer = self._buffer
            if len(buffer) < 2:
                return None
            first, second = buffer[0], buffer[1]
            opcode, fin = first & 0x0F, first & 0x80
            if first & 0x70:
                raise WireError("WebSocket frame with reserved bits set (no extensions here)")
            if opcode not in _KNOWN:
                raise WireError(f"WebSocket frame with unknown opcode {opcode:#x}")
            if bool(second & 0x80) != self._masked:
                raise WireError(
                    "unmasked WebSocket frame from a client"
                    if self._masked
                    else "masked WebSocket frame from a server"
                )
            size, at = second & 0x7F, 2
            if size == 126:
                if len(buffer) < 4:
                    return None
                size, at = _U16.unpack_from(buffer, 2)[0], 4
            elif size == 127:
                if len(buffer) < 10:
                    return None
                size, at = _U64.unpack_from(buffer, 2)[0], 10
            if opcode in _CONTROL and (size > 125 or not fin):
                raise WireError("WebSocket control frame too long or fragmented")
            if self._parts_size + size > self._max:
                raise FrameTooLargeError(
                    f"WebSocket message of over {self._max} bytes (frame of {size})"
                )
            key = b""
            if self._masked:
                key = bytes(buffer[at : at + 4])
                at += 4
            end = at + size
            if len(buffer) < end:
                return None
            payload = bytes(buffer[at:end])
            del buffer[:end]
            if key:
                payload = _mask(payload, key)
            if opcode in _CONTROL:
                return WsEvent(opcode, payload)
            if opcode == CONTINUATION:
                if not self._parts:
                    raise WireError("WebSocket continuation frame with no message to continue")
            elif self._parts:
                raise WireError("WebSocket message started before the previous one ended")
            else:
                self._opcode = opcode
            if fin and not self._parts:
                return WsEvent(opcode, payload)
            self._parts.append(payload)
            self._parts_size += size
            if fin:
                message = b"".join(self._parts)
                self._parts.clear()
                self._parts_size = 0
                return WsEvent(self._opcode, message)
