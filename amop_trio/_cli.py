"""The ``amop`` command: run nodes and local networks, subscribe, publish, inspect."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from . import __version__
from ._chain import TOPOLOGIES, create_network_certs, load_config, plan_network, run_network
from ._client import MessageKind, Subscription, open_amop
from ._errors import AmopError
from ._node.limits import NodeLimits
from ._node.server import open_node, parse_listen
from ._wire.fisco3 import DEFAULT_MAX_FRAME_SIZE

CURVE_CHOICES = ("secp256k1", "prime256v1")
#: Lines the FISCO go-sdk AMOP examples send, which the demo mirrors.
UNICAST_MESSAGE = "hello, FISCO BCOS, I am unique broadcast publisher!"
MULTICAST_MESSAGE = "hello, FISCO BCOS, I am multi broadcast publisher!"


def say(text: str) -> None:
    """Print with a timestamp in the format of Go's default logger, as the go-sdk examples do."""
    print(f"{time.strftime('%Y/%m/%d %H:%M:%S')} {text}", flush=True)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def _address(text: str) -> str:
    try:
        parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amop",
        description="AMOP messaging for FISCO BCOS: run nodes, subscribe and publish.",
    )
    parser.add_argument("--version", action="version", version=f"amop_trio {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more: -v for connections, links and topics, -vv for everything",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    endpoint_help = "node address: host:port, ws://…, wss://… or channel://… (2.x protocol)"

    node = commands.add_parser(
        "node",
        help="run an AMOP node that SDK clients and other nodes connect to",
        description="Run an AMOP node until Ctrl-C or SIGTERM. Options override --config.",
    )
    node.add_argument("--config", type=Path, metavar="FILE", help="a config.toml of `amop chain`")
    node.add_argument(
        "--listen", type=_address, help="host:port for SDK clients (default 127.0.0.1:20200)"
    )
    node.add_argument(
        "--p2p-listen",
        type=_address,
        metavar="HOST:PORT",
        help="host:port other nodes link to (default: none)",
    )
    node.add_argument(
        "--peer",
        action="append",
        default=[],
        type=_address,
        metavar="HOST:PORT",
        help="P2P address of a node to link to; repeat for several",
    )
    node.add_argument("--node-id", help="this node's id (default: from --config or the addresses)")
    node.add_argument(
        "--certs",
        type=Path,
        metavar="DIR",
        help="TLS on both ports with DIR/ca.crt, node.crt, node.key (default: plain, or --config)",
    )
    node.add_argument(
        "--request-timeout",
        type=_positive_float,
        default=10.0,
        metavar="S",
        help="seconds a unicast waits for a subscriber's reply (default 10)",
    )
    node.add_argument(
        "--max-frame-size",
        type=int,
        default=DEFAULT_MAX_FRAME_SIZE,
        metavar="BYTES",
        help="largest frame accepted (default 32 MiB)",
    )
    node.add_argument(
        "--busy-poll-us",
        type=_non_negative_float,
        default=0.0,
        metavar="US",
        help="microseconds to keep polling after each frame instead of sleeping: a quicker "
        "round trip for up to that much CPU after each frame (default 0: off; try 50)",
    )

    chain = commands.add_parser(
        "chain",
        help="start a local network of linked nodes",
        description="Write a config per node (SDK ports from 20200, P2P ports from 30300) "
        "and run one node process each, linked together, until Ctrl-C or SIGTERM.",
    )
    chain.add_argument("-n", "--nodes", type=int, default=4, metavar="N", help="nodes (default 4)")
    chain.add_argument(
        "--dir", type=Path, default=Path("nodes"), help="node directories (default ./nodes)"
    )
    chain.add_argument("--host", default="127.0.0.1", help="address to listen on")
    chain.add_argument("--sdk-port", type=int, default=20200, help="first SDK port")
    chain.add_argument("--p2p-port", type=int, default=30300, help="first P2P port")
    chain.add_argument(
        "--topology", choices=TOPOLOGIES, default="mesh", help="links (default mesh: every pair)"
    )
    chain.add_argument(
        "--plain", action="store_true", help="no TLS: plain WebSocket on every port (loopback only)"
    )
    chain.add_argument("--curve", choices=CURVE_CHOICES, default="secp256k1", help="key curve")

    certs = commands.add_parser(
        "certs",
        help="create a chain CA, node and SDK certificates (FISCO layout)",
        description="Write DIR/ca/{ca.crt,ca.key}, DIR/nodeN/conf/{ca.crt,node.crt,node.key} "
        "and DIR/sdk/{ca.crt,sdk.crt,sdk.key}. An existing CA in DIR/ca is reused.",
    )
    certs.add_argument("--dir", type=Path, default=Path("nodes"), help="default ./nodes")
    certs.add_argument("-n", "--nodes", type=int, default=4, metavar="N", help="node certificates")
    certs.add_argument("--curve", choices=CURVE_CHOICES, default="secp256k1", help="key curve")

    keys = commands.add_parser(
        "keys",
        help="secp256k1 key pairs for private topics",
        description="`amop keys new NAME` writes NAME.pem (private key: give it to a "
        "subscriber) and NAME.pub.pem (public key: give it to publishers).",
    )
    keys.add_argument("action", choices=["new"])
    keys.add_argument("name", type=Path, help="path without extension, e.g. keys/alice")

    status = commands.add_parser(
        "status",
        help="show a node's id, links and topic directory",
        description="Ask a node who it is, which nodes it links to and which topics it knows "
        "of: the first thing to look at when a message does not arrive.",
    )
    status.add_argument("endpoint", help=endpoint_help)
    status.add_argument("--json", action="store_true", help="print the raw JSON")

    sub = commands.add_parser(
        "sub",
        help="subscribe to a topic and print what arrives",
        description="Subscribe to TOPIC and print every message.",
    )
    sub.add_argument("endpoint", help=endpoint_help)
    sub.add_argument("topic")
    sub.add_argument(
        "--count", type=int, default=0, metavar="N", help="exit after N messages (default: never)"
    )
    sub.add_argument(
        "--reply", metavar="TEXT", help="answer unicasts with TEXT (default: an empty reply)"
    )

    pub = commands.add_parser(
        "pub",
        help="publish a message to a topic",
        description="Publish MESSAGE to TOPIC: unicast by default, printing the reply; "
        "--multicast reaches every subscriber.",
    )
    pub.add_argument("endpoint", help=endpoint_help)
    pub.add_argument("topic")
    pub.add_argument("message")
    pub.add_argument("--multicast", action="store_true", help="send to every subscriber")
    pub.add_argument(
        "--count", type=int, default=1, metavar="N", help="send N messages numbered from 0"
    )
    pub.add_argument(
        "--interval", type=float, default=0.0, metavar="S", help="seconds between messages"
    )
    pub.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        metavar="S",
        help="seconds to wait for each reply (default 10)",
    )

    commands.add_parser(
        "demo",
        help="run a two-node network, a subscriber and both kinds of publisher",
        description="Start two linked nodes (127.0.0.1:20200 and :20201), subscribe on the "
        "second, publish unicast and multicast messages on the first, and print what each "
        "side sees.",
    )
    return parser


