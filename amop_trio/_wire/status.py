"""Status codes carried in the ``status`` field of ws frames."""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """Status codes of the ws (FISCO BCOS 3.x) protocol.

    Codes from 3005 on are amop_trio's own; real 3.x nodes never send them.
    Real 3.x nodes also send negative codes: -4008 and -1.
    """

    #: A 3.x node's generic failure (also "the gateway is inactive").
    FAILED = -1
    #: A 3.x node got no answer from the subscriber within 30 s.
    SUBSCRIBER_TIMEOUT = -4008
    SUCCESS = 0
    TIMEOUT = 1000
    BANDWIDTH_LIMIT = 1004
    NO_SUBSCRIBER_NODE = 3001
    NO_SUBSCRIBER_CLIENT = 3002
    SEND_FAILED = 3003
    UNSUPPORTED_TYPE = 3004
    #: amop_trio: the request's body could not be decoded.
    INVALID_REQUEST = 3005
    #: amop_trio: the node is overloaded (too many pending requests).
    OVERLOADED = 3006


_DESCRIPTIONS = {
    Status.FAILED: "the node failed to handle the request",
    Status.SUBSCRIBER_TIMEOUT: "the subscriber did not answer in time",
    Status.SUCCESS: "success",
    Status.TIMEOUT: "timed out waiting for the subscriber's reply",
    Status.BANDWIDTH_LIMIT: "bandwidth limit exceeded",
    Status.NO_SUBSCRIBER_NODE: "no node has a subscriber for the topic",
    Status.NO_SUBSCRIBER_CLIENT: "the node found no client subscribed to the topic",
    Status.SEND_FAILED: "sending to the subscriber failed",
    Status.UNSUPPORTED_TYPE: "unsupported packet type",
    Status.INVALID_REQUEST: "malformed request",
    Status.OVERLOADED: "node overloaded, too many pending requests",
}


def describe_status(code: int) -> str:
    """A short human text for a status code, known or not."""
    try:
        return _DESCRIPTIONS[Status(code)]
    except ValueError:
        return "unknown status code"
