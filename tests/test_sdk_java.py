"""Java SDK 2.x and web3sdk against ``amop node`` processes: connect sequences and AMOP.

Java SDK 2.x: FISCO-BCOS/java-sdk, branch master-2.0 (commit b7bdd97f), paths under
``sdk-core/src/main/java/org/fisco/bcos/sdk/`` unless ``sdk-amop/``/``sdk-service/``:

* ``channel/ChannelMsgHandler.java:110-119`` onConnect, then 170-257
  ``queryNodeVersion``: getClientVersion FIRST (``channel/model/ChannelRequest.java:21-34``,
  Jackson in field order, static id from 0), its "Supported Version" parsed by
  ``channel/model/EnumNodeVersion.java:79-107``; 2.x with minor >= 1 (110-114) goes on to
  ``queryChannelProtocolVersion`` (259-337): 0x14 ``channel/model/ChannelHandshake.java``
  (maximumSupport first), ``protocol`` in 1..3.
* ``channel/ChannelImp.java:100-141`` and 373-434: heartbeat every 2 s,
  ``{"heartBeat":0}`` on protocol >= 2 (``channel/model/HeartBeatParser.java:25-45``),
  its answer read by Jackson as ``{"heartBeat":int}``.
* ``sdk-service/.../GroupManagerServiceImpl.java:92-110`` and ``client/ClientImpl.java``:
  getGroupList (687-692), getBlockNumber of each group (206-211, a hex string),
  getClientVersion again, with ``client/protocol/request/JsonRpcRequest.java``.
* ``sdk-amop/.../AmopImp.java:122-174`` unicast 0x30 (UUID4 seq, 5 s) and multicast
  0x35 (no callback); ``AmopMsgHandler.java`` answers each 0x30 push with 0x31, no
  0x35 push, and acknowledges 0x37 with a 0x37 of empty body under its seq (208-215).
* ``sdk-amop/.../topic/TopicManager.java:127-167``: the 0x32 list, ``_block_notify_1``
  and the topics (a HashSet).

web3sdk: FISCO-BCOS/web3sdk, branch master (commit 2189feb9),
``src/main/java/org/fisco/bcos/channel/``: ``handler/ConnectionCallback.java:88-413``
(getClientVersion with a 5 s timeout, ``fisco/EnumNodeVersion.java:81-114``, the same
0x14, then 0x32 and getBlockNumber), ``client/Service.java:1505-1548`` (heartbeat answers
handled by type: parsed by ``protocol/parser/HeartBeatParser.java``, "1" accepted).

Both read with Netty's ``LengthFieldBasedFrameDecoder`` (``sdk_wire.StreamReader``), match
answers by seq alone, and verify the node's certificate chain against ca.crt.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from .sdk_wire import (
    AMOP_REQUEST,
    AMOP_RESPONSE,
    HANDSHAKE,
    HEARTBEAT,
    MULTICAST,
    RPC,
    SUBSCRIBE,
    VERIFY_REQUEST,
    VERIFY_RESULT,
    ChannelConn,
    Frame,
    NodeProcess,
    StreamReader,
    channel_frame,
    channel_session,
    split_topic_body,
    tls12_secp256k1,
    topic_body,
    uuid4_seq,
)

HANDSHAKE_BODY = b'{"maximumSupport":3,"minimumSupport":1,"clientType":"java-sdk"}'
HANDSHAKE_ANSWER = b'{"nodeVersion":"2.11.0","protocol":3}\n'
HEARTBEAT_ANSWER = b'{"heartBeat":1}\n'


def rpc_request(method: str, params: str, request_id: int) -> bytes:
    """Jackson of ChannelRequest / JsonRpcRequest / web3j Request: jsonrpc, method, params, id."""
    return b'{"jsonrpc":"2.0","method":"%s","params":%s,"id":%d}' % (
        method.encode(),
        params.encode(),
        request_id,
    )


def client_version_answer(request_id: int) -> bytes:
    return (
        b'{"id":%d,"jsonrpc":"2.0","result":{"Build Time":"0",'
        b'"Build Type":"amop_trio/Python/AMOP only","Chain Id":"1",'
        b'"FISCO-BCOS Version":"2.11.0","Git Branch":"amop_trio","Git Commit Hash":"0",'
        b'"Supported Version":"2.11.0"}}\n' % request_id
    )


def class_version(supported: str, *, strip_gm: bool) -> tuple[int, int]:
    """``EnumNodeVersion.getClassVersion``: (major, minor), or ValueError (disconnect)."""
    if strip_gm and supported.endswith("gm"):
        supported = supported[:-2]
    parts = supported.split("-")[0].split(".")
    if len(parts) < 3:
        raise ValueError(f"bad version {supported!r}")
    major, minor, _ = (int(p) for p in parts[:3])
    return major, minor


async def query_node_version(conn: ChannelConn, request_id: int, *, strip_gm: bool) -> int:
    """getClientVersion, then 0x14 when the node is 2.1 or later; the protocol in use."""
    seq = uuid4_seq()
    answer = await conn.request(RPC, seq, rpc_request("getClientVersion", "[]", request_id))
    assert answer.result == 0, answer  # result != 0: disconnect
    assert answer.data == client_version_answer(request_id)
    major, minor = class_version(
        json.loads(answer.data)["result"]["Supported Version"], strip_gm=strip_gm
    )
    if not (major == 2 and minor >= 1):
        return 1
    seq = uuid4_seq()
    answer = await conn.request(HANDSHAKE, seq, HANDSHAKE_BODY)
    assert answer == Frame(HANDSHAKE, seq, 0, HANDSHAKE_ANSWER)
    protocol = json.loads(answer.data)["protocol"]
    assert protocol in (1, 2, 3)  # EnumChannelProtocolVersion.toEnum, else disconnect
    return int(protocol)


async def heartbeat(conn: ChannelConn) -> None:
    """A protocol >= 2 heartbeat; the answer must read as NodeHeartbeat (Jackson)."""
    seq = uuid4_seq()
    answer = await conn.request(HEARTBEAT, seq, b'{"heartBeat":0}')
    assert answer == Frame(HEARTBEAT, seq, 0, HEARTBEAT_ANSWER)
    assert isinstance(json.loads(answer.data)["heartBeat"], int)


async def java_start(conn: ChannelConn, topics: list[str]) -> None:
    """BcosSDK start-up with AMOP, as Java SDK 2.x sends it to one node."""
    assert await query_node_version(conn, 0, strip_gm=True) == 3
    await heartbeat(conn)  # scheduleAtFixedRate(..., 0, 2000 ms): at once
    seq = uuid4_seq()
    answer = await conn.request(RPC, seq, rpc_request("getGroupList", "[]", 0))
    assert answer == Frame(RPC, seq, 0, b'{"id":0,"jsonrpc":"2.0","result":[1]}\n')
    groups = [str(g) for g in json.loads(answer.data)["result"]]  # List<String>
    for i, group in enumerate(groups, start=1):
        seq = uuid4_seq()
        answer = await conn.request(RPC, seq, rpc_request("getBlockNumber", f"[{group}]", i))
        assert answer == Frame(RPC, seq, 0, b'{"id":%d,"jsonrpc":"2.0","result":"0x0"}\n' % i)
        assert int(json.loads(answer.data)["result"], 16) == 0  # Numeric.decodeQuantity
    seq = uuid4_seq()
    request_id = len(groups) + 1
    answer = await conn.request(RPC, seq, rpc_request("getClientVersion", "[]", request_id))
    assert answer == Frame(RPC, seq, 0, client_version_answer(request_id))
    notify = [f"_block_notify_{g}" for g in groups]
    await conn.send(channel_frame(SUBSCRIBE, uuid4_seq(), json.dumps(notify).encode()))
    body = json.dumps([*topics, *notify], separators=(",", ":")).encode()
    await conn.send(channel_frame(SUBSCRIBE, uuid4_seq(), body))
    await heartbeat(conn)  # the node handles a connection's frames in order


@asynccontextmanager
async def java_sdk(port: int, sdk: Path, topics: list[str]) -> AsyncIterator[ChannelConn]:
    """A Java SDK 2.x connection after start-up (the node's chain verified)."""
    async with channel_session(port, tls12_secp256k1(sdk, verify=True), StreamReader()) as conn:
        await java_start(conn, topics)
        yield conn


async def serve_unicasts(conn: ChannelConn, count: int, seen: list[Frame]) -> None:
    """AmopMsgHandler.onAmopMsg: answer each 0x30 push with 0x31 and the callback's bytes."""
    for _ in range(count):
        push = await conn.until(lambda f: f.type == AMOP_REQUEST)
        seen.append(push)
        topic, data = split_topic_body(push.data)
        await conn.send(channel_frame(AMOP_RESPONSE, push.seq, topic_body(topic, b"re:" + data)))


@pytest.fixture(scope="module")
def chain(network_certs: Path) -> Path:
    """What ``amop certs -n 4`` makes (made once for the session): a chain CA, node
    certificates, the SDKs'."""
    return network_certs


async def test_java_sdk_connect_and_amop(chain: Path, nodes: tuple[NodeProcess, ...]) -> None:
    node0, _ = nodes
    topic = b"java-topic"
    async with (
        java_sdk(node0.port, chain / "sdk", [topic.decode()]) as sub,
        java_sdk(node0.port, chain / "sdk", []) as pub,
    ):
        assert sub.backlog == pub.backlog == []  # 0x32 is never answered
        seen: list[Frame] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_unicasts, sub, 1, seen)
            seq = uuid4_seq()
            answer = await pub.request(AMOP_REQUEST, seq, topic_body(topic, b"ping"))
        # AmopResponse: errorCode = result; on 0 the body is a topic body.
        assert answer == Frame(AMOP_RESPONSE, seq, 0, topic_body(topic, b"re:ping"))
        assert split_topic_body(seen[0].data) == (topic, b"ping")

        # Multicast: sent without a callback; the node's 0x31 (FB2: result 0, body
        # echoed) only meets "can not found response callback". No 0x35 is answered.
        seq = uuid4_seq()
        body = topic_body(topic, b"all")
        answer = await pub.request(MULTICAST, seq, body)
        assert answer == Frame(AMOP_RESPONSE, seq, 0, body)
        push = await sub.until(lambda f: f.type == MULTICAST)
        assert split_topic_body(push.data) == (topic, b"all")

        # No subscriber: result 100.
        seq = uuid4_seq()
        answer = await pub.request(AMOP_REQUEST, seq, topic_body(b"nobody", b"?"))
        assert (answer.type, answer.result) == (AMOP_RESPONSE, 100)
        for conn in (sub, pub):
            await heartbeat(conn)
            assert conn.backlog == []


