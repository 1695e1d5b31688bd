"""``amop sub``, ``pub``, ``request``, ``reply`` and ``status`` as real processes.

Payloads come from arguments (any bytes), stdin or files and arrive byte for
byte; output is for people, JSON lines or raw bytes; a closed pipe ends a
command quietly; connection loss is said on stderr; request/reply works with
a fixed text or a command per request.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from amop_trio import AmopError, open_amop

from .cli import (
    AMOP,
    ENV,
    STAMP,
    Arg,
    amop_node,
    error_line,
    free_port,
    lines,
    run,
    run_all,
    spawn,
)

BINARY = bytes(range(256)) + b"\xff\xfe not UTF-8 \x00\n"


async def _close(process: trio.Process) -> None:
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.kill()
        await process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                await pipe.aclose()


async def test_binary_payloads_from_files_stdin_and_arguments_arrive_whole(
    tmp_path: Path,
) -> None:
    source = tmp_path / "payload.bin"
    source.write_bytes(BINARY)
    with trio.fail_after(40):
        async with (
            amop_node() as (_node, endpoint),
            spawn([*AMOP, "sub", endpoint, "t", "--json", "--count", "4"]) as sub,
        ):
            await sub.wait_line(r"Subscriber success", timeout=10, err=True)
            assert sub.out == []  # with --json, stdout carries messages only
            pub = [*AMOP, "pub", endpoint, "t"]
            sent = await run_all(
                {
                    "file": [*pub, "-f", source],
                    "stdin": [*pub, "-", "--multicast"],
                    "argument": [*pub, b"caf\xe9 \xff"],  # not UTF-8
                    "file stdin": [*pub, "-f", "-"],
                },
                stdin={"stdin": BINARY[::-1], "file stdin": "naïve ✓".encode()},
            )
            for result in sent.values():
                assert result.returncode == 0, lines(result.stderr)
            assert await sub.wait_exit(10) == 0, sub.err
    received = {}
    for line in sub.out:
        record = json.loads(line)
        assert record["topic"] == "t"
        data = record["data"]
        if record["encoding"] == "base64":
            data = base64.b64decode(data)
        received[record["kind"], record["encoding"], data] = True
    assert set(received) == {
        ("unicast", "base64", BINARY),
        ("multicast", "base64", BINARY[::-1]),
        ("unicast", "base64", b"caf\xe9 \xff"),
        ("unicast", "utf-8", "naïve ✓"),
    }
    # People see the publisher's data escaped on one line.
    argument = lines(sent["argument"].stdout)
    assert any(re.fullmatch(rf"{STAMP} publish message: caf\\xe9 \\xff", x) for x in argument)


async def test_human_output_shows_topic_and_kind_on_one_line_each() -> None:
    with trio.fail_after(40):
        async with (
            amop_node() as (_node, endpoint),
            spawn([*AMOP, "sub", endpoint, "t", "--count", "2", "--reply", "pong"]) as sub,
        ):
            await sub.wait_line(r"Subscriber success", timeout=10)
            multicast = await run([*AMOP, "pub", endpoint, "t", "all of you", "--multicast"])
            assert multicast.returncode == 0
            unicast = await run([*AMOP, "pub", endpoint, "t", "line\nbreak\x1b[2J"])
            assert unicast.returncode == 0
            assert re.fullmatch(rf"{STAMP} reply: pong", lines(unicast.stdout)[-1])
            assert await sub.wait_exit(10) == 0
    assert re.fullmatch(rf"{STAMP} received multicast on t: all of you", sub.out[1])
    # Line breaks and terminal escapes in the data are shown escaped.
    assert re.fullmatch(rf"{STAMP} received unicast on t: line\\nbreak\\x1b\[2J", sub.out[2])


async def test_raw_bytes_are_exact() -> None:
    """--raw -N writes the data and nothing else, byte for byte."""
    with trio.fail_after(40):
        async with amop_node() as (_node, endpoint):
            process = await trio.lowlevel.open_process(
                [*AMOP, "sub", endpoint, "t", "--raw", "-N", "--count", "1"],
                env=ENV,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert process.stdout is not None
            assert process.stderr is not None
            try:
                assert b"Subscriber success" in await process.stderr.receive_some()
                pub = await run([*AMOP, "pub", endpoint, "t", "-", "--multicast"], stdin=BINARY)
                assert pub.returncode == 0
                data = b""
                async for chunk in process.stdout:
                    data += chunk
                assert await process.wait() == 0
            finally:
                await _close(process)
    assert data == BINARY


async def test_a_closed_pipe_ends_a_subscriber_quietly() -> None:
    """`amop sub ... | head -1`: no BrokenPipeError traceback, exit status 0."""
    with trio.fail_after(40):
        async with amop_node() as (_node, endpoint):
            process = await trio.lowlevel.open_process(
                [*AMOP, "sub", endpoint, "t", "--raw"],
                env=ENV,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert process.stdout is not None
            assert process.stderr is not None
            try:
                assert b"Subscriber success" in await process.stderr.receive_some()
                await run([*AMOP, "pub", endpoint, "t", "first", "--multicast"])
                assert await process.stdout.receive_some() == b"first\n"
                await process.stdout.aclose()  # the reader has what it wanted, like head -1
                await run([*AMOP, "pub", endpoint, "t", "more", "--multicast", "--count", "3"])
                assert await process.wait() == 0
                err = b""
                async for chunk in process.stderr:
                    err += chunk
            finally:
                await _close(process)
    assert b"Traceback" not in err, err
    assert b"Error" not in err, err


async def test_request_and_reply_with_a_text_a_command_and_a_command_timeout() -> None:
    with trio.fail_after(60):
        async with (
            amop_node() as (_node, endpoint),
            spawn([*AMOP, "reply", endpoint, "fixed", "it is me"]) as fixed,
            spawn(
                [*AMOP, "reply", endpoint, "upper", "--command", "echo $AMOP_TOPIC; tr a-z A-Z"]
            ) as upper,
            spawn(
                [
                    *AMOP,
                    "reply",
                    endpoint,
                    "slow",
                    "--command",
                    "sleep 1",
                    "--command-timeout",
                    "0.3",
                ]
            ) as slow,  # fmt: skip
        ):
            for replier in (fixed, upper, slow):
                await replier.wait_line(r"Subscriber success", timeout=10)

            request = [*AMOP, "request", endpoint]
            started = trio.current_time()
            results = await run_all(
                {
                    "fixed": [*request, "fixed", "who?", "--count", "2"],
                    "raw": [*request, "upper", "-", "--raw", "-N"],
                    "json": [*request, "upper", "x", "--json"],
                    "slow": [*request, "slow", "hurry", "--raw"],
                    "nobody": [*request, "nobody", "hi"],
                },
                stdin={"raw": b"abc\xff"},
            )
            assert trio.current_time() - started < 8  # the slow command was cut short

            out = lines(results["fixed"].stdout)
            assert len(out) == 2, (out, lines(results["fixed"].stderr))
            for line in out:
                assert re.fullmatch(rf"{STAMP} reply on fixed in \d+\.\d{{3}} ms: it is me", line)
            await fixed.wait_line(rf"{STAMP} received unicast on fixed: who\?$")

            assert results["raw"].stdout == b"upper\nABC\xff"

            record = json.loads(results["json"].stdout)
            assert (record["kind"], record["topic"]) == ("reply", "upper")
            assert (record["encoding"], record["data"]) == ("utf-8", "upper\nX")
            assert record["rtt_ms"] > 0

            assert results["slow"].returncode == 0
            assert results["slow"].stdout == b"\n"  # the reply is empty
            await slow.wait_line(r"ran longer than 0\.3 s; it was killed", err=True)

            nobody = results["nobody"]
            assert nobody.returncode == 1
            assert "no subscriber" in error_line(nobody, "amop request: error: ")


async def test_a_subscriber_says_when_its_node_goes_and_comes_back() -> None:
    port = free_port()
    with trio.fail_after(60):
        async with (
            amop_node(port=port) as (node, endpoint),
            spawn([*AMOP, "sub", endpoint, "t"]) as sub,
        ):
            await sub.wait_line(r"Subscriber success", timeout=10)
            node.process.send_signal(signal.SIGTERM)
            await node.wait_exit(10)
            await sub.wait_line(rf"^amop sub: connection to .*{port}.* lost; reconnecting$",
                                timeout=10, err=True)  # fmt: skip
            async with amop_node(port=port):
                await sub.wait_line(
                    rf"^amop sub: connected again to .*{port}", timeout=15, err=True
                )
                pub = await run([*AMOP, "pub", endpoint, "t", "back", "--multicast"])
                assert pub.returncode == 0
                await sub.wait_line(r"received multicast on t: back$", timeout=10)
                assert len([line for line in sub.err if "lost" in line]) == 1, sub.err
                assert len([line for line in sub.err if "again" in line]) == 1, sub.err


async def test_a_publisher_whose_connection_drops_says_so() -> None:
    with trio.fail_after(60):
        async with (
            amop_node() as (node, endpoint),
            open_amop(endpoint) as holder,
            holder.subscribe("t") as held,
        ):
            # The subscriber takes the unicast and keeps it unanswered: it is in flight.
            async with spawn([*AMOP, "pub", endpoint, "t", "waiting", "--timeout", "30"]) as pub:
                with trio.fail_after(10):
                    await held.receive()
                node.process.kill()
                assert await pub.wait_exit(10) == 1
            assert len(pub.err) == 1, pub.err
            assert pub.err[0].startswith("amop pub: error: "), pub.err
            assert "lost" in pub.err[0], pub.err


async def test_a_message_over_the_frame_limit_fails_on_one_line(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(os.urandom(64 * 1024))
    with trio.fail_after(40):
        async with (
            amop_node("--max-frame-size", "4096") as (_node, endpoint),
            spawn([*AMOP, "sub", endpoint, "t"]) as sub,
        ):
            await sub.wait_line(r"Subscriber success", timeout=10)
            result = await run([*AMOP, "pub", endpoint, "t", "-f", big, "--timeout", "3"])
            assert result.returncode == 1
            line = error_line(result, "amop pub: error: ")
            # refused on the sender's side, against the limit the node announced
            assert "4096" in line, line
            assert "nothing was sent" in line, line


async def test_status_and_clients_take_certs(tmp_path: Path) -> None:
    """--certs DIR, and AMOP_SDK_CERTS, from a directory that holds no certificates."""
    directory = tmp_path / "nodes"
    create = await run([*AMOP, "certs", "--dir", directory, "-n", "1"], timeout=30)
    assert create.returncode == 0, lines(create.stderr)
    conf, sdk = directory / "node0" / "conf", directory / "sdk"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with trio.fail_after(40):
        async with amop_node("--certs", str(conf)) as (_node, endpoint):
            status: list[Arg] = [*AMOP, "status", endpoint]
            results = await run_all(
                {
                    "option": [*status, "--certs", sdk],
                    "without": status,
                    "missing": [*status, "--certs", elsewhere],
                },
                cwd=elsewhere,
            )
            with_env = await run(
                [*status, "--json"], cwd=elsewhere, env={**ENV, "AMOP_SDK_CERTS": str(sdk)}
            )
            assert results["option"].returncode == 0, lines(results["option"].stderr)
            assert lines(results["option"].stdout)[1].startswith("  sdk wss://")
            assert json.loads(with_env.stdout)["sdk"].startswith("wss://")
            for failed in ("without", "missing"):
                assert results[failed].returncode == 1
                error_line(results[failed], "amop status: error: ")


async def test_node_limits_are_set_from_the_command_line() -> None:
    with trio.fail_after(40):
        async with amop_node(
            "--limit", "connection_topic_bytes=2KiB", "--limit", "subscriber_timeout=1.5"
        ) as (_node, endpoint):
            status = await run([*AMOP, "status", endpoint, "--json"])
            assert status.returncode == 0, lines(status.stderr)
            limits = json.loads(status.stdout)["budgets"]["limits"]
            assert limits["connection_topic_bytes"] == 2048
            async with open_amop(endpoint) as client:
                with pytest.raises(AmopError, match="connection_topic_bytes"):
                    async with client.subscribe("x" * 3000):
                        pass
    for bad, says in [
        ("max_topics=1.5", "positive whole number"),
        ("nonsense=3", "NAME=VALUE"),
        ("node_topic_bytes=1KiB", "below connection_topic_bytes"),
    ]:
        result = await run([*AMOP, "node", "--limit", bad], timeout=20)
        assert result.returncode != 0
        assert says in error_line(result, "amop node: error: ")
