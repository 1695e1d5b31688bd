"""Peak RSS of an ``amop node`` under four hostile clients, and a benign round trip meanwhile.

Each attack runs against a fresh ``amop node`` (plain WebSocket on
loopback, default limits), while a benign client in a process of its own
does 256 B unicast round trips through the node, one at a time:

* ``topics``: 96 clients (``--topic-clients``) send 16 topics of 60 kB
  each (one AMOP_SUBTOPIC), within every per-connection limit: 92 MB;
* ``status``: 32 clients hold 16 topics of 60 kB each (30.7 MB, within the
  default budgets), then 3 clients ask for the node's status at once;
* ``pending``: a subscriber reads every unicast and answers none; a publisher
  sends 400 unicasts of 1 MiB;
* ``partial``: 8 connections each announce a 31 MiB frame and send half of it.

For each it prints what the node answered, its RSS before, its peak RSS
during the attack (VmHWM, reset before it starts, and 10 ms samples), and
the benign client's p50/p99 before (quiet) and during the attack, with its
failures. It prints figures; it asserts nothing.

    python benchmarks/hostile_memory.py
    python benchmarks/hostile_memory.py --only pending,partial --hold 5
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import trio_websocket

from amop_trio import MessageKind, open_amop
from amop_trio.wire import (
    Frame,
    HandshakeRequest,
    PacketType,
    decode_frame,
    encode_amop_body,
    encode_frame,
    encode_subtopic,
    new_seq,
)

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import amop  # noqa: E402
from _harness import format_table, percentile, proc_status  # noqa: E402

MIB = 1024 * 1024
ATTACKS = ("topics", "status", "pending", "partial")
BENIGN_TOPIC = "benign"
#: What the attackers saw, by name: answers and closes counted, sizes.
Seen = dict[str, Any]


# -- the node ------------------------------------------------------------------------------


class NodeProcess(amop.NodeProcess):
    """``python -m amop_trio node`` on a free loopback port, with its peak RSS at hand."""

    @property
    def port(self) -> int:
        return int(self.endpoint.rpartition(":")[2])

    def rss_mib(self) -> float:
        return proc_status(self.proc.pid).get("VmRSS", 0) / 1024

    def hwm_mib(self) -> float:
        return proc_status(self.proc.pid).get("VmHWM", 0) / 1024

    def reset_hwm(self) -> bool:
        """Reset the peak RSS the kernel keeps (``clear_refs`` 5); False where it cannot."""
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True


# -- the benign client (a process of its own) ------------------------------------------------


async def benign_client(endpoint: str) -> None:
    """Round trips until stdin closes; a line on stdin starts the next phase. Prints JSON."""
    phases: dict[str, list[int]] = {"quiet": [], "attack": []}
    failures: Seen = {"quiet": 0, "attack": 0}
    phase = "quiet"
    done = trio.Event()

    async def control() -> None:
        nonlocal phase
        stdin = trio.lowlevel.FdStream(0)
        pending = b""
        while chunk := await stdin.receive_some():
            pending += chunk
            while b"\n" in pending:
                _, pending = pending.split(b"\n", 1)
                phase = "attack"
        done.set()

    async with (
        open_amop(endpoint, timeout=5) as subscriber,
        open_amop(endpoint, timeout=5) as publisher,
        subscriber.subscribe(BENIGN_TOPIC) as subscription,
        trio.open_nursery() as nursery,
    ):

        async def echo() -> None:
            async for message in subscription:
                if message.kind is MessageKind.UNICAST:
                    await message.reply(message.data)

        nursery.start_soon(echo)
        nursery.start_soon(control)
        for _ in range(100):  # warm up
            await publisher.publish(BENIGN_TOPIC, b"w" * 256)
        print("ready", flush=True)
        payload = b"b" * 256
        while not done.is_set():
            start = time.perf_counter_ns()
            try:
                await publisher.publish(BENIGN_TOPIC, payload)
                phases[phase].append(time.perf_counter_ns() - start)
            except Exception:
                failures[phase] += 1
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    summary = {}
    for name, samples in phases.items():
        samples.sort()
        summary[name] = {
            "n": len(samples),
            "p50_us": percentile(samples, 50) / 1000 if samples else math.nan,
            "p99_us": percentile(samples, 99) / 1000 if samples else math.nan,
            "failures": failures[name],
        }
    print(json.dumps(summary), flush=True)


class Benign:
    """The benign client's process: started, told when the attack begins, then asked for figures."""

    def __init__(self, endpoint: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--benign-client", endpoint],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        with trio.fail_after(30):
            line = await trio.to_thread.run_sync(self.proc.stdout.readline, abandon_on_cancel=True)
        if line.strip() != "ready":
            raise RuntimeError(f"the benign client did not start: {line!r}")

    def attack_begins(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("attack\n")
        self.proc.stdin.flush()

    async def figures(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        with trio.fail_after(30):
            line = await trio.to_thread.run_sync(self.proc.stdout.readline, abandon_on_cancel=True)
        self.proc.wait(5)
        result: dict[str, Any] = json.loads(line)
        return result


# -- raw connections -----------------------------------------------------------------------


async def raw_ws(nursery: trio.Nursery, endpoint: str) -> trio_websocket.WebSocketConnection:
    """A WebSocket to the node (run in ``nursery``), its HANDSHAKE sent and answered."""
    ws = await trio_websocket.connect_websocket_url(
        nursery, f"ws://{endpoint}/", max_message_size=64 * MIB
    )
    seq = new_seq()
    hello = HandshakeRequest().encode()
    await ws.send_message(encode_frame(Frame(PacketType.HANDSHAKE, seq, hello)))
    while decode_frame(await ws.get_message()).seq != seq:
        pass
    return ws


async def drain(ws: trio_websocket.WebSocketConnection, seen: Seen, key: str) -> None:
    """Read and count what the node sends until it closes."""
    try:
        while True:
            frame = decode_frame(await ws.get_message())
            name = f"{key} status {frame.status}"
            seen[name] = seen.get(name, 0) + 1
    except trio_websocket.ConnectionClosed as exc:
        code = exc.reason.code if exc.reason else None
        seen[f"{key} closed {code}"] = seen.get(f"{key} closed {code}", 0) + 1


# -- the attacks ---------------------------------------------------------------------------


#: Clients of the ``topics`` attack (``--topic-clients``).
TOPIC_CLIENTS = 96


async def attack_topics(node: NodeProcess, seen: Seen, nursery: trio.Nursery) -> None:
    """TOPIC_CLIENTS clients x 16 topics of 60 kB (under 1 MiB each)."""
    for client in range(TOPIC_CLIENTS):
        ws = await raw_ws(nursery, node.endpoint)
        topics = [f"c{client:03d}/t{i:02d}/" + "x" * (60_000 - 11) for i in range(16)]
        frame = encode_frame(Frame(PacketType.AMOP_SUBTOPIC, new_seq(), encode_subtopic(topics)))
        await ws.send_message(frame)
        nursery.start_soon(drain, ws, seen, "topic client")
    seen["topic bytes sent"] = TOPIC_CLIENTS * 16 * 60_000
    await trio.sleep(1)  # let the node read them
    async with open_amop(node.endpoint, max_frame_size=256 * MIB, timeout=60) as client:
        status = await client.node_status()
    seen["topics the node holds"] = status.get("topicCount", len(status["topics"]))


async def attack_status(node: NodeProcess, seen: Seen, nursery: trio.Nursery) -> None:
    """32 clients x 16 topics of 60 kB, then 3 status queries at once."""
    for client in range(32):
        ws = await raw_ws(nursery, node.endpoint)
        topics = [f"s{client:02d}/t{i:02d}/" + "y" * (60_000 - 10) for i in range(16)]
        frame = encode_frame(Frame(PacketType.AMOP_SUBTOPIC, new_seq(), encode_subtopic(topics)))
        await ws.send_message(frame)
        nursery.start_soon(drain, ws, seen, "topic client")
    await trio.sleep(2)  # let the node take them all
    sizes: list[int] = []

    async def query() -> None:
        async with open_amop(node.endpoint, max_frame_size=256 * MIB, timeout=60) as client:
            status = await client.node_status()
            sizes.append(len(json.dumps(status)))
            seen["local topics in the table"] = status.get("topicCount", len(status["topics"]))

    async with trio.open_nursery() as queries:
        for _ in range(3):
            queries.start_soon(query)
    seen["status answer bytes"] = max(sizes)


async def attack_pending(node: NodeProcess, seen: Seen, nursery: trio.Nursery) -> None:
    """A subscriber that reads and never answers; 400 unicasts of 1 MiB."""
    sink = await raw_ws(nursery, node.endpoint)
    await sink.send_message(
        encode_frame(Frame(PacketType.AMOP_SUBTOPIC, new_seq(), encode_subtopic(["sink"])))
    )
    nursery.start_soon(drain, sink, seen, "sink")
    await trio.sleep(0.5)
    publisher = await raw_ws(nursery, node.endpoint)
    nursery.start_soon(drain, publisher, seen, "publisher")
    body = encode_amop_body("sink", b"p" * MIB)
    for _ in range(400):
        await publisher.send_message(encode_frame(Frame(PacketType.AMOP_REQUEST, new_seq(), body)))


async def attack_partial(node: NodeProcess, seen: Seen, nursery: trio.Nursery) -> None:
    """8 connections each announce a 31 MiB frame and send half of it."""
    size = 31 * MIB
    header = bytes([0x82, 0x80 | 127]) + struct.pack(">Q", size) + b"\0\0\0\0"
    half = b"\0" * (size // 2)

    async def one() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", node.port)
        request = (
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await stream.send_all(request.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += await stream.receive_some(4096)
        try:
            await stream.send_all(header + half)
            seen["partial frames sent"] = seen.get("partial frames sent", 0) + 1
            while data := await stream.receive_some(65536):
                if b"\x88" in data[:1]:
                    code = struct.unpack(">H", data[2:4])[0] if len(data) >= 4 else None
                    seen[f"partial closed {code}"] = seen.get(f"partial closed {code}", 0) + 1
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            seen["partial reset"] = seen.get("partial reset", 0) + 1
        await trio.sleep_forever()

    for _ in range(8):
        nursery.start_soon(one)


ATTACK: dict[str, Callable[[NodeProcess, Seen, trio.Nursery], Awaitable[None]]] = {
    "topics": attack_topics,
    "status": attack_status,
    "pending": attack_pending,
    "partial": attack_partial,
}


async def run_attack(name: str, hold: float) -> dict[str, Any]:
    node = NodeProcess()
    try:
        await node.started()
        benign = Benign(node.endpoint)
        await benign.ready()
        await trio.sleep(1.0)  # quiet round trips
        before = node.rss_mib()
        exact = node.reset_hwm()
        benign.attack_begins()
        seen: Seen = {}
        peak = 0.0
        with trio.move_on_after(hold + 60):
            async with trio.open_nursery() as nursery:

                async def sample() -> None:
                    nonlocal peak
                    while True:
                        peak = max(peak, node.rss_mib())
                        await trio.sleep(0.01)

                nursery.start_soon(sample)
                started = trio.current_time()
                await ATTACK[name](node, seen, nursery)
                seen["attack seconds"] = round(trio.current_time() - started, 1)
                await trio.sleep(hold)
                nursery.cancel_scope.cancel()
        peak = max(peak, node.hwm_mib()) if exact else peak
        after = node.rss_mib()
        figures = await benign.figures()
        alive = node.proc.poll() is None
    finally:
        node.stop()
    return {
        "attack": name,
        "rss_before_MiB": round(before, 1),
        "rss_peak_MiB": round(peak, 1),
        "rss_after_MiB": round(after, 1),
        "peak_exact": exact,
        "node_alive": alive,
        "benign": figures,
        "seen": seen,
    }


async def main(args: argparse.Namespace) -> None:
    results = []
    for name in args.only:
        print(f"attack: {name} …", file=sys.stderr, flush=True)
        results.append(await run_attack(name, args.hold))
    rows = []
    for r in results:
        quiet, attack = r["benign"]["quiet"], r["benign"]["attack"]
        rows.append(
            [
                r["attack"],
                r["rss_before_MiB"],
                r["rss_peak_MiB"],
                r["rss_after_MiB"],
                f"{quiet['p50_us']:.0f} / {quiet['p99_us']:.0f}",
                f"{attack['p50_us']:.0f} / {attack['p99_us']:.0f}",
                f"{attack['n']} ({attack['failures']} failed)",
                "yes" if r["node_alive"] else "NO",
            ]
        )
    headers = [
        "attack",
        "RSS before MiB",
        "peak MiB",
        "after MiB",
        "benign p50/p99 µs quiet",
        "during attack",
        "round trips",
        "node alive",
    ]
    print(format_table(headers, rows))
    print()
    for r in results:
        seen = ", ".join(f"{k}: {v}" for k, v in sorted(r["seen"].items()))
        print(f"{r['attack']}: {seen}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        type=lambda text: [a for a in text.split(",") if a],
        default=list(ATTACKS),
        help=f"attacks to run, comma-separated (default: {','.join(ATTACKS)})",
    )
    parser.add_argument(
        "--hold", type=float, default=3.0, help="seconds to keep each attack up (default 3)"
    )
    parser.add_argument(
        "--topic-clients", type=int, default=TOPIC_CLIENTS, help="clients of the topics attack"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--benign-client", metavar="ENDPOINT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    unknown = set(args.only) - set(ATTACKS)
    if unknown:
        parser.error(f"unknown attack(s): {', '.join(sorted(unknown))}")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    TOPIC_CLIENTS = arguments.topic_clients
    if arguments.benign_client:
        trio.run(benign_client, arguments.benign_client)
    else:
        trio.run(main, arguments)
