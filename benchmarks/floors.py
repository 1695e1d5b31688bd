"""Floors: what Trio, and trio-websocket on Trio, cost without AMOP on top.

Each floor runs in this process on 127.0.0.1 port 0, timed by the same harness
as amop_trio, so ``amop figure / floor figure`` is the price of AMOP itself
(frame codec, routing, sessions) over the transport it is built on.

- ``floor:tcp``   length-prefixed echo over a raw Trio TCP stream (0 hops).
- ``floor:ws``    trio-websocket echo server and client (0 hops).
- ``floor:fwd``   a minimal trio-websocket forwarding broker: publisher ->
  broker -> subscriber, which replies, and back (1 hop); two brokers chained
  over a WebSocket link (2 hops). Also one-way throughput through 1 hop, and
  request/reply with many requests in flight.

Run alone: ``python benchmarks/floors.py [--quick]``.
"""

from __future__ import annotations

import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
import trio_websocket
from _harness import (
    LATENCY,
    QUICK,
    THROUGHPUT,
    Budget,
    Progress,
    Result,
    Settings,
    latency_result,
    measure_sequential,
    note,
    rate,
    summarize_ns,
)

HOST = "127.0.0.1"
_LEN = struct.Struct(">I")
_ID = struct.Struct(">Q")
#: trio-websocket options used by every floor (amop_trio reads 64 KiB at a time too).
WS_OPTIONS: dict[str, Any] = {"max_message_size": 32 * 1024 * 1024, "receive_buffer_size": 65536}


# -- generic loops used by floors and amop alike -----------------------------------


async def measure_concurrent(
    label: str,
    request: Callable[[], Awaitable[Any]],
    settings: Settings,
) -> tuple[list[int], int, dict[str, int]]:
    """Request/reply with ``settings.inflight`` requests outstanding at all times.

    ``settings.inflight`` tasks each run ``await request()`` one after another,
    sharing one budget (count and time). Returns (latencies ns, elapsed ns,
    error counts by exception type).
    """
    clock = time.perf_counter_ns
    samples: list[int] = []
    errors: dict[str, int] = {}
    budget = Budget(settings.inflight_count, settings.inflight_seconds)

    async def worker(bar: Progress) -> None:
        while budget.take():
            start = clock()
            try:
                await request()
            except Exception as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            samples.append(clock() - start)
            if len(samples) % 100 == 0:
                bar.update(100)

    t0 = clock()
    with (
        Progress(label, settings.inflight_count, enabled=settings.progress) as bar,
        trio.move_on_after(settings.inflight_seconds + settings.drain_seconds) as scope,
    ):
        async with trio.open_nursery() as workers:
            for _ in range(settings.inflight):
                workers.start_soon(worker, bar)
    if scope.cancelled_caught:
        errors["unfinished"] = budget.used - len(samples) - sum(errors.values())
    return samples, clock() - t0, errors


async def measure_one_way(
    label: str,
    send: Callable[[bytes], Awaitable[None]],
    receivers: list[Callable[[], Awaitable[Any]]],
    payload: int,
    settings: Settings,
    *,
    window: int = 1,
) -> dict[str, Any]:
    """One-way throughput: send up to N messages (bounded in count and time).

    Each receiver counts what arrives; the figure is messages sent / time from
    the first send to the last message received by every receiver. ``window``
    senders run concurrently (1 = one after another). Messages that never
    arrive within ``settings.drain_seconds`` after the last send count as lost.
    """
    clock = time.perf_counter_ns
    message = bytes(payload)
    budget = Budget(settings.throughput_count, settings.throughput_seconds)
    counts = [0] * len(receivers)
    state = {"sent": 0, "first": 0, "last": 0, "sending": window}
    all_received = trio.Event()

    def check_done() -> None:
        if state["sending"] == 0 and all(c >= state["sent"] for c in counts):
            all_received.set()

    async def sender(bar: Progress) -> None:
        while budget.take():
            await send(message)
            state["sent"] += 1
            if state["sent"] % 200 == 0:
                bar.update(200)
        state["sending"] -= 1
        check_done()

    async def receiver(index: int) -> None:
        receive = receivers[index]
        while True:
            await receive()
            counts[index] += 1
            state["last"] = clock()
            if counts[index] >= state["sent"]:
                check_done()

    with Progress(label, settings.throughput_count, enabled=settings.progress) as bar:
        async with trio.open_nursery() as nursery:
            for i in range(len(receivers)):
                nursery.start_soon(receiver, i)
            state["first"] = clock()
            with trio.move_on_after(settings.throughput_seconds + settings.drain_seconds):
                async with trio.open_nursery() as senders:
                    for _ in range(window):
                        senders.start_soon(sender, bar)
            state["sending"] = 0
            check_done()
            with trio.move_on_after(settings.drain_seconds):
                await all_received.wait()
            nursery.cancel_scope.cancel()
    sent = state["sent"]
    received = sum(counts)
    expected = sent * len(receivers)
    elapsed = max(state["last"], state["first"]) - state["first"]
    return {
        "msg_per_s": rate(sent, elapsed)
        if received == expected
        else rate(min(counts) if counts else 0, elapsed),
        "MB_per_s": rate(received * payload, elapsed) / 1e6,
        "deliveries_per_s": rate(received, elapsed),
        "sent": sent,
        "delivered": received,
        "lost": expected - received,
        "elapsed_s": elapsed / 1e9,
        "time_limited": budget.timed_out,
    }


