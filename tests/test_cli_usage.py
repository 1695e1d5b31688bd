"""What the ``amop`` command does with bad input, its help, and its options' meaning.

Every bad input is one line on stderr and the right exit status: 2 for usage
errors (as argparse), 1 for runtime failures; never a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from amop_trio._cli import main
from amop_trio._cli.parser import build_parser

from .cli import AMOP, STAMP, amop_node, free_port, lines, run, spawn
from .conftest import wait_until

EP = "127.0.0.1:1"

#: (arguments, exit status, what the one line must contain): run as real processes.
BAD_INPUTS: list[tuple[list[str | bytes], int, str]] = [
    (["status", "foo"], 2, "'foo': expected host:port"),
    (["sub", EP, b"\xff"], 2, "is not valid UTF-8"),
    (["node", "--max-frame-size", "0"], 2, "--max-frame-size: must be at least 1024 bytes"),
    (["pub", EP, "t", "-f", "/nonexistent/file"], 1, "cannot read /nonexistent/file"),
]

#: More of the same, checked in this process: ``main`` exits before it runs anything.
MORE_BAD_INPUTS: list[tuple[list[str], str]] = [
    (["pub", "127.0.0.1", "hello", "x"], "'127.0.0.1': expected host:port"),
    (["status", ":99999"], "':99999': port 99999 is not from 0 to 65535"),
    (["chain", "-n", "0"], "-n/--nodes: must be from 1 to 1000, not 0"),
    (["chain", "--sdk-port", "99999"], "--sdk-port: must be a port from 1 to 65535, not 99999"),
    (["chain", "--host", "999.1.1.1"], "--host: '999.1.1.1' is not an IP address"),
    (["sub", EP, ""], "a topic must not be empty"),
    (["keys", "new", ""], "'': expected a file name without extension"),
    (["pub", EP, "t", "m", "--interval", "-1"], "--interval: must be a finite number >= 0"),
    (["status", "127.0.0.1:0"], "'127.0.0.1:0': port 0 cannot be connected to"),
    (["status", "http://127.0.0.1:80"], "unknown scheme http://"),
    (["status", "127.0.0.1:2o200"], "'127.0.0.1:2o200': expected host:port"),
    (["status", "::1:20200"], "write an IPv6 address as [addr]:port"),
    (["status", "[::1:20200"], "unclosed ["),
    (["status", "channel://127.0.0.1:1/x"], "a channel endpoint has no path"),
    (["status", EP, "--timeout", "0"], "--timeout: must be a positive number, not 0"),
    (["chain", "-n", "two"], "-n/--nodes: 'two' is not a number"),
    (["chain", "--sdk-port", "65535", "-n", "2"], "2 nodes need ports up to 65535"),
    (["chain", "--sdk-port", "30301"], "SDK ports 30301..30304 overlap P2P ports"),
    (["chain", "start", "-n", "3"], "--nodes describes a chain to create"),
    (["chain", "-n", "3", "stop"], "--nodes describes a chain to create"),
    (["chain", "--insecure-plain"], "--insecure-plain goes with --plain"),
    (["chain", "--plain", "--host", "10.0.0.1"], "--plain on 10.0.0.1 would let any host"),
    (["chain", "stop", "nodeX"], "'nodeX': node names are node0, node1"),
    (["sub", EP, "t", "--count", "-1"], "--count: must be 0 (no limit) or more, not -1"),
    (["sub", EP, "t", "-N"], "-N/--no-newline goes with --raw"),
    (["request", EP, "t", "m", "--json", "--raw"], "not allowed with argument --json"),
    (["keys", "new", "keys/"], "'keys/': expected a file name without extension"),
    (["pub", EP, "t", "m", "--interval", "nan"], "--interval: must be a finite number >= 0"),
    (["pub", EP, "t"], "the data is missing: give MESSAGE, - for stdin, or -f FILE"),
    (["pub", EP, "t", "m", "-f", "x"], "give MESSAGE or -f FILE, not both"),
    (["node", "--listen", "foo"], "'foo': expected host:port"),
    (["node", "--busy-poll-us", "-5"], "--busy-poll-us: must be a finite number >= 0, not -5"),
    (["node", "--request-timeout", "inf"], "--request-timeout: must be a positive number"),
    (["reply", EP, "t"], "one of the arguments text --command is required"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


async def test_every_bad_input_is_one_line_and_the_right_exit_status(tmp_path: Path) -> None:
    results: dict[int, subprocess.CompletedProcess[bytes]] = {}
    limiter = trio.CapacityLimiter(4)

    async def one(i: int, args: list[str | bytes]) -> None:
        async with limiter:
            results[i] = await run([*AMOP, *args], timeout=30, cwd=tmp_path)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i, (args, _, _) in enumerate(BAD_INPUTS):
                nursery.start_soon(one, i, args)
    for i, (args, code, text) in enumerate(BAD_INPUTS):
        result = results[i]
        err = lines(result.stderr)
        assert (result.returncode, len(err)) == (code, 1), (args, err)
        assert err[0].startswith("amop"), (args, err)
        assert ": error: " in err[0], (args, err)
        assert text in err[0], (args, text, err)
        assert result.stdout == b"", (args, result.stdout)
    assert not any(os.scandir(tmp_path))  # nothing was created on the way


@pytest.mark.parametrize(("args", "text"), MORE_BAD_INPUTS)
def test_more_bad_inputs_are_usage_errors(
    args: list[str],
    text: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert not any(os.scandir(tmp_path))  # nothing was created on the way
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert len(err) == 1, err
    assert re.match(r"amop( \w+)*: error: ", err[0]), err
    assert text in err[0], err
    assert captured.out == ""


async def test_runtime_failures_are_one_line_with_status_1(tmp_path: Path) -> None:
    (tmp_path / "alice.pem").write_text("taken")
    cases: list[tuple[list[str], str]] = [
        (["keys", "new", "alice"], "amop keys: error: alice.pem exists already"),
        (["chain", "status", "--dir", "void"], "amop chain status: error: no chain in void/"),
        (["request", f"ws://127.0.0.1:{free_port()}", "t", "m"], "amop request: error: cannot"),
    ]
    for args, start in cases:
        result = await run([*AMOP, *args], cwd=tmp_path)
        err = lines(result.stderr)
        assert (result.returncode, len(err)) == (1, 1), (args, err)
        assert err[0].startswith(start), (args, err)
    create = await run([*AMOP, "chain", "create", "-n", "1", "--plain", "--dir", "c"], cwd=tmp_path)
    assert create.returncode == 0
    unknown = await run([*AMOP, "chain", "stop", "node7", "--dir", "c"], cwd=tmp_path)
    assert lines(unknown.stderr) == ["amop chain stop: error: no node node7 in c/; it has node0"]


async def test_help_shows_every_command_and_every_default() -> None:
    expected = {
        (): ["node", "chain", "certs", "keys", "status", "sub", "pub", "request", "reply",
             "demo", "AMOP_SDK_CERTS", "Exit status"],
        ("chain",): ["(default: nodes)", "(default: 4)", "(default: 20200)", "(default: 30300)",
                     "(default: mesh", "(default: secp256k1)", "run", "create", "start", "stop",
                     "status"],
        ("sub",): ["AMOP_SDK_CERTS", "--json", "--raw", "(default: 0)", "(0: no limit)"],
    }  # fmt: skip
    results: dict[tuple[str, ...], subprocess.CompletedProcess[bytes]] = {}

    async def one(command: tuple[str, ...]) -> None:
        results[command] = await run([*AMOP, *command, "--help"], timeout=30)

    async with trio.open_nursery() as nursery:
        for command in expected:
            nursery.start_soon(one, command)
    for command, needles in expected.items():
        text = " ".join(results[command].stdout.decode().split())
        assert results[command].returncode == 0, command
        for needle in needles:
            assert needle in text, (command, needle, text)

    # And generally: every option that has a default says what it is.
    def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
        found = [parser]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    found += parsers(sub)
        return found

    for parser in parsers(build_parser()):
        help_text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            if action.nargs == 0:  # a flag: off unless given
                continue
            shown = action.default not in (None, False, [], argparse.SUPPRESS)
            if shown or (action.default is argparse.SUPPRESS and action.dest != "verbose"):
                assert "default:" in " ".join((action.help or "").split()) or (
                    f"(default: {action.default})" in help_text
                ), (parser.prog, action.option_strings)


async def test_verbose_is_taken_before_or_after_the_command() -> None:
    port = free_port()
    with trio.fail_after(30):
        async with spawn([*AMOP, "node", "--listen", f"127.0.0.1:{port}", "-v"]) as node:
            await node.wait_line(r"listening sdk=ws://127\.0\.0\.1:", timeout=15, err=True)
            node.process.send_signal(signal.SIGTERM)
            assert await node.wait_exit(5) == 0
    for where in (["-vv", "status", EP], ["status", EP, "-vv"]):
        with pytest.raises(SystemExit):  # stops at the help; the options were taken
            main([*where, "--help"])


async def test_count_means_the_same_everywhere_zero_is_no_limit() -> None:
    """--count N stops after N messages in sub, reply, pub and request; 0 never stops."""
    with trio.fail_after(40):
        async with (
            amop_node() as (_node, endpoint),
            spawn([*AMOP, "sub", endpoint, "t", "--count", "0"]) as forever,
            spawn([*AMOP, "sub", endpoint, "t", "--count", "3"]) as three,
        ):
            for sub in (forever, three):
                await sub.wait_line("Subscriber success", timeout=10)
            pub = [*AMOP, "pub", endpoint, "t", "tick", "--multicast", "--interval", "0.05"]
            async with spawn([*pub, "--count", "0"]) as endless:
                assert await three.wait_exit(10) == 0
                await forever.wait_line(rf"{STAMP} received multicast on t: tick", timeout=5)
                received = len([line for line in forever.out if "received" in line])
                # Three more ticks arrive: the endless publisher goes on.
                await wait_until(
                    lambda: (
                        len([line for line in forever.out if "received" in line]) >= received + 3
                    )
                )
                assert endless.process.returncode is None  # still publishing
                assert forever.process.returncode is None  # still receiving
            assert len([line for line in three.out if "received" in line]) == 3
            twice = await run([*pub, "--count", "2"])
            assert len([line for line in lines(twice.stdout) if "publish message" in line]) == 2
            assert re.search(r"received", "\n".join(forever.out))
