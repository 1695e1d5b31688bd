"""amop_trio's figures, measured through its public API only.

Scenarios take a ``Topology``: where publishers connect and where subscribers
connect, and how many nodes a message crosses. Today there is one topology,
``1 node`` (a node started in this process on 127.0.0.1 port 0, publisher and
subscribers on it). A multi-node network plugs in by adding a factory to
``TOPOLOGIES`` that yields a ``Topology`` whose ``publisher`` and
``subscribers`` endpoints sit on different nodes, with ``hops`` set to the
number of nodes crossed; ``run.py`` then compares it with the forwarder floor
of the same hop count.

Run alone: ``python benchmarks/amop.py [--quick]``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import trio
from _harness import (
    COST,
    LATENCY,
    MEMORY,
    QUICK,
    THROUGHPUT,
    Budget,
    GcWatch,
    Progress,
    Result,
    Settings,
    latency_result,
    measure_sequential,
    note,
    proc_cpu_seconds,
    proc_status,
    raise_nofile,
    rate,
    summarize_ns,
)
from floors import measure_concurrent, measure_one_way

from amop_trio import AmopClient, MessageKind, NoSubscriberError, open_amop, open_node
from amop_trio.wire import (
    Frame,
    PacketType,
    decode_amop_body,
    decode_frame,
    encode_amop_body,
    encode_frame,
    new_seq,
)

SYSTEM = "amop_trio"
_ROUND = struct.Struct(">I")
#: How many clients connect at once when opening hundreds of them.
CONNECT_CONCURRENCY = 50


class Tally:
    """A counter that tasks can wait on until it reaches a target."""

    def __init__(self) -> None:
        self.value = 0
        self._target: int | None = None
        self._reached = trio.Event()

    def add(self, n: int = 1) -> None:
        self.value += n
        if self._target is not None and self.value >= self._target:
            self._reached.set()

    async def wait_for(self, target: int, seconds: float) -> bool:
        """Wait until the count reaches ``target``; False if ``seconds`` ran out first."""
        self._target = target
        self._reached = trio.Event()
        if self.value >= target:
            return True
        with trio.move_on_after(seconds):
            await self._reached.wait()
        return self.value >= target


# -- topologies ------------------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    """Where the clients of a scenario connect.

    ``publisher`` and ``subscribers`` are endpoint lists: the publisher uses
    ``publisher`` (a client tries them in turn), subscriber ``i`` uses
    ``subscribers[i % len(subscribers)]``. ``hops`` is the number of nodes a
    message crosses from publisher to subscriber. ``nodes`` holds in-process
    ``Node`` objects when there are any (for their statistics).
    """

    name: str
    hops: int
    publisher: tuple[str, ...]
    subscribers: tuple[str, ...]
    nodes: tuple[Any, ...] = field(default=(), compare=False)
    #: Seconds to wait after subscribing before publishing (subscriptions crossing nodes).
    settle_seconds: float = 0.0

    def subscriber_endpoint(self, index: int) -> str:
        return self.subscribers[index % len(self.subscribers)]

    def node_stats(self) -> dict[str, int]:
        """Summed node counters (multicasts, drops, …), if the nodes are in this process."""
        out: dict[str, int] = {}
        for node in self.nodes:
            stats = node.statistics()
            for key in ("unicasts", "multicasts", "multicast_dropped", "refused"):
                out[key] = out.get(key, 0) + int(getattr(stats, key, 0))
        return out


TopologyFactory = Callable[[], AbstractAsyncContextManager[Topology]]


@asynccontextmanager
async def one_node() -> AsyncIterator[Topology]:
    """One node in this process; publisher and subscribers all on it."""
    async with open_node("127.0.0.1:0") as node:
        yield Topology("1 node", 1, (node.endpoint,), (node.endpoint,), (node,))


def node_line(count: int) -> TopologyFactory:
    """``count`` linked nodes in a line, in this process; publisher on the first,
    subscribers on the last, so every message crosses all of them."""

    @asynccontextmanager
    async def line() -> AsyncIterator[Topology]:
        async with AsyncExitStack() as stack:
            nodes: list[Any] = []
            for _ in range(count):
                peers = [nodes[-1].p2p_endpoint] if nodes else []
                nodes.append(
                    await stack.enter_async_context(
                        open_node("127.0.0.1:0", p2p_listen="127.0.0.1:0", peers=peers)
                    )
                )
            name = f"{count} nodes"
            yield Topology(
                name, count, (nodes[0].endpoint,), (nodes[-1].endpoint,), tuple(nodes), 0.2
            )

    return line


#: name -> factory; the floor of an n-node topology is the n-hop forwarder.
TOPOLOGIES: dict[str, TopologyFactory] = {
    "1 node": one_node,
    "2 nodes": node_line(2),
    "4 nodes": node_line(4),
}


async def wait_routable(client: AmopClient, topic: str, *, seconds: float = 10.0) -> None:
    """Wait until a unicast on ``topic`` finds a subscriber (subscriptions may propagate late).

    The probe is a unicast with an empty payload; subscribers must answer it.
    """
    with trio.fail_after(seconds):
        while True:
            try:
                await client.publish(topic, b"", timeout=seconds)
                return
            except NoSubscriberError:
                await trio.sleep(0.01)


async def _responder(client: AmopClient, topic: str, ready: trio.Event) -> None:
    """Answer every unicast on ``topic`` with its own data."""
    async with client.subscribe(topic) as sub:
        ready.set()
        async for message in sub:
            if message.kind is MessageKind.UNICAST:
                await message.reply(message.data)


def _scenario(name: str, topo: Topology) -> str:
    return f"{name} ({topo.name})"


# -- unicast -----------------------------------------------------------------------------


async def bench_unicast(topo: Topology, settings: Settings) -> list[Result]:
    """Sequential request/reply RTT per payload, then ``settings.inflight`` in flight."""
    results: list[Result] = []
    topic = "bench.unicast"
    async with (
        open_amop(topo.subscriber_endpoint(0)) as subscriber,
        open_amop(list(topo.publisher)) as publisher,
        trio.open_nursery() as nursery,
    ):
        ready = trio.Event()
        nursery.start_soon(_responder, subscriber, topic, ready)
        await ready.wait()
        await wait_routable(publisher, topic)
        for size in settings.rtt_payloads:
            data = bytes(size)

            async def roundtrip(data: bytes = data) -> None:
                await publisher.publish(topic, data)

            samples = await measure_sequential(
                f"amop unicast {topo.name} {size} B", roundtrip, settings
            )
            results.append(
                latency_result(SYSTEM, _scenario("rtt", topo), size, samples, hops=topo.hops)
            )

        # Many requests in flight: one task per outstanding request, one publisher connection.
        size = 256
        data = bytes(size)

        async def request() -> None:
            await publisher.publish(topic, data)

        samples, elapsed, errors = await measure_concurrent(
            f"amop unicast {topo.name} @{settings.inflight}", request, settings
        )
        figures = summarize_ns(samples)
        figures["req_per_s"] = rate(len(samples), elapsed)
        if errors:
            figures["errors"] = errors
        results.append(
            Result(
                SYSTEM,
                _scenario(f"rtt@{settings.inflight}", topo),
                size,
                figures,
                LATENCY,
                topo.hops,
                samples_ns=samples,
            )
        )
        nursery.cancel_scope.cancel()
    return results


# -- multicast throughput -------------------------------------------------------------------


async def _open_subscribers(
    topo: Topology,
    topic: str,
    count: int,
    stack: contextlib.AsyncExitStack,
    *,
    buffer: int = 1000,
) -> list[Any]:
    subs = []
    for i in range(count):
        client = await stack.enter_async_context(open_amop(topo.subscriber_endpoint(i)))
        subs.append(await stack.enter_async_context(client.subscribe(topic, buffer=buffer)))
    return subs


async def bench_multicast(topo: Topology, settings: Settings) -> list[Result]:
    """One-way multicast throughput to 1 and 10 subscribers, per payload size."""
    results: list[Result] = []
    variants: list[tuple[int, int]] = [(n, 1) for n in settings.multicast_subscribers]
    variants.append((1, 16))  # 16 broadcasts in flight: the publisher does not wait for each ack
    for n_subs, window in variants:
        payloads = settings.throughput_payloads if window == 1 else (256,)
        for size in payloads:
            topic = f"bench.multicast.{n_subs}.{window}.{size}"
            async with contextlib.AsyncExitStack() as stack:
                publisher = await stack.enter_async_context(open_amop(list(topo.publisher)))
                subs = await _open_subscribers(topo, topic, n_subs, stack)
                await trio.sleep(topo.settle_seconds)
                before = topo.node_stats()

                async def send(
                    message: bytes, publisher: AmopClient = publisher, topic: str = topic
                ) -> None:
                    await publisher.broadcast(topic, message)

                label = f"amop multicast 1→{n_subs} x{window} {size} B"
                figures = await measure_one_way(
                    label, send, [s.receive for s in subs], size, settings, window=window
                )
                after = topo.node_stats()
                figures["client_dropped"] = sum(s.statistics().dropped for s in subs)
                if after:
                    figures["node_dropped"] = after.get("multicast_dropped", 0) - before.get(
                        "multicast_dropped", 0
                    )
            scenario = f"multicast 1→{n_subs}" + (f" x{window} in flight" if window > 1 else "")
            results.append(
                Result(SYSTEM, _scenario(scenario, topo), size, figures, THROUGHPUT, topo.hops)
            )
    return results


# -- fan-out -----------------------------------------------------------------------------


def _leaf_names(exc: BaseException) -> str:
    """``LocalProtocolError`` for an exception, or for every leaf of an exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return "+".join(sorted({_leaf_names(e) for e in exc.exceptions}))
    return type(exc).__name__


