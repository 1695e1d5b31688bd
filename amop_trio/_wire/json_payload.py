"""JSON payloads of the packets that carry JSON: decoding with a clear error, compact encoding.

A payload that is not JSON, or not the object a packet needs, is a
``WireError`` naming the packet (``what``) and carrying the status a node
answers with (3005, malformed request).
"""

from __future__ import annotations

import json
from typing import Any

from .._errors import WireError
from .status import Status


def encode_json(value: Any) -> bytes:
    """Compact JSON, UTF-8 (for amop_trio's own payloads; FISCO's own are in ``jsoncpp``)."""
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def decode_json(payload: bytes | bytearray | memoryview, what: str) -> Any:
    """The JSON value of ``payload``; ``WireError`` if it is not JSON."""
    try:
        return json.loads(bytes(payload))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError(
            f"{what}: invalid JSON ({str(exc)[:200]})", status=Status.INVALID_REQUEST
        ) from None


def decode_json_object(payload: bytes | bytearray | memoryview, what: str) -> dict[str, Any]:
    """The JSON object of ``payload``; ``WireError`` if it is not JSON or not an object."""
    value = decode_json(payload, what)
    if not isinstance(value, dict):
        raise WireError(
            f"{what}: expected a JSON object, got {type(value).__name__}",
            status=Status.INVALID_REQUEST,
        )
    return value