async def run_node(args: argparse.Namespace) -> None:
    config = load_config(args.config) if args.config else None
    listen = args.listen or (config.listen if config else "127.0.0.1:20200")
    p2p_listen = args.p2p_listen or (config.p2p_listen if config else None) or None
    peers = [*(config.peers if config else ()), *args.peer]
    node_id = args.node_id or (config.node_id if config else None)
    certs = args.certs or (config.certs if config else None)
    limits = NodeLimits(max_frame_size=args.max_frame_size)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_node(
            listen,
            p2p_listen=p2p_listen,
            peers=peers,
            node_id=node_id,
            certs=certs,
            request_timeout=args.request_timeout,
            limits=limits,
            busy_poll=args.busy_poll_us / 1e6,
        ) as node:
            # A node holds many long-lived objects per connection: collect less often,
            # and never look again at what start-up created.
            gc.freeze()
            gc.set_threshold(10_000, 20, 50)
            p2p = f", p2p {node.p2p_endpoint}" if node.p2p_endpoint else ""
            print(
                f"amop node {node.node_id[:16]}… listening on {node.url}{p2p} (Ctrl-C to stop)",
                flush=True,
            )
            async for signum in signals:
                print(f"amop node stopping ({signal.Signals(signum).name})", flush=True)
                break


async def run_chain(args: argparse.Namespace) -> None:
    node_ids = None
    if not args.plain:
        node_ids = create_network_certs(args.dir, args.nodes, curve=args.curve)
    configs = plan_network(
        args.nodes,
        host=args.host,
        sdk_port=args.sdk_port,
        p2p_port=args.p2p_port,
        topology=args.topology,
        node_ids=node_ids,
    )
    security = "plain WebSocket" if args.plain else f"TLS, SDK certificates in {args.dir}/sdk"
    print(
        f"amop chain: {args.nodes} nodes ({args.topology}, {security}) in {args.dir}/", flush=True
    )
    await run_network(
        args.dir, configs, report=lambda line: print(line, flush=True), verbose=args.verbose
    )


async def run_certs(args: argparse.Namespace) -> None:
    ids = create_network_certs(args.dir, args.nodes, curve=args.curve)
    print(f"chain CA      {args.dir / 'ca'}/ca.crt, ca.key")
    for i, node_id in enumerate(ids):
        print(f"node{i}         {args.dir / f'node{i}' / 'conf'}/  id {node_id[:16]}…")
    print(f"SDK           {args.dir / 'sdk'}/ca.crt, sdk.crt, sdk.key")


async def run_keys(args: argparse.Namespace) -> None:
    from ._security.keys import generate_private_key, public_key_pem, save_private_key_pem

    private_path = args.name.with_name(args.name.name + ".pem")
    public_path = args.name.with_name(args.name.name + ".pub.pem")
    if private_path.exists():
        raise AmopError(f"{private_path} exists already; choose another name")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    save_private_key_pem(key, private_path)
    public_path.write_bytes(public_key_pem(key.public_key()))
    print(f"private key   {private_path}   (the subscriber's; keep it secret)")
    print(f"public key    {public_path}   (give it to publishers of the private topic)")


