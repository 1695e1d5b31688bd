"""What serving either SDK protocol needs: the clients, the network, the limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
