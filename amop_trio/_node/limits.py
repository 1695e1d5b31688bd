"""What a node allows each connection, and what it counts."""

from __future__ import annotations

from dataclasses import dataclass

from .._transport.ws_socket import HANDSHAKE_TIMEOUT
from .._wire.fisco3 import DEFAULT_MAX_FRAME_SIZE


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
    #: is dropped; 2.x nodes allow 30. ws clients are pinged instead (``ping_interval``).
    channel_idle_timeout: float = 30.0


@dataclass(slots=True)
class NodeStatistics:
    """Counters of a node since it started."""

    connections: int = 0
    unicasts: int = 0
    multicasts: int = 0
    multicast_dropped: int = 0
    refused: int = 0
    forwarded: int = 0