def _count_error(errors: dict[str, int], phase: str, exc: BaseException) -> None:
    key = f"{phase}:{_leaf_names(exc)}"
    errors[key] = errors.get(key, 0) + 1


async def _hold_subscriber(
    endpoint: str,
    topic: str,
    limiter: trio.CapacityLimiter,
    ready: Tally,
    arrivals: list[list[int]],
    tallies: list[Tally],
    stop: trio.Event,
    errors: dict[str, int],
) -> None:
    """One fan-out subscriber: connect (limited), subscribe, timestamp every message.

    Errors never end the benchmark: they are counted in ``errors`` by phase
    (connect, run, close) and reported with the figures.
    """
    clock = time.perf_counter_ns
    phase = "connect"
    try:
        async with contextlib.AsyncExitStack() as stack:
            async with limiter:
                client = await stack.enter_async_context(open_amop(endpoint, ping_interval=30))
                sub = await stack.enter_async_context(client.subscribe(topic))
            ready.add()
            phase = "run"
            async with trio.open_nursery() as nursery:

                async def receive() -> None:
                    async for message in sub:
                        (rnd,) = _ROUND.unpack_from(message.data)
                        if rnd < len(arrivals):
                            arrivals[rnd].append(clock())
                            tallies[rnd].add()

                nursery.start_soon(receive)
                await stop.wait()
                nursery.cancel_scope.cancel()
            phase = "close"
    except Exception as exc:
        _count_error(errors, phase, exc)


