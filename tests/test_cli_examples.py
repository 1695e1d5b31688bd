"""The ``amop`` command and the go-sdk style examples, run as real processes.

``sys.executable -m amop_trio`` stands for the ``amop`` console script. Every
process is started from the repository root with PYTHONUNBUFFERED=1, killed in
``finally`` if still alive, and every wait is bounded.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from amop_trio import open_amop

from .network import serve_replies

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
AMOP = (sys.executable, "-m", "amop_trio")
EXAMPLES = REPO / "examples" / "amop"
SUBSCRIBER = (sys.executable, str(EXAMPLES / "sub" / "subscriber.py"))
UNICAST_PUB = (sys.executable, str(EXAMPLES / "unicast_pub" / "publisher.py"))
MULTICAST_PUB = (sys.executable, str(EXAMPLES / "multicast_pub" / "publisher.py"))

UNICAST_TEXT = "hello, FISCO BCOS, I am unique broadcast publisher!"
MULTICAST_TEXT = "hello, FISCO BCOS, I am multi broadcast publisher!"
STAMP = r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def received_line(text: str) -> re.Pattern[str]:
    return re.compile(rf"^{STAMP} received: {re.escape(text)}$")


async def run(
    args: Sequence[str], timeout: float, cwd: Path = REPO
) -> subprocess.CompletedProcess[bytes]:
    """Run a command to completion; killed (and the test failed) after ``timeout``."""
    with trio.fail_after(timeout):
        return await trio.run_process(
            list(args), cwd=cwd, env=ENV, check=False, capture_stdout=True, capture_stderr=True
        )


def lines(data: bytes) -> list[str]:
    return data.decode("utf-8", "replace").splitlines()


class Running:
    """A background process whose stdout and stderr are collected line by line."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = trio.Event()
        self.stdout_closed = False

    async def _pump(self, stream: trio.abc.ReceiveStream, into: list[str]) -> None:
        pending = b""
        async for chunk in stream:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            into.extend(line.decode("utf-8", "replace") for line in complete)
            self._changed.set()
            self._changed = trio.Event()
        if pending:
            into.append(pending.decode("utf-8", "replace"))
        if into is self.out:
            self.stdout_closed = True
        self._changed.set()

    def has_line(self, pattern: str | re.Pattern[str]) -> bool:
        return any(re.search(pattern, line) for line in self.out)

    async def wait_line(self, pattern: str | re.Pattern[str], timeout: float = 5) -> None:
        """Wait until stdout has a line matching ``pattern``."""
        with trio.move_on_after(timeout):
            while not self.has_line(pattern):
                if self.stdout_closed:
                    break
                await self._changed.wait()
        if not self.has_line(pattern):
            pytest.fail(
                f"no line matching {pattern!r} within {timeout} s from {self.process.args}; "
                f"returncode={self.process.returncode}\nstdout={self.out}\nstderr={self.err}"
            )

    async def wait_exit(self, timeout: float) -> int:
        with trio.fail_after(timeout):
            return await self.process.wait()


