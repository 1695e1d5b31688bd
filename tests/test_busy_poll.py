"""Busy polling: when a node's loop polls and when it sleeps (mock clock, then real nodes)."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from amop_trio import open_amop
from amop_trio._node.busy_poll import BusyPoll

from .conftest import line, open_linked_nodes, serve_replies, wait_until


async def passes(count: int = 5) -> None:
    """Let the loop run a few passes (the poller never blocks while it polls)."""
    for _ in range(count):
        await trio.lowlevel.checkpoint()


def polling(poll: BusyPoll) -> bool:
    return not poll.asleep


async def test_polls_for_a_window_after_each_frame_then_sleeps(
    mock_clock: trio.testing.MockClock,
) -> None:
    poll = BusyPoll(window=1.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll.run)
        await passes()
        assert polling(poll)  # a window from the start
        mock_clock.jump(1.1)
        await passes()
        assert not polling(poll)  # no frame for a whole window: asleep

        poll.touch()  # a frame wakes it
        await passes()
        assert polling(poll)
        mock_clock.jump(0.6)
        poll.touch()  # another frame within the window starts a new one
        await passes()
        mock_clock.jump(0.6)
        await passes()
        assert polling(poll)
        mock_clock.jump(0.5)
        await passes()
        assert not polling(poll)
        await trio.testing.wait_all_tasks_blocked()  # asleep: the loop may block
        assert poll.frames == 2
        nursery.cancel_scope.cancel()  # cancelling it asleep is clean


async def test_off_by_default_and_bad_windows_refused() -> None:
    poll = BusyPoll()
    with trio.fail_after(1):
        await poll.run()  # returns at once: nothing polls
    poll.touch()  # frames are still counted, cheaply
    assert poll.frames == 1
    for window in (-1, math.inf, math.nan):
        with pytest.raises(ValueError, match="finite number >= 0"):
            BusyPoll(window=window)
    for wrong in (True, "50", None):
        with pytest.raises(TypeError, match="number of seconds"):
            BusyPoll(window=wrong)  # type: ignore[arg-type]  # wrong types are refused


async def test_nodes_poll_after_frames_from_clients_and_from_linked_nodes() -> None:
    window = 0.05
    async with open_linked_nodes(2, line(2), busy_poll=window) as (node0, node1):
        poll0, poll1 = node0.network.busy_poll, node1.network.busy_poll
        with trio.fail_after(10):
            await wait_until(lambda: poll1.frames)  # node1 has no clients: these came over its link
            async with (
                open_amop(node0.endpoint) as subscriber,
                open_amop(node0.endpoint) as publisher,
                trio.open_nursery() as nursery,
            ):
                await nursery.start(serve_replies, subscriber, "polled")
                before = poll0.frames
                assert await publisher.publish("polled", b"x") == b"x"
                assert poll0.frames >= before + 2  # the request and the subscriber's reply
                assert not poll0.asleep
                nursery.cancel_scope.cancel()
            # No more frames: both sleep again.
            await wait_until(lambda: poll0.asleep and poll1.asleep)
