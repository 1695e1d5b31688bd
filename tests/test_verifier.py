"""The verifier's waits, on trio's mock clock: when it asks publishers to challenge subscribers.

``Verifier`` sleeps until the directory changes or until an unanswered challenge
is due again (``RECHALLENGE_AFTER``); with nothing pending it never wakes. Here
its directory and hub are stand-ins, so only the timing logic runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import pytest
import trio
import trio.testing

from amop_trio._node.private import (
    _VERIFY_PAUSE,
    RECHALLENGE_AFTER,
    RECHALLENGE_AFTER_VERDICT,
    PrivateTopics,
    Verifier,
)
from amop_trio._node.topic_table import TopicTable
from amop_trio._wire.fisco2_json import ChannelVerifyRequest, ChannelVerifyResult
from amop_trio._wire.topics import PUSH_PREFIX, new_challenge_topic, private_topic

if TYPE_CHECKING:
    from amop_trio._node.directory import Directory
    from amop_trio._node.hub import LocalHub

PRIVATE = private_topic("secret")
PUBLISHER = 1


@dataclass
class State:
    pending: list[str]


@dataclass
class FakeDirectory:
    """What the verifier reads of the directory: reachable nodes and their pending challenges."""

    states: dict[str, State] = field(default_factory=dict)

    def reachable(self) -> list[str]:
        return ["self", *self.states]

    def state_of(self, node: str) -> State | None:
        return self.states.get(node)


@dataclass
class Publisher:
    """A local publisher's session: records the challenges it is asked for, and when."""

    asked: list[tuple[float, ChannelVerifyRequest]] = field(default_factory=list)

    def verify_request(self, request: ChannelVerifyRequest) -> ChannelVerifyRequest:
        return request

    def send_nowait(self, request: ChannelVerifyRequest) -> bool:
        self.asked.append((trio.current_time(), request))
        return True


@dataclass
class FakeHub:
    sessions: dict[int, Publisher]


def verifier(directory: FakeDirectory, publisher: Publisher) -> Verifier:
    table = TopicTable()
    table.set_topics(PUBLISHER, [PUSH_PREFIX + PRIVATE])
    return Verifier(
        "self",
        PrivateTopics(table),
        cast("Directory", directory),
        cast("LocalHub", FakeHub({PUBLISHER: publisher})),
        forward=lambda _target, _frame, _hop: None,
        topics_changed=lambda: None,
    )


async def test_an_unanswered_challenge_is_pushed_again_after_the_pause_and_only_then(
    autojump_clock: trio.testing.MockClock,
) -> None:
    directory, publisher = FakeDirectory(), Publisher()
    checker = verifier(directory, publisher)
    challenge = new_challenge_topic(PRIVATE)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(checker.run)
        start = trio.current_time()
        directory.states["far"] = State([challenge])
        checker.wake()  # the directory changed
        await trio.sleep(3 * RECHALLENGE_AFTER + 0.5)
        nursery.cancel_scope.cancel()
    times = [when - start for when, _ in publisher.asked]
    assert times == [0, RECHALLENGE_AFTER, 2 * RECHALLENGE_AFTER, 3 * RECHALLENGE_AFTER]
    assert {(r.topic, r.topic_for_cert, r.node_id) for _, r in publisher.asked} == {
        (PRIVATE, challenge, "far")
    }


async def test_a_verdict_stops_the_challenges_and_nothing_pending_sleeps_for_good(
    autojump_clock: trio.testing.MockClock,
) -> None:
    directory, publisher = FakeDirectory(), Publisher()
    checker = verifier(directory, publisher)
    challenge = new_challenge_topic(PRIVATE)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(checker.run)
        directory.states["far"] = State([challenge])
        checker.wake()
        await trio.sleep(1)
        assert len(publisher.asked) == 1
        directory.states["far"] = State([])  # verified: the far node reports it no more
        checker.wake()
        await trio.sleep(1)
        assert checker.private.next_due() == float("inf")
        # Asleep for good: a day goes by without a single wake-up.
        await trio.sleep(86400)
        assert len(publisher.asked) == 1
        nursery.cancel_scope.cancel()


async def test_changes_in_a_burst_share_one_pass(autojump_clock: trio.testing.MockClock) -> None:
    """After acting, the verifier pauses ``_VERIFY_PAUSE``: what changes meanwhile waits
    for one pass at its end, not a pass per change."""
    directory, publisher = FakeDirectory(), Publisher()
    checker = verifier(directory, publisher)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(checker.run)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        for i in range(4):
            directory.states[f"node{i}"] = State([new_challenge_topic(PRIVATE)])
            checker.wake()
            await trio.sleep(_VERIFY_PAUSE / 4)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    times = [when - start for when, _ in publisher.asked]
    assert times == pytest.approx([0, _VERIFY_PAUSE, _VERIFY_PAUSE, _VERIFY_PAUSE])
    assert [r.node_id for _, r in publisher.asked] == ["node0", "node1", "node2", "node3"]


async def test_a_challenge_still_pending_after_its_verdict_is_pushed_again_soon(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The verdict went to a session that had gone: its subscriber reconnected with the
    same challenge topic, and its node still reports it pending. The new session is
    challenged ``RECHALLENGE_AFTER_VERDICT`` after the verdict, not ``RECHALLENGE_AFTER``
    after the first challenge."""
    directory, publisher = FakeDirectory(), Publisher()
    checker = verifier(directory, publisher)
    challenge = new_challenge_topic(PRIVATE)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(checker.run)
        start = trio.current_time()
        directory.states["far"] = State([challenge])
        checker.wake()
        await trio.sleep(0.2)
        checker.verification_result(ChannelVerifyResult(0, "far", PRIVATE, challenge))
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    times = [when - start for when, _ in publisher.asked]
    assert times == pytest.approx([0, 0.2 + RECHALLENGE_AFTER_VERDICT])
