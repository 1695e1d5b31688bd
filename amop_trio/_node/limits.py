"""What a node allows each connection, what it tells SDKs about itself, and what it counts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._transport.ws_socket import HANDSHAKE_TIMEOUT
from .._wire.fisco3 import DEFAULT_MAX_FRAME_SIZE

_INT64 = re.compile(r"-?[0-9]{1,19}")
_MiB = 1024 * 1024

#: The byte budgets, each with the per-connection budget it must be at least.
_BUDGETS = {
    "connection_topic_bytes": None,
    "node_topic_bytes": "connection_topic_bytes",
    "connection_pending_bytes": None,
    "node_pending_bytes": "connection_pending_bytes",
    "node_partial_frame_bytes": None,
    "node_total_bytes": None,
}


@dataclass(frozen=True, slots=True)
class NodeLimits:
    """What one connection, and all of them together, may ask of the node.

    Beyond a limit the request is refused with a typed answer and nothing
    else is disturbed: the connection keeps what it had, other clients and
    links see nothing.

    Per connection:

    * ``max_frame_size`` (32 MiB): the largest frame read; a bigger one
      closes the connection (ws close 1009).
    * ``max_topics`` (1000) topics, each at most ``max_topic_length`` (65535)
      bytes: beyond, the topic set is refused with 3005.
    * ``max_pending`` (1024) unicasts in flight: beyond, 3006 (2.x: 103).
    * ``outbox_size`` (512) frames queued towards the client.

    Byte budgets (the client sees the budget's name and the excess in the
    refusal's text):

    * ``connection_topic_bytes`` (1 MiB): the UTF-8 bytes of one
      connection's topics, each counting ``budget.TOPIC_OVERHEAD`` (256)
      more. A topic set past it is refused with 3005 (2.x: 104) and the
      connection keeps its previous set.
    * ``node_topic_bytes`` (32 MiB): the same over all connections; past it,
      3006 (2.x: 103).
    * ``connection_pending_bytes`` (32 MiB): the bodies of one connection's
      unicasts in flight; a unicast past it is answered 3006 (2.x: 103) at once.
    * ``node_pending_bytes`` (128 MiB): the same over all connections, with
      the unicasts this node delivers for other nodes (those get 3006 too, and
      their publisher's node tries another subscriber).
    * ``node_partial_frame_bytes`` (96 MiB): bytes announced by the frames
      (and fragmented messages) that clients have begun to send and not
      finished, over all connections. A frame that does not fit closes its
      connection (ws close 1009; a 2.x connection is closed) and is logged
      (``partial_frame_refused``). One connection holds at most one frame,
      so at most ``max_frame_size``; frames up to 64 KiB are always taken
      (and counted), so ordinary traffic that arrives in pieces never
      depends on what other clients hold.
    * ``node_total_bytes`` (192 MiB): topic, pending and partial-frame bytes
      together; past it, what would have gone past its own budget is refused
      the same way.

    Keep ``node_partial_frame_bytes`` and ``connection_pending_bytes`` at
    least ``max_frame_size``, or frames and unicasts of the largest size
    are always refused. Budgets count payload bytes; the node's memory for
    them is a small multiple (Python objects, buffers on their way out).
    Node links are not counted: they are bounded by their own frame limit
    and outboxes.
    """

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_topics: int = 1000
    max_topic_length: int = 65535
    max_pending: int = 1024
    outbox_size: int = 512
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    #: Seconds a 2.x channel client may stay silent (no heartbeat, no frame) before it
    #: is dropped; 2.x nodes allow 60 (FB2 ChannelSession.h), and go-sdk 1.x beats only
    #: every 30 to 40 s. ws clients are pinged instead (``ping_interval``).
    channel_idle_timeout: float = 60.0
    #: Seconds a subscriber may hold a unicast while nothing at all comes from it (no
    #: frame, no ping or pong, no heartbeat) before the node gives the unicast to another
    #: subscriber and avoids this one for a while. A slow subscriber that is heard from
    #: keeps its unicasts; one that stopped is skipped.
    subscriber_timeout: float = 3.0
    #: The chain id 2.x SDKs are told (``getClientVersion``, "Chain Id"): go-sdk 1.x
    #: refuses a node whose chain id differs from its configured one (1 by default).
    chain_id: str = "1"
    #: UTF-8 bytes of one connection's topics, plus 256 per topic.
    connection_topic_bytes: int = 1 * _MiB
    #: The same over every connection.
    node_topic_bytes: int = 32 * _MiB
    #: Bodies of one connection's unicasts in flight.
    connection_pending_bytes: int = 32 * _MiB
    #: Bodies of all unicasts in flight through the node, served for other nodes too.
    node_pending_bytes: int = 128 * _MiB
    #: Bytes announced by frames and messages clients have begun and not finished.
    node_partial_frame_bytes: int = 96 * _MiB
    #: Topic, pending and partial-frame bytes together.
    node_total_bytes: int = 192 * _MiB

    def __post_init__(self) -> None:
        if not self.subscriber_timeout > 0:
            raise ValueError(
                f"subscriber_timeout must be a positive number of seconds, "
                f"got {self.subscriber_timeout!r}"
            )
        if not isinstance(self.chain_id, str) or not _INT64.fullmatch(self.chain_id):
            raise ValueError(
                f"chain_id must be a base-10 integer as text (go-sdk parses it as int64), "
                f"got {self.chain_id!r:.40}"
            )
        if not -(2**63) <= int(self.chain_id) < 2**63:
            raise ValueError(f"chain_id {self.chain_id} does not fit a 64-bit integer")
        for name, at_least in _BUDGETS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be a whole number of bytes, got {value!r:.40}")
            if value <= 0:
                raise ValueError(
                    f"{name} must be a positive number of bytes, got {value}: a budget of "
                    "0 would refuse everything it counts"
                )
            if at_least is not None and value < getattr(self, at_least):
                raise ValueError(
                    f"{name} ({value} bytes) is below {at_least} ({getattr(self, at_least)} "
                    "bytes): the node-wide budget must hold at least one connection's"
                )

    def budgets(self) -> dict[str, int]:
        """The byte budgets by name, for status answers."""
        return {name: getattr(self, name) for name in _BUDGETS}


@dataclass(slots=True)
class NodeStatistics:
    """Counters of a node since it started."""

    connections: int = 0
    unicasts: int = 0
    multicasts: int = 0
    multicast_dropped: int = 0
    refused: int = 0
    forwarded: int = 0
    #: Unicasts taken back from a subscriber that held them without a sign of life.
    silent_subscribers: int = 0
    #: Requests dropped because their publisher had closed its connection before they were read.
    orphaned_requests: int = 0
    #: Answers replaced by a refusal: their publisher left too many answers unread.
    answers_dropped: int = 0
