"""Local networks: certificates, node configuration files, and running them.

Like FISCO's build_chain for a local chain. ``amop chain`` writes:

    DIR/ca/ca.crt, ca.key            the chain CA (kept when DIR is reused)
    DIR/nodeN/conf/ca.crt, node.crt, node.key
    DIR/nodeN/config.toml            SDK port from 20200, P2P port from 30300, peers
    DIR/sdk/ca.crt, sdk.crt, sdk.key what clients present (found automatically)

then runs one ``amop node`` process per node, supervised until Ctrl-C or
SIGTERM. Node ids are the hex public keys of the node certificates.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import signal
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from ._errors import AmopError

TOPOLOGIES = ("mesh", "line", "ring", "star")


class ConfigError(AmopError):
    """A node configuration file is missing or wrong."""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """What one node needs to start: its id, its two addresses and its peers."""

    name: str
    node_id: str
    listen: str
    p2p_listen: str
    peers: tuple[str, ...] = field(default=())
    #: certificate directory (FISCO layout), relative to the config file; None = plain.
    certs: str | None = None

    def to_toml(self) -> str:
        peers = ", ".join(f'"{p}"' for p in self.peers)
        text = (
            f"# {self.name}: written by `amop chain`; start it with "
            f"`amop node --config config.toml`\n"
            f'[node]\nname = "{self.name}"\nid = "{self.node_id}"\n\n'
            f'[sdk]\nlisten = "{self.listen}"\n\n'
            f'[p2p]\nlisten = "{self.p2p_listen}"\npeers = [{peers}]\n'
        )
        if self.certs is not None:
            text += f'\n[tls]\ncerts = "{self.certs}"\n'
        return text


def load_config(path: Path) -> NodeConfig:
    """Read a node's ``config.toml``; ``ConfigError`` says what is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no node configuration at {path}") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read node configuration {path}: {exc}") from None
    try:
        node, sdk, p2p = data["node"], data["sdk"], data.get("p2p", {})
        certs = data.get("tls", {}).get("certs")
        return NodeConfig(
            name=str(node.get("name", path.parent.name)),
            node_id=str(node["id"]),
            listen=str(sdk["listen"]),
            p2p_listen=str(p2p.get("listen", "")),
            peers=tuple(str(p) for p in p2p.get("peers", [])),
            certs=str(path.parent / certs) if certs else None,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"{path}: missing or malformed setting {exc}; expected [node] id, [sdk] listen, "
            "[p2p] listen and peers"
        ) from None


def create_network_certs(directory: Path, count: int, *, curve: str = "secp256k1") -> list[str]:
    """Chain CA, node and SDK certificates for ``count`` nodes; returns the node ids.

    An existing chain CA in ``directory/ca`` is kept, so clients holding its
    SDK certificate keep working when the network is created again.
    """
    from ._security.certs import (
        create_chain_ca,
        create_node_cert,
        create_sdk_cert,
        node_id_from_cert,
    )

    ca_dir = directory / "ca"
    if not (ca_dir / "ca.crt").is_file():
        create_chain_ca(ca_dir, curve=curve)
    ids = []
    for i in range(count):
        conf = directory / f"node{i}" / "conf"
        create_node_cert(ca_dir, conf, f"node{i}", overwrite=True)
        ids.append(node_id_from_cert(conf / "node.crt"))
    create_sdk_cert(ca_dir, directory / "sdk", overwrite=True)
    return ids


def plan_network(
    count: int,
    *,
    host: str = "127.0.0.1",
    sdk_port: int = 20200,
    p2p_port: int = 30300,
    topology: str = "mesh",
    node_ids: list[str] | None = None,
) -> list[NodeConfig]:
    """Configurations for ``count`` nodes linked in ``topology``.

    Each link is listed once, on the later node, which dials the earlier one.
    With ``node_ids`` (from ``create_network_certs``) the nodes use TLS with
    the certificates in their ``conf`` directory.
    """
    if count < 1:
        raise ValueError("a network needs at least one node")
    if topology not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {', '.join(TOPOLOGIES)}, not {topology!r}")
    p2p = [f"{host}:{p2p_port + i}" for i in range(count)]
    links: dict[int, list[int]] = {i: [] for i in range(count)}
    for i in range(1, count):
        if topology == "mesh":
            links[i] = list(range(i))
        elif topology == "star":
            links[i] = [0]
        else:  # line and ring
            links[i] = [i - 1]
    if topology == "ring" and count > 2:
        links[count - 1].append(0)
    configs = []
    for i in range(count):
        listen = f"{host}:{sdk_port + i}"
        if node_ids is not None:
            node_id, certs = node_ids[i], "conf"
        else:
            node_id = hashlib.sha256(f"amop-node/{listen}/{p2p[i]}".encode()).hexdigest()
            certs = None
        peers = tuple(p2p[j] for j in links[i])
        configs.append(NodeConfig(f"node{i}", node_id, listen, p2p[i], peers, certs))
    return configs