async def bench_fanout(topo: Topology, settings: Settings) -> list[Result]:
    """Time from one broadcast to its arrival at each of ``fanout_clients`` subscribers."""
    n = settings.fanout_clients
    raise_nofile(4 * n + 1024)
    topic = "bench.fanout"
    rounds = settings.fanout_rounds
    arrivals: list[list[int]] = [[] for _ in range(rounds)]
    tallies = [Tally() for _ in range(rounds)]
    ready = Tally()
    stop = trio.Event()
    limiter = trio.CapacityLimiter(CONNECT_CONCURRENCY)
    clock = time.perf_counter_ns
    errors: dict[str, int] = {}
    samples: list[int] = []
    all_times: list[int] = []
    lost = 0
    subscribed = 0
    connect_s = float("nan")
    gc_watch = GcWatch()
    try:
        async with trio.open_nursery() as nursery:
            t_connect = clock()
            for i in range(n):
                nursery.start_soon(
                    _hold_subscriber,
                    topo.subscriber_endpoint(i),
                    topic,
                    limiter,
                    ready,
                    arrivals,
                    tallies,
                    stop,
                    errors,
                )
            connect_deadline = trio.current_time() + (20 if settings.quick else 60)
            while not await ready.wait_for(n, 1.0) and trio.current_time() < connect_deadline:
                note(f"  fan-out: {ready.value}/{n} subscribers connected")
            connect_s = (clock() - t_connect) / 1e9
            if ready.value < n:
                note(f"  fan-out: only {ready.value} of {n} subscribers connected; using those")
            subscribed = ready.value
            await trio.sleep(topo.settle_seconds)
            async with open_amop(list(topo.publisher)) as publisher:
                with (
                    Progress(f"amop fan-out 1→{n}", rounds, enabled=settings.progress) as bar,
                    gc_watch,
                ):
                    for rnd in range(rounds):
                        await trio.sleep(0.2)  # let pings and stragglers settle between rounds
                        data = _ROUND.pack(rnd) + bytes(256 - _ROUND.size)
                        t0 = clock()
                        await publisher.broadcast(topic, data)
                        await tallies[rnd].wait_for(subscribed, 10)
                        got = arrivals[rnd]
                        lost += subscribed - len(got)
                        samples += [t - t0 for t in got]
                        if got:
                            all_times.append(max(got) - t0)
                        bar.update()
            stop.set()
    except Exception as exc:
        # Keep what was measured (a client failing to close must not lose the figures).
        _count_error(errors, "scenario", exc)
    figures = summarize_ns(samples)
    figures.update(
        {
            "all_received_us": median(all_times) / 1e3 if all_times else float("nan"),
            "subscribers": subscribed,
            "rounds": rounds,
            "lost": lost,
            "connect_s": connect_s,
            "deliveries_per_s": (
                subscribed * 1e9 / median(all_times) if all_times else float("nan")
            ),
            **gc_watch.figures(),
        }
    )
    if errors:
        figures["client_errors"] = errors
        note(f"  fan-out: client errors {errors}")
    return [
        Result(
            SYSTEM,
            _scenario(f"fan-out 1→{n}", topo),
            256,
            figures,
            LATENCY,
            topo.hops,
            samples_ns=samples,
        )
    ]


