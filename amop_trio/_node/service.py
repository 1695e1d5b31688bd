"""What serving either SDK protocol needs: the clients, the network, the limits."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .._log import log_event
from .hub import LocalHub
from .limits import NodeLimits, NodeStatistics
from .network import Network
from .session import Session

logger = logging.getLogger("amop_trio.node")

#: Seconds of silence before a read after which a request's publisher is checked
#: for having closed its connection (``Service.publisher_gone``).
STALE_READ = 1.0


class Service:
    """What serving either SDK protocol needs: the clients, the network, the limits."""

    def __init__(
        self,
        hub: LocalHub,
        network: Network,
        limits: NodeLimits,
        stats: NodeStatistics,
        status: Callable[[int], dict[str, Any]],
    ) -> None:
        self.hub = hub
        self.network = network
        self.limits = limits
        self.stats = stats
        self._status = status

    def publisher_gone(self, session: Session, what: str) -> bool:
        """Whether ``session`` closed its end before its request was read: drop the request.

        A request that waited in the socket while the node was stopped or
        stalled may come from a client that has since given up on it and
        reported it failed; delivering it then would do what its publisher
        was told did not happen. Only a read that follows ``STALE_READ``
        seconds of silence is checked (one system call), so busy connections
        pay nothing.
        """
        sock = session.sock
        if sock.quiet_for < STALE_READ or not sock.peer_closed():
            return False
        self.stats.orphaned_requests += 1
        log_event(
            logger,
            logging.INFO,
            "request_dropped",
            session=session.id,
            what=what,
            reason="the publisher closed its connection before the request was read",
        )
        return True


_H = TypeVar("_H", bound=Callable[..., Awaitable[None]])


def frame_handler(handler: _H) -> _H:
    """Marks a handler of one frame type, awaited by a session's read loop.

    The loop is the cancel point: it waits for every frame. A handler awaits
    only to answer, so it need not check for cancellation itself (``nox -s
    lint`` exempts what carries this mark).
    """
    return handler
