"""The WebSocket upgrade (RFC 6455 section 4) on h11: what a server takes, what a client takes.

The requests of the real FISCO SDKs' WebSocket libraries (boost beast in the
C++ SDK, Java-WebSocket in the Java SDK) must be accepted as they are,
including an offer of permessage-deflate, which is declined by answering
without it.
"""

from __future__ import annotations

import pytest

from amop_trio._errors import WireError
from amop_trio._wire import ws_upgrade as up

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

BEAST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:20200\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n"
    b"User-Agent: Boost.Beast/277\r\n\r\n"
)
JAVA_WEBSOCKET = (
    b"GET /websocket HTTP/1.1\r\nConnection: Upgrade\r\nHost: 127.0.0.1:20200\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
)
BROWSER = (
    b"GET /chat HTTP/1.1\r\nHost: node.example\r\nConnection: keep-alive, Upgrade\r\n"
    b"Upgrade: WebSocket\r\nSec-WebSocket-Key: " + KEY + b"\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
    b"Origin: http://node.example\r\n\r\n"
)


def request(**overrides: bytes | None) -> bytes:
    """A good upgrade request with headers replaced (or, with None, left out)."""
    headers: dict[bytes, bytes | None] = {
        b"Host": b"x",
        b"Upgrade": b"websocket",
        b"Connection": b"Upgrade",
        b"Sec-WebSocket-Key": KEY,
        b"Sec-WebSocket-Version": b"13",
    }
    first = overrides.pop("first", None) or b"GET / HTTP/1.1"
    for name, value in overrides.items():
        headers[name.replace("_", "-").encode()] = value
    lines = [first] + [name + b": " + value for name, value in headers.items() if value is not None]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def serve(data: bytes, *, chunk: int | None = None) -> tuple[bytes, bytes]:
    server = up.ServerUpgrade()
    chunk = chunk or len(data)
    for at in range(0, len(data), chunk):
        accepted = server.receive_data(data[at : at + chunk])
        if accepted is not None:  # the bytes not fed yet would be read after the upgrade
            answer, rest = accepted
            return answer, rest + data[at + chunk :]
    raise AssertionError("the request never completed")


def refused(data: bytes) -> up.UpgradeRefused:
    with pytest.raises(up.UpgradeRefused) as caught:
        serve(data)
    return caught.value


def test_accept_key_is_the_rfc_6455_example() -> None:
    assert up.accept_key(KEY) == ACCEPT


@pytest.mark.parametrize(
    "sdk_request", [BEAST, JAVA_WEBSOCKET, BROWSER], ids=["beast", "java", "browser"]
)
def test_real_clients_requests_are_accepted_without_extensions(sdk_request: bytes) -> None:
    for chunk in (None, 1, 7):
        answer, rest = serve(sdk_request + b"\x82\x80frame", chunk=chunk)
        assert rest.endswith(b"frame")  # whatever came after the head is kept
        head = answer.lower()
        assert head.startswith(b"http/1.1 101 ")
        assert b"sec-websocket-accept: " + ACCEPT.lower() in head
        assert b"upgrade: websocket" in head
        assert b"connection: upgrade" in head
        assert b"sec-websocket-extensions" not in head
        assert b"sec-websocket-protocol" not in head


def test_client_and_server_agree_and_keep_what_follows_each_head() -> None:
    client = up.ClientUpgrade("127.0.0.1:20200", "/")
    answer, rest = serve(client.request + b"first frame")
    assert rest == b"first frame"
    assert client.receive_data(answer[:10]) is None
    assert client.receive_data(answer[10:] + b"server frame") == b"server frame"


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (request(first=b"POST / HTTP/1.1"), 400, "not a WebSocket upgrade"),
        (request(first=b"GET / HTTP/1.0"), 400, "HTTP/1.0"),
        (request(Host=None), 400, "Host"),
        (request(Connection=None), 400, "Connection"),
        (request(Connection=b"keep-alive"), 400, "Connection"),
        (request(Connection=b"upgrades"), 400, "Connection"),
        (request(Upgrade=None), 400, "Upgrade"),
        (request(Upgrade=b"websocketx"), 400, "Upgrade"),
        (request(Upgrade=b"h2c"), 400, "Upgrade"),
        (request(Sec_WebSocket_Version=None), 400, "version"),
        (request(Sec_WebSocket_Version=b"8"), 426, "version"),
        (request(Sec_WebSocket_Key=None), 400, "key"),
        (request(Sec_WebSocket_Key=b"not base64!"), 400, "key"),
        (request(Sec_WebSocket_Key=b"c2hvcnQ="), 400, "key"),
        (request(Content_Length=b"5") + b"hello", 400, "body"),
        (b"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400, "malformed"),
        (b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * up.MAX_HEAD_SIZE, 431, "malformed"),
    ],
)
def test_server_refusals(data: bytes, status: int, message: str) -> None:
    error = refused(data)
    assert isinstance(error, WireError)
    assert message.lower() in str(error).lower()
    assert error.answer.startswith(b"HTTP/1.1 %d " % status)
    assert b"content-length: 0" in error.answer.lower()
    if status == 426 or "version" in message:
        assert b"sec-websocket-version: 13" in error.answer.lower()


