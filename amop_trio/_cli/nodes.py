"""``amop node``, ``amop chain``, ``amop certs``, ``amop keys`` and ``amop demo``."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from .._chain import (
    ConfigError,
    NodeConfig,
    check_ports_free,
    create_network_certs,
    difference,
    existing_node_ids,
    find_configs,
    load_config,
    plan_network,
    select_configs,
    write_network,
)
from .._client import MessageKind, Subscription, open_amop
from .._errors import AmopError
from .._node.limits import NodeLimits
from .._node.server import open_node
from .._node_process import (
    LOG_FILE,
    READY_LINE,
    Started,
    can_check_processes,
    exit_description,
    forget_pid,
    remove_pid_file,
    running_pid,
    start_node,
    stop_node,
    write_pid_file,
)
from .output import stamp, warn

#: Lines the FISCO go-sdk AMOP examples send, which the demo mirrors.
UNICAST_MESSAGE = "hello, FISCO BCOS, I am unique broadcast publisher!"
MULTICAST_MESSAGE = "hello, FISCO BCOS, I am multi broadcast publisher!"


def say(text: str) -> None:
    print(f"{stamp()} {text}", flush=True)


# -- amop node -------------------------------------------------------------------------------


async def run_node(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else None
    listen = args.listen or (config.listen if config else "127.0.0.1:20200")
    p2p_listen = args.p2p_listen or (config.p2p_listen if config else None) or None
    peers = [*(config.peers if config else ()), *args.peer]
    node_id = args.node_id or (config.node_id if config else None)
    certs = args.certs or (config.certs if config else None)
    allow_plain = args.insecure_plain or (config.insecure_plain if config else False)
    limits = NodeLimits(
        max_frame_size=args.max_frame_size, chain_id=args.chain_id, **dict(args.limit)
    )
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with contextlib.AsyncExitStack() as stack:
            try:
                node = await stack.enter_async_context(
                    open_node(
                        listen,
                        p2p_listen=p2p_listen,
                        peers=peers,
                        node_id=node_id,
                        certs=certs,
                        request_timeout=args.request_timeout,
                        limits=limits,
                        busy_poll=args.busy_poll_us / 1e6,
                        allow_plain=allow_plain,
                    )
                )
            except OSError as exc:
                where = listen + (f" and {p2p_listen}" if p2p_listen else "")
                raise AmopError(f"cannot listen on {where}: {exc.strerror or exc}") from None
            # A node holds many long-lived objects per connection: collect less often,
            # and never look again at what start-up created.
            gc.freeze()
            gc.set_threshold(10_000, 20, 50)
            p2p = f", p2p {node.p2p_endpoint}" if node.p2p_endpoint else ""
            print(
                f"amop node {node.node_id[:16]}… listening on {node.url}{p2p} (Ctrl-C to stop)",
                flush=True,
            )
            if args.pid_file:
                write_pid_file(args.pid_file)
                stack.callback(remove_pid_file, args.pid_file)
            if args.ready_fd is not None:
                os.write(args.ready_fd, READY_LINE)
                os.close(args.ready_fd)
            reason = await _wait_for_stop(signals, args.lifeline_fd)
            print(f"amop node stopping ({reason})", flush=True)
    return 0


async def _wait_for_stop(signals: AsyncIterator[int], lifeline: int | None) -> str:
    """Why the node stops: a signal, or the chain that started it has gone."""
    reasons: list[str] = []
    async with trio.open_nursery() as nursery:

        async def on_signal() -> None:
            async for signum in signals:
                reasons.append(signal.Signals(signum).name)
                nursery.cancel_scope.cancel()

        async def on_lifeline(fd: int) -> None:
            async with trio.lowlevel.FdStream(fd) as pipe:
                while await pipe.receive_some(64):
                    pass
            reasons.append("the chain that started it has gone")
            nursery.cancel_scope.cancel()

        nursery.start_soon(on_signal)
        if lifeline is not None:
            nursery.start_soon(on_lifeline, lifeline)
    return reasons[0]


# -- amop chain ------------------------------------------------------------------------------


async def run_chain(args: argparse.Namespace) -> int:
    await trio.lowlevel.checkpoint_if_cancelled()
    if args.action in ("run", "create"):
        configs = prepare_chain(args)
        if args.action == "create":
            print(
                f"chain of {len(configs)} nodes in {args.dir}/; start it with "
                f"`amop chain start --dir {args.dir}`"
            )
            return 0
        return await run_attached(args, configs)
    if not can_check_processes():
        raise AmopError("this system has no /proc, so node processes cannot be checked")
    paths = select_configs(args.dir, args.names)
    if args.action == "start":
        return await start_detached(args, paths)
    if args.action == "stop":
        outcomes: dict[Path, str] = {}

        async def stop(path: Path) -> None:
            outcomes[path] = await stop_node(path)

        async with trio.open_nursery() as nursery:
            for path in paths:
                nursery.start_soon(stop, path)
        for path in paths:
            print(f"{path.parent.name:8} {outcomes[path]}")
        return 0
    return chain_status(paths)


def prepare_chain(args: argparse.Namespace) -> list[NodeConfig]:
    """The chain in ``args.dir``: reused if it is there, created if not; never replaced."""
    paths = find_configs(args.dir)
    if paths:
        existing = [load_config(path) for path in paths]
        if args.given:
            wanted = plan_network(
                args.nodes,
                host=args.host,
                sdk_port=args.sdk_port,
                p2p_port=args.p2p_port,
                topology=args.topology,
                # Only the shape is compared: ids stay whatever the directory holds.
                node_ids=None if args.plain else [""] * args.nodes,
                insecure_plain=args.insecure_plain,
            )
            change = difference(existing, wanted)
            if change:
                raise ConfigError(
                    f"{args.dir}/ holds another chain ({change}); run `amop chain --dir "
                    f"{args.dir}` without options to use it, or choose another --dir"
                )
        print(f"reusing the chain of {len(existing)} nodes in {args.dir}/", flush=True)
        return existing
    node_ids = None
    if not args.plain:
        node_ids = existing_node_ids(args.dir, args.nodes)
        if node_ids is None:
            node_ids = create_network_certs(args.dir, args.nodes, curve=args.curve)
    configs = plan_network(
        args.nodes,
        host=args.host,
        sdk_port=args.sdk_port,
        p2p_port=args.p2p_port,
        topology=args.topology,
        node_ids=node_ids,
        insecure_plain=args.insecure_plain,
    )
    write_network(args.dir, configs)
    security = "plain WebSocket" if args.plain else f"TLS, SDK certificates in {args.dir}/sdk"
    print(
        f"created a chain of {args.nodes} nodes ({args.topology}, {security}) in {args.dir}/",
        flush=True,
    )
    return [load_config(path) for path in find_configs(args.dir)]


def _node_line(config: NodeConfig, pid: int) -> str:
    scheme = "ws" if config.certs is None else "wss"
    return (
        f"{config.name:8} sdk {scheme}://{config.listen}  p2p {config.p2p_listen}  "
        f"pid {pid}  id {config.node_id[:16]}…"
    )


def _refuse_running(paths: list[Path], directory: Path) -> None:
    for path in paths:
        pid = running_pid(path)
        if pid is not None:
            raise AmopError(
                f"{path.parent.name} of {directory}/ is running already (pid {pid}); "
                f"stop it with `amop chain stop --dir {directory}`"
            )


async def run_attached(args: argparse.Namespace, configs: list[NodeConfig]) -> int:
    """Run every node until Ctrl-C or SIGTERM; report nodes that die and keep the rest."""
    paths = find_configs(args.dir)
    if can_check_processes():
        _refuse_running(paths, args.dir)
    check_ports_free(configs)
    started: dict[Path, Started] = {}
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with trio.open_nursery() as nursery:

                async def start(path: Path) -> None:
                    started[path] = await start_node(path, detached=False, verbose=args.verbose)

                for path in paths:
                    nursery.start_soon(start, path)
            for config, path in zip(configs, paths, strict=True):
                print(_node_line(config, started[path].process.pid), flush=True)
            print(
                f"{len(configs)} nodes up; Ctrl-C stops them "
                f"(or `amop chain stop --dir {args.dir}`)",
                flush=True,
            )
            return await _supervise(args.dir, list(started.values()), signals)
        finally:
            with trio.CancelScope(shield=True):
                await _stop_all(list(started.values()))


async def _supervise(directory: Path, nodes: list[Started], signals: AsyncIterator[int]) -> int:
    failed = 0
    running = len(nodes)
    async with trio.open_nursery() as nursery:

        async def watch(node: Started) -> None:
            nonlocal failed, running
            code = await node.process.wait()
            forget_pid(node.config, node.process.pid)
            running -= 1
            if code != 0:
                failed += 1
                warn(
                    f"amop chain: {node.name} {exit_description(code)}; see "
                    f"{directory / node.name / LOG_FILE} ({running} of {len(nodes)} still up)"
                )
            else:
                print(f"{node.name} stopped ({running} of {len(nodes)} still up)", flush=True)
            if running == 0:
                nursery.cancel_scope.cancel()

        async def on_signal() -> None:
            async for signum in signals:
                print(f"stopping ({signal.Signals(signum).name})", flush=True)
                nursery.cancel_scope.cancel()
                return

        for node in nodes:
            nursery.start_soon(watch, node)
        nursery.start_soon(on_signal)
    if running == 0:
        if failed:
            warn("amop chain: every node has stopped")
        else:
            print("every node has stopped", flush=True)
    return 1 if failed else 0


async def _stop_all(nodes: list[Started], grace: float = 10.0) -> None:
    """SIGTERM every node this process started, then SIGKILL whatever still runs."""
    await trio.lowlevel.checkpoint_if_cancelled()
    for node in nodes:
        if node.process.returncode is None:
            node.process.terminate()
    with trio.move_on_after(grace):
        await trio.lowlevel.checkpoint_if_cancelled()
        for node in nodes:
            await node.process.wait()
    for node in nodes:
        if node.process.returncode is None:
            node.process.kill()
            await node.process.wait()
        node.close_lifeline()


async def start_detached(args: argparse.Namespace, paths: list[Path]) -> int:
    """Start the nodes that do not run yet, in the background; they outlive this process."""
    lines: dict[Path, str] = {}
    errors: list[str] = []

    async def start(path: Path) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        config = load_config(path)
        pid = running_pid(path)
        if pid is not None:
            lines[path] = f"{config.name:8} running already, pid {pid}"
            return
        try:
            check_ports_free([config])
            node = await start_node(path, detached=True, verbose=args.verbose)
        except AmopError as exc:
            errors.append(str(exc))
            lines[path] = f"{config.name:8} not started"
            return
        lines[path] = _node_line(config, node.process.pid)

    async with trio.open_nursery() as nursery:
        for path in paths:
            nursery.start_soon(start, path)
    for path in paths:
        print(lines[path], flush=True)
    for error in errors:
        warn(f"amop chain start: {error}")
    return 1 if errors else 0


def chain_status(paths: list[Path]) -> int:
    stopped = 0
    for path in paths:
        config = load_config(path)
        pid = running_pid(path)
        if pid is None:
            stopped += 1
            print(f"{config.name:8} stopped")
        else:
            print(_node_line(config, pid).replace(" sdk ", " running  sdk ", 1))
    return 3 if stopped else 0


# -- amop certs, amop keys ---------------------------------------------------------------------


async def run_certs(args: argparse.Namespace) -> int:
    await trio.lowlevel.checkpoint_if_cancelled()
    ids = existing_node_ids(args.dir, args.nodes)
    kept = ids is not None
    if ids is None:
        ids = create_network_certs(args.dir, args.nodes, curve=args.curve)
    print(f"chain CA      {args.dir / 'ca'}/ca.crt, ca.key   (secp256k1: 2.x SDKs, node links)")
    print(f"3.x CA        {args.dir / 'ca3'}/ca.crt, ca.key  (RSA: 3.x SDKs)")
    for i, node_id in enumerate(ids):
        print(f"node{i:<9} {args.dir / f'node{i}' / 'conf'}/  id {node_id[:16]}…")
    print(f"SDK           {args.dir / 'sdk'}/ca.crt, sdk.crt, sdk.key   (2.x SDKs, amop_trio)")
    print(f"3.x SDK       {args.dir / 'sdk3'}/ca.crt, sdk.crt, sdk.key  (cpp-sdk, Java SDK 3.x)")
    if kept:
        print(f"(every certificate was in {args.dir}/ already and is kept)")
    return 0


async def run_keys(args: argparse.Namespace) -> int:
    await trio.lowlevel.checkpoint_if_cancelled()
    from .._security.keys import generate_private_key, public_key_pem, save_private_key_pem

    private_path = args.name.with_name(args.name.name + ".pem")
    public_path = args.name.with_name(args.name.name + ".pub.pem")
    for path in (private_path, public_path):
        if path.exists():
            raise AmopError(f"{path} exists already; choose another name")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    save_private_key_pem(key, private_path)
    public_path.write_bytes(public_key_pem(key.public_key()))
    print(f"private key   {private_path}   (the subscriber's; keep it secret)")
    print(f"public key    {public_path}   (give it to publishers of the private topic)")
    return 0


# -- amop demo -----------------------------------------------------------------------------


async def _print_messages(sub: Subscription, count: int) -> None:
    """Print each message as the go-sdk subscriber does, answering unicasts."""
    received = 0
    async for message in sub:
        say(f"received: {message.data.decode('utf-8', 'replace')}")
        if message.kind is MessageKind.UNICAST:
            await message.reply("ok")
        received += 1
        if received >= count:
            return


async def run_demo(args: argparse.Namespace) -> int:
    topic, count = "hello", 3
    print("two linked nodes: node0 on 127.0.0.1:20200, node1 on 127.0.0.1:20201", flush=True)
    async with (
        open_node("127.0.0.1:20200", p2p_listen="127.0.0.1:0") as node0,
        open_node(
            "127.0.0.1:20201", p2p_listen="127.0.0.1:0", peers=[node0.p2p_endpoint or ""]
        ) as node1,
        open_amop(f"ws://{node1.endpoint}") as subscriber,
        open_amop(f"ws://{node0.endpoint}") as publisher,
        subscriber.subscribe(topic) as sub,
        trio.open_nursery() as nursery,
    ):
        print("Subscriber success", flush=True)
        with trio.fail_after(10):  # the subscription reaches node0 through the link
            await node0.network.wait_subscribed(topic)
        nursery.start_soon(_print_messages, sub, 2 * count)
        print(f"-- unicast from {node0.endpoint}: one subscriber gets it, its reply comes back")
        for i in range(count):
            say(f"publish message: {UNICAST_MESSAGE} {i}")
            reply = await publisher.publish(topic, f"{UNICAST_MESSAGE} {i}")
            say(f"reply: {reply.decode('utf-8', 'replace')}")
            await trio.sleep(0.1)
        print(f"-- multicast from {node0.endpoint}: every subscriber gets it")
        for i in range(count):
            say(f"publish message: {MULTICAST_MESSAGE} {i}")
            await publisher.broadcast(topic, f"{MULTICAST_MESSAGE} {i}")
            await trio.sleep(0.1)
    print("demo finished", flush=True)
    return 0
