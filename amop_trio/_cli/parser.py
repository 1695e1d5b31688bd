"""The ``amop`` command line: every subcommand, option and check on what was typed.

Bad input is a usage error (exit status 2) of one line that says what was
typed and what is expected; nothing here touches the network.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any, NoReturn

from .. import __version__
from .._chain import TOPOLOGIES, is_loopback
from .values import (
    count,
    endpoint,
    frame_size,
    ip_address,
    key_name,
    limit_setting,
    listen_address,
    node_count,
    node_name,
    non_negative_float,
    port,
    positive_float,
    topic,
)

CURVE_CHOICES = ("secp256k1", "prime256v1")
#: ``amop chain`` options that describe a chain to create; None when not given.
CREATION_DEFAULTS: dict[str, Any] = {
    "nodes": 4,
    "host": "127.0.0.1",
    "sdk_port": 20200,
    "p2p_port": 30300,
    "topology": "mesh",
    "plain": False,
    "insecure_plain": False,
    "curve": "secp256k1",
}
CERTS_HELP = (
    "SDK certificates: DIR holds ca.crt, sdk.crt and sdk.key (default: $AMOP_SDK_CERTS, "
    "else ./nodes/sdk, else ./conf if they hold them, else no TLS)"
)
ENDPOINT_HELP = "node address: host:port, ws://host:port, wss://host:port or channel://host:port"


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows every option's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default:" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == []
        ):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            text += " (default: %(default)s)"
        return text


# -- the parser --------------------------------------------------------------------------------


def build_parser() -> Parser:
    parser = Parser(
        prog="amop",
        formatter_class=HelpFormatter,
        description="AMOP messaging for FISCO BCOS: run nodes and local chains, subscribe, "
        "publish, request and reply.",
        epilog="Exit status: 0 success, 1 a runtime failure (one line on stderr), "
        "2 a usage error.\nEnvironment: AMOP_SDK_CERTS names a directory of SDK "
        "certificates (ca.crt, sdk.crt, sdk.key) clients use when --certs is not given.",
    )
    parser.add_argument("--version", action="version", version=f"amop_trio {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more on stderr: -v for connections, links and topics, -vv for everything",
    )
    verbose = Parser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help: str, description: str, parents: tuple[Parser, ...] = (), **kwargs: Any
    ) -> Parser:
        sub: Parser = commands.add_parser(
            name,
            help=help,
            description=description,
            formatter_class=HelpFormatter,
            parents=[*parents, verbose],
            **kwargs,
        )
        sub.set_defaults(parser=sub)
        return sub

    _add_node(command)
    _add_chain(command, verbose)
    _add_certs_and_keys(command)
    _add_clients(command)
    command(
        "demo",
        "run a two-node network, a subscriber and both kinds of publisher",
        "Start two linked nodes (127.0.0.1:20200 and :20201), subscribe on the second, "
        "publish unicast and multicast messages on the first, and print what each side sees.",
    )
    return parser


def _add_node(command: Any) -> None:
    node = command(
        "node",
        "run one AMOP node that SDK clients and other nodes connect to",
        "Run an AMOP node until Ctrl-C or SIGTERM. Options override --config.\n\n"
        "Without certificates the node speaks plain WebSocket, and any process that can "
        "reach its ports can join; so it refuses a non-loopback address without "
        "--certs unless --insecure-plain is given.\n\n"
        "example: amop node --listen 127.0.0.1:20200 --p2p-listen 127.0.0.1:30300",
    )
    node.add_argument("--config", type=Path, metavar="FILE", help="a config.toml of `amop chain`")
    node.add_argument(
        "--listen",
        type=listen_address,
        metavar="HOST:PORT",
        help="address for SDK clients (default: from --config, else 127.0.0.1:20200)",
    )
    node.add_argument(
        "--p2p-listen",
        type=listen_address,
        metavar="HOST:PORT",
        help="address other nodes link to (default: from --config, else none)",
    )
    node.add_argument(
        "--peer",
        action="append",
        default=[],
        type=listen_address,
        metavar="HOST:PORT",
        help="P2P address of a node to link to; repeat for several (default: none)",
    )
    node.add_argument(
        "--node-id", help="this node's id (default: from --config, the certificate or addresses)"
    )
    node.add_argument("--chain-id", default="1", help="chain id told to 2.x SDKs (default 1)")
    node.add_argument(
        "--certs",
        type=Path,
        metavar="DIR",
        help="mutual TLS on both ports with DIR/ca.crt, node.crt, node.key "
        "(default: from --config, else none)",
    )
    node.add_argument(
        "--insecure-plain",
        action="store_true",
        help="allow plain WebSocket on a non-loopback address: anyone who reaches it can join",
    )
    node.add_argument(
        "--request-timeout",
        type=positive_float,
        default=10.0,
        metavar="S",
        help="seconds a unicast waits for a subscriber's reply",
    )
    node.add_argument(
        "--max-frame-size",
        type=frame_size,
        default=32 * 1024 * 1024,
        metavar="BYTES",
        help="largest frame accepted",
    )
    node.add_argument(
        "--limit",
        action="append",
        default=[],
        type=limit_setting,
        metavar="NAME=VALUE",
        help="set one of the node's limits (README, Limits), e.g. node_total_bytes=64MiB, "
        "max_topics=200, subscriber_timeout=5; repeat for several",
    )
    node.add_argument(
        "--busy-poll-us",
        type=non_negative_float,
        default=0.0,
        metavar="US",
        help="microseconds to keep polling after each frame instead of sleeping: a quicker "
        "round trip for up to that much CPU after each frame (0: off; try 50)",
    )
    node.add_argument(
        "--pid-file", type=Path, metavar="FILE", help="write the pid here once listening"
    )
    # How `amop chain` learns that a node listens, and stops it when the chain goes away.
    node.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    node.add_argument("--lifeline-fd", type=int, help=argparse.SUPPRESS)


CHAIN_ACTIONS = {
    "run": "create the chain if DIR holds none, then run every node in the foreground "
    "until Ctrl-C or SIGTERM, and stop them all then; a node that dies is reported and "
    "the others keep running (the default action)",
    "create": "create the chain only: certificates and a config.toml per node",
    "start": "start the chain's nodes, or the NODEs named, detached in the background, "
    "like start_all.sh; each writes DIR/nodeN/node.pid and appends to node.log",
    "stop": "stop the chain's nodes, or the NODEs named, like stop_all.sh; only "
    "processes proven to be those nodes are signalled",
    "status": "show which nodes run, with pid and addresses; exit status 3 if some do not",
}


def _add_creation_options(parser: Parser, default: Any, *, hidden: bool = False) -> None:
    """Options that describe a chain to create: None (or absent) when not given."""

    def add(*names: str, help: str, **kwargs: Any) -> None:
        shown = argparse.SUPPRESS if hidden else help
        parser.add_argument(*names, default=default, help=shown, **kwargs)

    add("-n", "--nodes", type=node_count, metavar="N", help="nodes (default: 4)")
    add("--host", type=ip_address, help="address every node listens on (default: 127.0.0.1)")
    add("--sdk-port", type=port, help="first SDK port (default: 20200)")
    add("--p2p-port", type=port, help="first P2P port (default: 30300)")
    add("--topology", choices=TOPOLOGIES, help="links (default: mesh, every pair)")
    add(
        "--plain",
        action="store_const",
        const=True,
        help="no certificates, plain WebSocket on every port (loopback only)",
    )
    add(
        "--insecure-plain",
        action="store_const",
        const=True,
        help="with --plain, allow a non-loopback --host: any host that reaches the ports can join",
    )
    add(
        "--curve",
        choices=CURVE_CHOICES,
        help="key curve of the certificates (default: secp256k1)",
    )


def _add_chain(command: Any, verbose: Parser) -> None:
    chain = command(
        "chain",
        "create, run, start, stop a local chain of linked nodes",
        """\
