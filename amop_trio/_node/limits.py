"""What a node allows each connection, what it tells SDKs about itself, and what it counts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._transport.ws_socket import HANDSHAKE_TIMEOUT
from .._wire.fisco3 import DEFAULT_MAX_FRAME_SIZE

_INT64 = re.compile(r"-?[0-9]{1,19}")


@dataclass(frozen=True, slots=True)
class NodeLimits:
    """What one connection may ask of the node; beyond it, requests are refused."""

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
