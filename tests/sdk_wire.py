"""What real FISCO SDKs put on the wire, and how they read it: helpers for conformance tests.

Written from the SDKs' sources (see each ``tests/test_sdk_*.py`` module and
docs/PROTOCOL.md section 5), with ``struct``, ``json`` and ``ssl`` only,
independently of amop_trio's codec: the tests check an ``amop node`` process
against the SDKs, not against amop_trio's own idea of the protocol. Only the
certificates come from amop_trio, through ``amop certs`` as users make them.

2.x channel frame:  length u32 | type u16 | seq 32 bytes | result i32 | data
Topic body:         topicLen u8 (= len(topic) + 1) | topic | data
"""

from __future__ import annotations

import os
import select
import ssl
import struct
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from .network import free_port

# -- 2.x channel frames -------------------------------------------------------------

RPC = 0x12
HEARTBEAT = 0x13
HANDSHAKE = 0x14
AMOP_REQUEST = 0x30
AMOP_RESPONSE = 0x31
SUBSCRIBE = 0x32
MULTICAST = 0x35
VERIFY_REQUEST = 0x37
VERIFY_RESULT = 0x38

HEADER = struct.Struct(">IH32si")  # length, type, seq, result (signed, as go and Java read it)
TIMEOUT = 10.0


def uuid1_seq() -> bytes:
    """go-sdk 1.x and python-sdk: a version-1 UUID, 32 lowercase hex."""
    return uuid.uuid1().hex.encode()


def uuid4_seq() -> bytes:
    """Java SDK 2.x, web3sdk and the cpp-sdk: a version-4 UUID, 32 lowercase hex."""
    return uuid.uuid4().hex.encode()


def channel_frame(ptype: int, seq: bytes, data: bytes = b"", result: int = 0) -> bytes:
    return HEADER.pack(HEADER.size + len(data), ptype, seq, result) + data


def topic_body(topic: bytes, data: bytes = b"") -> bytes:
    return bytes([len(topic) + 1]) + topic + data


def split_topic_body(body: bytes) -> tuple[bytes, bytes]:
    length = body[0]
    assert 2 <= length <= len(body), f"bad topicLen in {body!r}"
    return body[1:length], body[length:]


@dataclass(frozen=True)
class Frame:
    type: int
    seq: bytes
    result: int
    data: bytes


def parse_front(buf: bytes) -> tuple[Frame, int] | None:
    """The whole frame at the front of ``buf`` and its length, or None if incomplete."""
    if len(buf) < HEADER.size:
        return None
    length, ptype, seq, result = HEADER.unpack_from(buf)
    assert length >= HEADER.size, f"length field {length} under the 42-byte header"
    if len(buf) < length:
        return None
    return Frame(ptype, seq, result, bytes(buf[HEADER.size : length])), length


# -- readers of the SDKs --------------------------------------------------------------


class GoReader:
    """go-sdk 1.x's read loop (``conn/channel.go:1149-1170``): ``Read`` 4096 bytes, which
    over Go's TLS returns the bytes of one TLS record, append them, then decode exactly
    ONE frame and read again. Frames the node packs into one record wait for a later one."""

    def __init__(self) -> None:
        self.buf = b""

    async def next(self, stream: trio.abc.ReceiveStream) -> Frame:
        while True:
            data = await stream.receive_some(4096)
            if not data:
                raise EOFError("the node closed the connection")
            self.buf += data
            # With fewer than 4 bytes, decodeChannelMessage reads length 0 and makes a
            # 4 GiB buffer (channel.go:275-276): a record may never end there.
            assert len(self.buf) >= 4, f"a TLS record ended inside a length field: {self.buf!r}"
            found = parse_front(self.buf)
            if found is not None:
                frame, length = found
                self.buf = self.buf[length:]
                return frame


class StreamReader:
    """A length-prefix decoder of the byte stream (Java SDK 2.x and web3sdk: Netty's
    ``LengthFieldBasedFrameDecoder(Integer.MAX_VALUE, 0, 4, -4, 0)``)."""

    def __init__(self) -> None:
        self.buf = b""

    async def next(self, stream: trio.abc.ReceiveStream) -> Frame:
        while (found := parse_front(self.buf)) is None:
            data = await stream.receive_some(65536)
            if not data:
                raise EOFError("the node closed the connection")
            self.buf += data
        frame, length = found
        self.buf = self.buf[length:]
        return frame


