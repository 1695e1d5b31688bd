"""What an uplink makes of the node's frames: answers to requests, and deliveries."""

from __future__ import annotations

from dataclasses import dataclass

from .._wire.fisco2_json import (
    ChannelVerifyRequest,
)


@dataclass(frozen=True, slots=True)
class Answer:
    """The node's answer to a request: a ws ``Status`` code and the payload."""

    seq: bytes
    status: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message for this client's subscriptions; ``topic`` is the wire topic."""

    seq: bytes
    topic: str
    data: bytes
    multicast: bool


Inbound = Answer | Delivery | ChannelVerifyRequest | None
