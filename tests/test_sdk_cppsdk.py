"""The 3.x SDKs (cpp-sdk, and the C SDK, Java SDK 3.x and python-sdk 3.x built on it)
against ``amop node`` processes: handshake, topics and AMOP over wss.

Replayed byte for byte from FISCO-BCOS/FISCO-BCOS, branch master (commit 7608ab86),
``bcos-sdk/bcos-cpp-sdk`` (the C SDK 3.7.0 builds the same code, commit 323e5a0d):

* ``bcos-boostssl/bcos-boostssl/context/ContextBuilder.cpp:89-117``: TLS 1.2 (``tlsv12``),
  the SDK certificate, the node's chain verified against ca.crt, OpenSSL's default groups
  (``cpp_sdk_tls_context``).
  WebSocket upgrade to ``/`` (``bcos-boostssl/websocket/WsConnector.cpp:135``).
* ``ws/Service.cpp:211-293`` startHandshake: HANDSHAKE 0x100, UUID4 seq, payload from
  ``bcos-framework/rpc/HandshakeRequest.h:41-50`` (FastWriter: sorted keys, newline);
  ``ws/HandshakeResponse.cpp:30-96`` reads the answer (``cpp_handshake_response``).
* ``SdkFactory.cpp:199-206`` then ``amop/AMOP.cpp:189-202``: AMOP_SUBTOPIC 0x110 with
  ``amop/TopicManager.cpp:63-76`` (a std::set, FastWriter), after the handshake and on
  every (un)subscribe; never answered.
* ``amop/AMOP.cpp``: publish 0x111 (116-154, matched by seq, status != 0 is an error),
  broadcast 0x112 (157-177, no callback), the subscriber's answer 0x113 (104-113:
  the push's seq, the raw response bytes); ``amop/AMOPRequest.cpp`` the body.
* The node's side, ``bcos-rpc/Rpc.cpp:182-264`` (handshake answer),
  ``bcos-rpc/amop/AMOPClient.cpp`` (no answer to 0x110 or 0x112),
  ``bcos-rpc/jsonrpc/JsonRpcImpl_2_0.cpp:77-116`` and ``JsonRpcInterface.cpp:122-329``
  (JSON-RPC answered in a message of type 0), ``bcos-boostssl/websocket/WsService.cpp:550-586``
  (unknown types ignored).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_websocket

from .sdk_wire import NodeProcess, uuid4_seq
from .spec_bytes import (
    AMOP_BROADCAST,
    AMOP_REQUEST,
    AMOP_RESPONSE,
    AMOP_SUBTOPIC,
    EVENT_SUBSCRIBE,
    HANDSHAKE,
    RPC_REQUEST,
    RawFrame,
    pack_body,
    pack_frame,
    parse_body,
    parse_frame,
)

HANDSHAKE_PAYLOAD = b'{"maxVersion":2,"minVersion":0,"moduleID":2}\n'
# FB3 Rpc::onRecvHandshakeRequest (FastWriter) with no group, as an amop_trio node has.
HANDSHAKE_ANSWER = b'{"groupBlockNumber":[],"groupInfoList":[],"protocolVersion":2}\n'
TIMEOUT = 10


def cpp_sdk_tls_context(sdk: Path) -> ssl.SSLContext:
    """The 3.x SDK's TLS, in this one place: ``ContextBuilder::buildSslContext`` makes a
    TLS 1.2 context (``tlsv12``) that keeps OpenSSL's default groups (no secp256k1),
    verifies the node's chain against ca.crt and presents the SDK's certificate.

    ``sdk`` holds 3.x SDK certificates (RSA, as FISCO 3.x makes them); ``amop certs``
    writes them to ``sdk3/``, and the node answers such a client with its 3.x one.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.load_verify_locations(cafile=sdk / "ca.crt")
    context.load_cert_chain(sdk / "sdk.crt", sdk / "sdk.key")
    return context


def cpp_handshake_response(payload: bytes) -> int:
    """``HandshakeResponse::decode``: the protocol version, or AssertionError where the
    cpp-sdk drops the session (each groupInfoList entry must be a full group)."""
    root = json.loads(payload)
    assert "protocolVersion" in root, root
    version = root["protocolVersion"]
    assert isinstance(version, int), root
    groups = root.get("groupInfoList")
    if isinstance(groups, list):
        for group in groups:  # JsonGroupInfoCodec::deserialize
            for key in ("chainID", "groupID", "iniConfig", "nodeList"):
                assert key in group, f"the cpp-sdk drops the session: {group}"
    for entry in root.get("groupBlockNumber", []):
        assert all(isinstance(n, int) for n in entry.values()), root
    return version


