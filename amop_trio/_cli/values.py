"""Checks on single values typed on the command line.

Each takes the text as typed and returns the value, or raises
``argparse.ArgumentTypeError`` with a message that quotes what was typed.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
import os
from pathlib import Path
from typing import Any

MIN_FRAME_SIZE = 1024


def _number(text: str, kind: type[int] | type[float]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return float(value)


def non_negative_float(text: str) -> float:
    value = _number(text, float)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return float(value)


def count(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or more, not {text}")
    return int(value)


def node_count(text: str) -> int:
    value = _number(text, int)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be from 1 to 1000, not {text}")
    return int(value)


def port(text: str) -> int:
    value = _number(text, int)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, not {text}")
    return int(value)


def frame_size(text: str) -> int:
    value = _number(text, int)
    if value < MIN_FRAME_SIZE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_FRAME_SIZE} bytes, not {text}")
    return int(value)


def ip_address(text: str) -> str:
    if text == "localhost":
        return text
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


def _split_host_port(text: str, shown: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if sep and port_text.isascii() and port_text.isdigit() and int(port_text) > 65535:
        raise argparse.ArgumentTypeError(f"{shown!r}: port {port_text} is not from 0 to 65535")
    if not sep or not host or not (port_text.isascii() and port_text.isdigit()):
        raise argparse.ArgumentTypeError(
            f"{shown!r}: expected host:port, for example 127.0.0.1:20200"
        )
    if host.startswith("["):
        if not host.endswith("]"):
            raise argparse.ArgumentTypeError(f"{shown!r}: unclosed [ in the IPv6 address")
        ip_address(host)
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"{shown!r}: write an IPv6 address as [addr]:port")
    return host, int(port_text)


def endpoint(text: str) -> str:
    """A node endpoint as the client takes it; the port must not be 0."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    elif scheme not in ("ws", "wss", "channel"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: unknown scheme {scheme}://; use host:port, ws://, wss:// or channel://"
        )
    address = rest.split("/", 1)[0]
    if scheme == "channel" and address != rest.rstrip("/"):
        raise argparse.ArgumentTypeError(f"{text!r}: a channel endpoint has no path")
    if not address.isprintable() or " " in address:
        raise argparse.ArgumentTypeError(f"{text!r}: not a host:port")
    _, port_number = _split_host_port(address, text)
    if port_number == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: port 0 cannot be connected to")
    return text


def listen_address(text: str) -> str:
    """``host:port`` to listen on (port 0: any free port)."""
    _split_host_port(text, text)
    return text


def topic(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("a topic must not be empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"topic {text!r} is not valid UTF-8") from None
    return text


def key_name(text: str) -> Path:
    if not text or text.endswith(("/", os.sep)) or Path(text).name in ("", ".", ".."):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a file name without extension, for example keys/alice"
        )
    return Path(text)


def node_name(text: str) -> str:
    if not text.startswith("node") or not text[4:].isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: node names are node0, node1, …")
    return text


_UNITS = {"": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def _limit_kinds() -> dict[str, type]:
    """The NodeLimits fields ``--limit`` sets (those with their own option excluded)."""
    from .._node.limits import NodeLimits  # the node's code is loaded only when a node runs

    own_options = {"max_frame_size", "chain_id"}
    return {
        f.name: type(f.default)
        for f in dataclasses.fields(NodeLimits)
        if f.name not in own_options and isinstance(f.default, (int, float))
    }


def limit_setting(text: str) -> tuple[str, int | float]:
    """``NAME=VALUE`` for a node limit: 1000, 64MiB, 2.5 (seconds)."""
    kinds = _limit_kinds()
    name, sep, value = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or name not in kinds:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAME=VALUE with NAME one of {', '.join(sorted(kinds))}"
        )
    value = value.strip()
    if kinds[name] is float:
        return name, positive_float(value)
    digits = value.rstrip("KMGiB")
    unit = value[len(digits) :]
    if unit not in _UNITS or not digits.isdigit() or int(digits) <= 0:
        raise argparse.ArgumentTypeError(
            f"{name} must be a positive whole number, with KiB, MiB or GiB for bytes, not {value!r}"
        )
    return name, int(digits) * _UNITS[unit]
