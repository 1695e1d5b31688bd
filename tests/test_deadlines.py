"""The one timer that ends requests at their deadlines, on trio's mock clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from amop_trio._errors import AmopTimeoutError
from amop_trio._requests import Deadlines, Pending


class Item:
    def __init__(self) -> None:
        self.done = False
        self.expired_at: float | None = None

    def expire(self) -> None:
        self.expired_at = trio.current_time()
        self.done = True


async def test_items_expire_at_their_deadlines_in_order_unless_done(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deadlines = Deadlines()
    late, early, finished = Item(), Item(), Item()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadlines.run)
        start = trio.current_time()
        deadlines.add(start + 10, late)
        deadlines.add(start + 5, finished)
        await trio.sleep(1)
        deadlines.add(start + 2, early)  # earlier than anything queued: the timer wakes sooner
        finished.done = True
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    assert early.expired_at == start + 2
    assert late.expired_at == start + 10
    assert finished.expired_at is None
    assert len(deadlines) == 0


async def test_a_pending_request_expires_as_a_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deadlines = Deadlines()
    answered: Pending[bytes] = Pending()
    unanswered: Pending[bytes] = Pending()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadlines.run)
        deadlines.add(trio.current_time() + 1, answered)
        deadlines.add(trio.current_time() + 1, unanswered)
        answered.resolve(b"reply")
        await unanswered.wait()
        nursery.cancel_scope.cancel()
    assert answered.result == b"reply"
    assert answered.error is None
    assert isinstance(unanswered.error, AmopTimeoutError)


async def test_finished_entries_do_not_pile_up_behind_a_long_one() -> None:
    deadlines = Deadlines()
    deadlines.add(trio.current_time() + 3600, Item())  # stays pending all along
    for _ in range(100_000):
        item = Item()
        deadlines.add(trio.current_time() + 60, item)
        item.done = True  # answered at once, long before its deadline
    assert len(deadlines) <= 2 * Deadlines.COMPACT_FLOOR


async def test_a_second_waiter_is_refused_instead_of_silently_replacing_the_first() -> None:
    pending: Pending[bytes] = Pending()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pending.wait)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="already waiting"):
            await pending.wait()
        pending.resolve(b"answer")  # the first waiter still wakes: the nursery can end
    assert pending.result == b"answer"


async def test_a_cancelled_waiter_makes_room_for_another() -> None:
    pending: Pending[bytes] = Pending()
    with trio.move_on_after(0.01):
        await pending.wait()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pending.wait)
        await trio.testing.wait_all_tasks_blocked()
        pending.resolve(b"late")
    assert pending.result == b"late"
