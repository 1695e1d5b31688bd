"""Status answers are bounded whatever the node holds, and ``amop status`` pages through.

A node whose clients hold 30 MB of topic names once answered a status query
with 60 MB of JSON, past its own frame limit. The answer is now a summary
and one page of topics: these tests fill the topic table far past any page
and check the size of every answer, that paging lists every topic exactly
once, and what the ``amop status`` command prints.
"""

from __future__ import annotations

import json

import pytest
import trio

from amop_trio import NodeLimits, open_amop, open_node
from amop_trio._node.status import SHOWN_NAME, STATUS_MAX_BYTES

from .cli import AMOP, lines, run

#: Topic names of 60 kB, 500 of them: 30 MB, as in the attack that found the bug.
LONG = [f"{i:04d}" + "L" * 60_000 for i in range(500)]
SHORT = [f"short-{i:05d}" for i in range(3000)]
ROOM = NodeLimits(connection_topic_bytes=64 * 1024 * 1024, node_topic_bytes=64 * 1024 * 1024)


@pytest.mark.parametrize("protocol", ["ws", "channel"])
async def test_a_30_mb_topic_table_gets_a_bounded_answer_and_pages_list_it_all(
    protocol: str,
) -> None:
    with trio.fail_after(60):
        async with open_node("127.0.0.1:0", limits=ROOM) as node:
            # As if clients had subscribed (the budgets would refuse most of it today).
            node.hub.table.set_topics(1001, LONG)
            node.hub.table.set_topics(1002, [*SHORT, LONG[0]])
            endpoint = f"channel://{node.endpoint}" if protocol == "channel" else node.endpoint
            async with open_amop(endpoint) as client:
                status = await client.node_status()
                assert len(json.dumps(status)) <= STATUS_MAX_BYTES
                assert status["topicCount"] == len(LONG) + len(SHORT)
                assert status["topicsFrom"] == 0
                assert 0 < len(status["topics"]) < status["topicCount"]
                first = next(iter(status["topics"]))
                assert len(first) <= SHOWN_NAME  # "0000LLL…" shortened, with a digest
                assert status["topics"][first] == 2  # both sessions hold LONG[0]
                seen: dict[str, int] = {}
                start = 0
                while start < status["topicCount"]:
                    page = await client.node_status(topics_from=start)
                    assert len(json.dumps(page)) <= STATUS_MAX_BYTES
                    assert page["topicsFrom"] == start
                    assert page["topics"], start
                    assert not seen.keys() & page["topics"].keys()
                    seen.update(page["topics"])
                    start += len(page["topics"])
                assert len(seen) == len(LONG) + len(SHORT)
                assert all(len(name) <= SHOWN_NAME for name in seen)
                assert {name for name in seen if name.startswith("short-")} == set(SHORT)
                past = await client.node_status(topics_from=10**9)
                assert past["topics"] == {}
                assert len(json.dumps(node.status())) <= STATUS_MAX_BYTES


async def test_amop_status_shows_a_summary_and_lists_every_topic_with_topics() -> None:
    with trio.fail_after(60):
        async with open_node("127.0.0.1:0", limits=ROOM) as node:
            node.hub.table.set_topics(1001, [*SHORT[:1200], LONG[0]])
            summary = await run([*AMOP, "status", node.endpoint], timeout=20)
            assert summary.returncode == 0, lines(summary.stderr)
            text = summary.stdout.decode()
            assert "of 1,201 shown); amop status --topics lists them all" in text
            assert "held: topics" in text
            everything = await run([*AMOP, "status", node.endpoint, "--topics"], timeout=20)
            assert everything.returncode == 0, lines(everything.stderr)
            listed = lines(everything.stdout)
            assert len(listed) == 1201
            assert listed[0].split() == ["1", LONG[0][: SHOWN_NAME - 10] + "…" + listed[0][-8:]]
            assert [line.split()[1] for line in listed[1:]] == SHORT[:1200]
            as_json = await run([*AMOP, "status", node.endpoint, "--topics", "--json"], timeout=20)
            assert len(json.loads(as_json.stdout)) == 1201