# -- raw TCP echo --------------------------------------------------------------------


class _Framed:
    """Length-prefixed messages over a Trio stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise trio.EndOfChannel
            self.buf += chunk

    async def receive(self) -> bytes:
        await self._fill(_LEN.size)
        (size,) = _LEN.unpack_from(self.buf)
        await self._fill(_LEN.size + size)
        data = bytes(self.buf[_LEN.size : _LEN.size + size])
        del self.buf[: _LEN.size + size]
        return data

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(_LEN.pack(len(data)) + data)


async def _tcp_echo(stream: trio.abc.Stream) -> None:
    framed = _Framed(stream)
    try:
        while True:
            await framed.send(await framed.receive())
    except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def bench_tcp(settings: Settings) -> list[Result]:
    results = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, _tcp_echo, 0, host=HOST))
        port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream(HOST, port)
        framed = _Framed(stream)
        for size in settings.rtt_payloads:
            data = bytes(size)

            async def roundtrip(data: bytes = data) -> None:
                await framed.send(data)
                await framed.receive()

            samples = await measure_sequential(f"floor:tcp rtt {size} B", roundtrip, settings)
            results.append(latency_result("floor:tcp", "rtt", size, samples, hops=0))
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return results


# -- trio-websocket echo ----------------------------------------------------------------


async def _ws_echo(request: trio_websocket.WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except trio_websocket.ConnectionClosed:
        pass


@asynccontextmanager
async def ws_server(
    handler: Callable[[trio_websocket.WebSocketRequest], Awaitable[None]],
) -> AsyncIterator[int]:
    """A trio-websocket server on 127.0.0.1 port 0; yields its port."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(trio_websocket.serve_websocket, handler, HOST, 0, None, **WS_OPTIONS)
        )
        try:
            yield server.port
        finally:
            nursery.cancel_scope.cancel()


def ws_url(port: int) -> str:
    return f"ws://{HOST}:{port}/"


async def bench_ws(settings: Settings) -> list[Result]:
    results = []
    async with (
        ws_server(_ws_echo) as port,
        trio_websocket.open_websocket_url(ws_url(port), **WS_OPTIONS) as ws,
    ):
        for size in settings.rtt_payloads:
            data = bytes(size)

            async def roundtrip(data: bytes = data) -> None:
                await ws.send_message(data)
                await ws.get_message()

            samples = await measure_sequential(f"floor:ws rtt {size} B", roundtrip, settings)
            results.append(latency_result("floor:ws", "rtt", size, samples, hops=0))
    return results


# -- the forwarding broker ----------------------------------------------------------------


