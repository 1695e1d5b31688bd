"""Every exception amop_trio raises on purpose, in one place.

The codec, the client and the node all raise these, so user code can catch
``AmopError`` for everything or a precise subclass for one failure. Pure
Python: no Trio, so the sans-I/O codec can import it.
"""

from __future__ import annotations


class AmopError(Exception):
    """Base class of every error amop_trio raises on purpose."""


class WireError(AmopError):
    """Bytes from the network do not form a valid frame, body or payload.

    ``status`` is the status code a node should answer with, when the frame
    was readable enough to answer at all.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class FrameTooLargeError(WireError):
    """A frame is larger than the configured maximum size."""


class EncodeError(AmopError, ValueError):
    """The caller asked to encode something the wire cannot carry."""


class PeerRefusedError(AmopError):
    """A peer's certificate or claims do not make it a node of this chain; says why."""


class ConnectError(AmopError):
    """No connection to the node could be opened, or its handshake failed."""


class ConnectionLostError(AmopError):
    """The connection to the node dropped while a request was in flight."""


class NotSupportedError(AmopError):
    """The node cannot do what was asked, and doing it anyway would be unsafe or silent.

    For example private topics through a FISCO BCOS 3.x node, which has none:
    subscribing there would let anyone receive the messages.
    """


class ClientClosedError(AmopError):
    """The client has been closed; open a new one with ``open_amop``."""


class RejectedError(AmopError):
    """The node answered a request with a non-zero status code.

    ``status`` holds the code (see ``Status``), ``detail`` the node's text.
    """

    def __init__(self, status: int, detail: str = "") -> None:
        from ._wire.status import describe_status

        text = f"node rejected the request: status {status} ({describe_status(status)})"
        if detail:
            text += f": {detail}"
        super().__init__(text)
        self.status = status
        self.detail = detail


class NoSubscriberError(RejectedError):
    """Nobody subscribes to the topic (status 3001 or 3002)."""


class AmopTimeoutError(AmopError, TimeoutError):
    """No reply arrived in time (the node's status 1000, or the client's own deadline)."""
