"""The node's JSON-RPC answers (``_node/rpc.py``) and what it tells SDKs about itself.

2.x answers follow libjson-rpc-cpp's ``RpcProtocolServerV2`` as FISCO BCOS 2.x
builds it (docs/PROTOCOL.md section 5); 3.x answers follow FB3
``bcos-rpc/bcos-rpc/jsonrpc/JsonRpcInterface.cpp``.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amop_trio import NodeLimits
from amop_trio._node.rpc import channel_rpc_answer, client_version, ws_rpc_answer

NOT_FOUND = (
    "METHOD_NOT_FOUND: The method being requested is not available on this server "
    "(an amop_trio node serves AMOP only)"
)


def v2(request: bytes | str, chain_id: str = "1") -> bytes:
    data = request.encode() if isinstance(request, str) else request
    return channel_rpc_answer(data, chain_id=chain_id)


def test_the_calls_sdks_make_on_connect() -> None:
    # go-sdk 1.x: no params, id 1, key order jsonrpc, id, method.
    answer = v2('{"jsonrpc":"2.0","id":1,"method":"getClientVersion"}', chain_id="7")
    assert answer.endswith(b"}\n")
    assert json.loads(answer) == {"id": 1, "jsonrpc": "2.0", "result": client_version("7")}
    assert list(json.loads(answer)["result"]) == sorted(client_version("7"))  # sorted keys
    # Java SDK 2.x and python-sdk.
    assert v2('{"jsonrpc":"2.0","method":"getGroupList","params":[],"id":0}') == (
        b'{"id":0,"jsonrpc":"2.0","result":[1]}\n'
    )
    assert v2('{"jsonrpc": "2.0", "method": "getBlockNumber", "params": [1], "id": 0}') == (
        b'{"id":0,"jsonrpc":"2.0","result":"0x0"}\n'
    )
    # The id is echoed as sent: a string stays a string.
    assert json.loads(v2('{"jsonrpc":"2.0","method":"getGroupList","id":"a"}'))["id"] == "a"


def test_client_version_is_what_go_sdk_accepts() -> None:
    version = client_version("1")
    assert set(version) == {
        "Build Time",
        "Build Type",
        "Chain Id",
        "FISCO-BCOS Version",
        "Git Branch",
        "Git Commit Hash",
        "Supported Version",
    }
    assert all(isinstance(v, str) for v in version.values())
    major, minor, _ = (int(p) for p in version["Supported Version"].split("."))
    assert (major, minor >= 1) == (2, True)  # Java SDK 2.x and web3sdk then handshake
    assert "gm" not in version["FISCO-BCOS Version"].lower()
    assert "amop_trio" in version["Build Type"]
    assert "amop_trio" in version["Git Branch"]


@pytest.mark.parametrize(
    ("request_text", "code", "request_id"),
    [
        ('{"jsonrpc":"2.0","method":"sendRawTransaction","params":[1,"0x"],"id":4}', -32601, 4),
        ('{"jsonrpc":"2.0","method":"getBlockNumber","params":[2],"id":5}', -40001, 5),
        ('{"jsonrpc":"2.0","method":"getBlockNumber","params":["1"],"id":6}', -32602, 6),
        ('{"jsonrpc":"2.0","method":"getBlockNumber","params":[1,2],"id":6}', -32602, 6),
        ('{"jsonrpc":"2.0","method":"getBlockNumber","id":6}', -32602, 6),
        ('{"jsonrpc":"2.0","method":"getBlockNumber","params":[true],"id":6}', -32602, 6),
        ('{"jsonrpc":"1.0","method":"getGroupList","id":7}', -32600, 7),
        ('{"jsonrpc":"2.0","method":3,"id":7}', -32600, 7),
        ('{"jsonrpc":"2.0","method":"getGroupList","params":"x","id":7}', -32600, 7),
        ('{"jsonrpc":"2.0","method":"getGroupList","id":1.5}', -32600, None),
        ('{"jsonrpc":"2.0","method":"getGroupList"}', -32604, None),  # a notification
        ('{"jsonrpc":"2.0","method":"nope"}', -32601, None),
        ("[1]", -32600, None),
        ("not json", -32700, None),
        ("\xff", -32700, None),
    ],
)
def test_errors_as_libjson_rpc_cpp_writes_them(
    request_text: str, code: int, request_id: object
) -> None:
    answer = v2(request_text.encode("latin-1"))
    assert answer.endswith(b"\n")
    decoded = json.loads(answer)
    if isinstance(decoded, list):
        (decoded,) = decoded
    assert decoded["error"]["code"] == code, decoded
    assert (decoded["id"], decoded["jsonrpc"]) == (request_id, "2.0"), decoded
    if code == -32601:
        assert decoded["error"]["message"] == NOT_FOUND


def test_batches_get_one_answer_each() -> None:
    answer = json.loads(
        v2(
            '[{"jsonrpc":"2.0","method":"getGroupList","id":1},'
            '{"jsonrpc":"2.0","method":"nope","id":2}]'
        )
    )
    assert [a.get("result") for a in answer] == [[1], None]
    assert answer[1]["error"]["code"] == -32601
    assert json.loads(v2("[]"))["error"]["code"] == -32600


def test_3x_answers_are_errors_without_newline() -> None:
    answer = ws_rpc_answer(
        b'{"jsonrpc":"2.0","method":"getBlockNumber","params":["group0",""],"id":9}'
    )
    assert answer == (
        b'{"error":{"code":-32601,"message":"The method does not exist/is not available. '
        b'(an amop_trio node serves AMOP only)"},"id":9,"jsonrpc":"2.0"}'
    )
    for bad in (b"{}", b"junk", b'{"jsonrpc":"2.0","method":"m","params":{}}', b"[]"):
        error = json.loads(ws_rpc_answer(bad))
        assert error == {
            "error": {"code": -32600, "message": "The JSON sent is not a valid Request object."},
            "id": 0,
            "jsonrpc": "",
        }


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_get_a_json_answer(data: bytes) -> None:
    json.loads(channel_rpc_answer(data, chain_id="1"))
    json.loads(ws_rpc_answer(data))


def test_chain_id_and_idle_limit() -> None:
    assert NodeLimits().chain_id == "1"
    assert NodeLimits().channel_idle_timeout == 60.0  # as FB2 ChannelSession.h
    assert NodeLimits(chain_id="-20").chain_id == "-20"
    for bad in ("", "x", "1.0", " 1", "9" * 20, "99999999999999999999"):
        with pytest.raises(ValueError, match="chain_id"):
            NodeLimits(chain_id=bad)