def test_upgrade_tokens_are_matched_as_tokens_in_any_case() -> None:
    for connection in (b"UPGRADE", b"keep-alive, Upgrade", b"upgrade ,close"):
        serve(request(Connection=connection))
    serve(request(Upgrade=b"WebSocket"))
    serve(request(Upgrade=b"h2c, websocket"))


def answer(**overrides: bytes | None) -> tuple[bytes, dict[bytes, bytes | None]]:
    headers = {
        b"Upgrade": b"websocket",
        b"Connection": b"Upgrade",
        b"Sec-WebSocket-Accept": None,
    }
    first = overrides.pop("first", None) or b"HTTP/1.1 101 Switching Protocols"
    for name, value in overrides.items():
        headers[name.replace("_", "-").encode()] = value
    return first, headers


def client_verdict(first: bytes, headers: dict[bytes, bytes | None], extra: bytes = b"") -> bytes:
    client = up.ClientUpgrade("x", "/")
    key = client.request.split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0]
    headers = {b"Sec-WebSocket-Accept": up.accept_key(key), **headers}
    lines = [first] + [k + b": " + v for k, v in headers.items() if v is not None]
    result = client.receive_data(b"\r\n".join(lines) + b"\r\n\r\n" + extra)
    assert result is not None
    return result


def test_client_accepts_a_proper_answer() -> None:
    first, headers = answer()
    del headers[b"Sec-WebSocket-Accept"]
    assert client_verdict(first, headers, b"\x82\x00") == b"\x82\x00"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"first": b"HTTP/1.1 400 Bad Request", "Content_Length": b"0"}, "refused: 400"),
        ({"first": b"HTTP/1.1 200 OK", "Content_Length": b"0"}, "refused: 200"),
        ({"Upgrade": None}, "Upgrade"),
        ({"Upgrade": b"h2c"}, "Upgrade"),
        ({"Connection": None}, "Connection"),
        ({"Connection": b"close"}, "Connection"),
        ({"Sec_WebSocket_Accept": b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}, "key"),
        ({"Sec_WebSocket_Extensions": b"permessage-deflate"}, "sec-websocket-extensions"),
        ({"Sec_WebSocket_Protocol": b"chat"}, "sec-websocket-protocol"),
    ],
)
def test_client_refusals(overrides: dict[str, bytes | None], message: str) -> None:
    first, headers = answer(**overrides)
    if headers.get(b"Sec-WebSocket-Accept") is None:
        headers.pop(b"Sec-WebSocket-Accept", None)
    with pytest.raises(WireError, match=message):
        client_verdict(first, headers)


def test_client_refuses_malformed_and_endless_answers() -> None:
    with pytest.raises(WireError, match="malformed"):
        up.ClientUpgrade("x", "/").receive_data(b"HTTP/1.1 101\r\nbroken line\r\n\r\n")
    client = up.ClientUpgrade("x", "/")
    endless = b"HTTP/1.1 101 Switching Protocols\r\nX: " + b"a" * up.MAX_HEAD_SIZE
    with pytest.raises(WireError, match="malformed"):
        client.receive_data(endless)


@pytest.mark.parametrize(("host", "target"), [("x", "/a b"), ("x", "/\u00e9"), ("a\r\nb", "/")])
def test_client_refuses_what_cannot_stand_in_a_request(host: str, target: str) -> None:
    with pytest.raises(ValueError, match="upgrade"):
        up.ClientUpgrade(host, target)
