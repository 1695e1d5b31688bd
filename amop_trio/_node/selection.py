"""Who gets a unicast: pure random choices, no I/O, no awaits."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterable


def choose_unicast(
    candidates: Iterable[int],
    tried: Collection[int],
    rng: random.Random | None = None,
    avoided: Callable[[int], bool] | None = None,
    *,
    last_resort: bool = True,
) -> int | None:
    """One subscriber picked uniformly among those not tried yet, or None.

    Those ``avoided`` says are failing are picked only when no other is left,
    and then only as a ``last_resort`` (no other node has subscribers to try).
    """
    remaining = [c for c in candidates if c not in tried]
    if avoided is not None and (len(remaining) > 1 or (remaining and not last_resort)):
        healthy = [c for c in remaining if not avoided(c)]
        remaining = healthy or (remaining if last_resort else [])
    if not remaining:
        return None
    return (rng or random).choice(remaining)


def choose_weighted(counts: dict[str, int], rng: random.Random | None = None) -> str:
    """A key of ``counts`` picked with probability proportional to its count.

    With subscriber counts per node, this makes every subscriber of the
    network equally likely, whichever node it is connected to.
    """
    nodes = list(counts)
    if len(nodes) == 1:
        return nodes[0]
    return (rng or random).choices(nodes, weights=[counts[n] for n in nodes])[0]