async def run_status(args: argparse.Namespace) -> None:
    async with open_amop(args.endpoint, reconnect=False) as client:
        status = await client.node_status()
    print(json.dumps(status, indent=2) if args.json else format_status(status))


def format_status(status: dict[str, Any]) -> str:
    """A node's status as a few readable lines."""

    def topics(counts: dict[str, int]) -> str:
        return ", ".join(f"{t}({n})" for t, n in sorted(counts.items())) or "-"

    lines = [
        f"node {status['nodeId']}",
        f"  sdk {status['sdk']}   p2p {status.get('p2p') or '-'}   clients {status['clients']}",
        f"  local topics: {topics(status['topics'])}",
        "links:",
    ]
    lines += [
        f"  {link['direction']:3} {link['peer'][:16]}…  {link['remote']}"
        for link in status["links"]
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
    lines.append("directory (reachable nodes):")
    for entry in status["directory"]:
        via = f"via {entry['nextHop'][:8]}…" if entry["nextHop"] else "(this node)"
        sdk = ",".join(entry["endpoints"]) or "-"
        lines.append(
            f"  {entry['node'][:16]}…  hops {entry['distance']}  {via:14} {sdk}  "
            f"topics: {topics(entry['topics'])}"
        )
    return "\n".join(lines)


async def print_messages(sub: Subscription, count: int, reply: str | None) -> None:
    """Print each message as the go-sdk subscriber does, answering unicasts."""
    received = 0
    async for message in sub:
        say(f"received: {message.data.decode('utf-8', 'replace')}")
        if message.kind is MessageKind.UNICAST and reply is not None:
            await message.reply(reply)
        received += 1
        if count and received >= count:
            return


async def run_sub(args: argparse.Namespace) -> None:
    async with open_amop(args.endpoint) as client, client.subscribe(args.topic) as sub:
        print("Subscriber success", flush=True)
        await print_messages(sub, args.count, args.reply)


async def publish_numbered(
    send: Callable[[str], Awaitable[bytes | None]], message: str, count: int, interval: float
) -> None:
    """Send ``message`` ``count`` times, numbered like the go-sdk publishers."""
    for i in range(count):
        text = message if count == 1 else f"{message} {i}"
        say(f"publish message: {text}")
        answer = await send(text)
        if answer is not None:
            say(f"reply: {answer.decode('utf-8', 'replace')}")
        if interval and i + 1 < count:
            await trio.sleep(interval)


async def run_pub(args: argparse.Namespace) -> None:
    async with open_amop(args.endpoint, timeout=args.timeout) as client:

        async def send(text: str) -> bytes | None:
            if args.multicast:
                await client.broadcast(args.topic, text)
                return None
            return await client.publish(args.topic, text)

        await publish_numbered(send, args.message, args.count, args.interval)


async def run_demo(args: argparse.Namespace) -> None:
    topic, count = "hello", 3
    print("two linked nodes: node0 on 127.0.0.1:20200, node1 on 127.0.0.1:20201", flush=True)
    async with (
        open_node("127.0.0.1:20200", p2p_listen="127.0.0.1:0") as node0,
        open_node(
            "127.0.0.1:20201", p2p_listen="127.0.0.1:0", peers=[node0.p2p_endpoint or ""]
        ) as node1,
        open_amop(node1.endpoint) as subscriber,
        open_amop(node0.endpoint) as publisher,
        subscriber.subscribe(topic) as sub,
        trio.open_nursery() as nursery,
    ):
        print("Subscriber success", flush=True)
        with trio.fail_after(10):  # the subscription reaches node0 through the link
            await node0.network.wait_subscribed(topic)
        nursery.start_soon(print_messages, sub, 2 * count, "ok")

        async def unicast(text: str) -> bytes:
            return await publisher.publish(topic, text)

        async def multicast(text: str) -> None:
            await publisher.broadcast(topic, text)

        print(f"-- unicast from {node0.endpoint}: one subscriber gets it, its reply comes back")
        await publish_numbered(unicast, UNICAST_MESSAGE, count, 0.1)
        print(f"-- multicast from {node0.endpoint}: every subscriber gets it")
        await publish_numbered(multicast, MULTICAST_MESSAGE, count, 0.1)
    print("demo finished", flush=True)


COMMANDS: dict[str, Callable[[argparse.Namespace], Awaitable[None]]] = {
    "node": run_node,
    "chain": run_chain,
    "certs": run_certs,
    "keys": run_keys,
    "status": run_status,
    "sub": run_sub,
    "pub": run_pub,
    "demo": run_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        trio.run(COMMANDS[args.command], args)
    except KeyboardInterrupt:
        return 130
    except AmopError as exc:
        print(f"amop {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"amop {args.command}: error: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
