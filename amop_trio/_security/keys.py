"""secp256k1 keys, Keccak-256 and recoverable signatures for private topics.

PROTOCOL.md section 3: a subscriber of a private topic proves it holds an
approved secp256k1 key by signing ``keccak256(random)`` with it; the answer is
65 bytes ``r || s || v``: r and s 32 bytes each, big-endian, s in the low half
of the group order (go-ethereum style verifiers reject high s), and v the
recovery id (0 or 1). The publisher checks r||s against each approved public
key.

Two things here are deliberately pure Python:

* ``keccak256`` is the original Keccak submission Ethereum uses (padding byte
  0x01). It is NOT ``hashlib.sha3_256`` (NIST SHA3, padding byte 0x06): the two
  give different digests for every input.
* A few lines of secp256k1 point arithmetic compute v and recover a public key
  from a signature; ``cryptography`` signs and verifies but exposes neither.
  Only public values go through it (no secret-dependent branches on the
  private key here), so its lack of constant-time guarantees does not matter.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from .._errors import AmopError
from .paths import StrPath

__all__ = [
    "SIGNATURE_SIZE",
    "KeyFileError",
    "generate_private_key",
    "keccak256",
    "load_private_key_pem",
    "load_public_key_hex",
    "load_public_key_pem",
    "public_key_hex",
    "public_key_pem",
    "recover_public_key",
    "save_private_key_pem",
    "sign_recoverable",
    "verify_signature",
]

SIGNATURE_SIZE = 65
"""Length of a recoverable signature: r (32) || s (32) || v (1)."""


class KeyFileError(AmopError):
    """A private-topic key file is missing, unreadable or not a secp256k1 key."""


# -- Keccak-256 (Ethereum), a compact Keccak-f[1600] sponge --------------------

_MASK64 = (1 << 64) - 1
_RATE = 136  # bytes: 1600 - 2 * 256 bits of capacity


def _round_constants() -> tuple[int, ...]:
    # The iota constants from the degree-8 LFSR x^8 + x^6 + x^5 + x^4 + 1.
    out = []
    r = 1
    for _ in range(24):
        c = 0
        for j in range(7):
            if r & 1:
                c |= 1 << ((1 << j) - 1)
            r = ((r << 1) ^ (0x71 if r & 0x80 else 0)) & 0xFF
        out.append(c)
    return tuple(out)


def _rotation_offsets() -> tuple[int, ...]:
    # rho offsets, lane (x, y) at index x + 5 * y.
    offs = [0] * 25
    x, y = 1, 0
    for t in range(24):
        offs[x + 5 * y] = ((t + 1) * (t + 2) // 2) % 64
        x, y = y, (2 * x + 3 * y) % 5
    return tuple(offs)


_RC = _round_constants()
_ROT = _rotation_offsets()
# pi: lane (x, y) moves to (y, 2x + 3y).
_PI = tuple(y + 5 * ((2 * x + 3 * y) % 5) for y in range(5) for x in range(5))


def _keccak_f(a: list[int]) -> None:
    for rc in _RC:
        # theta
        c = [a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20] for x in range(5)]
        d = [
            c[(x - 1) % 5] ^ (((c[(x + 1) % 5] << 1) | (c[(x + 1) % 5] >> 63)) & _MASK64)
            for x in range(5)
        ]
        # rho and pi
        b = [0] * 25
        for i in range(25):
            v = a[i] ^ d[i % 5]
            n = _ROT[i]
            b[_PI[i]] = ((v << n) | (v >> (64 - n))) & _MASK64 if n else v
        # chi
        for y in range(0, 25, 5):
            row = b[y : y + 5]
            for x in range(5):
                a[y + x] = row[x] ^ (~row[(x + 1) % 5] & row[(x + 2) % 5])
        # iota
        a[0] ^= rc


def keccak256(data: bytes) -> bytes:
    """Keccak-256 as Ethereum and FISCO BCOS use it (not NIST SHA3-256)."""
    return _sponge256(data, 0x01)


def _sponge256(data: bytes, pad: int) -> bytes:
    # pad 0x01 is Keccak-256; 0x06 would be NIST SHA3-256 (the tests use
    # that to check the permutation against hashlib on multi-block inputs).
    padded = bytearray(data)
    padded.append(pad)
    padded.extend(b"\x00" * (-len(padded) % _RATE))
    padded[-1] |= 0x80
    state = [0] * 25
    for off in range(0, len(padded), _RATE):
        block = padded[off : off + _RATE]
        for i in range(_RATE // 8):
            state[i] ^= int.from_bytes(block[8 * i : 8 * i + 8], "little")
        _keccak_f(state)
    return b"".join(lane.to_bytes(8, "little") for lane in state[:4])


# -- secp256k1 arithmetic on public values ------------------------------------

_P = 2**256 - 2**32 - 977
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = _N // 2
_G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)

_Point = tuple[int, int] | None  # None is the point at infinity


def _add(p1: _Point, p2: _Point) -> _Point:
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    x1, y1 = p1
    x2, y2 = p2
    if x1 == x2:
        if (y1 + y2) % _P == 0:
            return None
        lam = 3 * x1 * x1 * pow(2 * y1, -1, _P) % _P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, _P) % _P
    x3 = (lam * lam - x1 - x2) % _P
    return (x3, (lam * (x1 - x3) - y1) % _P)


def _mul(k: int, point: _Point) -> _Point:
    result: _Point = None
    addend = point
    while k:
        if k & 1:
            result = _add(result, addend)
        addend = _add(addend, addend)
        k >>= 1
    return result


def _point_of(public_key: ec.EllipticCurvePublicKey) -> tuple[int, int]:
    nums = public_key.public_numbers()
    return (nums.x, nums.y)


def _require_k1(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> None:
    if not isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        raise TypeError(f"expected an elliptic-curve key, got {type(key).__name__}")
    if key.curve.name != "secp256k1":
        raise ValueError(f"private topics use secp256k1 keys; this key is on {key.curve.name}")


# -- key pairs ------------------------------------------------------------------


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh secp256k1 private key."""
    return ec.generate_private_key(ec.SECP256K1())


