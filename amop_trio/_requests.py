"""Requests awaiting answers: ``Pending`` holds one, ``Deadlines`` times many out.

Both the client (requests to its node) and the node (unicasts in flight)
use them: a request costs a heap push and wakes its one waiter directly.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Generic, NoReturn, Protocol, TypeVar

import trio

from ._errors import AmopError, AmopTimeoutError

T = TypeVar("T")


class Expiring(Protocol):
    """Something ``Deadlines`` ends when its time is up, unless it is done by then."""

    @property
    def done(self) -> bool: ...

    def expire(self) -> None: ...


class Deadlines:
    """One timer task that expires many pending requests at their deadlines.

    A trio cancel scope per request costs about as much as the rest of a
    request's bookkeeping; here a request costs a heap push. Entries of
    requests that ended early are dropped when they reach the top, or all at
    once when the heap has doubled since the last sweep, so it stays
    proportional to what is pending and ended requests die young (long-lived
    leftovers would end up in the garbage collector's oldest generation and
    set off full collections).
    """

    #: Entries below which the heap is not swept.
    COMPACT_FLOOR = 64

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Expiring]] = []
        self._order = itertools.count()
        self._next = math.inf
        self._earlier = trio.Event()
        self._compact_at = self.COMPACT_FLOOR

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, deadline: float, item: Expiring) -> None:
        """Call ``item.expire()`` at ``deadline`` (trio time) if it is not done by then."""
        heap = self._heap
        heapq.heappush(heap, (deadline, next(self._order), item))
        if deadline < self._next:
            self._next = deadline
            self._earlier.set()
        if len(heap) >= self._compact_at:
            heap[:] = [entry for entry in heap if not entry[2].done]
            heapq.heapify(heap)
            self._compact_at = max(self.COMPACT_FLOOR, 2 * len(heap))

    async def run(self) -> NoReturn:
        """Expire what is due, for ever."""
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and (heap[0][0] <= now or heap[0][2].done):
                item = heapq.heappop(heap)[2]
                if not item.done:
                    item.expire()
            self._next = heap[0][0] if heap else math.inf
            self._earlier = trio.Event()
            with trio.move_on_at(self._next):
                await self._earlier.wait()


class Pending(Generic[T]):
    """One request awaiting its answer: resolved with a result or failed with an error.

    One task may ``wait``; it is woken directly rather than through an
    ``Event``'s parking lot, a little less work on every round trip.
    ``expire`` fails it with ``AmopTimeoutError`` (see ``Deadlines``).
    """

    __slots__ = ("_task", "done", "error", "result")

    def __init__(self) -> None:
        self.result: T | None = None
        self.error: AmopError | None = None
        self.done = False
        self._task: trio.lowlevel.Task | None = None

    def resolve(self, result: T) -> None:
        if not self.done:
            self.result = result
            self._finish()

    def fail(self, error: AmopError) -> None:
        if not self.done:
            self.error = error
            self._finish()

    def expire(self) -> None:
        self.fail(AmopTimeoutError("no answer in time"))

    def _finish(self) -> None:
        self.done = True
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    async def wait(self) -> None:
        """Return once resolved or failed (at once if it already is).

        One task may wait: a second one raises ``RuntimeError`` rather than
        replace the first, which would then never wake.
        """
        if self.done:
            await trio.lowlevel.checkpoint()
            return
        if self._task is not None:
            raise RuntimeError("another task is already waiting for this request's answer")
        self._task = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
