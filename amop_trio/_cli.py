"""The ``amop`` command: run a node, subscribe, publish, or watch a demo."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO

import trio

from . import __version__
from ._client import MessageKind, Subscription, open_amop
from ._errors import AmopError
from ._node.server import NodeLimits, open_node, parse_listen
from ._wire.ws import DEFAULT_MAX_FRAME_SIZE

#: Lines the FISCO go-sdk AMOP examples send, which the demo mirrors.
UNICAST_MESSAGE = "hello, FISCO BCOS, I am unique broadcast publisher!"
MULTICAST_MESSAGE = "hello, FISCO BCOS, I am multi broadcast publisher!"


def stamp() -> str:
    """Timestamp in the format of Go's default logger, as the go-sdk examples print."""
    return time.strftime("%Y/%m/%d %H:%M:%S")


def say(text: str, out: TextIO | None = None) -> None:
    print(f"{stamp()} {text}", file=out or sys.stdout, flush=True)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _listen_address(text: str) -> str:
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
        help="log more: -v for connections and topics, -vv for every frame",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    node = commands.add_parser(
        "node",
        help="run an AMOP node that SDK clients connect to",
        description="Run an AMOP node until Ctrl-C or SIGTERM.",
    )
    node.add_argument(
        "--listen",
        type=_listen_address,
        default="127.0.0.1:20200",
        help="host:port for SDK clients (default 127.0.0.1:20200)",
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

    sub = commands.add_parser(
        "sub",
        help="subscribe to a topic and print what arrives",
        description="Subscribe to TOPIC and print every message.",
    )
    sub.add_argument("endpoint", help="node address: host:port, ws://… or wss://…")
    sub.add_argument("topic")
    sub.add_argument(
        "--count",
        type=int,
        default=0,
        metavar="N",
        help="exit after N messages (default: run until Ctrl-C)",
    )
    sub.add_argument(
        "--reply",
        default=None,
        metavar="TEXT",
        help="answer unicasts with TEXT (default: an empty reply)",
    )

    pub = commands.add_parser(
        "pub",
        help="publish a message to a topic",
        description="Publish MESSAGE to TOPIC: unicast by default, "
        "the reply is printed; --multicast reaches every subscriber.",
    )
    pub.add_argument("endpoint", help="node address: host:port, ws://… or wss://…")
    pub.add_argument("topic")
    pub.add_argument("message")
    pub.add_argument("--multicast", action="store_true", help="send to every subscriber")
    pub.add_argument(
        "--count",
        type=int,
        default=1,
        metavar="N",
        help="send N messages, numbered from 0 (default 1)",
    )
    pub.add_argument(
        "--interval",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds between messages (default 0)",
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
        help="run a node, a subscriber and both kinds of publisher",
        description="Start an embedded node, subscribe, then publish unicast "
        "and multicast messages, printing what each side sees.",
    )
    return parser


async def run_node(args: argparse.Namespace) -> None:
    limits = NodeLimits(max_frame_size=args.max_frame_size)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_node(
            args.listen, request_timeout=args.request_timeout, limits=limits
        ) as node:
            print(f"amop node listening on {node.url} (Ctrl-C to stop)", flush=True)
            async for signum in signals:
                print(f"amop node stopping ({signal.Signals(signum).name})", flush=True)
                break


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
    async with open_node("127.0.0.1:0") as node:
        print(f"node listening on {node.url}", flush=True)
        async with (
            open_amop(node.endpoint) as subscriber,
            open_amop(node.endpoint) as publisher,
            subscriber.subscribe(topic) as sub,
            trio.open_nursery() as nursery,
        ):
            print("Subscriber success", flush=True)
            nursery.start_soon(print_messages, sub, 2 * count, "ok")

            async def unicast(text: str) -> bytes:
                return await publisher.publish(topic, text)

            async def multicast(text: str) -> None:
                await publisher.broadcast(topic, text)

            print("-- unicast: each message goes to one subscriber, its reply comes back")
            await publish_numbered(unicast, UNICAST_MESSAGE, count, 0.1)
            print("-- multicast: each message goes to every subscriber")
            await publish_numbered(multicast, MULTICAST_MESSAGE, count, 0.1)
    print("demo finished", flush=True)


COMMANDS: dict[str, Callable[[argparse.Namespace], Awaitable[None]]] = {
    "node": run_node,
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


if __name__ == "__main__":
    sys.exit(main())
