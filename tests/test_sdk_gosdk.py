"""go-sdk 1.x against ``amop node`` processes: its connect sequence and its AMOP examples.

Replayed byte for byte from FISCO-BCOS/go-sdk, branch master-FISCO-BCOS-v2
(commit 4b1b05a1), the generation of the go-sdk AMOP examples:

* ``conn/connection.go:157-172`` DialContextChannel: TLS with no verification of
  the node (``InsecureSkipVerify``), the SDK certificate, secp256k1 and P-256.
* ``conn/channel.go:366-391`` DialChannelWithClient, then ``client/go_client.go:60-147``
  DialContext: HANDSHAKE 0x14 (``handshakeChannel``, 661-683, body from
  ``handshakeRequest{1, 3, "Go-SDK"}``, 136-140 and 44-51), the topic list 0x32
  (``sendSubscribedTopics``, 708-722), then getClientVersion 0x12
  (``client/api_handler.go:266-273``, ``conn/connection.go:247-275`` and 360-369:
  ``jsonrpcMessage`` of ``conn/json.go:54-61``, no params, id 1).
* ``go_client.go:92-129``: what Dial requires of the answer (``GoDialError`` below).
* ``channel.go:776-819``: SendAMOPMsg 0x30 and BroadcastAMOPMsg 0x35 wait, forever,
  for a frame under their seq; ``processTopicMessage`` (955-979) answers every 0x30
  and 0x35 push with 0x31 under the push's seq; ``sendHeartbeatMsg`` (792-803)
  sends an empty 0x13 and registers no answer.
* ``channel.go:1149-1170``: the reader decodes one frame per TLS record
  (``sdk_wire.GoReader``).
* ``examples/amop/{sub,unicast_pub,broadcast_pub}``: config ChainID 1, GroupID 1;
  the subscriber sets no response data; go-sdk's CI (``.ci/integration_test.sh:275-289``)
  runs the subscriber on one node (20201) and the publishers on another (20200).
"""

from __future__ import annotations

import json
import random
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
    ChannelConn,
    Frame,
    GoReader,
    NodeProcess,
    StreamReader,
    amop_node,
    channel_frame,
    channel_session,
    split_topic_body,
    tls12_secp256k1,
    topic_body,
    uuid1_seq,
    uuid4_seq,
)

HANDSHAKE_BODY = b'{"minimumSupport":1,"maximumSupport":3,"clientType":"Go-SDK"}'
CLIENT_VERSION_REQUEST = b'{"jsonrpc":"2.0","id":1,"method":"getClientVersion"}'
# What a 2.x node answers (FB2 librpc/Rpc.cpp:410-423, FastWriter: sorted, newline),
# with amop_trio's values; go-sdk parses every one of the seven fields as a string.
CLIENT_VERSION_ANSWER = (
    b'{"id":1,"jsonrpc":"2.0","result":{"Build Time":"0",'
    b'"Build Type":"amop_trio/Python/AMOP only","Chain Id":"1",'
    b'"FISCO-BCOS Version":"2.11.0","Git Branch":"amop_trio","Git Commit Hash":"0",'
    b'"Supported Version":"2.11.0"}}\n'
)
CONFIG_CHAIN_ID = 1  # examples/amop: conf.Config{ChainID: 1, GroupID: 1, IsSMCrypto: false}


class GoDialError(Exception):
    """``client.Dial`` failed, with go-sdk's message."""


def check_client_version(answer: Frame, chain_id: int = CONFIG_CHAIN_ID) -> None:
    """What ``DialContext`` does with the getClientVersion answer (go_client.go:92-129)."""
    if answer.result != 0:  # connection.go: errors.New("response error:" + string(code))
        raise GoDialError("response error:" + chr(answer.result))
    message = json.loads(answer.data)  # json.NewDecoder: a trailing newline is fine
    if message.get("error") is not None:
        raise GoDialError(f"JSON-RPC error {message['error']}")
    result = message.get("result")
    if not result:
        raise GoDialError("no result in JSON-RPC response")
    keys = ("Build Time", "Build Type", "Chain Id", "FISCO-BCOS Version", "Git Branch")
    for key in (*keys, "Git Commit Hash", "Supported Version"):
        if key in result and not isinstance(result[key], str):
            raise GoDialError(f"json: cannot unmarshal into Go struct field {key!r} of type string")
    supported = result.get("Supported Version", "")
    if not supported:
        raise GoDialError("JSON response does not contains the key : Supported Version")
    parts = supported.split(".")
    if len(parts) != 3 or not all(p.lstrip("+-").isdigit() for p in parts):
        raise GoDialError(f"DialContext failed: bad version {supported!r}")
    version = result.get("FISCO-BCOS Version", "")
    if ("gm" in version or "GM" in version) is not False:  # config IsSMCrypto: false
        raise GoDialError("the SDK set SMCrypt=false, but the node is mismatched")
    try:
        node_chain = int(result.get("Chain Id", ""), 10)
    except ValueError:
        raise GoDialError("JSON response does not contains the key : Chain Id") from None
    if node_chain != chain_id:
        raise GoDialError(f"The chain ID of node is {node_chain}, but configuration is {chain_id}")


