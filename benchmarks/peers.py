"""Peers: other brokers doing the same jobs, when their servers and clients are installed.

- NATS (``nats-server`` + nats-py), Redis pub/sub (``redis-server`` + redis-py
  asyncio), MQTT (``mosquitto`` + paho-mqtt, QoS 0).
- Each server is started as a subprocess on a free 127.0.0.1 port with a
  minimal configuration and killed afterwards. A missing server binary or
  Python client is reported ("skipped nats: nats-server not installed") and
  the rest carries on; nothing is ever installed from here.
- Request/reply RTT: the publisher sends on topic A, a responder (its own
  connection) replies on topic B, which the publisher subscribes to; 256 B,
  one after another. One-way throughput: one publisher, one subscriber, 256 B.
- The clients are asyncio (nats-py, redis-py) or threads (paho); they run
  here with ``asyncio.run``, outside Trio.

Run alone: ``python benchmarks/peers.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from _harness import (
    QUICK,
    THROUGHPUT,
    Budget,
    Progress,
    Result,
    Settings,
    free_port,
    latency_result,
    measure_sequential,
    note,
    rate,
)

HOST = "127.0.0.1"
PAYLOAD = 256
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/local/bin", "/usr/bin")


def find_binary(name: str) -> str | None:
    """The server binary on PATH or in the usual sbin folders (not always on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in _SBIN:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def server_process(argv: list[str], port: int, *, timeout: float = 10.0) -> Iterator[None]:
    """Run a server until the block ends; waits until ``port`` accepts connections."""
    from _harness import wait_port

    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not wait_port(HOST, port, timeout):
            proc.kill()
            _, err = proc.communicate(timeout=5)
            raise RuntimeError(
                f"{Path(argv[0]).name} did not listen on {HOST}:{port}: "
                f"{err.decode(errors='replace')[-300:]}"
            )
        yield
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()


async def one_way_asyncio(
    label: str,
    send: Callable[[bytes], Awaitable[None]],
    received: list[int],
    settings: Settings,
    last: list[int],
) -> dict[str, Any]:
    """asyncio twin of ``floors.measure_one_way`` for one subscriber counting into ``received``.

    The subscriber's callback increments ``received[0]`` and stores the clock
    of that moment in ``last[0]``.
    """
    clock = time.perf_counter_ns
    message = bytes(PAYLOAD)
    budget = Budget(settings.throughput_count, settings.throughput_seconds)
    sent = 0
    first = clock()
    with Progress(label, settings.throughput_count, enabled=settings.progress) as bar:
        while budget.take():
            await send(message)
            sent += 1
            if sent % 200 == 0:
                bar.update(200)
    deadline = time.monotonic() + settings.drain_seconds
    # Polling: for MQTT the counter is bumped by paho's network thread.
    while received[0] < sent and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    got = received[0]
    elapsed = max(last[0], first) - first
    return {
        "msg_per_s": rate(got, elapsed),
        "MB_per_s": rate(got * PAYLOAD, elapsed) / 1e6,
        "sent": sent,
        "delivered": got,
        "lost": sent - got,
        "elapsed_s": elapsed / 1e9,
        "time_limited": budget.timed_out,
    }


# -- NATS ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def nats_rtt(port: int) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """A request/reply round trip through nats-server: publish on A, the reply comes on B."""
    import nats  # type: ignore[import-not-found]

    url = f"nats://{HOST}:{port}"
    pub = await nats.connect(url)
    resp = await nats.connect(url)
    try:

        async def answer(msg: Any) -> None:
            await resp.publish("B", msg.data)

        await resp.subscribe("A", cb=answer)
        await resp.flush()
        replies = await pub.subscribe("B")
        await pub.flush()
        data = bytes(PAYLOAD)

        async def roundtrip() -> None:
            await pub.publish("A", data)
            await replies.next_msg(timeout=5)

        yield roundtrip
    finally:
        await pub.close()
        await resp.close()


async def _nats(port: int, settings: Settings) -> list[Result]:
    import nats

    async with nats_rtt(port) as roundtrip:
        samples = await measure_sequential("nats rtt 256 B", roundtrip, settings)
    results = [latency_result("nats", "rtt", PAYLOAD, samples, hops=1)]

    url = f"nats://{HOST}:{port}"
    pub = await nats.connect(url)
    sub_conn = await nats.connect(url)
    try:
        received, last = [0], [0]

        async def count(_msg: Any) -> None:
            received[0] += 1
            last[0] = time.perf_counter_ns()

        await sub_conn.subscribe("T", cb=count, pending_msgs_limit=10 * settings.throughput_count)
        await sub_conn.flush()

        async def send(message: bytes) -> None:
            await pub.publish("T", message)

        figures = await one_way_asyncio("nats one-way 256 B", send, received, settings, last)
        results.append(Result("nats", "one-way 1→1", PAYLOAD, figures, THROUGHPUT, 1))
    finally:
        await pub.close()
        await sub_conn.close()
    return results


@contextlib.contextmanager
def nats_server() -> Iterator[int]:
    """A nats-server on a free port; ``Skip`` when it or nats-py is not installed."""
    binary = find_binary("nats-server")
    if binary is None:
        raise Skip("nats-server not installed")
    if not has_module("nats"):
        raise Skip("nats-py not installed (pip install nats-py)")
    port = free_port()
    with server_process([binary, "-a", HOST, "-p", str(port)], port):
        yield port


def bench_nats(settings: Settings) -> list[Result]:
    with nats_server() as port:
        return asyncio.run(_nats(port, settings))


# -- Redis -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def redis_rtt(port: int) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """A request/reply round trip through Redis pub/sub: publish on A, the reply comes on B."""
    import redis.asyncio as aioredis  # type: ignore[import-not-found]

    pub = aioredis.Redis(host=HOST, port=port)
    resp = aioredis.Redis(host=HOST, port=port)
    resp_ps = resp.pubsub()
    pub_ps = pub.pubsub()
    task: asyncio.Task[Any] | None = None
    try:
        await resp_ps.subscribe("A")
        await pub_ps.subscribe("B")
        for ps in (resp_ps, pub_ps):  # swallow the subscribe confirmations
            while await ps.get_message(timeout=1) is None:
                pass

        async def responder() -> None:
            async for message in resp_ps.listen():
                if message["type"] == "message":
                    await resp.publish("B", message["data"])

        task = asyncio.create_task(responder())
        data = bytes(PAYLOAD)

        async def roundtrip() -> None:
            await pub.publish("A", data)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                message = await pub_ps.get_message(ignore_subscribe_messages=True, timeout=5)
                if message is not None and message["type"] == "message":
                    return
            raise TimeoutError("no reply from the redis responder")

        yield roundtrip
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for closer in (resp_ps.aclose, pub_ps.aclose, pub.aclose, resp.aclose):
            with contextlib.suppress(Exception):
                await closer()


async def _redis(port: int, settings: Settings) -> list[Result]:
    import redis.asyncio as aioredis

    async with redis_rtt(port) as roundtrip:
        samples = await measure_sequential("redis rtt 256 B", roundtrip, settings)
    results = [latency_result("redis", "rtt", PAYLOAD, samples, hops=1)]

    pub = aioredis.Redis(host=HOST, port=port)
    sub = aioredis.Redis(host=HOST, port=port)
    sub_ps = sub.pubsub()
    task: asyncio.Task[Any] | None = None
    try:
        received, last = [0], [0]
        await sub_ps.subscribe("T")
        while await sub_ps.get_message(timeout=1) is None:
            pass

        async def count() -> None:
            async for message in sub_ps.listen():
                if message["type"] == "message":
                    received[0] += 1
                    last[0] = time.perf_counter_ns()

        task = asyncio.create_task(count())

        async def send(message: bytes) -> None:
            await pub.publish("T", message)

        figures = await one_way_asyncio("redis one-way 256 B", send, received, settings, last)
        results.append(Result("redis", "one-way 1→1", PAYLOAD, figures, THROUGHPUT, 1))
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for closer in (sub_ps.aclose, pub.aclose, sub.aclose):
            with contextlib.suppress(Exception):
                await closer()
    return results


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    """A redis-server on a free port; ``Skip`` when it or redis-py is not installed."""
    binary = find_binary("redis-server")
    if binary is None:
        raise Skip("redis-server not installed")
    if not has_module("redis"):
        raise Skip("redis-py not installed (pip install redis)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        argv = [
            binary,
            "--port",
            str(port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ]
        with server_process(argv, port):
            yield port


def bench_redis(settings: Settings) -> list[Result]:
    with redis_server() as port:
        return asyncio.run(_redis(port, settings))


# -- MQTT --------------------------------------------------------------------------------


def _mqtt_client(mqtt: Any, name: str, port: int) -> Any:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect(HOST, port)
    client.loop_start()
    if not connected.wait(5):
        raise RuntimeError(f"mqtt client {name} did not connect")
    return client


def _mqtt_subscribe(client: Any, topic: str) -> None:
    done = threading.Event()
    client.on_subscribe = lambda *args: done.set()
    client.subscribe(topic, qos=0)
    if not done.wait(5):
        raise RuntimeError(f"mqtt subscription to {topic} not acknowledged")


@contextlib.contextmanager
def mqtt_rtt(port: int) -> Iterator[Callable[[], Awaitable[None]]]:
    """A request/reply round trip through mosquitto (QoS 0): publish on A, the reply on B."""
    import paho.mqtt.client as mqtt  # type: ignore[import-not-found]

    clients: list[Any] = []
    try:
        pub = _mqtt_client(mqtt, "bench-pub", port)
        clients.append(pub)
        resp = _mqtt_client(mqtt, "bench-resp", port)
        clients.append(resp)
        resp.on_message = lambda c, u, m: c.publish("B", m.payload, qos=0)
        _mqtt_subscribe(resp, "A")
        got = threading.Event()
        pub.on_message = lambda c, u, m: got.set()
        _mqtt_subscribe(pub, "B")
        data = bytes(PAYLOAD)

        async def roundtrip() -> None:
            got.clear()
            pub.publish("A", data, qos=0)
            if not got.wait(5):
                raise TimeoutError("no reply from the mqtt responder")

        yield roundtrip
    finally:
        _mqtt_close(clients)


def _mqtt_close(clients: list[Any]) -> None:
    for client in clients:
        with contextlib.suppress(Exception):
            client.disconnect()
            client.loop_stop()


def _mqtt(port: int, settings: Settings) -> list[Result]:
    import paho.mqtt.client as mqtt

    with mqtt_rtt(port) as roundtrip:
        samples = asyncio.run(measure_sequential("mosquitto rtt 256 B", roundtrip, settings))
    results = [latency_result("mosquitto", "rtt", PAYLOAD, samples, hops=1)]

    clients: list[Any] = []
    try:
        pub = _mqtt_client(mqtt, "bench-pub", port)
        clients.append(pub)
        received, last = [0], [0]
        lock = threading.Lock()

        def count(c: Any, u: Any, m: Any) -> None:
            with lock:
                received[0] += 1
                last[0] = time.perf_counter_ns()

        sub = _mqtt_client(mqtt, "bench-sub", port)
        clients.append(sub)
        sub.on_message = count
        _mqtt_subscribe(sub, "T")

        async def send(message: bytes) -> None:
            pub.publish("T", message, qos=0)

        figures = asyncio.run(
            one_way_asyncio("mosquitto one-way 256 B", send, received, settings, last)
        )
        results.append(Result("mosquitto", "one-way 1→1", PAYLOAD, figures, THROUGHPUT, 1))
    finally:
        _mqtt_close(clients)
    return results


@contextlib.contextmanager
def mosquitto_server() -> Iterator[int]:
    """A mosquitto broker on a free port; ``Skip`` when it or paho-mqtt is not installed."""
    binary = find_binary("mosquitto")
    if binary is None:
        raise Skip("mosquitto not installed")
    if not has_module("paho.mqtt"):
        raise Skip("paho-mqtt not installed (pip install paho-mqtt)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-mosquitto-") as workdir:
        conf = Path(workdir) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} {HOST}\nallow_anonymous true\npersistence false\nlog_dest none\n"
        )
        with server_process([binary, "-c", str(conf)], port):
            yield port