async def test_java_sdk_acknowledges_a_verify_request(
    chain: Path, nodes: tuple[NodeProcess, ...]
) -> None:
    """A private-topic publisher on node0, a subscriber on node1: node0 pushes 0x37 as
    FB2 writes it; Java acknowledges it with 0x37 (same seq, empty body), then reports
    a failed check with 0x38. The node answers neither and keeps the connection."""
    node0, node1 = nodes
    private = "#!$TopicNeedVerify_java-private"
    challenge = f"#!$VerifyChannel_{private}_{uuid4_seq().decode()}"
    async with (
        java_sdk(node0.port, chain / "sdk", [f"#!$PushChannel_{private}"]) as pub,
        java_sdk(node1.port, chain / "sdk", [private, challenge]),  # the subscriber
    ):
        request = await pub.until(lambda f: f.type == VERIFY_REQUEST, timeout=15)
        info = json.loads(request.data)
        assert request.data == (
            b'{"nodeId":"%s","topic":"%s","topicForCert":"%s"}\n'
            % (info["nodeId"].encode(), private.encode(), challenge.encode())
        )
        assert re.fullmatch(r"[0-9a-f]{128}", info["nodeId"]), info
        await pub.send(channel_frame(VERIFY_REQUEST, request.seq))  # responseVerifyRequest
        result = {"checkResult": 1, "nodeId": info["nodeId"], "topic": private}
        seq = uuid4_seq()
        await pub.send(channel_frame(VERIFY_RESULT, seq, json.dumps(result).encode()))
        await heartbeat(pub)
        assert [f for f in pub.backlog if f.seq in (request.seq, seq)] == []