async def go_dial(conn: ChannelConn) -> Frame:
    """``client.Dial`` of go-sdk 1.x, frame by frame; ``GoDialError`` where Dial fails.

    Returns the node's answer to the handshake, which go only logs if it cannot
    read it as ``nodeInfo`` (then it goes on with protocol 1).
    """
    seq = uuid1_seq()
    handshake = await conn.request(HANDSHAKE, seq, HANDSHAKE_BODY)
    await conn.send(channel_frame(SUBSCRIBE, uuid1_seq(), b'["_block_notify_1"]'))
    seq = uuid1_seq()
    check_client_version(await conn.request(RPC, seq, CLIENT_VERSION_REQUEST))
    return handshake


@asynccontextmanager
async def go_client(port: int, sdk: Path) -> AsyncIterator[ChannelConn]:
    """A go-sdk 1.x client after ``client.Dial`` (TLS without verifying the node)."""
    async with channel_session(port, tls12_secp256k1(sdk, verify=False), GoReader()) as conn:
        await go_dial(conn)
        yield conn


async def go_subscribe(conn: ChannelConn, topic: bytes) -> None:
    """``SubscribeTopic``: the keys of a Go map, so in random order."""
    topics = ["_block_notify_1", topic.decode()]
    random.shuffle(topics)
    await conn.send(channel_frame(SUBSCRIBE, uuid1_seq(), json.dumps(topics).encode()))


async def send_amop_msg(conn: ChannelConn, topic: bytes, data: bytes) -> Frame:
    """``SendAMOPMsg`` (0x30): the answer under its seq, whatever its type."""
    seq = uuid1_seq()
    return await conn.request(AMOP_REQUEST, seq, topic_body(topic, data))


async def broadcast_amop_msg(conn: ChannelConn, topic: bytes, data: bytes) -> None:
    """``BroadcastAMOPMsg`` (0x35): needs an answer under its seq, result 0, a topic body."""
    seq = uuid1_seq()
    body = topic_body(topic, data)
    answer = await conn.request(MULTICAST, seq, body)
    # FB2 ChannelRPCServer.cpp:939-1066: 0x31, result 0, the topic body echoed.
    assert answer == Frame(AMOP_RESPONSE, seq, 0, body)


async def go_subscriber(
    conn: ChannelConn, topic: bytes, seen: list[tuple[int, bytes]], done: trio.Event
) -> None:
    """The examples' subscriber: log each message, answer every push (empty data), stop on Done."""
    while True:
        push = await conn.until(lambda f: f.type in (AMOP_REQUEST, MULTICAST), timeout=20)
        pushed_topic, data = split_topic_body(push.data)
        assert pushed_topic == topic, push
        seen.append((push.type, data))
        await conn.send(channel_frame(AMOP_RESPONSE, push.seq, topic_body(pushed_topic)))
        if b"Done" in data:
            done.set()
            return


@pytest.fixture(scope="module")
def chain(network_certs: Path) -> Path:
    """What ``amop certs -n 4`` makes (made once for the session): a chain CA, node
    certificates, the SDKs'."""
    return network_certs


async def test_dial_sequence_and_heartbeat(chain: Path, nodes: tuple[NodeProcess, ...]) -> None:
    """0x14, 0x32, getClientVersion: each answered as go-sdk needs, in the bytes of a
    2.x node. go-sdk's empty heartbeat is answered as on a protocol-3 session."""
    node0, _ = nodes
    context = tls12_secp256k1(chain / "sdk", verify=False)
    async with channel_session(node0.port, context, GoReader()) as conn:
        handshake = await go_dial(conn)
        assert conn.stream.version() == "TLSv1.2"
        # FB2 ChannelRPCServer.cpp:604-654: the request reused; nodeVersion is the
        # Supported Version; FastWriter. go reads it as nodeInfo{protocol, nodeVersion}.
        assert (handshake.type, handshake.result) == (HANDSHAKE, 0)
        assert handshake.data == b'{"nodeVersion":"2.11.0","protocol":3}\n'
        # The answer again, to compare every byte (go_dial checked what Dial checks).
        seq = uuid1_seq()
        answer = await conn.request(RPC, seq, CLIENT_VERSION_REQUEST)
        assert answer == Frame(RPC, seq, 0, CLIENT_VERSION_ANSWER)
        seq = uuid1_seq()
        answer = await conn.request(HEARTBEAT, seq, b"")
        assert answer == Frame(HEARTBEAT, seq, 0, b'{"heartBeat":1}\n')
        assert conn.backlog == []  # 0x32 is never answered


