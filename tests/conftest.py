"""Fixtures and helpers shared by the test modules: nodes, clients, subscribers, certificates.

Fixtures:

* ``node`` is one plain node on a free loopback port (``@pytest.mark.node(**options)``
  passes options to ``open_node``); ``publisher`` and ``subscriber`` are clients
  connected to it.
* ``chain_certs`` is a chain CA with node and SDK certificates; ``network_certs`` is
  what ``amop certs -n 4`` makes (node and SDK directories of both generations). Both
  are made once per test session: tests only read them.

Helpers (imported from here):

* ``open_linked_nodes(n, links)`` runs ``n`` nodes in this process, linked as
  given (see ``line``/``ring``/``mesh``), and returns once every node reaches
  every other: multi-node logic then runs where coverage and the debugger see it.
* ``start_node`` runs a node in a task of its own, to be stopped under its clients.
* ``open_clients`` opens several clients of one endpoint.
* ``serve_replies``, ``holder`` and ``collector`` are subscribers that answer, sit
  on a message, or record what arrives; each reports its subscription once the
  node has registered it.
* ``wait_until`` waits for a condition that has no event of its own;
  ``wait_counts`` for a node's view of a topic's subscribers.
"""

from __future__ import annotations

import compileall
import gc
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio

import amop_trio
from amop_trio import AmopClient, Message, MessageKind, Node, Subscription, open_amop, open_node

from .sdk_wire import NodeProcess, amop_node

if TYPE_CHECKING:
    from amop_trio._client.client import KeySource

LOOPBACK = "127.0.0.1:0"


@pytest.fixture(autouse=True)
def _isolated_from_local_certificates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients of plain test nodes must not pick up a developer's ./nodes/sdk or env."""
    monkeypatch.delenv("AMOP_SDK_CERTS", raising=False)
    monkeypatch.setattr("amop_trio._client.config._DISCOVERY_DIRS", ())


@pytest.fixture(autouse=True, scope="session")
def _compiled_package() -> None:
    """The node, CLI and example processes that tests start import amop_trio from
    bytecode: where PYTHONDONTWRITEBYTECODE is set nothing else writes it, and each
    process compiled the package anew (0.45 s to start instead of 0.25)."""
    compileall.compile_dir(Path(amop_trio.__file__).parent, quiet=2)


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect cycles after each test, so the ResourceWarning of a socket the
    library leaked fails the test that leaked it, not whichever test runs next.

    What survives is frozen (``gc.freeze``): the next collection looks at the next
    test's objects only, not again at every module, strategy and fixture alive, which
    cost each test about 0.1 s.
    """
    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True, scope="session")
def _collect_frozen_garbage() -> Iterator[None]:
    """Objects that outlived their test and died later still get collected, at the end."""
    yield
    gc.unfreeze()
    gc.collect()


# -- waiting --------------------------------------------------------------------------------


async def wait_until(predicate: Callable[[], object], *, within: float = 5.0) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``within`` seconds.

    For state that has no event to wait on (a node's topic table seen from a test).
    """
    with trio.fail_after(within):
        while not predicate():
            await trio.sleep(0.01)


async def wait_counts(node: Node, topic: str, expected: dict[str, int], within: float = 5) -> float:
    """Seconds until ``node``'s directory shows ``expected`` subscriber counts of ``topic``."""
    start = trio.current_time()
    with trio.fail_after(within):
        while node.network.directory.subscriber_counts(topic) != expected:
            await trio.sleep(0.005)
    return trio.current_time() - start


# -- one node and its clients ----------------------------------------------------------------


@pytest.fixture
async def node(request: pytest.FixtureRequest) -> AsyncIterator[Node]:
    marker = request.node.get_closest_marker("node")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    async with open_node(LOOPBACK, **options) as running:
        yield running


@pytest.fixture
async def publisher(node: Node) -> AsyncIterator[AmopClient]:
    async with open_amop(node.endpoint) as client:
        yield client


@pytest.fixture
async def subscriber(node: Node) -> AsyncIterator[AmopClient]:
    async with open_amop(node.endpoint) as client:
        yield client


@asynccontextmanager
async def open_clients(
    endpoint: str, count: int, **options: Any
) -> AsyncIterator[list[AmopClient]]:
    """``count`` clients of ``endpoint``, closed together."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(open_amop(endpoint, **options)) for _ in range(count)
        ]


# -- subscribers -------------------------------------------------------------------------------


async def serve_replies(
    client: AmopClient,
    topic: str,
    tag: bytes = b"",
    seen: Counter[bytes] | None = None,
    *,
    answer: Callable[[Message], bytes] | None = None,
    log: list[Message] | None = None,
    private_key: KeySource | None = None,
    buffer: int | None = None,
    task_status: trio.TaskStatus[Subscription] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Subscribe to ``topic`` and answer every unicast with ``tag + data`` (or ``answer(msg)``).

    ``seen`` counts the data of every message, ``log`` keeps the messages.
    """
    async with client.subscribe(topic, buffer=buffer, private_key=private_key) as sub:
        task_status.started(sub)
        async for msg in sub:
            if seen is not None:
                seen[msg.data] += 1
            if log is not None:
                log.append(msg)
            if msg.kind is MessageKind.UNICAST:
                await msg.reply(tag + msg.data if answer is None else answer(msg))


