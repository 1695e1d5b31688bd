"""What the client commands print: for people, as JSON lines, or the raw bytes.

Data is bytes and may be anything. People see it as text, escaped where it
is not printable UTF-8 and cut when long; ``--json`` carries it whole, as
text when it is UTF-8 and as base64 otherwise (``encoding`` says which);
``--raw`` writes it as it is. A reader that goes away (``| head -1``) ends
the command quietly.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from typing import Any

#: Characters of a message shown to people before it is cut.
SHOWN = 500


class StdoutClosed(Exception):
    """Whoever read our standard output has gone: stop, quietly."""


def stamp() -> str:
    """The time in the format of Go's default logger, as the go-sdk examples print it."""
    return time.strftime("%Y/%m/%d %H:%M:%S")


def printable(data: bytes, limit: int = SHOWN) -> str:
    """``data`` as one line of text: UTF-8 where it is, escapes for everything else."""
    text = data[: limit * 4].decode("utf-8", "backslashreplace")
    shown = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text[:limit]
    )
    if len(text) > limit or len(data) > limit * 4:
        shown += f"… ({len(data)} bytes)"
    return shown


def as_json(data: bytes) -> dict[str, str]:
    try:
        return {"encoding": "utf-8", "data": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"encoding": "base64", "data": base64.b64encode(data).decode("ascii")}


def write_stdout(data: bytes) -> None:
    """Write and flush; ``StdoutClosed`` if the reader has gone."""
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise StdoutClosed from None


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush cannot fail either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Output:
    """Prints messages in the format the command line asked for."""

    def __init__(self, *, json_lines: bool = False, raw: bool = False, newline: bool = True):
        self.json = json_lines
        self.raw = raw
        self.newline = newline

    @property
    def human(self) -> bool:
        return not (self.json or self.raw)

    def note(self, text: str) -> None:
        """A line for people: on stdout in the human format, on stderr otherwise."""
        if self.human:
            write_stdout(f"{stamp()} {text}\n".encode("utf-8", "backslashreplace"))
        else:
            warn(text)

    def line(self, text: str) -> None:
        write_stdout(f"{stamp()} {text}\n".encode("utf-8", "backslashreplace"))

    def message(self, topic: str, kind: str, data: bytes, **extra: Any) -> None:
        """One received message, or a reply (``kind`` "reply", ``rtt_ms`` in ``extra``)."""
        if self.raw:
            write_stdout(data + b"\n" if self.newline else data)
        elif self.json:
            record = {"topic": topic, "kind": kind, **as_json(data), **extra}
            write_stdout(
                json.dumps(record, ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n"
            )
        elif kind == "reply":
            rtt = extra.get("rtt_ms")
            timing = f" in {rtt:.3f} ms" if rtt is not None else ""
            self.line(f"reply on {topic}{timing}: {printable(data)}")
        else:
            self.line(f"received {kind} on {topic}: {printable(data)}")
