"""``amop chain`` and ``amop node`` as real processes: local chains that stay up.

A chain runs until it is told to stop, survives the death of one node, and
stops exactly the processes it started; detached nodes are started, stopped
and shown one by one; existing directories are reused or refused, never
re-minted; ports in use and failed starts are reported before "up".
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from amop_trio import AmopError, ConfigError, NoSubscriberError, _node_process, open_amop, open_node
from amop_trio._chain import load_config

from .cli import AMOP, Arg, alive, error_line, free_port, free_ports, lines, run, run_all, spawn
from .conftest import serve_replies, wait_until

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/cmdline").exists(), reason="nodes are checked through /proc"
)


def chain_ports(count: int) -> tuple[str, str]:
    sdk = free_ports(count)
    p2p = free_ports(count)
    while abs(sdk - p2p) < count:
        p2p = free_ports(count)
    return str(sdk), str(p2p)


#: ``amop`` in a process whose Trio retires idle worker threads after 0.5 s, not 10 s.
AMOP_QUICK_IDLE_THREADS = (
    sys.executable,
    "-c",
    "import sys, trio._core._thread_cache as cache; cache.IDLE_TIMEOUT = 0.5; "
    "from amop_trio._cli import main; sys.argv[0] = 'amop'; sys.exit(main())",
)


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def pids_of(out: Sequence[str]) -> dict[str, int]:
    """node name -> pid, from the lines `amop chain` prints for its nodes."""
    found = {}
    for line in out:
        match = re.match(r"^(node\d+)\s+(?:running\s+)?sdk .* pid (\d+) ", line)
        if match:
            found[match.group(1)] = int(match.group(2))
    return found


async def unicast_through(pairs: Sequence[tuple[str, str]], certs: Path | None) -> None:
    """For each (publisher node, subscriber node): a unicast and its reply, end to end."""
    for i, (pub_at, sub_at) in enumerate(pairs):
        topic = f"through-{i}"
        async with (
            open_amop(sub_at, certs=certs) as subscriber,
            open_amop(pub_at, certs=certs) as publisher,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(serve_replies, subscriber, topic, b"re:")
            with trio.fail_after(10):
                while True:  # until the subscription has reached the publisher's node
                    try:
                        reply = await publisher.publish(topic, b"ping", timeout=5)
                        break
                    except NoSubscriberError:
                        await trio.sleep(0.05)
            assert reply == b"re:ping", (pub_at, sub_at)
            nursery.cancel_scope.cancel()


async def test_chain_stays_up_past_trio_idle_threads_and_outlives_a_killed_node(
    tmp_path: Path,
) -> None:
    """Nodes started from a Trio worker thread with PR_SET_PDEATHSIG died when the thread
    did: Trio retires a worker thread idle for 10 s, here for half a second."""
    sdk, p2p = chain_ports(3)
    directory = tmp_path / "nodes"
    args: list[Arg] = [*AMOP_QUICK_IDLE_THREADS, "chain", "-n", "3", "--dir", directory]
    args += ["--sdk-port", sdk, "--p2p-port", p2p]
    endpoints = [f"127.0.0.1:{int(sdk) + i}" for i in range(3)]
    with trio.fail_after(100):
        async with spawn(args) as chain:
            await chain.wait_line(r"^3 nodes up", timeout=40)
            pids = pids_of(chain.out)
            assert sorted(pids) == ["node0", "node1", "node2"], chain.out
            # The worker threads that started the nodes are gone; the nodes work on.
            await wait_until(lambda: threads_of(chain.process.pid) == 1, within=10)
            ring = [(endpoints[i], endpoints[(i + 1) % 3]) for i in range(3)]
            await unicast_through(ring, directory / "sdk")
            assert chain.process.returncode is None, (chain.out, chain.err)
            assert chain.err == []
            assert all(alive(pid) for pid in pids.values())

            os.kill(pids["node1"], signal.SIGKILL)
            await chain.wait_line(
                r"^amop chain: node1 was killed by SIGKILL; see .*node\.log \(2 of 3 still up\)$",
                timeout=10,
                err=True,
            )
            assert chain.process.returncode is None
            pair = [(endpoints[0], endpoints[2]), (endpoints[2], endpoints[0])]
            await unicast_through(pair, directory / "sdk")

            chain.process.send_signal(signal.SIGINT)
            assert await chain.wait_exit(20) == 1  # a node died on its way
            assert chain.has_line(r"^stopping \(SIGINT\)$")
        assert not any(alive(pid) for pid in pids.values())
        assert not list(directory.glob("node*/node.pid"))


async def test_a_running_chain_follows_stop_and_takes_its_nodes_when_killed(
    tmp_path: Path,
) -> None:
    """`amop chain stop` works on a foreground chain; a chain killed with SIGKILL still
    takes its nodes down (they read EOF on their lifeline)."""
    sdk, p2p = chain_ports(2)
    directory = tmp_path / "nodes"
    args: list[Arg] = [*AMOP, "chain", "-n", "2", "--plain", "--dir", directory]
    with trio.fail_after(60):
        async with spawn([*args, "--sdk-port", sdk, "--p2p-port", p2p]) as chain:
            await chain.wait_line(r"^2 nodes up", timeout=30)
            pids = pids_of(chain.out)
            stop = await run([*AMOP, "chain", "stop", "node0", "--dir", directory])
            assert lines(stop.stdout) == [f"node0    stopped (pid {pids['node0']})"]
            await chain.wait_line(r"^node0 stopped \(1 of 2 still up\)$", timeout=10)
            assert chain.err == []
            chain.process.kill()
            await chain.wait_exit(10)
            with trio.fail_after(10):
                while alive(pids["node1"]):
                    await trio.sleep(0.05)
        log = (directory / "node1" / "node.log").read_text()
        assert "amop node stopping (the chain that started it has gone)" in log


async def test_detached_nodes_start_stop_and_show_one_by_one(tmp_path: Path) -> None:
    sdk, p2p = chain_ports(2)
    directory = tmp_path / "nodes"
    where = ["--dir", str(directory)]
    endpoints = [f"127.0.0.1:{int(sdk) + i}" for i in range(2)]
    with trio.fail_after(60):
        create = [*AMOP, "chain", "create", "-n", "2", "--plain", "--sdk-port", sdk]
        result = await run([*create, "--p2p-port", p2p, *where])
        assert result.returncode == 0, lines(result.stderr)
        try:
            start = await run([*AMOP, "chain", "start", *where], timeout=40)
            assert start.returncode == 0, (lines(start.stdout), lines(start.stderr))
            pids = pids_of(lines(start.stdout))
            assert sorted(pids) == ["node0", "node1"], lines(start.stdout)
            # The launcher has exited; its nodes run on, each in a session of its own.
            for pid in pids.values():
                assert alive(pid)
                assert os.getsid(pid) == pid
            status = await run([*AMOP, "chain", "status", *where])
            assert status.returncode == 0
            assert pids_of(lines(status.stdout)) == pids
            await unicast_through([(endpoints[0], endpoints[1])], None)

            stop_one = await run([*AMOP, "chain", "stop", "node1", *where])
            assert lines(stop_one.stdout) == [f"node1    stopped (pid {pids['node1']})"]
            assert not alive(pids["node1"])
            assert alive(pids["node0"])
            status = await run([*AMOP, "chain", "status", *where])
            assert status.returncode == 3
            assert "node1    stopped" in lines(status.stdout)

            again = await run([*AMOP, "chain", "start", "node1", "node0", *where], timeout=40)
            assert again.returncode == 0, lines(again.stderr)
            out = lines(again.stdout)
            assert f"node0    running already, pid {pids['node0']}" in out
            node1 = pids_of(out)["node1"]
            await unicast_through([(endpoints[1], endpoints[0])], None)
        finally:
            stop = await run([*AMOP, "chain", "stop", *where])
        assert stop.returncode == 0
        assert lines(stop.stdout) == [
            f"node0    stopped (pid {pids['node0']})",
            f"node1    stopped (pid {node1})",
        ]
        assert not alive(pids["node0"])
        assert not alive(node1)
        assert not list(directory.glob("node*/node.pid"))


async def test_stop_signals_only_processes_proven_to_be_the_node(tmp_path: Path) -> None:
    """A pid file left by a killed node may name an unrelated process by now."""
    directory = tmp_path / "nodes"
    sdk, p2p = chain_ports(1)
    create = [*AMOP, "chain", "create", "-n", "1", "--plain", "--sdk-port", sdk, "--p2p-port", p2p]
    assert (await run([*create, "--dir", directory])).returncode == 0
    pid_file = directory / "node0" / "node.pid"
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    other = [*AMOP, "node", "--listen", f"127.0.0.1:{free_port()}"]  # another node
    with trio.fail_after(30):
        async with spawn(sleeper) as unrelated, spawn(other) as other_node:
            await other_node.wait_line("listening", timeout=15)
            for process in (unrelated.process, other_node.process):
                pid_file.write_text(f"{process.pid}\n")
                stop = await run([*AMOP, "chain", "stop", "--dir", directory])
                assert stop.returncode == 0
                assert lines(stop.stdout) == [
                    f"node0    not running (removed the stale pid file naming {process.pid})"
                ]
                assert not pid_file.exists()
                await trio.sleep(0.2)
                assert process.returncode is None
                assert alive(process.pid)
            pid_file.write_text(f"{unrelated.process.pid}\n")
            status = await run([*AMOP, "chain", "status", "--dir", directory])
            assert (status.returncode, lines(status.stdout)) == (3, ["node0    stopped"])


def _identity_files(directory: Path) -> dict[Path, bytes]:
    return {
        path: path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.suffix in (".toml", ".crt", ".key")
    }


async def test_existing_chain_is_reused_or_refused_never_reminted(tmp_path: Path) -> None:
    directory = tmp_path / "nodes"
    sdk, p2p = chain_ports(2)
    create: list[Arg] = [*AMOP, "chain", "create", "--dir", directory]
    create += ["--sdk-port", sdk, "--p2p-port", p2p]
    first = await run([*create, "-n", "2"])
    assert first.returncode == 0, lines(first.stderr)
    before = _identity_files(directory)
    assert len([p for p in before if p.name == "node.crt"]) == 2

    agains: list[list[Arg]] = [[*create, "-n", "2"], [*AMOP, "chain", "create", "--dir", directory]]
    for again in agains:
        result = await run(again)
        assert result.returncode == 0, lines(result.stderr)
        assert lines(result.stdout) == [
            f"reusing the chain of 2 nodes in {directory}/",
            f"chain of 2 nodes in {directory}/; start it with `amop chain start --dir {directory}`",
        ]
        assert _identity_files(directory) == before

    refusals = {
        "-n 3": "it has 2 nodes, not 3",
        "-n 2 --plain": "its nodes use TLS",
        f"-n 2 --sdk-port {int(sdk) + 100}": f"node0 listens on 127.0.0.1:{sdk} and",
    }
    refused = await run_all(
        {
            options: [*AMOP, "chain", "create", "--dir", directory, *options.split()]
            for options in refusals
        }
    )
    for options, reason in refusals.items():
        result = refused[options]
        assert result.returncode == 1, options
        line = error_line(result, "amop chain create: error: ")
        assert f"{directory}/ holds another chain ({reason}" in line, line
        assert _identity_files(directory) == before
    assert not (directory / "node2").exists()

    certs = await run([*AMOP, "certs", "--dir", directory, "-n", "2"])
    assert certs.returncode == 0, lines(certs.stderr)
    assert f"(every certificate was in {directory}/ already and is kept)" in lines(certs.stdout)
    assert _identity_files(directory) == before


async def test_a_port_in_use_is_reported_before_anything_is_up(tmp_path: Path) -> None:
    sdk, p2p = chain_ports(2)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(sdk) + 1))
        squatter.listen()
        args: list[Arg] = [*AMOP, "chain", "-n", "2", "--plain", "--dir", tmp_path / "nodes"]
        result = await run([*args, "--sdk-port", sdk, "--p2p-port", p2p], timeout=30)
        assert result.returncode == 1
        line = error_line(result, "amop chain: error: ")
        assert f"node1's SDK port 127.0.0.1:{int(sdk) + 1} is in use by another process" in line
        assert not any("up" in out for out in lines(result.stdout)), lines(result.stdout)

        node = await run([*AMOP, "node", "--listen", f"127.0.0.1:{int(sdk) + 1}"])
        assert node.returncode == 1
        line = error_line(node, "amop node: error: cannot listen on ")
        assert "in use" in line


async def test_a_node_that_fails_to_start_is_reported_from_its_log(tmp_path: Path) -> None:
    directory = tmp_path / "nodes"
    sdk, p2p = chain_ports(2)
    args: list[Arg] = [*AMOP, "chain", "--dir", directory]
    create = await run([*args, "create", "-n", "2", "--sdk-port", sdk, "--p2p-port", p2p])
    assert create.returncode == 0
    (directory / "node1" / "conf" / "node.key").unlink()
    result = await run(args, timeout=40)
    assert result.returncode == 1, lines(result.stdout)
    line = error_line(result, "amop chain: error: node1 did not start: ")
    assert "node.key" in line, line
    assert not any("nodes up" in out for out in lines(result.stdout))
    assert not list(directory.glob("node*/node.pid"))  # node0 was stopped again


async def test_plain_nodes_refuse_non_loopback_addresses_unless_forced(tmp_path: Path) -> None:
    for options in (["--listen", "0.0.0.0:0"], ["--p2p-listen", "0.0.0.0:0"]):
        result = await run([*AMOP, "node", "--listen", "127.0.0.1:0", *options])
        assert result.returncode == 1
        line = error_line(result, "amop node: error: refusing to listen on 0.0.0.0 without TLS")
        assert "--insecure-plain" in line
    chain = await run([*AMOP, "chain", "--plain", "--host", "0.0.0.0", "--dir", tmp_path])
    assert chain.returncode == 2
    assert "--insecure-plain" in error_line(chain, "amop chain: error: --plain on 0.0.0.0")
    assert not any(os.scandir(tmp_path))

    port = free_port()
    forced = [*AMOP, "node", "--listen", f"0.0.0.0:{port}", "--insecure-plain"]
    with trio.fail_after(20):
        async with spawn(forced) as node:
            await node.wait_line("listening", timeout=15)
            async with open_amop(f"127.0.0.1:{port}") as client:
                assert (await client.node_status())["sdk"] == f"ws://0.0.0.0:{port}"
            node.process.send_signal(signal.SIGTERM)
            assert await node.wait_exit(5) == 0

    with pytest.raises(ConfigError, match="without TLS"):
        async with open_node("0.0.0.0:0"):
            pass
    async with open_node("0.0.0.0:0", allow_plain=True) as plain:
        assert plain.url.startswith("ws://0.0.0.0:")


async def test_insecure_plain_chain_records_the_choice_in_its_configs(tmp_path: Path) -> None:
    sdk, p2p = chain_ports(1)
    args = [*AMOP, "chain", "create", "--plain", "--insecure-plain", "--host", "0.0.0.0"]
    result = await run([*args, "-n", "1", "--dir", tmp_path, "--sdk-port", sdk, "--p2p-port", p2p])
    assert result.returncode == 0, lines(result.stderr)
    config = tmp_path / "node0" / "config.toml"
    assert "insecure_plain = true" in config.read_text()
    assert load_config(config).insecure_plain  # `amop node --config` passes allow_plain


async def test_a_node_killed_for_not_starting_leaves_no_pid_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that wrote its pid file and then never said it listens is killed, and its
    pid file goes with it: ``amop chain status`` must not find a stale pid there."""
    config = tmp_path / "node0" / "config.toml"
    config.parent.mkdir()
    config.write_text("")
    pid_file = config.parent / _node_process.PID_FILE
    stuck = (
        "import os, pathlib, sys, time; "
        f"pathlib.Path({str(pid_file)!r}).write_text(f'{{os.getpid()}}\\n'); time.sleep(60)"
    )

    def command(config: Path, **_: object) -> list[str]:
        return [sys.executable, "-c", stuck]

    monkeypatch.setattr(_node_process, "node_command", command)
    with pytest.raises(AmopError, match="did not report listening"):
        await _node_process.start_node(config, detached=True, timeout=2)
    assert not pid_file.exists()
