"""``amop status``, ``sub``, ``pub``, ``request`` and ``reply``: clients of one node."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from collections.abc import Iterable
from typing import Any

import trio

from .._client import AmopClient, Message, MessageKind, open_amop
from .output import Output, printable, warn
from .parser import program


def _output(args: argparse.Namespace) -> Output:
    return Output(json_lines=args.json, raw=args.raw, newline=not args.no_newline)


def _limit(count: int) -> Iterable[int]:
    """0, 1, … count - 1; without end for ``--count 0``."""
    return range(count) if count else itertools.count()


async def report_connection(client: AmopClient, prog: str) -> None:
    """Say on stderr, once each time, that the node was lost and that it is back."""
    while True:
        await client.wait_disconnected()
        warn(f"{prog}: connection to {client.endpoint} lost; reconnecting")
        await client.wait_connected()
        warn(f"{prog}: connected again to {client.endpoint}")


# -- amop status -----------------------------------------------------------------------------


async def run_status(args: argparse.Namespace) -> int:
    async with open_amop(
        args.endpoint, reconnect=False, certs=args.certs, timeout=args.timeout
    ) as client:
        status = await client.node_status()
        if args.topics:
            topics = await all_topics(client, status)
    if args.topics:
        text = "\n".join(f"{count:>6}  {topic}" for topic, count in topics.items())
        print(json.dumps(topics, indent=2) if args.json else text or "(no topics)", flush=True)
    else:
        print(json.dumps(status, indent=2) if args.json else format_status(status), flush=True)
    return 0


async def all_topics(client: AmopClient, status: dict[str, Any]) -> dict[str, int]:
    """Every topic of the node's clients, page by page, from its first status answer on."""
    await trio.lowlevel.checkpoint_if_cancelled()
    topics: dict[str, int] = {}
    while True:
        page: dict[str, int] = status["topics"]
        topics.update(page)
        start = status.get("topicsFrom", 0) + len(page)
        if not page or start >= status.get("topicCount", 0):
            return topics
        status = await client.node_status(topics_from=start)


def _size(count: int) -> str:
    """Bytes as people read them: 512 B, 3.1 KiB, 96.0 MiB."""
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / 1024 / 1024:,.1f} MiB"


def format_status(status: dict[str, Any]) -> str:
    """A node's status as a few readable lines."""

    def topics(counts: dict[str, int], total: int | None = None) -> str:
        text = ", ".join(f"{t}({n})" for t, n in sorted(counts.items())) or "-"
        if total is not None and total > len(counts):
            text += f" … ({len(counts)} of {total:,} shown)"
        return text

    local = topics(status["topics"], status.get("topicCount"))
    if status.get("topicCount", 0) > len(status["topics"]):
        local += "; amop status --topics lists them all"
    lines = [
        f"node {status['nodeId']}",
        f"  sdk {status['sdk']}   p2p {status.get('p2p') or '-'}   clients {status['clients']}",
        f"  local topics: {local}",
    ]
    budgets = status.get("budgets")
    if budgets:
        limits = budgets["limits"]
        lines.append(
            f"  held: topics {_size(budgets['topicBytes'])} of {_size(limits['node_topic_bytes'])}"
            f", unicasts {_size(budgets['pendingBytes'])} of "
            f"{_size(limits['node_pending_bytes'])}, partial frames "
            f"{_size(budgets['partialFrameBytes'])} of {_size(limits['node_partial_frame_bytes'])}"
            f", in all {_size(budgets['totalBytes'])} of {_size(limits['node_total_bytes'])}"
        )
    if status.get("truncated"):
        lines.append("  (lists left out: they would not fit in one answer)")
    shown_links = status["links"]
    lines.append(
        "links:"
        if status.get("linkCount", 0) <= len(shown_links)
        else f"links ({len(shown_links)} of {status['linkCount']} shown):"
    )
    lines += [
        f"  {link['direction']:3} {link['peer'][:16]}…  {link['remote']}" for link in shown_links
    ] or ["  (none)"]
    if status["peers"]:
        lines.append("configured peers:")
        for peer in status["peers"]:
            line = f"  {peer['address']:21} {peer['state']}"
            if peer["peer"]:
                line += f"  {peer['peer'][:16]}…"
            if peer["error"]:
                line += f"  last error: {peer['error']}"
            lines.append(line)
    entries = status["directory"]
    count = status.get("directoryCount", len(entries))
    lines.append(
        "directory (reachable nodes):"
        if count <= len(entries)
        else f"directory (reachable nodes, the {len(entries)} nearest of {count}):"
    )
    for entry in entries:
        via = f"via {entry['nextHop'][:8]}…" if entry["nextHop"] else "(this node)"
        sdk = ",".join(entry["endpoints"]) or "-"
        lines.append(
            f"  {entry['node'][:16]}…  hops {entry['distance']}  {via:14} {sdk}  "
            f"topics: {topics(entry['topics'], entry.get('topicCount'))}"
        )
    return "\n".join(lines)


