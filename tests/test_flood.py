"""A multicast flood towards slow readers costs the node neither memory nor latency.

The node runs as a real process (``python -m amop_trio node``) so its memory
can be read from /proc/PID/status (VmRSS) without the test's own allocations
mixed in. README, "The node": a multicast is queued on every subscriber's
bounded outbox without waiting; a subscriber whose outbox is full misses that
message, "so a slow reader costs itself messages, never the node's memory or
other clients' latency".

Run with ``pytest -n 0 -s`` to see the figures.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pytest
import trio

from amop_trio import AmopClient, Subscription, open_amop
from amop_trio._wire import rfc6455 as wsc
from amop_trio._wire.ws_upgrade import ClientUpgrade

from .conftest import serve_replies
from .network import free_port

MIB = 1024 * 1024
#: Multicasts in the flood: enough for a slope in the node's RSS to show between the
#: two halves. AMOP_TEST_FLOOD=100000 runs the 100,000 the issue asks for; the memory
#: benchmark (benchmarks/amop.py) reports the node's RSS after 100,000 too.
FLOOD = int(os.environ.get("AMOP_TEST_FLOOD", "20000"))
#: broadcast() waits for the node's acknowledgement: keep several in flight.
SENDERS = 16
#: Multicasts before the baseline is taken, so allocator warm-up is not "growth".
WARM_UP = 2_000
#: Bounds on the node's RSS growth over the baseline. In the second half of the flood a
#: leak of 160 bytes per multicast fails (100,000 multicasts of the node measured flat).
MAX_GROWTH = 64 * MIB
MAX_SECOND_HALF_GROWTH = max(MIB, FLOOD // 2 * 160)
#: A healthy unicast round trip during the flood must succeed within this.
RTT_TIMEOUT = 5.0
MAX_RTT = 2.0


def rss(pid: int) -> int:
    """Resident set size of process ``pid``, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid``."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mib(size: float) -> str:
    return f"{size / MIB:.1f} MiB"


@dataclass
class NodeProcess:
    process: trio.Process
    port: int
    log: Path

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self) -> int:
        assert self.process.returncode is None, f"the node died: {self.log.read_text()[-2000:]}"
        return rss(self.pid)


def _open_log(path: Path) -> BinaryIO:
    return open(path, "wb")  # procfs-fast and once per test: no need for trio.Path


@asynccontextmanager
async def node_process(tmp_path: Path) -> AsyncIterator[NodeProcess]:
    """``python -m amop_trio node`` on a free port; killed when the block ends."""
    port = free_port()
    log = tmp_path / "node.log"
    with _open_log(log) as stderr:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "amop_trio", "node", "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        with trio.fail_after(15):
            while True:
                assert process.returncode is None, f"the node exited: {log.read_text()}"
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                except OSError:
                    await trio.sleep(0.05)
                    continue
                await stream.aclose()
                break
        yield NodeProcess(process, port, log)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()


# -- a subscriber that never reads ------------------------------------------------------

_HEAD = struct.Struct(">HHhH")


def _frame(ptype: int, payload: bytes) -> bytes:
    seq = uuid.uuid4().hex.encode()
    return _HEAD.pack(0, ptype, 0, len(seq)) + seq + b"\x00\x00" + payload


@asynccontextmanager
async def never_reading_subscriber(
    nursery: trio.Nursery, endpoint: str, topic: str
) -> AsyncIterator[None]:
    """Upgrades a raw TCP connection, subscribes to ``topic``, then never reads again,
    so the node's writes to it stall and its outbox for it fills up."""
    host, port = endpoint.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    try:
        upgrade = ClientUpgrade(endpoint, "/")
        await stream.send_all(upgrade.request)
        rest = None
        while rest is None:
            rest = upgrade.receive_data(await stream.receive_some(4096))
        decoder = wsc.WsConnection(client=True, max_message=1 << 26)
        decoder.feed(rest)

        async def exchange(ptype: int, payload: bytes) -> None:
            await stream.send_all(wsc.encode_frame(wsc.BINARY, _frame(ptype, payload), mask=True))
            while decoder.next_event() is None:
                decoder.feed(await stream.receive_some(4096))

        hello = {"minVersion": 0, "maxVersion": 2, "moduleID": 2, "amopTrio": ["acks"]}
        await exchange(0x100, json.dumps(hello).encode())
        await exchange(0x110, json.dumps({"topics": [topic]}).encode())  # acknowledged
        yield
    finally:
        await trio.aclose_forcefully(stream)