@asynccontextmanager
async def spawn(args: Sequence[str], cwd: Path = REPO) -> AsyncIterator[Running]:
    """Start a process for the block; it is killed on the way out if still running."""
    process = await trio.lowlevel.open_process(
        list(args), cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    running = Running(process)
    try:
        async with trio.open_nursery() as nursery:
            assert process.stdout is not None
            assert process.stderr is not None
            nursery.start_soon(running._pump, process.stdout, running.out)
            nursery.start_soon(running._pump, process.stderr, running.err)
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
async def amop_node() -> AsyncIterator[tuple[Running, str]]:
    """``amop node`` on a free loopback port, once it says it is listening."""
    endpoint = f"127.0.0.1:{free_port()}"
    async with spawn([*AMOP, "node", "--listen", endpoint]) as node:
        await node.wait_line(r"listening", timeout=10)
        yield node, endpoint


# -- tests ----------------------------------------------------------------------


async def test_demo() -> None:
    result = await run([*AMOP, "demo"], timeout=20)
    out = lines(result.stdout)
    assert result.returncode == 0, (out, lines(result.stderr))
    assert "Subscriber success" in out
    for text in (UNICAST_TEXT, MULTICAST_TEXT):
        pattern = received_line(f"{text} 0")
        assert any(pattern.match(line) for line in out), (pattern, out)
    assert any(re.match(rf"^{STAMP} publish message: ", line) for line in out), out


async def test_node_with_the_examples() -> None:
    with trio.fail_after(25):
        async with amop_node() as (node, endpoint), spawn([*SUBSCRIBER, endpoint, "hello"]) as sub:
            await sub.wait_line(r"^Subscriber success$", timeout=10)

            unicast = await run([*UNICAST_PUB, endpoint, "hello", "2"], timeout=10)
            out = lines(unicast.stdout)
            assert unicast.returncode == 0, (out, lines(unicast.stderr))
            assert any(
                re.match(rf"^{STAMP} publish message: {re.escape(UNICAST_TEXT)} 0$", line)
                for line in out
            ), out
            assert any(re.match(rf"^{STAMP} reply: ok$", line) for line in out), out
            await sub.wait_line(received_line(f"{UNICAST_TEXT} 0"))

            multicast = await run([*MULTICAST_PUB, endpoint, "hello", "2"], timeout=10)
            assert multicast.returncode == 0, (
                lines(multicast.stdout),
                lines(multicast.stderr),
            )
            await sub.wait_line(received_line(f"{MULTICAST_TEXT} 1"))

            node.process.send_signal(signal.SIGTERM)
            code = await node.wait_exit(1.5)
            assert code == 0, (node.out, node.err)


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc")
async def test_node_with_busy_polling_serves_then_sleeps_when_idle() -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    command = [*AMOP, "node", "--listen", endpoint, "--busy-poll-us", "20000"]
    with trio.fail_after(25):
        async with spawn(command) as node:
            await node.wait_line(r"listening", timeout=10)
            async with (
                open_amop(endpoint) as subscriber,
                open_amop(endpoint) as publisher,
                trio.open_nursery() as nursery,
            ):
                await nursery.start(serve_replies, subscriber, "busy", b"")
                for i in range(50):
                    assert await publisher.publish("busy", b"%d" % i) == b"%d" % i
                nursery.cancel_scope.cancel()
            # No frame arrives any more: after one 20 ms window the node sleeps again.
            await trio.sleep(0.2)
            before = cpu_seconds(node.process.pid)
            await trio.sleep(1)
            assert cpu_seconds(node.process.pid) - before < 0.3


async def test_busy_poll_window_must_not_be_negative() -> None:
    result = await run([*AMOP, "node", "--busy-poll-us", "-5"], timeout=10)
    assert result.returncode == 2
    assert "--busy-poll-us: must be a finite number >= 0, not -5" in result.stderr.decode()


async def test_pub_without_node_fails_cleanly() -> None:
    result = await run([*AMOP, "pub", f"127.0.0.1:{free_port()}", "t", "m"], timeout=15)
    err = lines(result.stderr)
    assert result.returncode == 1, (lines(result.stdout), err)
    assert len(err) == 1, err
    assert err[0].startswith("amop pub: error:"), err
    assert "cannot connect" in err[0], err
    assert "Traceback" not in result.stderr.decode("utf-8", "replace")


HELP_OPTIONS = {
    (): ["--verbose", "--version", "node", "sub", "pub", "demo"],
    ("node",): ["--listen", "--request-timeout", "--max-frame-size"],
    ("sub",): ["endpoint", "topic", "--count", "--reply"],
    ("pub",): ["endpoint", "topic", "message", "--multicast", "--count", "--interval", "--timeout"],
    ("demo",): ["--help"],
}


async def test_help() -> None:
    results: dict[tuple[str, ...], subprocess.CompletedProcess[bytes]] = {}

    async def one(command: tuple[str, ...]) -> None:
        results[command] = await run([*AMOP, *command, "--help"], timeout=15)

    async with trio.open_nursery() as nursery:
        for command in HELP_OPTIONS:
            nursery.start_soon(one, command)
    for command, options in HELP_OPTIONS.items():
        result = results[command]
        text = result.stdout.decode()
        assert result.returncode == 0, (command, text, result.stderr)
        assert "usage: amop" in text, (command, text)
        for option in options:
            assert option in text, (command, option, text)


async def test_sub_count_and_pub() -> None:
    with trio.fail_after(20):
        async with (
            amop_node() as (_node, endpoint),
            spawn([*AMOP, "sub", endpoint, "topic", "--count", "1"]) as sub,
        ):
            await sub.wait_line(r"^Subscriber success$", timeout=10)
            pub = await run([*AMOP, "pub", endpoint, "topic", "hi"], timeout=12)
            out = lines(pub.stdout)
            assert pub.returncode == 0, (out, lines(pub.stderr))
            assert any(re.match(rf"^{STAMP} publish message: hi$", line) for line in out), out
            assert any(re.match(rf"^{STAMP} reply:", line) for line in out), out
            code = await sub.wait_exit(5)
            assert code == 0, (sub.out, sub.err)
            await sub.wait_line(received_line("hi"))


async def test_chain_starts_linked_nodes_and_status_shows_them(tmp_path: Path) -> None:
    sdk, p2p = free_port(), free_port()
    while abs(sdk - p2p) < 4:
        p2p = free_port()
    with trio.fail_after(40):
        args = [
            *AMOP,
            "chain",
            "-n",
            "3",
            "--dir",
            str(tmp_path / "nodes"),
            "--sdk-port",
            str(sdk),
            "--p2p-port",
            str(p2p),
            "--topology",
            "line",
            "--plain",
        ]
        async with spawn(args) as chain:
            await chain.wait_line(r"3 nodes up", timeout=20)
            for i in range(3):
                assert chain.has_line(rf"^node{i}  sdk ws://127\.0\.0\.1:{sdk + i} ")
                assert (tmp_path / "nodes" / f"node{i}" / "config.toml").is_file()
            # The middle node links to both others, and every node is in its directory.
            while True:
                status = await run([*AMOP, "status", f"127.0.0.1:{sdk + 1}"], timeout=10)
                text = status.stdout.decode()
                if text.count("hops 1") == 2:
                    break
                await trio.sleep(0.1)
            assert status.returncode == 0, lines(status.stderr)
            assert text.count("\n  out ") + text.count("\n  in  ") == 2, text
            chain.process.send_signal(signal.SIGINT)
            assert await chain.wait_exit(10) == 0, (chain.out, chain.err)
        assert any("stopping" in line for line in chain.out), chain.out


async def test_status_against_a_plain_node_and_a_missing_node() -> None:
    with trio.fail_after(20):
        async with amop_node() as (_node, endpoint):
            status = await run([*AMOP, "status", endpoint, "--json"], timeout=10)
            assert status.returncode == 0
            assert '"nodeId"' in status.stdout.decode()
        missing = await run([*AMOP, "status", f"127.0.0.1:{free_port()}"], timeout=10)
        assert missing.returncode == 1
        assert lines(missing.stderr)[0].startswith("amop status: error: cannot connect")


async def test_examples_work_unchanged_against_a_tls_chain(tmp_path: Path) -> None:
    """`amop chain` turns TLS on; the seed-style examples find ./nodes/sdk by themselves."""
    sdk, p2p = free_port(), free_port()
    while abs(sdk - p2p) < 3:
        p2p = free_port()
    with trio.fail_after(40):
        chain_args = [*AMOP, "chain", "-n", "2", "--sdk-port", str(sdk), "--p2p-port", str(p2p)]
        async with spawn(chain_args, cwd=tmp_path) as chain:
            await chain.wait_line(r"2 nodes up", timeout=20)
            assert chain.has_line(rf"^node1  sdk wss://127\.0\.0\.1:{sdk + 1} ")
            for name in ("ca.crt", "sdk.crt", "sdk.key"):
                assert (tmp_path / "nodes" / "sdk" / name).is_file()
            async with spawn([*SUBSCRIBER, f"127.0.0.1:{sdk + 1}", "hello"], cwd=tmp_path) as sub:
                await sub.wait_line(r"^Subscriber success$", timeout=10)
                await trio.sleep(0.5)  # the subscription reaches node0 through the link
                pub = await run([*UNICAST_PUB, f"127.0.0.1:{sdk}", "hello", "1"], 20, tmp_path)
                assert pub.returncode == 0, (lines(pub.stdout), lines(pub.stderr))
                assert any(line.endswith("reply: ok") for line in lines(pub.stdout))
                await sub.wait_line(received_line(f"{UNICAST_TEXT} 0"), timeout=5)
            # Without certificates, the TLS port refuses a plain client at once.
            plain = await run([*AMOP, "status", f"ws://127.0.0.1:{sdk}"], 10, tmp_path)
            assert plain.returncode == 1
            assert "amop status: error: cannot connect" in lines(plain.stderr)[0]
            chain.process.send_signal(signal.SIGINT)
            assert await chain.wait_exit(10) == 0, (chain.out, chain.err)
