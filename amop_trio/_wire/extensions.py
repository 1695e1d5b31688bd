"""amop_trio's extensions to the FISCO protocols: asked for in the handshake, never assumed.

An amop_trio node behaves as a real FISCO node towards every client, unless
the client's handshake (3.x HANDSHAKE 0x100 or 2.x HANDSHAKE 0x14) carries the
key ``"amopTrio"``: a JSON array naming the extras it wants. Real nodes ignore
unknown handshake keys, so an amop_trio client can always ask; real SDKs never
do, so they never meet an extra. The node answers, in its handshake answer,
``"amopTrio"``: what it grants, its id and the largest frame it takes::

    {"extras": ["acks", "private", "status"], "maxFrameSize": 33554432, "nodeId": "..."}

Extras (unknown names are ignored, so either side may be newer):

* ``acks``: the node answers each AMOP_SUBTOPIC and AMOP_BROADCAST (3.x) with
  an AMOP_RESPONSE under the request's seq (status 0, or an error status and
  text), so a client knows when a subscription is in place or a multicast was
  refused. 2.x nodes always answer multicasts, and never subscriptions; over
  2.x, the node answers each AMOP_SUBSCRIBE (0x32) in kind, under its seq
  (result 0, or a 2.x result code and text).
* ``status``: the node answers NODE_STATUS (0x1010) with its status JSON, of
  bounded size: a summary, and a page of its topics from the query's
  ``"topicsFrom"`` (``encode_status_query``) on.
* ``private`` (3.x): private topics over ws, with the 2.x verification pair
  carried as VERIFY_REQUEST 0x1011 and VERIFY_RESULT 0x1012.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: The handshake key of the request (a list of names) and of the answer (a ``Grant``).
EXTENSIONS_KEY = "amopTrio"
ACKS = "acks"
STATUS = "status"
PRIVATE = "private"
#: What a node grants on each protocol.
WS_EXTRAS = frozenset({ACKS, STATUS, PRIVATE})
CHANNEL_EXTRAS = frozenset({ACKS, STATUS})


def encode_status_query(topics_from: int = 0) -> bytes:
    """The payload of a NODE_STATUS query for the page of topics from ``topics_from`` on."""
    return json.dumps({"topicsFrom": topics_from}).encode() if topics_from else b"{}"


def decode_status_query(payload: bytes) -> int:
    """The first local topic a status query asks to list (``{"topicsFrom": N}``), 0 if none.

    Read leniently, as the query always was: anything else asks for the first page.
    """
    try:
        query = json.loads(payload)
    except (ValueError, RecursionError):
        return 0
    start = query.get("topicsFrom") if isinstance(query, dict) else None
    return start if isinstance(start, int) and not isinstance(start, bool) and start > 0 else 0


def requested_extras(handshake: dict[str, Any]) -> frozenset[str]:
    """The extras a decoded handshake request asks for; nothing unless a list of names."""
    value = handshake.get(EXTENSIONS_KEY)
    if not isinstance(value, list):
        return frozenset()
    return frozenset(name for name in value if isinstance(name, str))


@dataclass(frozen=True, slots=True)
class Grant:
    """What an amop_trio node grants a client that asked for extras."""

    extras: frozenset[str]
    node_id: str = ""
    #: The largest frame the node takes; a client can refuse a bigger message itself.
    max_frame_size: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "extras": sorted(self.extras),
            "maxFrameSize": self.max_frame_size,
            "nodeId": self.node_id,
        }

    @classmethod
    def from_json(cls, value: Any) -> Grant | None:
        """The grant in a handshake answer (leniently: wrong fields read as absent)."""
        if not isinstance(value, dict):
            return None
        extras = value.get("extras")
        size = value.get("maxFrameSize")
        node_id = value.get("nodeId")
        return cls(
            extras=frozenset(
                e for e in (extras if isinstance(extras, list) else ()) if isinstance(e, str)
            ),
            node_id=node_id if isinstance(node_id, str) else "",
            max_frame_size=size if isinstance(size, int) and not isinstance(size, bool) else 0,
        )