def bench_mosquitto(settings: Settings) -> list[Result]:
    with mosquitto_server() as port:
        return _mqtt(port, settings)


# -- everything --------------------------------------------------------------------------


class Skip(Exception):
    """A peer cannot be measured here; the message says why."""


PEERS: dict[str, Callable[[Settings], list[Result]]] = {
    "nats": bench_nats,
    "redis": bench_redis,
    "mosquitto": bench_mosquitto,
}


def run_peers(settings: Settings) -> tuple[list[Result], list[str]]:
    """(results, notes about skipped or failed peers)."""
    results: list[Result] = []
    notes: list[str] = []
    for name, bench in PEERS.items():
        note(f"peers: {name}")
        try:
            results += bench(settings)
        except Skip as why:
            text = f"skipped {name}: {why}"
            notes.append(text)
            note(text)
        except Exception as exc:
            text = f"failed {name}: {exc!r}"
            notes.append(text)
            note(text)
    return results, notes


def main(argv: list[str]) -> tuple[list[Result], list[str]]:
    settings = QUICK if "--quick" in argv else Settings()
    return run_peers(settings)


if __name__ == "__main__":
    out, notes = main(sys.argv[1:])
    for r in out:
        print(r.system, r.scenario, r.payload, r.figures)
    for text in notes:
        print(text)
