"""python-sdk's 2.x channel client against an ``amop node`` process.

Replayed from FISCO-BCOS/python-sdk, branch master (commit 4c3b00f), ``client/``:

* ``ssl_sock_wrap.py:38-85``: TLS 1.2 exactly, the node's chain verified against
  ca.crt (no host name), the SDK certificate, the secp256k1 group only.
* ``bcosclient.py:102-147`` init: getBlockNumber first (``channelhandler.py:183-191``:
  ``json.dumps`` with its default separators, ids from a class-wide counter, so 0 for
  the first request of the process; ``bcosclient.py:231-235`` reads the result with
  ``int(num_hex, 16)``), then the topic list 0x32 ``["_block_notify_1"]``
  (``channelhandler.py:270-283``). No HANDSHAKE is ever sent: the session stays at
  protocol 1.
* ``channelhandler.py:470-514``: an empty 0x13 whenever nothing was sent for 3 s; a
  2.x node answers nothing to it on a protocol-1 session.
* ``channelpack.py:97-114``: its reader (``sdk_wire.PythonSdkReader``).
* ``bcosclient.py:207-225`` and 287-290: getClientVersion with ``[]``, getGroupList
  with ``[groupid]`` (a 2.x node takes any parameters for a procedure declared
  without any).

The 2.x client has no AMOP API (``TYPE_AMOP_REQ`` and friends are defined, never
used), so there is no AMOP exchange to replay; the real client is run against a node
outside this repository (docs/PROTOCOL.md section 5).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .sdk_wire import (
    HEARTBEAT,
    RPC,
    SUBSCRIBE,
    Frame,
    NodeProcess,
    PythonSdkReader,
    amop_node,
    channel_frame,
    channel_session,
    tls12_secp256k1,
    uuid1_seq,
)


@pytest.fixture(scope="module")
def chain(network_certs: Path) -> Path:
    """What ``amop certs -n 4`` makes (made once for the session): a chain CA, node
    certificates, the SDKs'."""
    return network_certs


@pytest.fixture(scope="module")
def node(chain: Path) -> Iterator[NodeProcess]:
    with amop_node(chain / "node0" / "conf") as node:
        yield node


async def test_python_sdk_init_and_heartbeats(chain: Path, node: NodeProcess) -> None:
    context = tls12_secp256k1(chain / "sdk", verify=True)
    async with channel_session(node.port, context, PythonSdkReader()) as conn:
        assert conn.stream.version() == "TLSv1.2"
        request = {"jsonrpc": "2.0", "method": "getBlockNumber", "params": [1], "id": 0}
        body = json.dumps(request).encode()
        assert body == b'{"jsonrpc": "2.0", "method": "getBlockNumber", "params": [1], "id": 0}'
        seq = uuid1_seq()
        answer = await conn.request(RPC, seq, body)
        # FB2 Rpc.cpp:171-182 and the JSON-RPC server: 0x12, result 0, FastWriter JSON.
        assert answer == Frame(RPC, seq, 0, b'{"id":0,"jsonrpc":"2.0","result":"0x0"}\n')
        response = json.loads(answer.data)
        assert "error" not in response
        assert int(response["result"], 16) == 0
        await conn.send(
            channel_frame(SUBSCRIBE, uuid1_seq(), json.dumps(["_block_notify_1"]).encode())
        )

        # Protocol 1: the empty heartbeat gets no answer; the session lives on.
        seq = uuid1_seq()
        await conn.send(channel_frame(HEARTBEAT, seq, b""))
        assert await conn.nothing_under(seq)
        seq = uuid1_seq()
        request["id"] = 1
        answer = await conn.request(RPC, seq, json.dumps(request).encode())
        assert answer.data == b'{"id":1,"jsonrpc":"2.0","result":"0x0"}\n'

        # getClientVersion and getGroupList (``bcosclient.py:207-225`` and 287-290) send
        # [] and [groupid]; a procedure declared without parameters takes any.
        for i, (method, params) in enumerate([("getClientVersion", []), ("getGroupList", [1])]):
            call = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": i + 2})
            answer = await conn.request(RPC, uuid1_seq(), call.encode())
            assert answer.result == 0, answer
            assert "error" not in json.loads(answer.data), answer
        assert answer.data == b'{"id":3,"jsonrpc":"2.0","result":[1]}\n'
        assert conn.backlog == []