A local chain in DIR, like FISCO's build_chain.sh: DIR/ca (chain CA),
DIR/nodeN/config.toml and conf/ (node certificates), DIR/sdk (SDK certificates),
SDK ports from 20200, P2P ports from 30300.

An existing chain is reused as it is; options that describe another chain are
refused, never applied over it.

examples:
  amop chain -n 2                    create ./nodes with 2 nodes and run them
  amop chain create -n 4 --dir nodes create a chain without running it
  amop chain start                   start its nodes in the background
  amop chain stop node1              stop node1 only
  amop chain status""",
        usage="amop chain [ACTION] [NODE ...] [options]",
    )
    chain.add_argument("--dir", type=Path, default=Path("nodes"), help="the chain's directory")
    _add_creation_options(chain, None)
    actions = chain.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    for name, text in CHAIN_ACTIONS.items():
        action: Parser = actions.add_parser(
            name,
            prog=f"amop chain {name}",
            help=text,
            description=textwrap.fill(text[0].upper() + text[1:] + ".", 80),
            formatter_class=HelpFormatter,
            parents=[verbose],
        )
        action.set_defaults(parser=action)
        action.add_argument(
            "--dir",
            type=Path,
            default=argparse.SUPPRESS,
            help="the chain's directory (default: nodes)",
        )
        if name in ("run", "create"):
            _add_creation_options(action, argparse.SUPPRESS)
        else:
            # Taken only to say that they do not belong here.
            _add_creation_options(action, argparse.SUPPRESS, hidden=True)
            action.add_argument(
                "names",
                nargs="*",
                type=node_name,
                metavar="NODE",
                help="only these nodes, e.g. node1 (default: every node)",
            )


def _add_certs_and_keys(command: Any) -> None:
    certs = command(
        "certs",
        "create a chain CA, node and SDK certificates (FISCO layout)",
        "Write DIR/ca/{ca.crt,ca.key}, DIR/nodeN/conf/{ca.crt,node.crt,node.key} and "
        "DIR/sdk/{ca.crt,sdk.crt,sdk.key}. Certificates that exist are kept, so node ids "
        "never change behind a running chain.\n\nexample: amop certs --dir nodes -n 4",
    )
    certs.add_argument("--dir", type=Path, default=Path("nodes"), help="where to write")
    certs.add_argument("-n", "--nodes", type=node_count, default=4, metavar="N", help="nodes")
    certs.add_argument("--curve", choices=CURVE_CHOICES, default="secp256k1", help="key curve")

    keys = command(
        "keys",
        "secp256k1 key pairs for private topics",
        "`amop keys new NAME` writes NAME.pem (private key: give it to a subscriber) and "
        "NAME.pub.pem (public key: give it to publishers). It never replaces a key.\n\n"
        "example: amop keys new keys/alice",
    )
    keys.add_argument("action", choices=["new"])
    keys.add_argument("name", type=key_name, help="path without extension, e.g. keys/alice")


def _add_clients(command: Any) -> None:
    client = Parser(add_help=False)
    client.add_argument("endpoint", type=endpoint, help=ENDPOINT_HELP)
    client.add_argument("topic", type=topic, help="the topic")
    client.add_argument("--certs", type=Path, metavar="DIR", help=CERTS_HELP)

    output = Parser(add_help=False)
    formats = output.add_mutually_exclusive_group()
    formats.add_argument(
        "--json",
        action="store_true",
        help="one JSON object a line: topic, kind, encoding (utf-8 or base64) and data",
    )
    formats.add_argument("--raw", action="store_true", help="the data only, as bytes")
    output.add_argument(
        "-N", "--no-newline", action="store_true", help="with --raw, no newline after the data"
    )

    payload = Parser(add_help=False)
    payload.add_argument(
        "message", nargs="?", help="the data; - reads it from stdin (default: see --file)"
    )
    payload.add_argument(
        "-f", "--file", metavar="FILE", help="send the bytes of FILE (- for stdin) as the data"
    )
    repeat = Parser(add_help=False)
    repeat.add_argument(
        "--count", type=count, default=1, metavar="N", help="messages to send (0: no limit)"
    )
    repeat.add_argument(
        "--interval", type=non_negative_float, default=0.0, metavar="S", help="seconds between"
    )
    repeat.add_argument(
        "--timeout", type=positive_float, default=10.0, metavar="S", help="seconds per message"
    )
    stop_after = Parser(add_help=False)
    stop_after.add_argument(
        "--count", type=count, default=0, metavar="N", help="exit after N messages (0: no limit)"
    )

    status = command(
        "status",
        "show a node's id, links and topic directory",
        "Ask a node who it is, which nodes it links to and which topics it knows of: the "
        "first thing to look at when a message does not arrive.\n\n"
        "example: amop status 127.0.0.1:20200",
    )
    status.add_argument("endpoint", type=endpoint, help=ENDPOINT_HELP)
    status.add_argument("--certs", type=Path, metavar="DIR", help=CERTS_HELP)
    status.add_argument("--json", action="store_true", help="print the node's JSON answer")
    status.add_argument(
        "--topics",
        action="store_true",
        help="list every topic of the node's clients with its subscribers, one a line "
        "(status answers show the first page only)",
    )
    status.add_argument(
        "--timeout", type=positive_float, default=10.0, metavar="S", help="seconds to wait"
    )

    sub = command(
        "sub",
        "subscribe to a topic and print what arrives",
        "Subscribe to TOPIC and print every message with its kind (unicast or multicast). "
        "Unicasts are answered with --reply TEXT, or with an empty reply. Losing the node "
        "and getting it back are said on stderr.\n\n"
        "example: amop sub 127.0.0.1:20201 hello --json",
        parents=(client, output, stop_after),
    )
    sub.add_argument("--reply", metavar="TEXT", help="answer unicasts with TEXT")

    pub = command(
        "pub",
        "publish a message: unicast (printing the reply) or --multicast",
        "Publish the data to TOPIC: by default a unicast to one subscriber, whose reply is "
        "printed; --multicast reaches every subscriber. The data is MESSAGE, stdin "
        "(MESSAGE -) or a file (-f FILE), bytes as they are.\n\n"
        "examples:\n  amop pub 127.0.0.1:20200 hello 'hi there'\n"
        "  amop pub 127.0.0.1:20200 hello --multicast -f picture.png",
        parents=(client, payload, repeat),
    )
    pub.add_argument("--multicast", action="store_true", help="send to every subscriber")

    command(
        "request",
        "send a unicast and print the reply with its round-trip time",
        "Send the data to one subscriber of TOPIC and print its reply and the round-trip "
        "time, like `nats request`. With --raw, only the reply's bytes.\n\n"
        "example: echo 2+2 | amop request 127.0.0.1:20200 calc - --raw",
        parents=(client, payload, output, repeat),
    )

    reply = command(
        "reply",
        "answer each unicast on a topic with a text or a command's output",
        "Subscribe to TOPIC and answer every unicast with TEXT, or with the standard output "
        "of COMMAND run once per request (through /bin/sh, the request's data on its stdin, "
        "AMOP_TOPIC in its environment), like `nats reply`. Each request is printed as "
        "`amop sub` prints messages.\n\n"
        "example: amop reply 127.0.0.1:20201 calc --command bc",
        parents=(client, output, stop_after),
    )
    answer = reply.add_mutually_exclusive_group(required=True)
    answer.add_argument("text", nargs="?", help="the reply to every request")
    answer.add_argument(
        "--command", dest="run", metavar="COMMAND", help="a shell command to run per request"
    )
    reply.add_argument(
        "--command-timeout",
        type=positive_float,
        default=5.0,
        metavar="S",
        help="seconds a command may run; it is killed then and the reply is empty",
    )


def check_args(args: argparse.Namespace) -> None:
    """Checks that span several options; a usage error (exit status 2) when one fails."""
    parser: Parser = args.parser
    if args.command == "chain":
        _check_chain(args, parser)
    if args.command in ("pub", "request") and (args.message is None) == (args.file is None):
        if args.message is None:
            parser.error("the data is missing: give MESSAGE, - for stdin, or -f FILE")
        parser.error("give MESSAGE or -f FILE, not both")
    if getattr(args, "no_newline", False) and not args.raw:
        parser.error("-N/--no-newline goes with --raw")


def _check_chain(args: argparse.Namespace, parser: Parser) -> None:
    args.action = args.action or "run"
    args.names = getattr(args, "names", [])
    given = [name for name in CREATION_DEFAULTS if getattr(args, name) is not None]
    if args.action not in ("run", "create") and given:
        option = "--" + given[0].replace("_", "-")
        parser.error(
            f"{option} describes a chain to create; `amop chain {args.action}` uses the "
            f"chain in --dir as it is"
        )
    args.given = given
    for name, default in CREATION_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.insecure_plain and not args.plain:
        parser.error("--insecure-plain goes with --plain")
    if args.plain and not args.insecure_plain and not is_loopback(args.host):
        parser.error(
            f"--plain on {args.host} would let any host that reaches it join the chain; "
            "use certificates (leave out --plain) or add --insecure-plain"
        )
    for first, what in ((args.sdk_port, "--sdk-port"), (args.p2p_port, "--p2p-port")):
        if first + args.nodes - 1 > 65535:
            parser.error(f"{what} {first}: {args.nodes} nodes need ports up to 65535")
    if args.sdk_port < args.p2p_port + args.nodes and args.p2p_port < args.sdk_port + args.nodes:
        parser.error(
            f"SDK ports {args.sdk_port}..{args.sdk_port + args.nodes - 1} overlap P2P ports "
            f"{args.p2p_port}..{args.p2p_port + args.nodes - 1}"
        )


def program(args: argparse.Namespace) -> str:
    """``amop sub``, ``amop chain start``: how error lines start."""
    if args.command == "chain" and args.action != "run":
        return f"amop chain {args.action}"
    return f"amop {args.command}"