def write_network(directory: Path, configs: list[NodeConfig]) -> list[Path]:
    """Write ``directory/nodeN/config.toml`` for each node; returns the paths."""
    paths = []
    for config in configs:
        node_dir = directory / config.name
        node_dir.mkdir(parents=True, exist_ok=True)
        path = node_dir / "config.toml"
        path.write_text(config.to_toml(), encoding="utf-8")
        paths.append(path)
    return paths


async def wait_listening(address: str, timeout: float) -> bool:
    """True once a TCP connection to ``address`` succeeds, False after ``timeout``."""
    host, _, port = address.rpartition(":")
    with trio.move_on_after(timeout):
        while True:
            try:
                stream = await trio.open_tcp_stream(host.strip("[]"), int(port))
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return True
    return False


async def run_network(
    directory: Path,
    configs: list[NodeConfig],
    *,
    report: Callable[[str], None],
    verbose: int = 0,
    ready: trio.Event | None = None,
) -> None:
    """Start one ``amop node`` process per config and supervise them.

    Returns when Ctrl-C or SIGTERM arrives, or when a node exits by itself
    (raising ``AmopError`` then); every node is stopped before returning.
    """
    paths = write_network(directory, configs)
    processes: list[trio.Process] = []
    logs = []
    flags = ["-" + "v" * verbose] if verbose else []
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with trio.open_nursery() as nursery:
                for path in paths:
                    log = path.parent.joinpath("node.log").open("ab")
                    logs.append(log)
                    command = [
                        sys.executable,
                        "-m",
                        "amop_trio",
                        *flags,
                        "node",
                        "--config",
                        str(path),
                    ]
                    process = await trio.lowlevel.open_process(
                        command,
                        stdout=log,
                        stderr=log,
                        env={**os.environ, "PYTHONUNBUFFERED": "1"},
                        preexec_fn=_die_with_parent,
                    )
                    processes.append(process)
                for config, process in zip(configs, processes, strict=True):
                    if not await wait_listening(config.listen, 10):
                        raise AmopError(
                            f"{config.name} did not start listening on {config.listen}; see "
                            f"{directory / config.name / 'node.log'}"
                        )
                    scheme = "ws" if config.certs is None else "wss"
                    report(
                        f"{config.name}  sdk {scheme}://{config.listen}  p2p {config.p2p_listen}  "
                        f"pid {process.pid}  id {config.node_id[:16]}…"
                    )
                report(f"{len(configs)} nodes up; Ctrl-C stops them")
                if ready is not None:
                    ready.set()
                exited = trio.Event()
                failed: list[str] = []

                async def watch(config: NodeConfig, process: trio.Process) -> None:
                    code = await process.wait()
                    if not exited.is_set():
                        failed.append(f"{config.name} exited with code {code}")
                        exited.set()

                for config, process in zip(configs, processes, strict=True):
                    nursery.start_soon(watch, config, process)

                async def wait_signal() -> None:
                    async for signum in signals:
                        report(f"stopping ({signal.Signals(signum).name})")
                        break
                    exited.set()

                nursery.start_soon(wait_signal)
                await exited.wait()
                nursery.cancel_scope.cancel()
            if failed:
                raise AmopError(f"{failed[0]}; see its node.log in {directory}")
        finally:
            with trio.CancelScope(shield=True):
                await stop_processes(processes)
                for log in logs:
                    log.close()


def _die_with_parent() -> None:
    """On Linux, a node gets SIGTERM when ``amop chain`` dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def stop_processes(processes: list[trio.Process], grace: float = 2.0) -> None:
    """SIGTERM every process, then SIGKILL whatever is still running after ``grace``."""
    for process in processes:
        if process.returncode is None:
            process.terminate()
    with trio.move_on_after(grace):
        for process in processes:
            await process.wait()
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()
