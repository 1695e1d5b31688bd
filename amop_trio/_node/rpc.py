"""JSON-RPC on the SDK port: the calls SDKs make on connect, and a clear error for the rest.

An amop_trio node keeps no ledger, but real SDKs will not talk AMOP to a node
that does not answer what they ask on connect (docs/PROTOCOL.md section 5).
2.x SDKs (0x12): go-sdk 1.x, Java SDK 2.x and web3sdk call ``getClientVersion``
(Java and web3sdk then ``getGroupList`` and ``getBlockNumber``), python-sdk
calls ``getBlockNumber``. Those get answers shaped like a 2.x node's, every
other method the 2.x node's "method not found" error. 3.x SDKs need no RPC
for AMOP; every 3.x request gets the 3.x node's "method not found" error.

The 2.x answers follow FISCO BCOS 2.x, which serves JSON-RPC with
libjson-rpc-cpp 0.7.0 (``RpcProtocolServerV2``) and writes with jsoncpp's
FastWriter; the 3.x answers follow ``bcos-rpc/jsonrpc/JsonRpcInterface.cpp``.
Pure functions of bytes: the services put the answers in frames.
"""

from __future__ import annotations

import json
from typing import Any

from .._wire.jsoncpp import fast_writer, stream_writer

#: The "Supported Version" (2.x ``[compatibility] supported_version``) this node
#: reports; also the ``nodeVersion`` of its 2.x handshake answer. 2.11.0 is the
#: newest 2.x: go-sdk needs three numbers, Java SDK 2.x and web3sdk send their
#: HANDSHAKE (0x14) only to nodes of 2.1 or later, and without it they stay at
#: protocol 1, where Java cannot read the node's heartbeat answer and drops it.
SUPPORTED_VERSION = "2.11.0"
#: The only group this node reports (go-sdk 1.x and python-sdk default to group 1).
GROUP_ID = 1

#: libjson-rpc-cpp 0.7.0 error codes and texts (``errors.cpp``).
_PARSE_ERROR = (-32700, "JSON_PARSE_ERROR: The JSON-Object is not JSON-Valid")
_INVALID_REQUEST = (
    -32600,
    "INVALID_JSON_REQUEST: The JSON sent is not a valid JSON-RPC Request object",
)
_METHOD_NOT_FOUND = (
    -32601,
    "METHOD_NOT_FOUND: The method being requested is not available on this server "
    "(an amop_trio node serves AMOP only)",
)
_INVALID_PARAMS = (
    -32602,
    "INVALID_PARAMS: Invalid method parameters (invalid name and/or type) recognised",
)
_NOTIFICATION_OF_METHOD = (
    -32604,
    "PROCEDURE_IS_METHOD: The requested notification is declared as a method",
)
#: FISCO BCOS 2.x ``RPCExceptionType::GroupID``.
_NO_SUCH_GROUP = (-40001, "GroupID does not exist")
#: FISCO BCOS 3.x texts (``JsonRpcInterface.cpp``).
_V3_METHOD_NOT_FOUND = (
    -32601,
    "The method does not exist/is not available. (an amop_trio node serves AMOP only)",
)
_V3_INVALID_REQUEST = (-32600, "The JSON sent is not a valid Request object.")

_MISSING = object()


def client_version(chain_id: str) -> dict[str, str]:
    """The ``getClientVersion`` result: seven strings, as go-sdk 1.x requires.

    go-sdk checks "Supported Version" (``a.b.c``), "Chain Id" (its configured
    chain id, as text) and "FISCO-BCOS Version" (containing "gm" only on SM
    chains, as do Java SDK 2.x); nothing parses the build fields, which say
    what this node is.
    """
    return {
        "Build Time": "0",
        "Build Type": "amop_trio/Python/AMOP only",
        "Chain Id": chain_id,
        "FISCO-BCOS Version": SUPPORTED_VERSION,
        "Git Branch": "amop_trio",
        "Git Commit Hash": "0",
        "Supported Version": SUPPORTED_VERSION,
    }


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _MISSING


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- 2.x (channel, 0x12) ----------------------------------------------------------


