"""RSS of a node process while it refuses TLS handshakes, to tell a leak from the allocator.

Starts ``amop node`` with the certificates of a fresh chain, then makes
``--count`` TLS handshakes that the node must refuse (clients presenting a
certificate of another chain, both 2.x and 3.x style), ``--concurrency`` at
a time, and prints the node's RSS every tenth of the way. A leak grows
without bound; allocator retention grows, then stays flat at a level set by
how many handshakes are in flight.

    python benchmarks/tls_refusals.py --count 6000 --concurrency 4
"""

from __future__ import annotations

import argparse
import os
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import trio

from amop_trio._chain import wait_listening
from amop_trio._security.network_certs import create_network_certs
from amop_trio._security.tls import client_context_from_dir


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def refused_handshake(port: int, ctx: ssl.SSLContext) -> bool:
    try:
        stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=ctx)
        try:
            await stream.do_handshake()
            # TLS 1.3 clients learn of the refusal here: an alert, or the end of the stream.
            return await stream.receive_some(1) == b""
        finally:
            await trio.aclose_forcefully(stream)
    except (trio.BrokenResourceError, OSError):
        return True


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="amop-tls-"))
    create_network_certs(root / "ours", 1)
    create_network_certs(root / "theirs", 1)
    foreign = [client_context_from_dir(root / "theirs" / d) for d in ("sdk", "sdk3")]
    port = free_port()
    command = [sys.executable, "-m", "amop_trio", "node", "--listen", f"127.0.0.1:{port}"]
    command += ["--certs", str(root / "ours" / "node0" / "conf")]
    process = await trio.lowlevel.open_process(command, stderr=subprocess.DEVNULL)
    try:
        if not await wait_listening(f"127.0.0.1:{port}", 20):
            raise SystemExit("the node did not start")
        print(f"start: {rss_mib(process.pid):.1f} MiB")
        done = refused = 0
        step = max(1, args.count // 10)
        tickets = iter(range(args.count))

        async def worker() -> None:
            nonlocal done, refused
            for i in tickets:
                was_refused = await refused_handshake(port, foreign[i % 2])
                refused += was_refused
                done += 1
                if done % step == 0:
                    rss = rss_mib(process.pid)
                    print(f"{done:6d} handshakes, {refused} refused: {rss:.1f} MiB")

        async with trio.open_nursery() as nursery:
            for _ in range(args.concurrency):
                nursery.start_soon(worker)
    finally:
        process.terminate()
        await process.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=4)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    trio.run(main, parser.parse_args())
