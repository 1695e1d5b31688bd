"""Retry delays shared by the client's reconnects and the node's dialers."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, base: float = 0.1, cap: float = 5.0) -> float:
    """Exponential backoff with full jitter: a random delay in [0, min(cap, base·2^attempt)]."""
    return random.uniform(0, min(cap, base * (2 ** min(attempt, 16))))
