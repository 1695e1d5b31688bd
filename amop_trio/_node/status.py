"""The answer to a status query, bounded by construction whatever the node holds.

A node's topic table can hold tens of megabytes of names, and its directory
every topic of every node; an answer listing them all would outgrow the
frame limit and cost the node its size several times over. So a status
answer is a summary (counts, byte budgets, links) and *pages*: the local
topics in name order from ``topics_from``, as many as fit in
``TOPICS_PAGE_BYTES``, each name longer than ``SHOWN_NAME`` characters
shortened (its start, ``…`` and 8 hex digits of its SHA-256, so shortened
names stay distinct); of each node in the directory, its first topics by
name within ``NODE_TOPICS_BYTES``; at most ``MAX_ENTRIES`` links, peers and
directory entries. Counts say what was left out. The whole answer is then
measured once: should it still exceed ``STATUS_MAX_BYTES`` (only a
configuration with very long names could), the lists are dropped and
``truncated`` says so.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import Node

#: The most bytes of JSON a status answer takes.
STATUS_MAX_BYTES = 64 * 1024
#: Bytes of JSON of the local topics one answer lists, and at most this many topics.
TOPICS_PAGE_BYTES = 24 * 1024
TOPICS_PAGE_COUNT = 500
#: Bytes of JSON of topics listed for each node of the directory.
NODE_TOPICS_BYTES = 512
#: Links, configured peers and directory entries listed, each.
MAX_ENTRIES = 16
#: Longest topic name, node id, address or error text shown as it is, in characters.
SHOWN_NAME = 64
SHOWN_TEXT = 200

_quoted = json.encoder.encode_basestring_ascii  # what json.dumps does to a str


def shown_name(name: str, limit: int = SHOWN_NAME) -> str:
    """``name``, or if longer than ``limit`` its start, ``…`` and 8 hex digits of its SHA-256."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{name[: limit - 10]}…{digest}"


def _text(value: Any) -> Any:
    return shown_name(value, SHOWN_TEXT) if isinstance(value, str) else value


def topic_listing(pairs: Iterable[tuple[str, int]], max_bytes: int) -> dict[str, int]:
    """Topics with their counts, names shortened, in order, while their JSON fits ``max_bytes``."""
    listing: dict[str, int] = {}
    used = 2
    for name, count in pairs:
        key = shown_name(name)
        cost = len(_quoted(key)) + len(str(count)) + 4
        if used + cost > max_bytes:
            break
        listing[key] = count
        used += cost
    return listing


def node_status(node: Node, topics_from: int = 0) -> dict[str, Any]:
    """The status answer of ``node``, with the local topics from ``topics_from`` on."""
    table = node.hub.table
    topics_from = max(0, min(topics_from, len(table)))
    page = topic_listing(table.page(topics_from, TOPICS_PAGE_COUNT), TOPICS_PAGE_BYTES)
    links = node.network.links.status()
    stats = node.stats
    answer: dict[str, Any] = {
        "nodeId": node.node_id,
        "sdk": node.url,
        "p2p": node.p2p_endpoint,
        "clients": len(node.hub.sessions),
        "topicCount": len(table),
        "topicsFrom": topics_from,
        "topics": page,
        "statistics": {
            "connections": stats.connections,
            "unicasts": stats.unicasts,
            "multicasts": stats.multicasts,
            "multicastDropped": stats.multicast_dropped,
            "refused": stats.refused,
            "forwarded": stats.forwarded,
            "silentSubscribers": stats.silent_subscribers,
            "orphanedRequests": stats.orphaned_requests,
            "answersDropped": stats.answers_dropped,
        },
        "budgets": node.hub.budget.status(),
        "linkCount": len(links["links"]),
        "links": [
            {key: _text(value) for key, value in link.items()}
            for link in links["links"][:MAX_ENTRIES]
        ],
        "peers": [
            {key: _text(value) for key, value in peer.items()}
            for peer in links["peers"][:MAX_ENTRIES]
        ],
        **_directory_status(node),
    }
    if len(json.dumps(answer)) > STATUS_MAX_BYTES:
        answer.update(topics={}, links=[], peers=[], directory=[], truncated=True)
    return answer


def _directory_status(node: Node) -> dict[str, Any]:
    """The nearest reachable nodes, how far each is and the first topics it advertises."""
    directory = node.network.directory
    reachable = directory.reachable()
    nearest = heapq.nsmallest(MAX_ENTRIES, reachable, key=lambda n: (directory.distance(n) or 0, n))
    entries = []
    for peer in nearest:
        state = directory.state_of(peer)
        topics = state.topics if state else {}
        hop = directory.next_hop(peer)
        entries.append(
            {
                "node": _text(peer),
                "distance": directory.distance(peer),
                "nextHop": _text(hop),
                "endpoints": [_text(e) for e in state.endpoints[:2]] if state else [],
                "topicCount": len(topics) + len(state.digests) if state else 0,
                "topics": topic_listing(
                    ((t, topics[t]) for t in heapq.nsmallest(32, topics)), NODE_TOPICS_BYTES
                ),
            }
        )
    return {"directoryCount": len(reachable), "directory": entries}