class Forwarder:
    """The least a WebSocket broker can do: relay one publisher to one subscriber and back.

    A connection says ``pub`` or ``sub`` in its first (text) message and gets
    ``ok``. Whatever the publisher sends goes to the subscriber, whatever the
    subscriber sends goes to the publisher; bytes are never looked at. With
    ``upstream``, the broker's subscriber is a WebSocket link to another
    broker, on which it registered as the publisher: two chained brokers.
    """

    def __init__(self) -> None:
        self.peers: dict[str, trio_websocket.WebSocketConnection] = {}
        self.changed = trio.Event()

    def _set(self, role: str, ws: trio_websocket.WebSocketConnection) -> None:
        self.peers[role] = ws
        self.changed.set()
        self.changed = trio.Event()

    async def _peer(self, role: str) -> trio_websocket.WebSocketConnection:
        while role not in self.peers:
            await self.changed.wait()
        return self.peers[role]

    async def _pump(self, source: trio_websocket.WebSocketConnection, to_role: str) -> None:
        try:
            while True:
                message = await source.get_message()
                target = self.peers.get(to_role) or await self._peer(to_role)
                await target.send_message(message)
        except trio_websocket.ConnectionClosed:
            pass

    async def handle(self, request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            role = await ws.get_message()
            self._set(role, ws)
            await ws.send_message("ok")
        except trio_websocket.ConnectionClosed:
            return
        await self._pump(ws, "sub" if role == "pub" else "pub")

    async def link_upstream(
        self, url: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio_websocket.open_websocket_url(url, **WS_OPTIONS) as link:
            await link.send_message("pub")
            await link.get_message()
            self._set("sub", link)
            task_status.started()
            await self._pump(link, "pub")


@asynccontextmanager
async def forwarder_chain(hops: int) -> AsyncIterator[tuple[str, str]]:
    """``hops`` chained forwarders; yields (publisher url, subscriber url)."""
    async with trio.open_nursery() as nursery:
        urls: list[str] = []
        upstream: str | None = None
        for _ in range(hops):
            broker = Forwarder()
            server = await nursery.start(
                partial(trio_websocket.serve_websocket, broker.handle, HOST, 0, None, **WS_OPTIONS)
            )
            if upstream is not None:
                await nursery.start(broker.link_upstream, upstream)
            upstream = ws_url(server.port)
            urls.append(upstream)
        # The subscriber attaches to the first broker built, the publisher to the last.
        try:
            yield urls[-1], urls[0]
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def forwarded_pair(
    hops: int, *, echo: bool = True
) -> AsyncIterator[tuple[trio_websocket.WebSocketConnection, trio_websocket.WebSocketConnection]]:
    """Publisher and subscriber connections through ``hops`` brokers; the subscriber echoes."""
    async with (
        forwarder_chain(hops) as (pub_url, sub_url),
        trio.open_nursery() as nursery,
        trio_websocket.open_websocket_url(sub_url, **WS_OPTIONS) as sub,
        trio_websocket.open_websocket_url(pub_url, **WS_OPTIONS) as pub,
    ):
        await sub.send_message("sub")
        await sub.get_message()
        await pub.send_message("pub")
        await pub.get_message()
        if echo:

            async def responder() -> None:
                try:
                    while True:
                        await sub.send_message(await sub.get_message())
                except trio_websocket.ConnectionClosed:
                    pass

            nursery.start_soon(responder)
        yield pub, sub
        nursery.cancel_scope.cancel()


async def bench_forwarder(settings: Settings) -> list[Result]:
    results: list[Result] = []
    for hops in (1, 2):
        system = f"floor:fwd-{hops}hop"
        async with forwarded_pair(hops) as (pub, _sub):
            for size in settings.rtt_payloads:
                data = bytes(size)

                async def roundtrip(data: bytes = data) -> None:
                    await pub.send_message(data)
                    await pub.get_message()

                samples = await measure_sequential(f"{system} rtt {size} B", roundtrip, settings)
                results.append(latency_result(system, "rtt", size, samples, hops=hops))

    # Many requests in flight through 1 hop: the reply carries the request id.
    size = 256
    async with forwarded_pair(1) as (pub, _sub), trio.open_nursery() as nursery:
        filler = bytes(size - _ID.size)
        waiters: dict[int, trio.Event] = {}
        ids = iter(range(1 << 62))

        async def request() -> None:
            i = next(ids)
            done = waiters[i] = trio.Event()
            await pub.send_message(_ID.pack(i) + filler)
            await done.wait()

        async def reply_reader() -> None:
            try:
                while True:
                    message = await pub.get_message()
                    waiter = waiters.pop(_ID.unpack_from(message)[0], None)
                    if waiter is not None:
                        waiter.set()
            except trio_websocket.ConnectionClosed:
                pass

        nursery.start_soon(reply_reader)
        samples, elapsed, errors = await measure_concurrent(
            f"floor:fwd-1hop rtt@{settings.inflight}", request, settings
        )
        nursery.cancel_scope.cancel()
    figures = summarize_ns(samples)
    figures["req_per_s"] = rate(len(samples), elapsed)
    if errors:
        figures["errors"] = errors
    results.append(
        Result(
            "floor:fwd-1hop",
            f"rtt@{settings.inflight}",
            size,
            figures,
            LATENCY,
            1,
            samples_ns=samples,
        )
    )

    # One-way throughput through 1 hop.
    for size in settings.throughput_payloads:
        async with forwarded_pair(1, echo=False) as (pub, sub):
            figures = await measure_one_way(
                f"floor:fwd-1hop one-way {size} B",
                pub.send_message,
                [sub.get_message],
                size,
                settings,
            )
        results.append(Result("floor:fwd-1hop", "one-way 1→1", size, figures, THROUGHPUT, 1))
    return results


async def run_floors(settings: Settings) -> list[Result]:
    results: list[Result] = []
    for name, bench in (("tcp", bench_tcp), ("ws", bench_ws), ("forwarder", bench_forwarder)):
        note(f"floors: {name}")
        try:
            results += await bench(settings)
        except Exception as exc:
            note(f"floors: {name} failed: {exc!r}")
    return results


def main(argv: list[str]) -> list[Result]:
    settings = QUICK if "--quick" in argv else Settings()
    return trio.run(run_floors, settings)


if __name__ == "__main__":
    from _harness import print_table

    out = main(sys.argv[1:])
    print_table(
        "floors",
        ["system", "scenario", "payload", "figures"],
        [
            [
                r.system,
                r.scenario,
                str(r.payload),
                ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in r.figures.items()
                ),
            ]
            for r in out
        ],
    )