def channel_rpc_answer(data: bytes, *, chain_id: str) -> bytes:
    """The body of a 2.x node's 0x12 answer to the request ``data`` (FastWriter JSON)."""
    request = _loads(data)
    if request is _MISSING:
        return fast_writer(_v2_error(None, _PARSE_ERROR))
    if isinstance(request, list):  # a batch
        if not request:
            return fast_writer(_v2_error(None, _INVALID_REQUEST))
        return fast_writer([_v2_answer(one, chain_id) for one in request])
    return fast_writer(_v2_answer(request, chain_id))


def _v2_error(request_id: Any, error: tuple[int, str]) -> dict[str, Any]:
    code, message = error
    return {"error": {"code": code, "message": message}, "id": request_id, "jsonrpc": "2.0"}


def _id_ok(value: Any) -> bool:
    """A JSON-RPC id libjson-rpc-cpp takes: an integer, a string or null."""
    return value is None or _is_int(value) or isinstance(value, str)


def _v2_answer(request: Any, chain_id: str) -> dict[str, Any]:
    """One answer object, as ``RpcProtocolServerV2`` makes it."""
    if not isinstance(request, dict):
        return _v2_error(None, _INVALID_REQUEST)
    params = request.get("params")
    if (
        request.get("jsonrpc") != "2.0"
        or not isinstance(request.get("method"), str)
        or not _id_ok(request.get("id"))
        or not (params is None or isinstance(params, list | dict))
    ):
        request_id = request.get("id")
        return _v2_error(request_id if _id_ok(request_id) else None, _INVALID_REQUEST)
    method = request["method"]
    known = method in _V2_METHODS
    if "id" not in request:  # a notification: every 2.x procedure is a method
        return _v2_error(None, _NOTIFICATION_OF_METHOD if known else _METHOD_NOT_FOUND)
    request_id = request["id"]
    if not known:
        return _v2_error(request_id, _METHOD_NOT_FOUND)
    outcome = _V2_METHODS[method](params, chain_id)
    if isinstance(outcome, tuple):
        return _v2_error(request_id, outcome)
    return {"id": request_id, "jsonrpc": "2.0", "result": outcome}


# A procedure declared without parameters takes any (libjson-rpc-cpp's
# ``Procedure::ValdiateParameters``): python-sdk sends getGroupList with [1].


def _get_client_version(params: list[Any] | dict[str, Any] | None, chain_id: str) -> Any:
    return client_version(chain_id)


def _get_group_list(params: list[Any] | dict[str, Any] | None, chain_id: str) -> Any:
    return [GROUP_ID]


def _get_block_number(params: list[Any] | dict[str, Any] | None, chain_id: str) -> Any:
    """Declared with one integer, the group (FB2 ``RpcFace.h:43-45``)."""
    if not isinstance(params, list) or len(params) != 1 or not _is_int(params[0]):
        return _INVALID_PARAMS
    return "0x0" if params[0] == GROUP_ID else _NO_SUCH_GROUP


_V2_METHODS = {
    "getClientVersion": _get_client_version,
    "getGroupList": _get_group_list,
    "getBlockNumber": _get_block_number,
}


# -- 3.x (ws, 0x102) -----------------------------------------------------------------


def ws_rpc_answer(data: bytes) -> bytes:
    """The payload of a 3.x node's answer to the RPC request ``data``: always an error.

    As ``JsonRpcInterface::onRPCRequest``: a request needs ``jsonrpc``,
    ``method`` and an array ``params``; the answer echoes ``jsonrpc`` and the
    integer ``id`` of a well-formed request (a malformed one gets ``""`` and 0).
    """
    request = _loads(data)
    if (
        not isinstance(request, dict)
        or not isinstance(request.get("jsonrpc"), str)
        or not isinstance(request.get("method"), str)
        or not isinstance(request.get("params"), list)
        or not _is_int(request.get("id", 0))
    ):
        jsonrpc, request_id, error = "", 0, _V3_INVALID_REQUEST
    else:
        jsonrpc, request_id, error = request["jsonrpc"], request.get("id", 0), _V3_METHOD_NOT_FOUND
    code, message = error
    return stream_writer(
        {"error": {"code": code, "message": message}, "id": request_id, "jsonrpc": jsonrpc}
    )
