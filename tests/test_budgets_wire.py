"""Byte budgets without I/O: ``NodeLimits`` validation, the accounts, the decoders' holds.

The decoders are driven by hand with bytes written from RFC 6455 and the
channel frame layout; the budget is the node's own ``NodeBudget`` with small
limits, so a test sees exactly what a node would count.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest

from amop_trio import NodeLimits, NodeStatistics
from amop_trio._errors import FrameTooLargeError
from amop_trio._node.budget import ALWAYS_HELD, NodeBudget
from amop_trio._wire import rfc6455 as ws
from amop_trio._wire.fisco2 import ChannelDecoder
from amop_trio._wire.status import Status

KIB = 1024
BUDGET_NAMES = [
    "connection_topic_bytes",
    "node_topic_bytes",
    "connection_pending_bytes",
    "node_pending_bytes",
    "node_partial_frame_bytes",
    "node_total_bytes",
]


def small_budget(**overrides: int) -> NodeBudget:
    limits: dict[str, Any] = {
        "connection_topic_bytes": 100,
        "node_topic_bytes": 150,
        "connection_pending_bytes": 1000,
        "node_pending_bytes": 1500,
        "node_partial_frame_bytes": 100 * KIB,
        "node_total_bytes": 200 * KIB,
        **overrides,
    }
    return NodeBudget(NodeLimits(**limits), NodeStatistics())


# -- NodeLimits ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUDGET_NAMES)
@pytest.mark.parametrize("value", [0, -1])
def test_a_budget_of_zero_or_less_is_refused_by_name(name: str, value: int) -> None:
    options: dict[str, Any] = {name: value}
    with pytest.raises(
        ValueError, match=rf"^{name} must be a positive number of bytes, got {value}"
    ):
        NodeLimits(**options)


@pytest.mark.parametrize("name", BUDGET_NAMES)
def test_a_budget_must_be_a_whole_number_of_bytes(name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be a whole number of bytes"):
        NodeLimits(**{name: 1.5})  # type: ignore[arg-type]


def test_a_node_budget_holds_at_least_one_connections() -> None:
    with pytest.raises(ValueError, match=r"node_topic_bytes \(10 bytes\) is below connection_"):
        NodeLimits(connection_topic_bytes=20, node_topic_bytes=10)
    with pytest.raises(ValueError, match=r"node_pending_bytes \(10 bytes\) is below connection_"):
        NodeLimits(connection_pending_bytes=20, node_pending_bytes=10)


def test_default_budgets_let_a_laptop_survive_any_single_client() -> None:
    limits = NodeLimits()
    mib = 1024 * 1024
    assert limits.node_total_bytes <= 256 * mib
    # One connection's share is well below the node's, and the largest frame fits.
    assert limits.connection_topic_bytes * 8 <= limits.node_topic_bytes
    assert limits.connection_pending_bytes * 4 <= limits.node_pending_bytes
    assert limits.connection_pending_bytes >= limits.max_frame_size
    assert limits.node_partial_frame_bytes >= 2 * limits.max_frame_size
    assert limits.budgets() == {name: getattr(limits, name) for name in BUDGET_NAMES}


# -- the accounts --------------------------------------------------------------------------


def test_topic_refusals_say_which_budget_and_by_how_much() -> None:
    node = small_budget()
    first, second = node.account("a"), node.account("b")
    refusal = first.set_topics(130)
    assert refusal is not None
    assert refusal.status == Status.INVALID_REQUEST
    assert "connection_topic_bytes of 100 bytes by 30 bytes" in refusal.text
    assert first.set_topics(90) is None
    refusal = second.set_topics(70)  # 90 + 70 > 150: the node's budget, 3006
    assert refusal is not None
    assert refusal.status == Status.OVERLOADED
    assert "node_topic_bytes of 150 bytes by 10 bytes (90 bytes already held)" in refusal.text
    assert (node.topic_bytes, second.topic_bytes) == (90, 0)  # a refusal takes nothing
    assert second.set_topics(60) is None
    first.close()
    second.set_topics(0)
    assert node.topic_bytes == 0


def test_pending_bytes_stay_counted_until_each_unicast_ends() -> None:
    node = small_budget()
    account = node.account("a")
    assert account.take_pending(600) is None
    refusal = account.take_pending(500)
    assert refusal is not None
    assert refusal.status == Status.OVERLOADED
    assert "connection_pending_bytes of 1,000 bytes by 100 bytes" in refusal.text
    other = node.account("b")
    assert other.take_pending(900) is None
    refusal = node.take_served(1)  # 600 + 900 = 1500: the node is full
    assert refusal is not None
    assert "node_pending_bytes" in refusal.text
    account.close()  # its unicasts are still in flight: still counted
    assert node.pending_bytes == 1500
    account.release_pending(600)
    other.release_pending(900)
    assert node.pending_bytes == 0


def test_the_node_total_binds_across_kinds() -> None:
    node = small_budget(node_total_bytes=100 * KIB, node_partial_frame_bytes=200 * KIB)
    account = node.account("a")
    assert account.take_pending(1000) is None
    assert not account.hold(100 * KIB)  # the partial budget has room, the total has not
    assert account.hold(99 * KIB - 1000)
    assert node.total_bytes == 99 * KIB


def test_small_partial_frames_are_always_held_so_ordinary_traffic_goes_on() -> None:
    node = small_budget(node_partial_frame_bytes=100 * KIB, node_total_bytes=100 * KIB)
    hog, ordinary = node.account("hog"), node.account("ordinary")
    assert hog.hold(100 * KIB)
    assert not hog.hold(100 * KIB + 1)
    assert ordinary.hold(ALWAYS_HELD)  # counted past the budget, never refused
    assert node.partial_bytes == 100 * KIB + ALWAYS_HELD
    assert not ordinary.hold(ALWAYS_HELD + 1)
    hog.close()
    ordinary.hold(0)
    assert node.partial_bytes == 0


# -- the decoders --------------------------------------------------------------------------


def client_frame(payload: bytes, *, opcode: int = ws.BINARY, fin: bool = True) -> bytes:
    """A masked client frame (RFC 6455 section 5.2), key 0 so the payload reads as it is."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n < 65536:
        head = bytes([first, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack(">Q", n)
    return head + b"\0\0\0\0" + payload


def test_ws_decoder_holds_a_partial_frame_and_refuses_one_past_the_node_budget() -> None:
    node = small_budget()
    first = ws.WsConnection(client=False, max_message=1 << 20, budget=node.account("a"))
    second = ws.WsConnection(client=False, max_message=1 << 20, budget=node.account("b"))
    big = client_frame(b"x" * 80 * KIB)
    first.feed(big[: 10 * KIB])
    assert first.next_event() is None
    assert node.partial_bytes == len(big)  # the announced size, held before it arrives
    second.feed(big[:100])
    with pytest.raises(FrameTooLargeError) as caught:
        second.next_event()
    assert isinstance(caught.value, ws.MessageTooBigError)
    assert caught.value.close_code == ws.MESSAGE_TOO_BIG
    assert node.partial_bytes == len(big)
    first.feed(big[10 * KIB :])
    assert first.next_event() == ws.WsEvent(ws.BINARY, b"x" * 80 * KIB)
    assert node.partial_bytes == 0


def test_ws_decoder_holds_a_fragmented_message_until_it_is_whole() -> None:
    node = small_budget(node_partial_frame_bytes=100 * KIB, node_total_bytes=100 * KIB)
    decoder = ws.WsConnection(client=False, max_message=1 << 20, budget=node.account("a"))
    part = b"y" * 40 * KIB
    decoder.feed(client_frame(part, fin=False))
    assert decoder.next_event() == ws.FRAGMENT
    assert node.partial_bytes == len(part)
    decoder.feed(client_frame(part, opcode=ws.CONTINUATION, fin=False))
    assert decoder.next_event() == ws.FRAGMENT
    assert node.partial_bytes == 2 * len(part)
    decoder.feed(client_frame(part, opcode=ws.CONTINUATION)[:100])  # 120 KiB would not fit
    with pytest.raises(ws.MessageTooBigError):
        decoder.next_event()
    assert node.partial_bytes == 0  # a failed decoder buffers nothing


class Recorder:
    """A ``BufferBudget`` that takes everything and remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def hold(self, size: int) -> bool:
        self.asked.append(size)
        return True


def test_whole_frames_cost_the_budget_nothing_and_any_chunking_releases_it() -> None:
    recorder = Recorder()
    decoder = ws.WsConnection(client=False, max_message=1 << 20, budget=recorder)
    decoder.feed(b"".join(client_frame(b"w" * n) for n in (0, 5, 200, 70000)))
    assert [decoder.next_event() for _ in range(5)][-1] is None
    assert recorder.asked == []  # arrived whole: never held
    node = small_budget()
    decoder = ws.WsConnection(client=False, max_message=1 << 20, budget=node.account("a"))
    rng = random.Random(7)
    sizes = [rng.randrange(0, 70000) for _ in range(20)]
    stream = b"".join(client_frame(bytes([i]) * n) for i, n in enumerate(sizes))
    events = []
    at = 0
    while at < len(stream):
        step = rng.randrange(1, 90000)
        decoder.feed(stream[at : at + step])
        at += step
        while (event := decoder.next_event()) is not None:
            events.append(event)
        assert node.partial_bytes <= max(sizes) + 14
    assert [len(e.payload) for e in events] == sizes
    assert node.partial_bytes == 0


def channel_frame(size: int) -> bytes:
    """A channel frame of ``size`` bytes in all: length, type 0x12, seq, result, data."""
    return struct.pack(">IH32si", size, 0x12, b"0" * 32, 0) + b"z" * (size - 42)


def test_channel_decoder_holds_the_announced_length_and_refuses_past_the_budget() -> None:
    node = small_budget()
    first = ChannelDecoder(max_frame_size=1 << 20, budget=node.account("a"))
    second = ChannelDecoder(max_frame_size=1 << 20, budget=node.account("b"))
    big = channel_frame(80 * KIB)
    first.feed(big[:1000])
    assert first.next_frame_bytes() is None
    assert node.partial_bytes == len(big)
    second.feed(big[:4])
    with pytest.raises(FrameTooLargeError, match="no room left in the budget"):
        second.next_frame_bytes()
    first.feed(big[1000:])
    assert first.next_frame_bytes() == big
    assert node.partial_bytes == 0