async def w3_start(conn: ChannelConn, topics: list[str], request_id: int) -> None:
    """web3sdk's ConnectionCallback: getClientVersion, 0x14, 0x32, getBlockNumber."""
    assert await query_node_version(conn, request_id, strip_gm=False) == 3
    body = json.dumps([*topics, "_block_notify_1"], separators=(",", ":")).encode()
    await conn.send(channel_frame(SUBSCRIBE, uuid4_seq(), body))
    seq = uuid4_seq()
    answer = await conn.request(RPC, seq, rpc_request("getBlockNumber", "[1]", request_id + 1))
    assert answer == Frame(
        RPC, seq, 0, b'{"id":%d,"jsonrpc":"2.0","result":"0x0"}\n' % (request_id + 1)
    )


@asynccontextmanager
async def web3sdk(
    port: int, sdk: Path, topics: list[str], request_id: int
) -> AsyncIterator[ChannelConn]:
    async with channel_session(port, tls12_secp256k1(sdk, verify=True), StreamReader()) as conn:
        await w3_start(conn, topics, request_id)
        yield conn


async def w3_heartbeat(conn: ChannelConn) -> None:
    """Service.onReceiveHeartbeat: the answer, found by type, must parse to heartBeat 1."""
    await conn.send(channel_frame(HEARTBEAT, uuid4_seq(), b'{"heartBeat":0}'))
    answer = await conn.until(lambda f: f.type == HEARTBEAT)
    assert answer.data == HEARTBEAT_ANSWER
    assert json.loads(answer.data)["heartBeat"] == 1


async def test_web3sdk_connect_and_amop(chain: Path, nodes: tuple[NodeProcess, ...]) -> None:
    node0, node1 = nodes
    topic = b"w3-topic"
    async with (
        web3sdk(node1.port, chain / "sdk", [topic.decode()], 0) as sub,
        web3sdk(node0.port, chain / "sdk", [], 2) as pub,
    ):
        await w3_heartbeat(sub)
        await w3_heartbeat(pub)
        seen: list[Frame] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_unicasts, sub, 1, seen)
            with trio.fail_after(15):  # across two nodes: until the subscription spread
                while True:
                    seq = uuid4_seq()
                    answer = await pub.request(AMOP_REQUEST, seq, topic_body(topic, b"q"))
                    if answer.result != 100:
                        break
                    await trio.sleep(0.05)
        assert answer == Frame(AMOP_RESPONSE, seq, 0, topic_body(topic, b"re:q"))
        seq = uuid4_seq()
        body = topic_body(topic, b"all")
        assert await pub.request(MULTICAST, seq, body) == Frame(AMOP_RESPONSE, seq, 0, body)
        push = await sub.until(lambda f: f.type == MULTICAST)
        assert split_topic_body(push.data) == (topic, b"all")
        await w3_heartbeat(sub)