# -- codec -------------------------------------------------------------------------------


def bench_codec(settings: Settings) -> list[Result]:
    """ns per frame of encode_frame+encode_amop_body and decode_frame+decode_amop_body."""
    results = []
    clock = time.perf_counter_ns
    topic = "bench.codec"
    seq = new_seq()
    for size in settings.rtt_payloads:
        data = bytes(size)
        raw = encode_frame(Frame(PacketType.AMOP_REQUEST, seq, encode_amop_body(topic, data)))
        for what in ("encode", "decode"):
            budget = Budget(settings.codec_iterations, 5.0)
            start = clock()
            if what == "encode":
                while budget.take():
                    encode_frame(Frame(PacketType.AMOP_REQUEST, seq, encode_amop_body(topic, data)))
            else:
                while budget.take():
                    decode_amop_body(decode_frame(raw).payload)
            elapsed = clock() - start
            results.append(
                Result(
                    SYSTEM,
                    f"codec {what}",
                    size,
                    {"ns_per_frame": elapsed / budget.used, "frames": budget.used},
                    COST,
                )
            )
    budget = Budget(settings.codec_iterations, 2.0)
    start = clock()
    while budget.take():
        new_seq()
    results.append(
        Result(
            SYSTEM,
            "codec new_seq",
            None,
            {"ns_per_frame": (clock() - start) / budget.used, "frames": budget.used},
            COST,
        )
    )
    return results


# -- node memory (node in a subprocess) ----------------------------------------------------


