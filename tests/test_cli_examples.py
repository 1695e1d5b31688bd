"""``amop demo``, ``amop node`` and the go-sdk style examples, run as real processes."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
import trio

from amop_trio import open_amop

from .cli import (
    AMOP,
    ENV,
    MULTICAST_PUB,
    STAMP,
    SUBSCRIBER,
    UNICAST_PUB,
    Arg,
    amop_node,
    free_port,
    free_ports,
    lines,
    run,
    spawn,
)
from .conftest import serve_replies
from .network import wait_for_topic

UNICAST_TEXT = "hello, FISCO BCOS, I am unique broadcast publisher!"
MULTICAST_TEXT = "hello, FISCO BCOS, I am multi broadcast publisher!"


def received_line(text: str) -> re.Pattern[str]:
    return re.compile(rf"^{STAMP} received: {re.escape(text)}$")


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


async def test_sub_count_and_pub() -> None:
    with trio.fail_after(20):
        async with (
            amop_node() as (_node, endpoint),
            spawn([*AMOP, "sub", endpoint, "topic", "--count", "1"]) as sub,
        ):
            await sub.wait_line(r"^\S+ \S+ Subscriber success$", timeout=10)
            pub = await run([*AMOP, "pub", endpoint, "topic", "hi"], timeout=12)
            out = lines(pub.stdout)
            assert pub.returncode == 0, (out, lines(pub.stderr))
            assert any(re.match(rf"^{STAMP} publish message: hi$", line) for line in out), out
            assert any(re.match(rf"^{STAMP} reply:", line) for line in out), out
            code = await sub.wait_exit(5)
            assert code == 0, (sub.out, sub.err)
            await sub.wait_line(rf"^{STAMP} received unicast on topic: hi$")


async def test_chain_starts_linked_nodes_and_status_shows_them(tmp_path: Path) -> None:
    sdk, p2p = free_ports(3), free_ports(3)
    while abs(sdk - p2p) < 3:
        p2p = free_ports(3)
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
            await chain.wait_line(r"^3 nodes up", timeout=30)
            for i in range(3):
                assert chain.has_line(rf"^node{i}    sdk ws://127\.0\.0\.1:{sdk + i} ")
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
            assert await chain.wait_exit(15) == 0, (chain.out, chain.err)
        assert chain.has_line(r"^stopping \(SIGINT\)$"), chain.out


async def test_status_against_a_plain_node_and_a_missing_node() -> None:
    with trio.fail_after(20):
        async with amop_node() as (_node, endpoint):
            status = await run([*AMOP, "status", endpoint, "--json"], timeout=10)
            assert status.returncode == 0
            assert '"nodeId"' in status.stdout.decode()
        missing = await run([*AMOP, "status", f"127.0.0.1:{free_port()}"], timeout=10)
        assert missing.returncode == 1
        assert lines(missing.stderr)[0].startswith("amop status: error: cannot connect")


async def test_readme_sequence_examples_against_a_tls_chain(tmp_path: Path) -> None:
    """`amop chain -n 2 &` then the examples: from the chain's directory they find
    ./nodes/sdk; from anywhere else they take --certs or AMOP_SDK_CERTS."""
    sdk, p2p = free_ports(2), free_ports(2)
    while abs(sdk - p2p) < 2:
        p2p = free_ports(2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    certs = tmp_path / "nodes" / "sdk"
    with trio.fail_after(60):
        chain_args = [*AMOP, "chain", "-n", "2", "--sdk-port", str(sdk), "--p2p-port", str(p2p)]
        async with spawn(chain_args, cwd=tmp_path) as chain:
            await chain.wait_line(r"^2 nodes up", timeout=30)
            assert chain.has_line(rf"^node1    sdk wss://127\.0\.0\.1:{sdk + 1} ")
            for name in ("ca.crt", "sdk.crt", "sdk.key"):
                assert (certs / name).is_file()
            async with spawn([*SUBSCRIBER, f"127.0.0.1:{sdk + 1}", "hello"], cwd=tmp_path) as sub:
                await sub.wait_line(r"^Subscriber success$", timeout=10)
                # The subscription reaches node0 through the link.
                await wait_for_topic(f"127.0.0.1:{sdk}", "hello", certs=certs)
                pub = await run([*UNICAST_PUB, f"127.0.0.1:{sdk}", "hello", "1"], 20, tmp_path)
                assert pub.returncode == 0, (lines(pub.stdout), lines(pub.stderr))
                assert any(line.endswith("reply: ok") for line in lines(pub.stdout))
                await sub.wait_line(received_line(f"{UNICAST_TEXT} 0"), timeout=5)

                with_option: list[Arg] = [
                    *MULTICAST_PUB,
                    f"127.0.0.1:{sdk}",
                    "hello",
                    "1",
                    "--certs",
                    certs,
                ]
                multicast = await run(with_option, 20, elsewhere)
                assert multicast.returncode == 0, lines(multicast.stderr)
                await sub.wait_line(received_line(f"{MULTICAST_TEXT} 0"), timeout=5)

                from_env = await run(
                    [*UNICAST_PUB, f"127.0.0.1:{sdk}", "hello", "1"],
                    20,
                    elsewhere,
                    env={**ENV, "AMOP_SDK_CERTS": str(certs)},
                )
                assert from_env.returncode == 0, lines(from_env.stderr)

                plain = await run([*UNICAST_PUB, f"127.0.0.1:{sdk}", "hello", "1"], 20, elsewhere)
                assert plain.returncode == 1
                err = lines(plain.stderr)
                assert len(err) == 1, err
                assert err[0].startswith("publisher: "), err
            chain.process.send_signal(signal.SIGINT)
            assert await chain.wait_exit(15) == 0, (chain.out, chain.err)
