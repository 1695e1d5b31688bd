"""Busy polling: the node's event loop stays awake for a while after each frame.

A request/reply through a node crosses it twice, a little apart: the
request on its way to the subscriber, then the reply on its way back. A
node that sleeps in ``epoll_wait`` in between must be woken for the reply,
and waking a sleeping process costs tens of microseconds on a VM: an
interrupt to the other core, the return from idle, cold caches. With a
window set, one task keeps the loop polling (each pass asks the OS for
I/O without blocking) until no frame has arrived for that long, so the reply
is read within a pass. The price is CPU: the node stays busy for up to one
window after each frame, and in full under back-to-back traffic. The
window is 0 (off) unless asked for. Under trio's autojump mock clock, time
never moves while the poller polls: tests of a node with a window jump the
clock themselves.
"""

from __future__ import annotations

import math

import trio


class BusyPoll:
    """Keeps the event loop polling for ``window`` seconds after the last ``touch``."""

    def __init__(self, window: float = 0.0) -> None:
        if isinstance(window, bool) or not isinstance(window, int | float):
            raise TypeError(f"busy-poll window must be a number of seconds, not {window!r}")
        if not 0 <= window < math.inf:
            raise ValueError(f"busy-poll window must be a finite number >= 0, not {window}")
        self.window = window
        #: Frames seen so far; readers bump it through ``touch``.
        self.frames = 0
        self._parked: trio.lowlevel.Task | None = None

    @property
    def asleep(self) -> bool:
        """True while the poller waits for a frame, letting the loop sleep."""
        return self._parked is not None

    def touch(self) -> None:
        """A frame arrived: poll for another window (waking the poller if it sleeps)."""
        self.frames += 1
        if self._parked is not None:
            task, self._parked = self._parked, None
            trio.lowlevel.reschedule(task)

    async def run(self) -> None:
        """Poll while frames keep arriving, sleep until the next one; forever (unless off)."""
        if not self.window:
            await trio.lowlevel.checkpoint()
            return
        clock = trio.current_time
        checkpoint = trio.lowlevel.checkpoint
        while True:
            seen = self.frames
            until = clock() + self.window
            while True:
                await checkpoint()
                if self.frames != seen:
                    seen = self.frames
                    until = clock() + self.window
                elif clock() >= until:
                    break
            self._parked = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._parked = None
        return trio.lowlevel.Abort.SUCCEEDED
