"""What serving either SDK protocol needs: the clients, the network, the limits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .hub import LocalHub
from .limits import NodeLimits, NodeStatistics
from .network import Network


class Service:
    """What serving either SDK protocol needs: the clients, the network, the limits."""

    def __init__(
        self,
        hub: LocalHub,
        network: Network,
        limits: NodeLimits,
        stats: NodeStatistics,
        status: Callable[[], dict[str, Any]],
    ) -> None:
        self.hub = hub
        self.network = network
        self.limits = limits
        self.stats = stats
        self._status = status


_H = TypeVar("_H", bound=Callable[..., Awaitable[None]])


def frame_handler(handler: _H) -> _H:
    """Marks a handler of one frame type, awaited by a session's read loop.

    The loop is the cancel point: it waits for every frame. A handler awaits
    only to answer, so it need not check for cancellation itself (``nox -s
    lint`` exempts what carries this mark).
    """
    return handler
