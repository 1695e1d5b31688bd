"""Local networks: node configuration files, planned, written, reused and checked.

Like FISCO's build_chain for a local chain. ``amop chain`` writes:

    DIR/ca/, DIR/ca3/                the chain CA and the 3.x side's RSA CA (kept)
    DIR/nodeN/conf/ca.crt, node.crt, node.key, ssl.crt, ssl.key
    DIR/nodeN/config.toml            SDK port from 20200, P2P port from 30300, peers
    DIR/sdk/ca.crt, sdk.crt, sdk.key what 2.x clients present
    DIR/sdk3/                        the same for 3.x SDKs (RSA)

(certificates: ``_security.network_certs``). Node ids are derived from the
node certificates. A directory is never silently re-minted: configurations
that exist are reused as they are, and a request for a different chain in
the same directory is refused (``ConfigError``). Running the nodes is
``_node_process``'s business.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import trio

from ._errors import AmopError

TOPOLOGIES = ("mesh", "line", "ring", "star")
CONFIG_FILE = "config.toml"
_NODE_DIR = re.compile(r"node(\d+)")


class ConfigError(AmopError):
    """A node configuration is missing, wrong, or would replace an existing one."""


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
    #: plain WebSocket on a non-loopback address, explicitly allowed.
    insecure_plain: bool = False

    def to_toml(self) -> str:
        peers = ", ".join(f'"{p}"' for p in self.peers)
        text = (
            f"# {self.name}: written by `amop chain`; start it with `amop chain start {self.name}`"
            f" or `amop node --config config.toml`\n"
            f'[node]\nname = "{self.name}"\nid = "{self.node_id}"\n\n'
            f'[sdk]\nlisten = "{self.listen}"\n\n'
            f'[p2p]\nlisten = "{self.p2p_listen}"\npeers = [{peers}]\n'
        )
        if self.certs is not None:
            text += f'\n[tls]\ncerts = "{self.certs}"\n'
        elif self.insecure_plain:
            text += "\n[tls]\n# no certificates: any host that reaches these ports can join\n"
            text += "insecure_plain = true\n"
        return text

    def shape(self) -> tuple[object, ...]:
        """What makes two configurations the same node of the same chain."""
        return (self.name, self.listen, self.p2p_listen, self.peers, self.certs is None)


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
        tls = data.get("tls", {})
        certs = tls.get("certs")
        return NodeConfig(
            name=str(node.get("name", path.parent.name)),
            node_id=str(node["id"]),
            listen=str(sdk["listen"]),
            p2p_listen=str(p2p.get("listen", "")),
            peers=tuple(str(p) for p in p2p.get("peers", [])),
            certs=str(path.parent / certs) if certs else None,
            insecure_plain=tls.get("insecure_plain") is True,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"{path}: missing or malformed setting {exc}; expected [node] id, [sdk] listen, "
            "[p2p] listen and peers"
        ) from None


def create_network_certs(directory: Path, count: int, *, curve: str = "secp256k1") -> list[str]:
    """Certificates for ``count`` nodes and both generations of SDK, reusing what
    ``directory`` holds; the node ids (see ``_security.network_certs``)."""
    from ._security.network_certs import create_network_certs as create

    return create(directory, count, curve=curve)


def existing_node_ids(directory: Path, count: int) -> list[str] | None:
    """The node ids of ``directory``'s certificates, if every file a chain needs is there."""
    files = [directory / "ca" / "ca.crt", directory / "ca3" / "ca.crt"]
    files += [directory / sdk / n for sdk in ("sdk", "sdk3") for n in ("sdk.crt", "sdk.key")]
    node_files = ("ca.crt", "node.crt", "node.key", "ssl.crt", "ssl.key")
    for i in range(count):
        files += [directory / f"node{i}" / "conf" / n for n in node_files]
    if not all(f.is_file() for f in files):
        return None
    from ._security.certs import node_id_from_cert

    return [node_id_from_cert(directory / f"node{i}" / "conf" / "node.crt") for i in range(count)]


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plan_network(
    count: int,
    *,
    host: str = "127.0.0.1",
    sdk_port: int = 20200,
    p2p_port: int = 30300,
    topology: str = "mesh",
    node_ids: list[str] | None = None,
    insecure_plain: bool = False,
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
    for first, what in ((sdk_port, "SDK"), (p2p_port, "P2P")):
        if not 1 <= first <= 65535 - count + 1:
            raise ValueError(f"{what} ports {first}..{first + count - 1} are not all in 1-65535")
    if sdk_port < p2p_port + count and p2p_port < sdk_port + count:
        raise ValueError(
            f"SDK ports {sdk_port}..{sdk_port + count - 1} overlap "
            f"P2P ports {p2p_port}..{p2p_port + count - 1}"
        )
    p2p = [f"{_host(host)}:{p2p_port + i}" for i in range(count)]
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
        listen = f"{_host(host)}:{sdk_port + i}"
        if node_ids is not None:
            node_id, certs = node_ids[i], "conf"
        else:
            node_id = hashlib.sha256(f"amop-node/{listen}/{p2p[i]}".encode()).hexdigest()
            certs = None
        peers = tuple(p2p[j] for j in links[i])
        configs.append(
            NodeConfig(
                f"node{i}",
                node_id,
                listen,
                p2p[i],
                peers,
                certs,
                insecure_plain=certs is None and insecure_plain and not is_loopback(host),
            )
        )
    return configs


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def find_configs(directory: Path) -> list[Path]:
    """``directory/nodeN/config.toml`` of an existing chain, in node order."""
    if not directory.is_dir():
        return []
    found = []
    for child in directory.iterdir():
        match = _NODE_DIR.fullmatch(child.name)
        if match and (child / CONFIG_FILE).is_file():
            found.append((int(match.group(1)), child / CONFIG_FILE))
    return [path for _, path in sorted(found)]


def select_configs(directory: Path, names: list[str]) -> list[Path]:
    """The config files of the named nodes (every node when ``names`` is empty)."""
    paths = find_configs(directory)
    if not paths:
        raise ConfigError(
            f"no chain in {directory}/ (no nodeN/{CONFIG_FILE}); create one with "
            f"`amop chain create --dir {directory}`"
        )
    if not names:
        return paths
    by_name = {path.parent.name: path for path in paths}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ConfigError(f"no node {unknown[0]} in {directory}/; it has {', '.join(by_name)}")
    return [by_name[name] for name in dict.fromkeys(names)]


def difference(existing: list[NodeConfig], wanted: list[NodeConfig]) -> str | None:
    """How an existing chain differs from the one asked for, in a few words; None if not."""
    if len(existing) != len(wanted):
        return f"it has {len(existing)} nodes, not {len(wanted)}"
    for old, new in zip(existing, wanted, strict=True):
        if (old.certs is None) != (new.certs is None):
            kind = "plain WebSocket" if old.certs is None else "TLS"
            return f"its nodes use {kind}"
        if old.listen != new.listen or old.p2p_listen != new.p2p_listen:
            return f"{old.name} listens on {old.listen} and {old.p2p_listen}"
        if old.peers != new.peers:
            return f"its links differ ({old.name} dials {', '.join(old.peers) or 'nobody'})"
    return None


def write_network(directory: Path, configs: list[NodeConfig]) -> list[Path]:
    """Write ``directory/nodeN/config.toml`` for each node; returns the paths.

    A config that exists already is kept if it describes the same node, and
    refused (``ConfigError``, nothing written) if it does not.
    """
    existing = [directory / c.name / CONFIG_FILE for c in configs]
    for path, config in zip(existing, configs, strict=True):
        if path.exists() and load_config(path).shape() != config.shape():
            raise ConfigError(
                f"{path} describes another node; remove it or choose another directory"
            )
    for path, config in zip(existing, configs, strict=True):
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(config.to_toml(), encoding="utf-8")
    return existing


def check_ports_free(configs: list[NodeConfig]) -> None:
    """``ConfigError`` naming the first SDK or P2P port another process holds."""
    from ._node.server import parse_listen

    for config in configs:
        for address, what in ((config.listen, "SDK"), (config.p2p_listen, "P2P")):
            if not address:
                continue
            host, port = parse_listen(address)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host, port))
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        raise ConfigError(
                            f"{config.name}'s {what} port {address} is in use by another "
                            "process (another chain? see `amop chain status`)"
                        ) from None
                    raise ConfigError(
                        f"{config.name} cannot listen on {address}: {exc.strerror or exc}"
                    ) from None


async def wait_listening(address: str, timeout: float) -> bool:
    """True once a TCP connection to ``address`` succeeds, False after ``timeout``.

    Anything listening there counts; ``amop chain`` waits for its nodes'
    own readiness report instead.
    """
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
