"""Run the ``amop`` command and the examples as real processes, for the CLI tests.

``sys.executable -m amop_trio`` stands for the ``amop`` console script. Every
process gets PYTHONUNBUFFERED=1, is killed in ``finally`` if still alive, and
every wait is bounded.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from .network import free_port as free_port
from .network import free_ports as free_ports

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
ENV.pop("AMOP_SDK_CERTS", None)
AMOP = (sys.executable, "-m", "amop_trio")
EXAMPLES = REPO / "examples" / "amop"
SUBSCRIBER = (sys.executable, str(EXAMPLES / "sub" / "subscriber.py"))
UNICAST_PUB = (sys.executable, str(EXAMPLES / "unicast_pub" / "publisher.py"))
MULTICAST_PUB = (sys.executable, str(EXAMPLES / "multicast_pub" / "publisher.py"))
STAMP = r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d"

Arg = str | bytes | os.PathLike[str]


def lines(data: bytes) -> list[str]:
    return data.decode("utf-8", "replace").splitlines()


def error_line(result: subprocess.CompletedProcess[bytes], prefix: str) -> str:
    """The single stderr line of a failed command, checked to be one line, no traceback."""
    err = lines(result.stderr)
    assert len(err) == 1, err
    assert err[0].startswith(prefix), err
    return err[0]


async def run(
    args: Sequence[Arg],
    timeout: float = 15,
    cwd: Path = REPO,
    env: dict[str, str] | None = None,
    stdin: bytes = b"",
) -> subprocess.CompletedProcess[bytes]:
    """Run a command to completion; killed (and the test failed) after ``timeout``."""
    with trio.fail_after(timeout):
        return await trio.run_process(
            list(args),
            cwd=cwd,
            env=env or ENV,
            check=False,
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
        )


async def run_all(
    commands: dict[str, list[Arg]], stdin: dict[str, bytes] | None = None, **options: Any
) -> dict[str, subprocess.CompletedProcess[bytes]]:
    """Run independent commands side by side; their results by name."""
    results: dict[str, subprocess.CompletedProcess[bytes]] = {}

    async def one(name: str) -> None:
        results[name] = await run(commands[name], stdin=(stdin or {}).get(name, b""), **options)

    async with trio.open_nursery() as nursery:
        for name in commands:
            nursery.start_soon(one, name)
    return results


class Running:
    """A background process whose stdout and stderr are collected line by line."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = trio.Event()
        self.closed: set[str] = set()

    async def _pump(self, stream: trio.abc.ReceiveStream, into: list[str], name: str) -> None:
        pending = b""
        async for chunk in stream:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            into.extend(line.decode("utf-8", "replace") for line in complete)
            self._changed.set()
            self._changed = trio.Event()
        if pending:
            into.append(pending.decode("utf-8", "replace"))
        self.closed.add(name)
        self._changed.set()

    def has_line(self, pattern: str | re.Pattern[str], err: bool = False) -> bool:
        return any(re.search(pattern, line) for line in (self.err if err else self.out))

    async def wait_line(
        self, pattern: str | re.Pattern[str], timeout: float = 5, err: bool = False
    ) -> None:
        """Wait until stdout (or stderr) has a line matching ``pattern``."""
        with trio.move_on_after(timeout):
            while not self.has_line(pattern, err):
                if ("err" if err else "out") in self.closed:
                    break
                await self._changed.wait()
        if not self.has_line(pattern, err):
            pytest.fail(
                f"no line matching {pattern!r} within {timeout} s from {self.process.args!r}; "
                f"returncode={self.process.returncode}\nstdout={self.out}\nstderr={self.err}"
            )

    async def wait_exit(self, timeout: float) -> int:
        with trio.fail_after(timeout):
            code = await self.process.wait()
        # Let the pumps take what the process wrote last.
        with trio.move_on_after(2):
            while len(self.closed) < 2:
                await self._changed.wait()
        return code


@asynccontextmanager
async def spawn(
    args: Sequence[Arg], cwd: Path = REPO, env: dict[str, str] | None = None
) -> AsyncIterator[Running]:
    """Start a process for the block; it is killed on the way out if still running."""
    process = await trio.lowlevel.open_process(
        list(args),
        cwd=cwd,
        env=env or ENV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    running = Running(process)
    try:
        async with trio.open_nursery() as nursery:
            assert process.stdout is not None
            assert process.stderr is not None
            nursery.start_soon(running._pump, process.stdout, running.out, "out")
            nursery.start_soon(running._pump, process.stderr, running.err, "err")
            try:
                yield running
            finally:
                if process.returncode is None:
                    process.kill()
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await process.wait()
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    await pipe.aclose()


@asynccontextmanager
async def amop_node(*options: str, port: int | None = None) -> AsyncIterator[tuple[Running, str]]:
    """``amop node`` on a free loopback port, once it says it is listening."""
    endpoint = f"127.0.0.1:{port or free_port()}"
    async with spawn([*AMOP, "node", "--listen", endpoint, *options]) as node:
        await node.wait_line(r"listening", timeout=15)
        yield node, endpoint


def alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"