def save_private_key_pem(private_key: ec.EllipticCurvePrivateKey, path: StrPath) -> Path:
    """Write ``private_key`` as unencrypted PKCS#8 PEM, readable by the owner only (0600)."""
    _require_k1(private_key)
    data = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    out = Path(path)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    return out


def _read_pem(source: StrPath | bytes, what: str) -> tuple[bytes, str]:
    """PEM bytes from bytes, PEM text, or a file path; plus a label for messages."""
    if isinstance(source, bytes):
        return source, f"the given {what}"
    if isinstance(source, str) and source.lstrip().startswith("-----BEGIN"):
        return source.encode("ascii"), f"the given {what}"
    path = Path(source)
    try:
        return path.read_bytes(), str(path)
    except FileNotFoundError:
        raise KeyFileError(f"{what} file not found: {path}") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} file {path}: {exc}") from exc


def load_private_key_pem(source: StrPath | bytes) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PEM (PKCS#8 or SEC1) secp256k1 private key from a path or bytes."""
    data, label = _read_pem(source, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{label}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256k1":
        raise KeyFileError(f"{label}: private topics need a secp256k1 key")
    return key


def load_public_key_pem(source: StrPath | bytes) -> ec.EllipticCurvePublicKey:
    """Load a PEM (SubjectPublicKeyInfo) secp256k1 public key from a path or bytes."""
    data, label = _read_pem(source, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{label}: not a PEM public key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256k1":
        raise KeyFileError(f"{label}: private topics need a secp256k1 key")
    return key


def as_private_key(
    source: ec.EllipticCurvePrivateKey | StrPath | bytes,
) -> ec.EllipticCurvePrivateKey:
    """A private key as given, or loaded from its PEM file or bytes."""
    if isinstance(source, ec.EllipticCurvePrivateKey):
        return source
    return load_private_key_pem(source)


def as_public_key(source: ec.EllipticCurvePublicKey | StrPath | bytes) -> ec.EllipticCurvePublicKey:
    """A public key as given, or loaded from its PEM file or bytes."""
    if isinstance(source, ec.EllipticCurvePublicKey):
        return source
    return load_public_key_pem(source)


def _public(
    key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey,
) -> ec.EllipticCurvePublicKey:
    _require_k1(key)
    return key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key


def public_key_pem(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> bytes:
    """The public half of ``key`` as PEM SubjectPublicKeyInfo bytes."""
    return _public(key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_hex(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> str:
    """128 lowercase hex digits: x || y, the uncompressed point without its 04 prefix.

    The same form FISCO BCOS uses for node ids.
    """
    raw = _public(key).public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return raw[1:].hex()


def load_public_key_hex(text: str) -> ec.EllipticCurvePublicKey:
    """A secp256k1 public key from 128 hex digits (x || y), with or without a 04 / 0x prefix."""
    digits = text.strip().lower().removeprefix("0x")
    if len(digits) == 128:
        digits = "04" + digits
    try:
        raw = bytes.fromhex(digits)
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), raw)
    except ValueError as exc:
        raise KeyFileError(f"not a secp256k1 public key in hex: {text[:40]!r}...") from exc


# -- signatures -------------------------------------------------------------------


def sign_recoverable(private_key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """Sign ``keccak256(data)``; return 65 bytes r || s || v (low s, v in {0, 1})."""
    _require_k1(private_key)
    digest = keccak256(data)
    z = int.from_bytes(digest, "big")
    q = _point_of(private_key.public_key())
    while True:
        der = private_key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        r, s = utils.decode_dss_signature(der)
        if s > _HALF_N:
            s = _N - s
        # The nonce point R = (z / s) G + (r / s) Q of the (normalised) signature;
        # v is the parity of its y coordinate.
        s_inv = pow(s, -1, _N)
        point = _add(_mul(z * s_inv % _N, _G), _mul(r * s_inv % _N, q))
        if point is not None and point[0] == r:
            v = point[1] & 1
            return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])
        # R.x >= n (probability ~2**-128): v would be 2 or 3, which verifiers
        # expecting 0/1 refuse. Sign again with a fresh nonce.


def _split(signature: bytes) -> tuple[int, int, int]:
    if len(signature) != SIGNATURE_SIZE:
        raise ValueError(f"a signature is {SIGNATURE_SIZE} bytes, got {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    return r, s, signature[64]


def verify_signature(public_key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> bool:
    """True if ``signature`` (65 bytes r || s || v) signs ``keccak256(data)`` with ``public_key``.

    Checks r||s only, as the FISCO verifiers do: v is not looked at. Signatures
    with a high s (s > n/2), r or s out of range, or a wrong length are refused.
    Raises ``ValueError`` if ``public_key`` is not a secp256k1 key.
    """
    _require_k1(public_key)
    if len(signature) != SIGNATURE_SIZE:
        return False
    r, s, _v = _split(signature)
    if not (0 < r < _N and 0 < s <= _HALF_N):
        return False
    try:
        public_key.verify(
            utils.encode_dss_signature(r, s),
            keccak256(data),
            ec.ECDSA(utils.Prehashed(hashes.SHA256())),
        )
    except InvalidSignature:
        return False
    return True


def recover_public_key(data: bytes, signature: bytes) -> ec.EllipticCurvePublicKey:
    """The public key that made ``signature`` over ``keccak256(data)``, using v.

    v may be 0/1 or the Ethereum 27/28. Raises ``ValueError`` if no key can be
    recovered (malformed signature).
    """
    r, s, v = _split(signature)
    if v >= 27:
        v -= 27
    if v not in (0, 1):
        raise ValueError(f"recovery id must be 0 or 1 (or 27/28), got {signature[64]}")
    if not (0 < r < _N and 0 < s < _N):
        raise ValueError("r or s out of range")
    alpha = (pow(r, 3, _P) + 7) % _P
    y = pow(alpha, (_P + 1) // 4, _P)
    if y * y % _P != alpha:
        raise ValueError("r is not the x coordinate of a curve point")
    if y & 1 != v:
        y = _P - y
    z = int.from_bytes(keccak256(data), "big")
    r_inv = pow(r, -1, _N)
    q = _add(_mul(s * r_inv % _N, (r, y)), _mul(-z * r_inv % _N, _G))
    if q is None:
        raise ValueError("signature recovers the point at infinity")
    return ec.EllipticCurvePublicNumbers(q[0], q[1], ec.SECP256K1()).public_key()