async def collector(
    client: AmopClient,
    topic: str,
    got: list[tuple[MessageKind, bytes]],
    *,
    task_status: trio.TaskStatus[Subscription] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Subscribe to ``topic`` and record (kind, data) of every message, never replying."""
    async with client.subscribe(topic) as sub:
        task_status.started(sub)
        async for msg in sub:
            got.append((msg.kind, msg.data))


async def holder(
    client: AmopClient,
    topic: str,
    received: trio.Event | None = None,
    *,
    task_status: trio.TaskStatus[Subscription] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Subscribe, take the first message and sit on it forever without replying."""
    async with client.subscribe(topic) as sub:
        task_status.started(sub)
        async for _msg in sub:
            if received is not None:
                received.set()
            await trio.sleep_forever()


# -- certificates ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chain_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ca/``, ``node0``..``node2/`` and ``sdk/`` of one chain, in the FISCO layout."""
    from amop_trio._security.certs import create_chain_ca, create_node_cert, create_sdk_cert

    root = tmp_path_factory.mktemp("chain")
    create_chain_ca(root / "ca")
    for i in range(3):
        create_node_cert(root / "ca", root / f"node{i}", f"node{i}")
    create_sdk_cert(root / "ca", root / "sdk")
    return root


@pytest.fixture(scope="module")
def nodes(network_certs: Path) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """Two linked ``amop node`` processes on ``network_certs``, as ``amop chain -n 2``
    runs them: what the SDK conformance modules connect to."""
    with amop_node(network_certs / "node0" / "conf") as node0:
        with amop_node(network_certs / "node1" / "conf", peers=(node0.p2p_port,)) as node1:
            yield node0, node1


@pytest.fixture(scope="session")
def network_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four nodes' certificates and both SDK directories, as ``amop certs -n 4`` makes them:
    ``node{i}/conf`` for ``open_node(certs=...)``, ``sdk/`` (2.x) and ``sdk3/`` (3.x)."""
    from amop_trio._security.network_certs import create_network_certs

    root = tmp_path_factory.mktemp("network")
    create_network_certs(root, 4)
    return root


# -- several nodes -----------------------------------------------------------------------------


def p2p(node: Node) -> str:
    """The endpoint ``node`` takes links from (it was opened with ``p2p_listen``)."""
    assert node.p2p_endpoint is not None, "the node does not listen for links"
    return node.p2p_endpoint


def line(n: int) -> list[tuple[int, int]]:
    return list(itertools.pairwise(range(n)))


def ring(n: int) -> list[tuple[int, int]]:
    return [*line(n), (0, n - 1)]


def mesh(n: int) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(n), 2))


@dataclass
class BackgroundNode:
    """A node running in a task of its own, so it can be stopped while clients live on."""

    node: Node
    scope: trio.CancelScope
    done: trio.Event = field(default_factory=trio.Event)

    async def stop(self) -> None:
        """Leave the node's ``async with open_node`` and wait until it has closed."""
        self.scope.cancel()
        await self.done.wait()


async def start_node(
    nursery: trio.Nursery, listen: str = LOOPBACK, **kwargs: Any
) -> BackgroundNode:
    async def run(*, task_status: trio.TaskStatus[BackgroundNode]) -> None:
        done = trio.Event()
        try:
            with trio.CancelScope() as scope:
                async with open_node(listen, **kwargs) as node:
                    task_status.started(BackgroundNode(node, scope, done))
                    await trio.sleep_forever()
        finally:
            done.set()

    result: BackgroundNode = await nursery.start(run)
    return result


@asynccontextmanager
async def open_linked_nodes(
    n: int, links: list[tuple[int, int]], **kwargs: Any
) -> AsyncIterator[list[Node]]:
    """``n`` nodes in this process; for each ``(a, b)`` in ``links``, ``b`` dials ``a``.

    Node ``i`` has the id ``node-i``; ``kwargs`` go to every ``open_node``.
    Returns once every node's directory reaches every other node.
    """
    async with AsyncExitStack() as stack:
        nodes: list[Node] = []
        for i in range(n):
            peers = [p2p(nodes[a]) for a, b in links if b == i]
            nodes.append(
                await stack.enter_async_context(
                    open_node(
                        LOOPBACK,
                        p2p_listen=LOOPBACK,
                        peers=peers,
                        node_id=f"node-{i}",
                        **kwargs,
                    )
                )
            )
        await wait_until(
            lambda: all(len(node.network.directory.reachable()) == n for node in nodes),
            within=10,
        )
        yield nodes