class CppSdk:
    """One cpp-sdk session: frames not wanted yet wait in a backlog."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.backlog: list[RawFrame] = []

    async def send(self, ptype: int, seq: bytes, payload: bytes = b"") -> None:
        # WsMessage: version 0, status 0, ext 0 from the SDK.
        await self.ws.send_message(pack_frame(ptype, seq, payload))

    async def until(
        self, predicate: Callable[[RawFrame], bool], timeout: float = TIMEOUT
    ) -> RawFrame:
        for i, frame in enumerate(self.backlog):
            if predicate(frame):
                return self.backlog.pop(i)
        with trio.fail_after(timeout):
            while True:
                message = await self.ws.get_message()
                assert isinstance(message, bytes), message
                parsed = parse_frame(message)
                assert parsed is not None, message
                if predicate(parsed):
                    return parsed
                self.backlog.append(parsed)

    async def request(self, ptype: int, payload: bytes) -> RawFrame:
        """Send and wait for the answer: WsSession::onMessage matches seq alone."""
        seq = uuid4_seq()
        await self.send(ptype, seq, payload)
        return await self.until(lambda f: f.seq == seq)

    async def subscribe(self, topics: list[str]) -> bytes:
        """TopicManager::toJson (std::set, FastWriter); the seq, never answered."""
        seq = uuid4_seq()
        payload = json.dumps({"topics": sorted(set(topics))}, separators=(",", ":")) + "\n"
        await self.send(AMOP_SUBTOPIC, seq, payload.encode())
        return seq


@asynccontextmanager
async def cpp_sdk(port: int, sdk: Path, topics: list[str]) -> AsyncIterator[CppSdk]:
    """Connect, handshake, then send the topic set, as the cpp-sdk does."""
    url = f"wss://127.0.0.1:{port}/"
    async with trio_websocket.open_websocket_url(url, ssl_context=cpp_sdk_tls_context(sdk)) as ws:
        stream: Any = ws._stream  # the node chose its 3.x certificate for OpenSSL's groups
        assert stream.version() == "TLSv1.2"
        assert "RSA" in stream.cipher()[0], stream.cipher()
        conn = CppSdk(ws)
        answer = await conn.request(HANDSHAKE, HANDSHAKE_PAYLOAD)
        assert (answer.type, answer.status) == (HANDSHAKE, 0), answer
        assert answer.payload == HANDSHAKE_ANSWER
        assert cpp_handshake_response(answer.payload) >= 1  # 0: unsolicited frames dropped
        first = await conn.subscribe(topics)
        yield conn
        assert not [f for f in conn.backlog if f.seq == first], "a 0x110 was answered"
    await trio.aclose_forcefully(ws._stream)


@pytest.fixture(scope="module")
def chain(network_certs: Path) -> Path:
    """What ``amop certs -n 4`` makes (made once for the session): a chain CA, node
    certificates, the SDKs'."""
    return network_certs


async def test_cpp_sdk_handshake_topics_and_amop(
    chain: Path, nodes: tuple[NodeProcess, ...]
) -> None:
    node0, node1 = nodes
    sdk = chain / "sdk3"
    async with (
        cpp_sdk(node1.port, sdk, ["cpp-topic"]) as sub,
        cpp_sdk(node0.port, sdk, []) as pub,
    ):
        # publish: the subscriber's raw answer comes back under the publisher's seq.
        async def answer_one() -> None:
            push = await sub.until(lambda f: f.type == AMOP_REQUEST, timeout=20)
            assert parse_body(push.payload) == (0, "cpp-topic", b"ping")
            await sub.send(AMOP_RESPONSE, push.seq, b"pong")  # AMOP::sendResponse

        with trio.fail_after(15):  # across two nodes: until the subscription spread
            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_one)
                body = pack_body("cpp-topic", b"ping")
                while (answer := await pub.request(AMOP_REQUEST, body)).status == 3001:
                    await trio.sleep(0.05)
        assert (answer.status, answer.payload) == (0, b"pong"), answer

        # broadcast: delivered, and the publisher hears nothing (no callback; an
        # answer would be logged "maybe the amop request callback timeout").
        seq = uuid4_seq()
        await pub.send(AMOP_BROADCAST, seq, pack_body("cpp-topic", b"all"))
        push = await sub.until(lambda f: f.type == AMOP_BROADCAST)
        assert parse_body(push.payload) == (0, "cpp-topic", b"all")

        # A topic nobody subscribes to: status 3001 and a text (AMOPImpl.cpp:308-330).
        answer = await pub.request(AMOP_REQUEST, pack_body("nobody", b"?"))
        assert answer.status == 3001, answer
        answer.payload.decode("utf-8")

        # JSON-RPC (Java SDK 3.x's getGroupInfo): an error in a message of type 0.
        rpc = b'{"jsonrpc":"2.0","method":"getGroupInfo","params":["group0"],"id":1}'
        answer = await pub.request(RPC_REQUEST, rpc)
        assert (answer.type, answer.status, answer.version) == (0, 0, 0), answer
        assert answer.payload == (
            b'{"error":{"code":-32601,"message":"The method does not exist/is not available. '
            b'(an amop_trio node serves AMOP only)"},"id":1,"jsonrpc":"2.0"}'
        )

        # Types the node does not serve, and a re-sent topic set: no answer at all.
        quiet = [uuid4_seq() for _ in range(2)]
        await pub.send(EVENT_SUBSCRIBE, quiet[0], b"{}")
        await pub.send(0x1010, quiet[1], b"{}")  # amop_trio's status query: not asked for
        quiet.append(await sub.subscribe(["cpp-topic", "other"]))
        for conn in (sub, pub):  # a round trip after them all
            answer = await conn.request(RPC_REQUEST, rpc)
            assert answer.type == 0
        assert [f for f in pub.backlog + sub.backlog if f.seq in quiet or f.seq == seq] == []
