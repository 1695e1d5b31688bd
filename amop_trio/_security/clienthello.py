"""Read a TLS ClientHello before the handshake, to tell which generation of client it is.

A FISCO 2.x client (python-sdk, Java SDK 2.x, go-sdk 1.x) offers the
secp256k1 group and holds a secp256k1 certificate; it must get the node's
secp256k1 certificate over TLS 1.2 (TLS 1.3 has no signature scheme for
secp256k1, and go-sdk offers TLS 1.3 all the same). A 3.x client (OpenSSL's
defaults) never offers secp256k1 and wants an RSA or P-256 certificate, over
TLS 1.3 or 1.2. One ``ssl.SSLContext`` cannot do both (Python 3.11 can set a
single ECDHE group, and one context holds one EC certificate), so the node
reads the ClientHello, picks a context by whether secp256k1 is offered, and
hands the bytes it read to TLS in front of the rest.

Sans-I/O parsing (``offered_groups``) plus one bounded read (``read_client_hello``).
"""

from __future__ import annotations

import struct

import trio

__all__ = ["SECP256K1_GROUP", "offered_groups", "read_client_hello"]

#: The secp256k1 named group (RFC 8422).
SECP256K1_GROUP = 0x0016
#: Most bytes read looking for a ClientHello (real ones are under 4 KiB; past this
#: the default context takes the connection and OpenSSL judges it).
MAX_HELLO_BYTES = 16 * 1024
_HANDSHAKE = 22
_CLIENT_HELLO = 1
_SUPPORTED_GROUPS = 0x000A


def _handshake_bytes(data: bytes) -> tuple[bytes, bool]:
    """The handshake-layer bytes in the TLS records of ``data``; False if not TLS handshake."""
    out = bytearray()
    at = 0
    while at + 5 <= len(data):
        if data[at] != _HANDSHAKE:
            return bytes(out), False
        (size,) = struct.unpack_from("!H", data, at + 3)
        out += data[at + 5 : at + 5 + size]
        at += 5 + size
    return bytes(out), True


def offered_groups(data: bytes) -> set[int] | None:
    """The supported_groups of the ClientHello at the start of ``data`` (TLS records).

    None if ``data`` holds no complete ClientHello; an empty set if it has no
    supported_groups extension.
    """
    hs, ok = _handshake_bytes(data)
    if not ok or len(hs) < 4 or hs[0] != _CLIENT_HELLO:
        return None
    size = int.from_bytes(hs[1:4], "big")
    body = hs[4 : 4 + size]
    if len(body) < size:
        return None
    try:
        at = 2 + 32  # legacy_version, random
        at += 1 + body[at]  # session_id
        at += 2 + struct.unpack_from("!H", body, at)[0]  # cipher_suites
        at += 1 + body[at]  # compression_methods
        if at == len(body):
            return set()
        end = at + 2 + struct.unpack_from("!H", body, at)[0]
        at += 2
        while at + 4 <= end:
            ext, ext_len = struct.unpack_from("!HH", body, at)
            at += 4
            if ext == _SUPPORTED_GROUPS:
                (count,) = struct.unpack_from("!H", body, at)
                return {
                    struct.unpack_from("!H", body, at + 2 + 2 * i)[0] for i in range(count // 2)
                }
            at += ext_len
    except (IndexError, struct.error):
        return None
    return set()


def _needed(data: bytes | bytearray) -> int:
    """Bytes still to read for the ClientHello to be whole (0: whole, or not TLS)."""
    at = 0
    hs = bytearray()
    while True:
        if len(data) - at < 5:
            return 5 - (len(data) - at)
        if data[at] != _HANDSHAKE:
            return 0
        size = int.from_bytes(data[at + 3 : at + 5])
        if len(data) - at - 5 < size:
            return size - (len(data) - at - 5)
        hs += data[at + 5 : at + 5 + size]
        at += 5 + size
        if len(hs) >= 4 and (hs[0] != _CLIENT_HELLO or len(hs) >= 4 + int.from_bytes(hs[1:4])):
            return 0


async def read_client_hello(stream: trio.abc.Stream) -> bytes:
    """Read from ``stream`` until a whole ClientHello is in, or it is clearly not one.

    Returns every byte read (to be replayed); at most ``MAX_HELLO_BYTES``.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    data = bytearray()
    while len(data) < MAX_HELLO_BYTES:
        need = _needed(data)
        if need == 0:
            break
        chunk = await stream.receive_some(min(need, MAX_HELLO_BYTES - len(data)))
        if not chunk:
            break
        data += chunk
    return bytes(data)
