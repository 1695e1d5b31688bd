"""Real node processes for network tests: start, stop, link in any topology."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from amop_trio import MessageKind, open_amop
from amop_trio._chain import wait_listening


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def serve_replies(
    client,
    topic: str,
    tag: bytes,
    seen: Counter | None = None,
    *,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer every unicast on ``topic`` with ``tag + data``; count what arrives."""
    async with client.subscribe(topic) as sub:
        task_status.started()
        async for msg in sub:
            if seen is not None:
                seen[msg.data] += 1
            if msg.kind is MessageKind.UNICAST:
                await msg.reply(tag + msg.data)


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


async def wait_for_topic(endpoint: str, topic: str, nodes: int = 1, within: float = 20) -> None:
    """Wait until ``endpoint``'s node knows ``nodes`` other nodes with subscribers of ``topic``."""
    async with open_amop(endpoint) as client:
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