async def wait_topics(client: AmopClient, expected: dict[str, int]) -> None:
    with trio.fail_after(10):
        while True:
            topics = (await client.node_status())["topics"]
            if all(topics.get(t, 0) >= n for t, n in expected.items()):
                return
            await trio.sleep(0.05)


# -- the flood ------------------------------------------------------------------------------


@dataclass
class Samples:
    """(seconds since the flood began, multicasts sent, node RSS) triples."""

    points: list[tuple[float, int, int]] = field(default_factory=list)

    def peak(self, up_to: int | None = None) -> int:
        return max(r for _, sent, r in self.points if up_to is None or sent <= up_to)


async def slow_reader(sub: Subscription, seen: list[int]) -> None:
    async for _ in sub:
        seen[0] += 1
        await trio.sleep(0.5)


@pytest.mark.slow
async def test_multicast_flood_to_slow_readers_keeps_node_memory_flat(tmp_path: Path) -> None:
    """FLOOD multicasts on "flood", which one client reads at two messages a second
    (``subscription_buffer=10``) and another never reads; unicast request/reply on
    "rpc" keeps being served meanwhile, and the node's RSS stays flat."""
    with trio.fail_after(170):
        async with (
            node_process(tmp_path) as node,
            open_amop(node.endpoint, subscription_buffer=10) as slow,
            open_amop(node.endpoint) as sender,
            open_amop(node.endpoint) as responder,
            open_amop(node.endpoint) as requester,
            trio.open_nursery() as ws_nursery,
            never_reading_subscriber(ws_nursery, node.endpoint, "flood"),
            slow.subscribe("flood") as flood_sub,
            trio.open_nursery() as readers,
        ):
            seen = [0]
            readers.start_soon(slow_reader, flood_sub, seen)
            await readers.start(serve_replies, responder, "rpc", b"re: ")
            await wait_topics(requester, {"flood": 2, "rpc": 1})
            assert await requester.publish("rpc", b"hello", timeout=RTT_TIMEOUT) == b"re: hello"
            payload = b"m" * 64
            for _ in range(WARM_UP // SENDERS):
                async with trio.open_nursery() as warm:
                    for _ in range(SENDERS):
                        warm.start_soon(sender.broadcast, "flood", payload)
            await trio.sleep(0.5)
            before = node.rss()

            sent = 0
            samples = Samples()
            rtts: list[float] = []
            node_cpu = cpu_seconds(node.pid)
            own_cpu = time.process_time()
            start = trio.current_time()

            async def send(count: int) -> None:
                nonlocal sent
                for _ in range(count):
                    await sender.broadcast("flood", payload, timeout=30)
                    sent += 1

            async def sample() -> None:
                while True:
                    samples.points.append((trio.current_time() - start, sent, node.rss()))
                    await trio.sleep(0.1)

            async def measure_rtts() -> None:
                i = 0
                while True:
                    await trio.sleep(0.1)
                    data = b"rtt %d" % i
                    i += 1
                    begin = trio.current_time()
                    reply = await requester.publish("rpc", data, timeout=RTT_TIMEOUT)
                    rtts.append(trio.current_time() - begin)
                    assert reply == b"re: " + data

            async with trio.open_nursery() as flood:
                flood.start_soon(sample)
                flood.start_soon(measure_rtts)
                async with trio.open_nursery() as senders:
                    for _ in range(SENDERS):
                        senders.start_soon(send, FLOOD // SENDERS)
                elapsed = trio.current_time() - start
                node_cpu = cpu_seconds(node.pid) - node_cpu
                own_cpu = time.process_time() - own_cpu
                samples.points.append((elapsed, sent, node.rss()))
                flood.cancel_scope.cancel()
            assert sent == FLOOD
            right_after = node.rss()
            await trio.sleep(1.0)
            after = node.rss()

            status = await requester.node_status()
            stats = status["statistics"]
            assert await requester.publish("rpc", b"bye", timeout=RTT_TIMEOUT) == b"re: bye"
            readers.cancel_scope.cancel()

        first_half_peak = samples.peak(up_to=FLOOD // 2)
        peak = max(samples.peak(), right_after, after)
        first_half = first_half_peak - before
        second_half = peak - first_half_peak
        rate = FLOOD / elapsed
        during = [r for _, _, r in samples.points]
        print(
            f"\nflood: {FLOOD} multicasts by {SENDERS} sender tasks in {elapsed:.1f} s "
            f"= {rate:.0f} multicasts/s (after {WARM_UP} warm-up); CPU: node "
            f"{node_cpu / elapsed:.0%}, test process (clients) {own_cpu / elapsed:.0%}, "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n"
            f"node RSS: before {mib(before)}, during min {mib(min(during))} / max "
            f"{mib(max(during))} ({len(during)} samples), right after {mib(right_after)}, "
            f"1 s after {mib(after)}\n"
            f"growth: first half {mib(first_half)}, second half {mib(second_half)}, "
            f"peak over baseline {mib(peak - before)}\n"
            f"rpc during the flood: {len(rtts)} round trips, all ok, max "
            f"{max(rtts) * 1000:.0f} ms, median {sorted(rtts)[len(rtts) // 2] * 1000:.0f} ms\n"
            f"slow reader: read {seen[0]}, dropped {flood_sub.statistics().dropped}; node: "
            f"multicasts {stats['multicasts']}, dropped for full outboxes "
            f"{stats['multicastDropped']}"
        )
        # Progress over time, a line per ~10 %.
        step = max(1, len(samples.points) // 10)
        for t, n, r in samples.points[::step]:
            print(f"  t={t:5.1f} s  sent={n:6d}  rss={mib(r)}")

        assert stats["multicasts"] >= FLOOD + WARM_UP
        assert flood_sub.statistics().dropped > 0, "the slow reader was never overrun"
        assert len(rtts) >= 3, "too few round trips measured during the flood"
        assert max(rtts) < MAX_RTT, f"a unicast took {max(rtts):.2f} s during the flood"
        assert peak - before < MAX_GROWTH, f"node RSS grew by {mib(peak - before)}"
        assert second_half < max(MAX_SECOND_HALF_GROWTH, first_half / 2), (
            f"node RSS still growing: {mib(first_half)} in the first half of the flood, "
            f"{mib(second_half)} in the second"
        )


async def test_a_never_reading_subscriber_does_not_cost_the_node_memory_for_large_multicasts(
    tmp_path: Path,
) -> None:
    """The same promise with larger messages: 600 multicasts of 256 KiB (well under
    the default 32 MiB frame limit) to a topic one subscriber never reads.

    Regression test: up to 3386146 the node's outbox for a subscriber was bounded
    in frames only (``outbox_size``, 512), so it kept 512 x 256 KiB = 128 MiB for a
    reader that would never take them (+129 MiB measured), and could keep up to
    512 x 32 MiB = 16 GiB with frames at the size limit. df9806f bounds the outbox
    in bytes as well.
    """
    size = 256 * 1024
    count = 600
    with trio.fail_after(60):
        async with (
            node_process(tmp_path) as node,
            open_amop(node.endpoint) as sender,
            trio.open_nursery() as ws_nursery,
            never_reading_subscriber(ws_nursery, node.endpoint, "big"),
        ):
            await wait_topics(sender, {"big": 1})
            await sender.broadcast("big", b"w" * size)
            await trio.sleep(0.5)
            before = node.rss()
            payload = b"b" * size
            start = trio.current_time()
            for _ in range(count):
                await sender.broadcast("big", payload, timeout=30)
            elapsed = trio.current_time() - start
            await trio.sleep(1.0)
            after = node.rss()
            stats = (await sender.node_status())["statistics"]
        print(
            f"\nlarge multicasts: {count} x {size // 1024} KiB in {elapsed:.1f} s to a "
            f"subscriber that never reads; node RSS before {mib(before)}, after "
            f"{mib(after)} (+{mib(after - before)}); dropped for a full outbox: "
            f"{stats['multicastDropped']}"
        )
        assert stats["multicastDropped"] > 0, "the never-reading subscriber's outbox never filled"
        assert after - before < MAX_GROWTH, (
            f"a subscriber that never reads made the node hold {mib(after - before)} "
            f"({count} multicasts of {size // 1024} KiB sent)"
        )
