"""The WebSocket opening handshake (RFC 6455 section 4), sans-I/O, with h11 for the HTTP.

h11 parses and writes the HTTP/1.1 heads, so a malformed head (bad lines,
folding, conflicting lengths, a head over ``MAX_HEAD_SIZE``) is refused by
a parser built for that; this module checks what makes a head a WebSocket
upgrade. It runs once per connection, off the hot path.

A server (``ServerUpgrade``) takes a GET over HTTP/1.1 with ``Host``, a
``Connection`` header listing ``upgrade``, an ``Upgrade`` header listing
``websocket``, ``Sec-WebSocket-Version: 13`` and a key of 16 bytes in
base64, and no body. Any other request gets 400, or 426 for another
WebSocket version, as ``UpgradeRefused.answer``. Offered extensions and
subprotocols are declined by leaving them out of the answer, as RFC 6455
allows, so clients that offer permessage-deflate (Java-WebSocket, browsers)
connect without it.

A client (``ClientUpgrade``) offers neither, so it refuses an answer that
names an extension or a subprotocol; it also wants 101, ``Upgrade:
websocket``, ``Connection: upgrade`` and the accept key of its own key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence

import h11

from .._errors import WireError

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Largest HTTP upgrade head accepted, request or answer.
MAX_HEAD_SIZE = 16384
#: The only WebSocket version there is.
VERSION = b"13"

_Headers = Sequence[tuple[bytes, bytes]]


class UpgradeRefused(WireError):
    """A request that is not a WebSocket upgrade this server takes.

    ``answer`` is the HTTP response to send before closing the connection.
    """

    def __init__(self, message: str, answer: bytes) -> None:
        super().__init__(message)
        self.answer = answer


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` answering ``Sec-WebSocket-Key`` ``key``."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def _values(headers: _Headers, name: bytes) -> list[bytes]:
    """Every value of header ``name`` (h11 gives names in lower case)."""
    return [value for key, value in headers if key == name]


def _tokens(headers: _Headers, name: bytes) -> list[bytes]:
    """The comma-separated tokens of every ``name`` header, stripped and in lower case."""
    return [
        token.strip().lower()
        for value in _values(headers, name)
        for token in value.split(b",")
        if token.strip()
    ]


def _key_of(headers: _Headers) -> bytes | None:
    """The request's ``Sec-WebSocket-Key`` if it is one key of 16 bytes in base64."""
    keys = _values(headers, b"sec-websocket-key")
    if len(keys) != 1:
        return None
    try:
        nonce = base64.b64decode(keys[0].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return keys[0].strip() if len(nonce) == 16 else None


class ServerUpgrade:
    """A server's side of the upgrade: feed the request, get the 101 answer or a refusal."""

    def __init__(self) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
        self._key: bytes | None = None

    def receive_data(self, data: bytes) -> tuple[bytes, bytes] | None:
        """(the 101 answer, the bytes after the request) once it is whole; None until then.

        ``UpgradeRefused`` if the request is not an upgrade this server takes.
        """
        if not data:
            raise ValueError("end of stream: say so by not calling receive_data")
        self._h11.receive_data(data)
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise self._refuse(
                    f"malformed HTTP upgrade request: {exc}", exc.error_status_hint
                ) from None
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Request):
                self._key = self._check(event)
            elif event is h11.PAUSED and self._key is not None:
                return self._accept(self._key), self._h11.trailing_data[0]
            elif isinstance(event, h11.ConnectionClosed):  # pragma: no cover - data is never b""
                return None

    def _check(self, request: h11.Request) -> bytes:
        """The request's key, if it asks for a WebSocket this server takes."""
        headers = request.headers
        what = f"{request.method.decode('ascii', 'replace')} {request.target[:60]!r}"
        if request.method != b"GET":
            raise self._refuse(f"not a WebSocket upgrade request: {what}")
        if request.http_version != b"1.1":
            raise self._refuse(f"WebSocket upgrade over HTTP/{request.http_version.decode()}")
        if not _values(headers, b"host"):
            raise self._refuse("WebSocket upgrade request without Host")
        if _values(headers, b"content-length") or _values(headers, b"transfer-encoding"):
            raise self._refuse("WebSocket upgrade request with a body")
        if b"upgrade" not in _tokens(headers, b"connection"):
            raise self._refuse(f"not a WebSocket upgrade request (no Connection: Upgrade): {what}")
        if b"websocket" not in _tokens(headers, b"upgrade"):
            raise self._refuse(f"not a WebSocket upgrade request (no Upgrade: websocket): {what}")
        versions = [value.strip() for value in _values(headers, b"sec-websocket-version")]
        if versions != [VERSION]:
            raise self._refuse(
                f"WebSocket version {b', '.join(versions).decode('ascii', 'replace')!r}: "
                "this server speaks version 13 only",
                426 if versions else 400,
                [(b"Sec-WebSocket-Version", VERSION)],
            )
        key = _key_of(headers)
        if key is None:
            raise self._refuse("WebSocket upgrade request without a key of 16 bytes in base64")
        return key

    def _accept(self, key: bytes) -> bytes:
        answer = h11.InformationalResponse(
            status_code=101,
            reason=b"Switching Protocols",
            headers=[
                (b"Upgrade", b"websocket"),
                (b"Connection", b"Upgrade"),
                (b"Sec-WebSocket-Accept", accept_key(key)),
            ],
        )
        return self._h11.send(answer) or b""

    def _refuse(
        self, message: str, status: int = 400, headers: list[tuple[bytes, bytes]] | None = None
    ) -> UpgradeRefused:
        response = h11.Response(
            status_code=status,
            reason=b"Upgrade Required" if status == 426 else b"Bad Request",
            headers=[*(headers or []), (b"Content-Length", b"0"), (b"Connection", b"close")],
        )
        try:
            answer = (self._h11.send(response) or b"") + (self._h11.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:  # pragma: no cover - h11 lets a server refuse in any state
            answer = b""
        return UpgradeRefused(message, answer)


class ClientUpgrade:
    """A client's side of the upgrade: ``request`` to send, then feed the answer."""

    def __init__(self, host: str, target: str) -> None:
        """``ValueError`` if ``host`` or ``target`` cannot stand in an HTTP request."""
        self._key = base64.b64encode(os.urandom(16))
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_SIZE)
        try:
            request = h11.Request(
                method=b"GET",
                target=target.encode("ascii"),
                headers=[
                    (b"Host", host.encode("idna")),
                    (b"Upgrade", b"websocket"),
                    (b"Connection", b"Upgrade"),
                    (b"Sec-WebSocket-Key", self._key),
                    (b"Sec-WebSocket-Version", VERSION),
                ],
            )
        except (UnicodeError, h11.LocalProtocolError) as exc:
            raise ValueError(f"cannot ask {host!r} for {target!r} in an upgrade: {exc}") from None
        #: The upgrade request, to send first.
        end = h11.EndOfMessage()
        self.request = (self._h11.send(request) or b"") + (self._h11.send(end) or b"")

    def receive_data(self, data: bytes) -> bytes | None:
        """The bytes after the answer once it accepted the upgrade; None until it is whole.

        ``WireError`` says why an answer does not accept it.
        """
        if not data:
            raise ValueError("end of stream: say so by not calling receive_data")
        self._h11.receive_data(data)
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise WireError(f"malformed answer to the WebSocket upgrade: {exc}") from None
        if event is h11.NEED_DATA:
            return None
        if not isinstance(event, h11.InformationalResponse | h11.Response):  # pragma: no cover
            raise WireError(f"unexpected answer to the WebSocket upgrade: {event!r}")
        if event.status_code != 101:
            reason = event.reason.decode("ascii", "replace")
            raise WireError(f"the WebSocket upgrade was refused: {event.status_code} {reason}")
        self._check(event.headers)
        return self._h11.trailing_data[0]

    def _check(self, headers: _Headers) -> None:
        if b"websocket" not in _tokens(headers, b"upgrade"):
            raise WireError("the answer to the WebSocket upgrade lacks Upgrade: websocket")
        if b"upgrade" not in _tokens(headers, b"connection"):
            raise WireError("the answer to the WebSocket upgrade lacks Connection: Upgrade")
        if _values(headers, b"sec-websocket-accept") != [accept_key(self._key)]:
            raise WireError("the answer to the WebSocket upgrade does not prove it saw our key")
        for name in (b"sec-websocket-extensions", b"sec-websocket-protocol"):
            if _values(headers, name):
                raise WireError(
                    f"the answer to the WebSocket upgrade names {name.decode()}, "
                    "which was not asked for"
                )