class NodeProcess:
    """``python -m amop_trio node`` on a free loopback port, in a subprocess; ``options`` added."""

    def __init__(self, *options: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amop_trio", "node", "--listen", "127.0.0.1:0", *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.endpoint = ""

    async def started(self, timeout: float = 15.0) -> str:
        assert self.proc.stdout is not None
        with trio.fail_after(timeout):
            line = await trio.to_thread.run_sync(self.proc.stdout.readline, abandon_on_cancel=True)
        match = re.search(r"wss?://(\S+)", line)
        if not match:
            raise RuntimeError(f"amop node did not say where it listens: {line!r}")
        self.endpoint = match.group(1).rstrip("/")
        return self.endpoint

    def rss_kib(self) -> int:
        return proc_status(self.proc.pid).get("VmRSS", 0)

    def status(self) -> dict[str, int]:
        return proc_status(self.proc.pid)

    def cpu_s(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class StoppedSubscriber:
    """An ``amop sub`` subprocess that subscribes, then is SIGSTOPped: it reads nothing more."""

    def __init__(self, endpoint: str, topic: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amop_trio", "sub", endpoint, topic],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    async def subscribe_then_stop(self, timeout: float = 15.0) -> None:
        assert self.proc.stdout is not None
        with trio.fail_after(timeout):
            while True:
                line = await trio.to_thread.run_sync(
                    self.proc.stdout.readline, abandon_on_cancel=True
                )
                if not line or "Subscriber success" in line:
                    break
        os.kill(self.proc.pid, signal.SIGSTOP)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


async def _idle_client(
    endpoint: str,
    limiter: trio.CapacityLimiter,
    ready: Tally,
    stop: trio.Event,
    errors: dict[str, int],
) -> None:
    phase = "connect"
    try:
        async with contextlib.AsyncExitStack() as stack:
            async with limiter:
                await stack.enter_async_context(open_amop(endpoint, ping_interval=30))
            ready.add()
            phase = "run"
            await stop.wait()
            phase = "close"
    except Exception as exc:
        _count_error(errors, phase, exc)


async def _node_status(client: AmopClient) -> dict[str, Any] | None:
    """The node's own status (counters, clients) if this client version can ask for it."""
    ask = getattr(client, "node_status", None)
    if ask is None:
        return None
    try:
        with trio.fail_after(5):
            status = await ask()
    except Exception as exc:
        note(f"  memory: node status unavailable: {exc!r}")
        return None
    return status if isinstance(status, dict) else None


def _stat(status: dict[str, Any], key: str) -> int:
    value = status.get("statistics", {}).get(key, 0)
    return int(value) if isinstance(value, int) else 0


async def bench_memory(settings: Settings) -> list[Result]:
    """Node RSS: idle, with N idle clients, and around a multicast flood to a stopped reader."""
    n = settings.memory_clients
    raise_nofile(4 * n + 1024)
    node = NodeProcess()
    slow: StoppedSubscriber | None = None
    figures: dict[str, Any] = {}
    mib = 1 / 1024
    try:
        endpoint = await node.started()
        await trio.sleep(0.5)
        figures["rss_start_MiB"] = node.rss_kib() * mib
        ready = Tally()
        stop = trio.Event()
        errors: dict[str, int] = {}
        async with trio.open_nursery() as nursery:
            limiter = trio.CapacityLimiter(CONNECT_CONCURRENCY)
            for _ in range(n):
                nursery.start_soon(_idle_client, endpoint, limiter, ready, stop, errors)
            connected = await ready.wait_for(n, 60)
            await trio.sleep(1.0)
            figures["idle_clients"] = ready.value
            figures["rss_idle_clients_MiB"] = node.rss_kib() * mib
            if not connected:
                note(f"  memory: only {ready.value} of {n} idle clients connected")
            if ready.value:
                figures["kib_per_idle_client"] = (
                    (figures["rss_idle_clients_MiB"] - figures["rss_start_MiB"])
                    * 1024
                    / ready.value
                )

            # The flood: a fast in-process subscriber, a stopped one in a subprocess.
            topic = "bench.flood"
            slow = StoppedSubscriber(endpoint, topic)
            async with (
                open_amop(endpoint) as fast_client,
                fast_client.subscribe(topic, buffer=10_000) as fast_sub,
                open_amop(endpoint) as publisher,
            ):
                await slow.subscribe_then_stop()
                await trio.sleep(0.5)
                figures["rss_before_flood_MiB"] = node.rss_kib() * mib
                before = await _node_status(publisher)
                received = Tally()

                async def count_fast() -> None:
                    async for _ in fast_sub:
                        received.add()

                nursery.start_soon(count_fast)
                data = bytes(256)
                budget = Budget(settings.flood_count, settings.flood_seconds)
                sent = [0]
                peak = [0]

                async def flood(bar: Progress) -> None:
                    while budget.take():
                        await publisher.broadcast(topic, data)
                        sent[0] += 1
                        if sent[0] % 1000 == 0:
                            bar.update(1000)
                            peak[0] = max(peak[0], node.rss_kib())

                cpu0 = node.cpu_s()
                t0 = time.perf_counter_ns()
                with Progress(
                    f"amop flood {settings.flood_count} multicasts",
                    settings.flood_count,
                    enabled=settings.progress,
                ) as bar:
                    async with trio.open_nursery() as senders:
                        for _ in range(settings.flood_window):
                            senders.start_soon(flood, bar)
                elapsed = time.perf_counter_ns() - t0
                figures["flood_sent"] = sent[0]
                figures["flood_msg_per_s"] = rate(sent[0], elapsed)
                figures["node_cpu_s"] = node.cpu_s() - cpu0
                figures["rss_after_flood_MiB"] = node.rss_kib() * mib
                figures["rss_peak_sampled_MiB"] = max(peak[0], node.rss_kib()) * mib
                await received.wait_for(sent[0], settings.drain_seconds)
                figures["fast_sub_received"] = received.value
                figures["fast_sub_dropped"] = fast_sub.statistics().dropped
                after = await _node_status(publisher)
                if after is not None and before is not None:
                    figures["node_multicast_dropped"] = _stat(after, "multicastDropped") - _stat(
                        before, "multicastDropped"
                    )
                    figures["node_clients_before_after"] = (
                        f"{before.get('clients')}->{after.get('clients')}"
                    )
                slow.kill()
                slow = None
                await trio.sleep(1.0)
                figures["rss_after_slow_left_MiB"] = node.rss_kib() * mib
                status = node.status()
                figures["vm_hwm_MiB"] = status.get("VmHWM", 0) * mib
            stop.set()
        figures["time_limited"] = budget.timed_out
        if errors:
            figures["client_errors"] = errors
            note(f"  memory: client errors {errors}")
    except Exception as exc:
        # Keep what was measured; say what went wrong.
        figures["error"] = f"{_leaf_names(exc)}: {exc!s:.200}"
        note(f"  memory: {figures['error']}")
    finally:
        figures["node_alive"] = node.proc.poll() is None
        if slow is not None:
            slow.kill()
        node.stop()
    if len(figures) <= 2:
        raise RuntimeError(f"node memory: nothing measured ({figures})")
    return [Result(SYSTEM, "node memory (subprocess)", 256, figures, MEMORY)]


# -- everything --------------------------------------------------------------------------


async def run_amop(settings: Settings, topologies: Sequence[str] | None = None) -> list[Result]:
    results: list[Result] = []
    names = list(topologies or TOPOLOGIES)

    async def attempt(label: str, bench: Callable[[], Awaitable[list[Result]]]) -> None:
        note(f"amop: {label}")
        try:
            results.extend(await bench())
        except Exception as exc:
            note(f"amop: {label} failed: {exc!r}")

    for name in names:
        factory = TOPOLOGIES[name]
        for label, bench in (
            ("unicast", bench_unicast),
            ("multicast", bench_multicast),
            ("fan-out", bench_fanout),
        ):

            async def scenario(bench: Any = bench, factory: TopologyFactory = factory) -> Any:
                async with factory() as topo:
                    return await bench(topo, settings)

            await attempt(f"{label} ({name})", scenario)

    async def codec() -> list[Result]:
        return bench_codec(settings)

    await attempt("codec", codec)
    await attempt("node memory", lambda: bench_memory(settings))
    return results


def main(argv: list[str]) -> list[Result]:
    settings = QUICK if "--quick" in argv else Settings()
    return trio.run(run_amop, settings)


if __name__ == "__main__":
    from _harness import print_table

    for r in main(sys.argv[1:]):
        print_table(
            f"{r.system} {r.scenario} {r.payload}",
            ["figure", "value"],
            [[k, v if not isinstance(v, dict) else str(v)] for k, v in r.figures.items()],
        )
