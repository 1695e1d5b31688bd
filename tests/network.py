"""Real node processes for network tests: start, stop, link in any topology."""

from __future__ import annotations

import itertools
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from amop_trio import open_amop
from amop_trio._chain import wait_listening


def _port_range() -> tuple[int, int]:
    """Ports below the ephemeral range, a share of them per pytest-xdist worker.

    No outgoing connection (a node dialling its peers, or anything else on the
    machine) takes one of them as its local port between the check that a port
    is free and the node listening on it, and parallel test workers never pick
    the same port.
    """
    try:
        top = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        top = 32768
    bottom = 10000
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    share = (top - bottom) // workers
    return bottom + worker * share, bottom + (worker + 1) * share


#: The ports FISCO BCOS and ``amop chain`` use by default (SDK from 20200, P2P from
#: 30300), and ``amop demo``'s: a test run beside them never takes one.
_DEFAULT_PORTS = (range(20200, 20300), range(30300, 30400))


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that are free now."""
    low, high = _port_range()
    while True:
        first = random.randrange(low, high - count)
        last = first + count - 1
        if any(first in r or last in r for r in _DEFAULT_PORTS):
            continue
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first


def free_port() -> int:
    """A loopback port nothing listens on now (see ``free_ports``)."""
    return free_ports(1)


@dataclass
class NodeProcess:
    """One ``amop node`` process."""

    name: str
    sdk_port: int
    p2p_port: int
    peers: list[str] = field(default_factory=list)
    process: trio.Process | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.sdk_port}"

    @property
    def p2p(self) -> str:
        return f"127.0.0.1:{self.p2p_port}"

    async def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "amop_trio",
            "node",
            "--listen",
            self.endpoint,
            "--p2p-listen",
            self.p2p,
            "--node-id",
            f"test-{self.name}",
        ]
        for peer in self.peers:
            command += ["--peer", peer]
        self.process = await trio.lowlevel.open_process(
            command, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        if not await wait_listening(self.endpoint, 30):
            raise RuntimeError(f"node {self.name} did not start")

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)
            with trio.move_on_after(5):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()


class Network:
    """A set of node processes started from a list of links."""

    def __init__(self, names: str, links: list[tuple[str, str]]) -> None:
        self.nodes = {name: NodeProcess(name, free_port(), free_port()) for name in names}
        for a, b in links:  # b dials a
            self.nodes[b].peers.append(self.nodes[a].p2p)

    def __getitem__(self, name: str) -> NodeProcess:
        return self.nodes[name]

    async def start(self) -> None:
        async with trio.open_nursery() as nursery:
            for node in self.nodes.values():
                nursery.start_soon(node.start)

    async def stop(self) -> None:
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for node in self.nodes.values():
                    nursery.start_soon(node.stop, signal.SIGKILL)


@asynccontextmanager
async def running_network(names: str, links: list[tuple[str, str]]) -> AsyncIterator[Network]:
    network = Network(names, links)
    try:
        await network.start()
        yield network
    finally:
        await network.stop()


def line(names: str) -> list[tuple[str, str]]:
    return list(itertools.pairwise(names))


def ring(names: str) -> list[tuple[str, str]]:
    return [*line(names), (names[0], names[-1])]


def mesh(names: str) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]


async def wait_for_topic(
    endpoint: str, topic: str, nodes: int = 1, within: float = 20, certs: Path | None = None
) -> None:
    """Wait until ``endpoint``'s node knows ``nodes`` other nodes with subscribers of ``topic``."""
    async with open_amop(endpoint, certs=certs) as client:
        with trio.fail_after(within):
            while True:
                status = await client.node_status()
                holders = [
                    e
                    for e in status["directory"]
                    if e["topics"].get(topic) and e["node"] != status["nodeId"]
                ]
                if len(holders) >= nodes:
                    return
                await trio.sleep(0.02)