class PythonSdkReader:
    """python-sdk's ``ChannelPack.unpack`` (``client/channelpack.py:97-114``), bug included:
    a frame's data runs to the end of the buffer, so two frames in one ``recv`` corrupt
    the first; the header's result is read unsigned (``!IH32sI``)."""

    def __init__(self) -> None:
        self.buf = b""
        self.ready: list[Frame] = []

    async def next(self, stream: trio.abc.ReceiveStream) -> Frame:
        while not self.ready:
            data = await stream.receive_some(10 * 1024 * 1024)
            if not data:
                raise EOFError("the node closed the connection")
            self.buf += data
            while len(self.buf) >= HEADER.size:
                (total,) = struct.unpack_from("!I", self.buf)
                if len(self.buf) < total:
                    break
                _, ptype, seq, result = struct.unpack_from("!IH32sI", self.buf)
                self.ready.append(Frame(ptype, seq, result, self.buf[HEADER.size :]))
                self.buf = self.buf[total:]
        return self.ready.pop(0)


Reader = GoReader | StreamReader | PythonSdkReader


@dataclass
class ChannelConn:
    """One SDK's TLS connection to a node; frames read but not wanted yet wait in a backlog."""

    stream: trio.SSLStream[trio.SocketStream]
    reader: Reader
    backlog: list[Frame] = field(default_factory=list)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def until(self, predicate: Callable[[Frame], bool], timeout: float = TIMEOUT) -> Frame:
        for i, frame in enumerate(self.backlog):
            if predicate(frame):
                return self.backlog.pop(i)
        with trio.fail_after(timeout):
            while True:
                frame = await self.reader.next(self.stream)
                if predicate(frame):
                    return frame
                self.backlog.append(frame)

    async def answer(self, seq: bytes, timeout: float = TIMEOUT) -> Frame:
        """The frame under ``seq``: every 2.x SDK matches answers by seq alone."""
        return await self.until(lambda f: f.seq == seq, timeout)

    async def request(self, ptype: int, seq: bytes, data: bytes = b"") -> Frame:
        await self.send(channel_frame(ptype, seq, data))
        return await self.answer(seq)

    async def nothing_under(self, seq: bytes, within: float = 0.3) -> bool:
        """True if no frame under ``seq`` arrives within ``within`` seconds."""
        with trio.move_on_after(within):
            await self.answer(seq, timeout=within + 1)
            return False
        return True


@asynccontextmanager
async def channel_session(
    port: int, context: ssl.SSLContext, reader: Reader
) -> AsyncIterator[ChannelConn]:
    """A TLS connection to the node's SDK port, closed when the block ends."""
    stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=context)
    try:
        await stream.do_handshake()
        yield ChannelConn(stream, reader)
    finally:
        await trio.aclose_forcefully(stream)


def tls12_secp256k1(sdk: Path, *, verify: bool) -> ssl.SSLContext:
    """What the 2.x SDKs offer with the chain's secp256k1 certificates: TLS 1.2 and
    the secp256k1 group (python-sdk ``client/ssl_sock_wrap.py:38-85``; go-sdk offers
    P-256 too, which Python's ``ssl`` cannot add). ``verify``: check the node's chain
    against ca.crt (Java, python-sdk) or not at all (go-sdk's InsecureSkipVerify)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ecdh_curve("secp256k1")
    context.check_hostname = False
    if verify:
        context.load_verify_locations(cafile=sdk / "ca.crt")
    else:
        context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(sdk / "sdk.crt", sdk / "sdk.key")
    return context


# -- amop node, as users run it -------------------------------------------------------


@dataclass
class NodeProcess:
    port: int
    p2p_port: int
    process: subprocess.Popen[bytes]


@contextmanager
def amop_node(
    certs: Path, *, peers: tuple[int, ...] = (), extra: tuple[str, ...] = ()
) -> Iterator[NodeProcess]:
    """``amop node --certs ...`` in its own process, until the block ends."""
    port, p2p_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "amop_trio",
        "node",
        "--listen",
        f"127.0.0.1:{port}",
        "--p2p-listen",
        f"127.0.0.1:{p2p_port}",
        "--certs",
        os.fspath(certs),
        *extra,
    ]
    for peer in peers:
        command += ["--peer", f"127.0.0.1:{peer}"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else b""
        assert b"listening" in line, f"amop node did not start: {line!r}"
        yield NodeProcess(port, p2p_port, process)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