async def test_dial_refuses_a_node_of_another_chain(chain: Path) -> None:
    """``amop node --chain-id 7``: go-sdk's configured chain id 1 no longer matches."""
    with (
        amop_node(chain / "node0" / "conf", extra=("--chain-id", "7")) as node,
        pytest.raises(GoDialError, match="chain ID of node is 7, but configuration is 1"),
    ):
        async with go_client(node.port, chain / "sdk"):
            pass


async def test_amop_examples_across_two_nodes(chain: Path, nodes: tuple[NodeProcess, ...]) -> None:
    """sub/subscriber.go on node1, unicast_pub then broadcast_pub on node0, as go-sdk's CI."""
    node0, node1 = nodes
    topic = b"hello"
    seen: list[tuple[int, bytes]] = []
    done = trio.Event()
    async with (
        go_client(node1.port, chain / "sdk") as sub,
        go_client(node0.port, chain / "sdk") as pub,
    ):
        async with trio.open_nursery() as nursery:
            await go_subscribe(sub, topic)
            nursery.start_soon(go_subscriber, sub, topic, seen, done)
            # The publisher sleeps while the subscription spreads; errors are only logged.
            with trio.fail_after(15):
                while (answer := await send_amop_msg(pub, topic, b"probe")).result == 100:
                    await trio.sleep(0.05)
            assert answer.type == AMOP_RESPONSE, answer
            assert (answer.result, split_topic_body(answer.data)) == (0, (topic, b""))
            for i in range(5):
                data = b"hello, FISCO BCOS, I am unicast publisher! %d" % i
                answer = await send_amop_msg(pub, topic, data)
                assert answer.type == AMOP_RESPONSE, answer
                assert (answer.result, split_topic_body(answer.data)) == (0, (topic, b""))
            # broadcast_pub sleeps 200 ms after each multicast, so each push reaches the
            # subscriber alone; waiting until it arrived keeps that without the sleep.
            for i in range(3):
                data = b"hello, FISCO BCOS, I am broadcast publisher! %d" % i
                await broadcast_amop_msg(pub, topic, data)
                with trio.fail_after(10):
                    while len(seen) < 7 + i:
                        await trio.sleep(0.005)
            await broadcast_amop_msg(pub, topic, b"Done")
            with trio.fail_after(10):
                await done.wait()
        unicasts = [data for kind, data in seen if kind == AMOP_REQUEST]
        multicasts = [data for kind, data in seen if kind == MULTICAST]
        assert unicasts == [
            b"probe",
            *(b"hello, FISCO BCOS, I am unicast publisher! %d" % i for i in range(5)),
        ]
        assert multicasts == [
            *(b"hello, FISCO BCOS, I am broadcast publisher! %d" % i for i in range(3)),
            b"Done",
        ]
        # The node took the subscriber's 0x31 answers to multicasts quietly; both live on.
        for conn in (sub, pub):
            seq = uuid1_seq()
            assert (await conn.request(HEARTBEAT, seq)).data == b'{"heartBeat":1}\n'
            assert [f for f in conn.backlog if f.type != AMOP_RESPONSE] == []


async def test_pushes_in_a_burst_reach_a_go_reader(
    chain: Path, nodes: tuple[NodeProcess, ...]
) -> None:
    """go-sdk decodes one frame per TLS record: a node that packs several pushes into
    one record leaves the rest in go's buffer until some later record (a heartbeat
    answer, 30 to 40 s on). A Java SDK publisher multicasts without waiting."""
    node0, _ = nodes
    topic = b"burst"
    context = tls12_secp256k1(chain / "sdk", verify=True)
    async with (
        go_client(node0.port, chain / "sdk") as sub,
        channel_session(node0.port, context, StreamReader()) as java,
    ):
        await go_subscribe(sub, topic)
        # A node handles a connection's frames in order: once a heartbeat sent after
        # the 0x32 is answered, the subscription is in place.
        await sub.request(HEARTBEAT, uuid1_seq())
        # Large pushes the go client does not read yet fill the socket, so the small
        # ones behind them wait in the node's outbox together.
        burst = [b"%d" % i + b"." * 100_000 for i in range(24)] + [b"%d" % i for i in range(30)]

        async def read_acks() -> None:  # Java's own reader, never blocked by its sends
            for _ in burst:
                await java.until(lambda f: f.type == AMOP_RESPONSE)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_acks)
            for data in burst:
                await java.send(channel_frame(MULTICAST, uuid4_seq(), topic_body(topic, data)))
        got: list[bytes] = []
        with trio.move_on_after(3):
            while len(got) < len(burst):
                push = await sub.until(lambda f: f.type == MULTICAST)
                got.append(split_topic_body(push.data)[1])
        stuck = sub.reader.buf if isinstance(sub.reader, GoReader) else b""
        assert got == burst, (
            f"go-sdk read {len(got)} of {len(burst)} pushes; {stuck.count(topic)} more are "
            f"whole in its buffer, waiting for another TLS record"
        )
