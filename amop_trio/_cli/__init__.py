"""The ``amop`` command: run nodes and local chains, subscribe, publish, request, reply.

``parser`` checks what was typed (usage errors, exit status 2), ``nodes`` runs
nodes and chains, ``clients`` the commands that connect to a node, and
``output`` prints for people or scripts. ``main`` turns every expected
failure into one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence

import trio

from .._errors import AmopError
from .._groups import unwrap_group
from .clients import run_pub, run_reply, run_request, run_status, run_sub
from .nodes import run_certs, run_chain, run_demo, run_keys, run_node
from .output import StdoutClosed, silence_stdout
from .parser import build_parser, check_args, program

__all__ = ["main"]

COMMANDS: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
    "node": run_node,
    "chain": run_chain,
    "certs": run_certs,
    "keys": run_keys,
    "status": run_status,
    "sub": run_sub,
    "pub": run_pub,
    "request": run_request,
    "reply": run_reply,
    "demo": run_demo,
}


def read_data(args: argparse.Namespace) -> bytes:
    """The bytes to send: MESSAGE as typed (any bytes), stdin for -, or a file."""
    source = args.file if args.file is not None else args.message
    if source == "-":
        return sys.stdin.buffer.read()
    if args.file is not None:
        try:
            with open(os.fsencode(args.file), "rb") as file:
                return file.read()
        except OSError as exc:
            raise AmopError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    return os.fsencode(args.message)


def main(argv: Sequence[str] | None = None) -> int:
    # Paths and names typed in any encoding are printed back, never a UnicodeEncodeError.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="surrogateescape")
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(args)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    prog = program(args)
    try:
        if args.command in ("pub", "request"):
            args.data = read_data(args)
        return trio.run(COMMANDS[args.command], args)
    except (Exception, KeyboardInterrupt, BaseExceptionGroup) as exc:
        code = _exit_status(exc, prog)
        if code is None:
            raise
        return code


def _exit_status(exc: BaseException, prog: str) -> int | None:
    """The exit status for what ended a command, said on stderr; None to let it propagate."""
    error = unwrap_group(exc)
    if isinstance(error, KeyboardInterrupt):
        return 130
    if isinstance(error, (StdoutClosed, BrokenPipeError)):
        silence_stdout()
        return 0
    if isinstance(error, (AmopError, ValueError)):
        print(f"{prog}: error: {_one_line(str(error))}", file=sys.stderr)
        return 1
    if isinstance(error, OSError):
        text = error.strerror or str(error)
        if error.filename is not None:
            text += f": {os.fsdecode(error.filename)}"
        print(f"{prog}: error: {_one_line(text)}", file=sys.stderr)
        return 1
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"
