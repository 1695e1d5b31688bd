"""Side by side: unicast round trip of amop_trio, the forwarder floor and the peers, interleaved.

The other sections measure one system after another, so a machine whose
speed drifts (a shared or throttled CPU) favours whoever ran in its fast
minutes. Here every system runs ``rounds`` short rounds of sequential 256 B
request/reply, and the rounds alternate (A B C, B C A, C A B, …): drift hits
all of them alike. Each round opens its clients afresh; peer servers run for
the whole section. Pooled samples give p50/p90/p99 per system, and each
round's winner is counted.

- ``amop_trio``: a node in this process, publisher and responder on it
  (as in ``amop.py``'s ``rtt (1 node)``).
- ``amop_trio (node process)``: the same clients, the node an ``amop node``
  process running for the whole section, as the peers' servers do; each
  message then crosses between processes, as with the peers.
- ``amop_trio (node process, busy poll 50 µs)``: the same, the node run with
  ``--busy-poll-us 50``.
- ``floor:fwd-1hop``: the trio-websocket forwarder of ``floors.py``.
- ``nats``, ``mosquitto``, ``redis``: as in ``peers.py``, when installed.

Run alone: ``python benchmarks/side_by_side.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, ExitStack
from dataclasses import replace
from functools import partial
from statistics import median
from typing import Any

import trio
from _harness import (
    AMOP,
    BUSY_POLL_US,
    NODE_PROCESS,
    NODE_PROCESS_BUSY,
    QUICK,
    SIDE_BY_SIDE,
    Result,
    Settings,
    latency_result,
    measure_sequential,
    note,
)
from amop import NodeProcess, _responder
from peers import Skip, mosquitto_server, mqtt_rtt, nats_rtt, nats_server, redis_rtt, redis_server

from amop_trio import open_amop, open_node

PAYLOAD = 256
#: Round trips each round starts with and does not count.
ROUND_WARMUP = 50

RoundTrip = Callable[[], Awaitable[None]]


@contextlib.asynccontextmanager
async def amop_rtt(endpoint: str | None = None) -> AsyncIterator[RoundTrip]:
    """A unicast through one amop_trio node, answered by a subscriber.

    The node runs in this process, or is the one at ``endpoint`` (an
    ``amop node`` process, like the peers' servers).
    """
    async with contextlib.AsyncExitStack() as stack:
        if endpoint is None:
            endpoint = (await stack.enter_async_context(open_node("127.0.0.1:0"))).endpoint
        subscriber = await stack.enter_async_context(open_amop(endpoint))
        publisher = await stack.enter_async_context(open_amop(endpoint))
        nursery = await stack.enter_async_context(trio.open_nursery())
        ready = trio.Event()
        nursery.start_soon(_responder, subscriber, "side", ready)
        await ready.wait()
        await publisher.publish("side", b"")  # the subscription has reached the node
        data = bytes(PAYLOAD)

        async def roundtrip() -> None:
            await publisher.publish("side", data)

        yield roundtrip
        nursery.cancel_scope.cancel()


@contextlib.contextmanager
def amop_node_process(*options: str) -> Iterator[str]:
    """An ``amop node`` with ``options``, in its own process for the section; its endpoint."""
    node = NodeProcess(*options)
    try:
        yield trio.run(node.started)
    finally:
        node.stop()


@contextlib.asynccontextmanager
async def forwarder_rtt() -> AsyncIterator[RoundTrip]:
    """A round trip through the one-hop trio-websocket forwarder floor."""
    from floors import forwarded_pair

    async with forwarded_pair(1) as (pub, _sub):
        data = bytes(PAYLOAD)

        async def roundtrip() -> None:
            await pub.send_message(data)
            await pub.get_message()

        yield roundtrip


async def _round(
    opener: Callable[[], AbstractAsyncContextManager[RoundTrip]], count: int, settings: Settings
) -> list[int]:
    async with opener() as roundtrip:
        return await measure_sequential("", roundtrip, settings, warmup=ROUND_WARMUP, count=count)


def _amop_round(endpoint: str, settings: Settings, count: int) -> list[int]:
    return trio.run(_round, partial(amop_rtt, endpoint), count, settings)


def _sync_round(
    opener: Callable[[], AbstractContextManager[RoundTrip]], count: int, settings: Settings
) -> list[int]:
    with opener() as roundtrip:
        return asyncio.run(
            measure_sequential("", roundtrip, settings, warmup=ROUND_WARMUP, count=count)
        )


def run_side_by_side(settings: Settings) -> tuple[list[Result], list[str]]:
    """(one result per system, notes on skipped peers)."""
    quiet = replace(settings, progress=False)
    notes: list[str] = []
    rounds: dict[str, Callable[[int], list[int]]] = {
        AMOP: lambda n: trio.run(_round, amop_rtt, n, quiet),
    }
    with ExitStack() as servers:
        for name, options in (
            (NODE_PROCESS, ()),
            (NODE_PROCESS_BUSY, ("--busy-poll-us", str(BUSY_POLL_US))),
        ):
            endpoint = servers.enter_context(amop_node_process(*options))
            rounds[name] = partial(_amop_round, endpoint, quiet)
        rounds["floor:fwd-1hop"] = lambda n: trio.run(_round, forwarder_rtt, n, quiet)
        for name, server, rtt, kind in (
            ("nats", nats_server, nats_rtt, "asyncio"),
            ("mosquitto", mosquitto_server, mqtt_rtt, "thread"),
            ("redis", redis_server, redis_rtt, "asyncio"),
        ):
            try:
                port = servers.enter_context(server())
            except Skip as why:
                notes.append(f"side by side: skipped {name}: {why}")
                continue
            rounds[name] = _peer_round(rtt, port, kind, quiet)
        return _interleave(rounds, settings), notes


def _peer_round(
    rtt: Callable[[int], Any], port: int, kind: str, settings: Settings
) -> Callable[[int], list[int]]:
    if kind == "asyncio":
        return lambda n: asyncio.run(_round(lambda: rtt(port), n, settings))
    return lambda n: _sync_round(lambda: rtt(port), n, settings)


def _interleave(rounds: dict[str, Callable[[int], list[int]]], settings: Settings) -> list[Result]:
    names = list(rounds)
    count = max(1, settings.rtt_count // settings.side_rounds)
    samples: dict[str, list[int]] = {name: [] for name in names}
    round_p50: dict[str, list[float]] = {name: [] for name in names}
    wins = dict.fromkeys(names, 0)
    for index in range(settings.side_rounds):
        shift = index % len(names)
        order = names[shift:] + names[:shift]
        note(f"side by side: round {index + 1}/{settings.side_rounds} ({', '.join(order)})")
        p50s: dict[str, float] = {}
        for name in order:
            try:
                taken = rounds[name](count)
            except Exception as exc:  # a peer failing mid-way must not sink the section
                note(f"side by side: {name} failed: {exc!r}")
                continue
            samples[name] += taken
            p50s[name] = median(taken) / 1e3 if taken else float("inf")
            round_p50[name].append(p50s[name])
        if p50s:
            wins[min(p50s, key=p50s.__getitem__)] += 1
    results = []
    for name in names:
        if not samples[name]:
            continue
        extra = {
            "rounds": len(round_p50[name]),
            "round_p50_us": [round(v, 1) for v in round_p50[name]],
            "rounds_won": wins[name],
        }
        results.append(
            latency_result(name, SIDE_BY_SIDE, PAYLOAD, samples[name], hops=1, extra=extra)
        )
    return results


def main(argv: list[str]) -> tuple[list[Result], list[str]]:
    settings = QUICK if "--quick" in argv else Settings()
    return run_side_by_side(settings)


if __name__ == "__main__":
    out, notes = main(sys.argv[1:])
    for r in out:
        f = r.figures
        print(
            f"{r.system:42} p50 {f['p50_us']:8.1f} µs  p90 {f['p90_us']:8.1f}  "
            f"p99 {f['p99_us']:8.1f}  rounds won {f['rounds_won']}/{f['rounds']}"
        )
    for text in notes:
        print(text)
