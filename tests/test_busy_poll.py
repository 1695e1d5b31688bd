"""Busy polling: when the node's loop keeps polling and when it sleeps, on trio's mock clock."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from amop_trio._node.busy_poll import BusyPoll


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


async def test_off_by_default_and_negative_windows_refused() -> None:
    poll = BusyPoll()
    with trio.fail_after(1):
        await poll.run()  # returns at once: nothing polls
    poll.touch()  # frames are still counted, cheaply
    assert poll.frames == 1
    for window in (-1, math.inf, math.nan):
        with pytest.raises(ValueError, match="0 \\(off\\) or a positive number"):
            BusyPoll(window=window)