# -- amop sub, amop reply ----------------------------------------------------------------------


async def run_sub(args: argparse.Namespace) -> int:
    out = _output(args)
    reply = None if args.reply is None else os.fsencode(args.reply)

    async def answer(message: Message) -> bytes | None:
        await trio.lowlevel.checkpoint_if_cancelled()
        return reply

    await _serve(args, out, answer)
    return 0


async def run_reply(args: argparse.Namespace) -> int:
    out = _output(args)
    text = None if args.text is None else os.fsencode(args.text)

    async def answer(message: Message) -> bytes | None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if text is not None:
            return text
        return await run_command(args.run, message, args.command_timeout, program(args))

    await _serve(args, out, answer)
    return 0


async def _serve(args: argparse.Namespace, out: Output, answer: Any) -> None:
    """Subscribe, print every message, and answer unicasts with ``answer(message)``."""
    prog = program(args)
    async with (
        open_amop(args.endpoint, certs=args.certs) as client,
        client.subscribe(args.topic) as sub,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(report_connection, client, prog)
        out.note("Subscriber success")
        received = 0
        async for message in sub:
            out.message(message.topic, message.kind.value, message.data)
            if message.kind is MessageKind.UNICAST:
                data = await answer(message)
                if data is not None:
                    await message.reply(data)
            received += 1
            if received == args.count:
                break
        nursery.cancel_scope.cancel()


async def run_command(command: str, message: Message, timeout: float, prog: str) -> bytes:
    """The standard output of ``command`` run with the request on its stdin; b"" if it fails."""
    env = {**os.environ, "AMOP_TOPIC": message.topic}
    result = None
    with trio.move_on_after(timeout):
        result = await trio.run_process(
            command,
            shell=True,
            stdin=message.data,
            capture_stdout=True,
            stderr=None,
            check=False,
            env=env,
        )
    if result is None:
        warn(
            f"{prog}: the command ran longer than {timeout:g} s; it was killed, the reply is empty"
        )
        return b""
    if result.returncode != 0:
        warn(f"{prog}: the command {_status(result.returncode)}; replying with its output")
    return result.stdout


def _status(code: int) -> str:
    return f"exited with code {code}" if code >= 0 else f"was killed by signal {-code}"


# -- amop pub, amop request --------------------------------------------------------------------


async def run_pub(args: argparse.Namespace) -> int:
    data: bytes = args.data
    async with open_amop(args.endpoint, certs=args.certs, timeout=args.timeout) as client:
        out = Output()
        for i in _limit(args.count):
            if i and args.interval:
                await trio.sleep(args.interval)
            out.line(f"publish message: {printable(data)}")
            if args.multicast:
                await client.broadcast(args.topic, data)
            else:
                answer = await client.publish(args.topic, data)
                out.line(f"reply: {printable(answer)}")
    return 0


async def run_request(args: argparse.Namespace) -> int:
    data: bytes = args.data
    out = _output(args)
    async with open_amop(args.endpoint, certs=args.certs, timeout=args.timeout) as client:
        for i in _limit(args.count):
            if i and args.interval:
                await trio.sleep(args.interval)
            started = time.perf_counter()
            answer = await client.publish(args.topic, data)
            rtt_ms = (time.perf_counter() - started) * 1e3
            out.message(args.topic, "reply", answer, rtt_ms=round(rtt_ms, 3))
    return 0
