"""amop_trio's WebSocket codec and wsproto's agree on every stream of frames.

hypothesis builds streams of frames as a client sends them (masked) or as a
server does (unmasked): messages split into fragments with control frames
between them, text cut inside characters, Close frames with every kind of
code and reason (valid, reserved, local-only, one byte, not UTF-8), and
frames with a forged field (a longer length form than needed, the top bit
of a 64-bit length, reserved bits, reserved opcodes, the wrong masking).
The stream is fed to both decoders in the same chunks, cut anywhere, inside
headers too. After every chunk, while neither has refused the stream, both
must have produced the same messages, pings, pongs and Close; at the end
both must have refused it, with the same close code, or both accepted it.

wsproto has no size or fragment limit, so the streams stay far below
amop_trio's. ``AMOP_WSPROTO_EXAMPLES`` sets the number of streams (400 by
default, always the same ones, so a CI run is repeatable).
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from amop_trio._wire import rfc6455 as ws

EXAMPLES = int(os.environ.get("AMOP_WSPROTO_EXAMPLES", "400"))

#: What a decoder made of a stream after each chunk: the events so far, and the close
#: code of its refusal (None while it has not refused).
Progress = list[tuple[list[tuple[Any, ...]], int | None]]
Decoder = Callable[[list[bytes], bool], Progress]


def run_wsproto(chunks: list[bytes], client: bool) -> Progress:
    conn = Connection(ConnectionType.CLIENT if client else ConnectionType.SERVER)
    events: list[tuple[Any, ...]] = []
    data, text = b"", ""
    failure: int | None = None
    progress: Progress = []
    for chunk in chunks:
        if failure is None:
            conn.receive_data(chunk)
            for event in conn.events():
                if isinstance(event, CloseConnection):
                    if conn.state is ConnectionState.REMOTE_CLOSING:
                        events.append(("close", int(event.code), event.reason or ""))
                    else:  # wsproto says a parse failure with a CloseConnection to send
                        failure = int(event.code)
                elif isinstance(event, BytesMessage):
                    data += event.data
                    if event.message_finished:
                        events.append(("binary", data))
                        data = b""
                elif isinstance(event, TextMessage):
                    text += event.data
                    if event.message_finished:
                        events.append(("text", text))
                        text = ""
                elif isinstance(event, Ping):
                    events.append(("ping", bytes(event.payload)))
                elif isinstance(event, Pong):
                    events.append(("pong", bytes(event.payload)))
        progress.append((list(events), failure))
    return progress


def run_amop(chunks: list[bytes], client: bool) -> Progress:
    conn = ws.WsConnection(client=client, max_message=1 << 20)
    events: list[tuple[Any, ...]] = []
    failure: int | None = None
    progress: Progress = []
    for chunk in chunks:
        conn.feed(chunk)
        try:
            while (event := conn.next_event()) is not None:
                if event.opcode == ws.BINARY:
                    events.append(("binary", event.payload))
                elif event.opcode == ws.TEXT:
                    events.append(("text", event.payload.decode()))
                elif event.opcode == ws.PING:
                    events.append(("ping", event.payload))
                elif event.opcode == ws.PONG:
                    events.append(("pong", event.payload))
                elif event.opcode == ws.CLOSE:
                    events.append(("close", *ws.close_code(event.payload)))
        except ws.WebSocketError as exc:
            failure = exc.close_code
        progress.append((list(events), failure))
    return progress


def divergence(
    stream: bytes, cuts: list[int], client: bool, ours: Decoder = run_amop
) -> str | None:
    """How amop_trio's decoder and wsproto's disagree on ``stream``; None if they agree."""
    bounds = sorted({0, len(stream), *(c for c in cuts if 0 < c < len(stream))})
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)] or [b""]
    mine, theirs = ours(chunks, client), run_wsproto(chunks, client)
    for i, ((my_events, my_fail), (their_events, their_fail)) in enumerate(
        zip(mine, theirs, strict=True)
    ):
        if my_fail is None and their_fail is None and my_events != their_events:
            return f"after chunk {i}: amop_trio {my_events!r:.300}, wsproto {their_events!r:.300}"
    (my_events, my_fail), (their_events, their_fail) = mine[-1], theirs[-1]
    if my_fail != their_fail:
        return f"amop_trio refused with {my_fail}, wsproto with {their_fail}"
    if my_events != their_events:
        return f"at the end: amop_trio {my_events!r:.300}, wsproto {their_events!r:.300}"
    return None


# -- the streams --------------------------------------------------------------------------

CODES = [0, 999, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010, 1011]
CODES += [1012, 1013, 1014, 1015, 1016, 2000, 2999, 3000, 3999, 4000, 4999, 5000, 65535]
BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xe2\x82"]


def forge(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool,
    length_bytes: int | None = None,
    key: bytes = b"\x37\xfa\x21\x3d",
) -> bytes:
    size = len(payload)
    shortest = 0 if size < 126 else 2 if size < 65536 else 8
    length_bytes = max(shortest, length_bytes or 0)
    mask_bit = 0x80 if masked else 0
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    if length_bytes == 0:
        head += bytes([mask_bit | size])
    elif length_bytes == 2:
        head += bytes([mask_bit | 126]) + struct.pack(">H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack(">Q", size)
    if not masked or not payload:
        return head + (key if masked else b"") + payload
    pad = int.from_bytes(key * (size // 4 + 1), "big") >> 8 * (4 - size % 4)
    return head + key + (int.from_bytes(payload, "big") ^ pad).to_bytes(size, "big")


payloads = st.one_of(
    st.binary(max_size=40),
    st.integers(min_value=120, max_value=300).map(bytes),
    st.integers(min_value=65530, max_value=65540).map(bytes),
)
#: Text of 1- to 4-byte characters. Drawn from a list: hypothesis draws text a
#: character at a time, which would make most of this test's run time.
TEXTS = [
    "",
    "AMOP",
    "caf\u00e9",
    "\u4e2d\u6587\u6d88\u606f",
    "\U0001f600 \U00010348",
    "\u00e9\u4e2d\U0001f600" * 8,
    "\ufeff\ufffd\u07ff\u0800\uffff\U0010ffff",
]
TEXT_BYTES = [text.encode() for text in TEXTS]
texts = st.one_of(
    st.sampled_from(TEXT_BYTES),
    st.tuples(st.sampled_from(TEXT_BYTES), st.sampled_from(BAD_UTF8), st.sampled_from(TEXTS)).map(
        lambda t: t[0] + t[1] + t[2].encode()
    ),
    st.binary(max_size=20),
)
close_payloads = st.one_of(
    st.just(b""),
    st.binary(min_size=1, max_size=1),
    st.tuples(
        st.sampled_from(CODES) | st.integers(min_value=0, max_value=65535),
        st.sampled_from(TEXT_BYTES[:5] + BAD_UTF8) | st.binary(max_size=8),
    ).map(lambda t: struct.pack(">H", t[0]) + t[1]),
)


@st.composite
def frames(draw: st.DrawFn, masked: bool) -> list[bytes]:
    """One item of a stream: a message in fragments with control frames between, a
    control frame, or a frame with a forged field."""
    kind = draw(st.sampled_from(["message"] * 4 + ["control"] * 2 + ["forged"]))
    key = draw(st.sampled_from([b"\x00\x00\x00\x00", b"\x37\xfa\x21\x3d", b"\xff\x80\x01\xaa"]))
    form = st.sampled_from([None] * 6 + [2, 8])
    if kind == "forged":
        opcode = draw(st.integers(min_value=0, max_value=15))
        if draw(st.integers(min_value=0, max_value=7)) == 0:  # the top bit of a 64-bit length
            head = bytes([0x80 | opcode, (0x80 if masked else 0) | 127])
            return [head + struct.pack(">Q", draw(st.integers(1 << 63, (1 << 64) - 1)))]
        payload = draw(close_payloads if opcode == ws.CLOSE else payloads)
        return [
            forge(
                opcode,
                payload,
                fin=draw(st.booleans()),
                rsv=draw(st.sampled_from([0, 0, 0, 1, 2, 4, 7])),
                masked=masked != draw(st.sampled_from([False] * 5 + [True])),
                length_bytes=draw(form),
                key=key,
            )
        ]
    if kind == "control":
        opcode = draw(st.sampled_from([ws.PING, ws.PONG, ws.CLOSE]))
        payload = draw(close_payloads if opcode == ws.CLOSE else st.binary(max_size=125))
        return [forge(opcode, payload, masked=masked, length_bytes=draw(form), key=key)]
    opcode = draw(st.sampled_from([ws.BINARY, ws.TEXT]))
    payload = draw(texts if opcode == ws.TEXT else payloads)
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
    pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    out = []
    for i, piece in enumerate(pieces):
        out.append(
            forge(
                ws.CONTINUATION if i else opcode,
                piece,
                fin=i == len(pieces) - 1,
                masked=masked,
                length_bytes=draw(form),
                key=key,
            )
        )
        if i < len(pieces) - 1 and draw(st.integers(min_value=0, max_value=2)) == 0:
            ping = draw(st.sampled_from([ws.PING, ws.PONG]))
            out.append(forge(ping, draw(st.binary(max_size=10)), masked=masked, key=key))
    return out


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[int], bool]:
    """(the stream, where to cut it, whether the decoder is the client)."""
    client = draw(st.booleans())
    items = draw(st.lists(frames(masked=not client), min_size=1, max_size=6))
    stream = b"".join(b"".join(item) for item in items)
    cuts = draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=12))
    return stream, cuts, client


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(streams())
def test_amop_trio_and_wsproto_agree_on_frame_streams(case: tuple[bytes, list[int], bool]) -> None:
    stream, cuts, client = case
    assert divergence(stream, cuts, client) is None


@settings(max_examples=EXAMPLES // 3, deadline=None, derandomize=True)
@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=6), st.booleans())
def test_amop_trio_and_wsproto_agree_on_random_bytes(
    stream: bytes, cuts: list[int], client: bool
) -> None:
    assert divergence(stream, cuts, client) is None


def test_the_comparison_sees_a_divergence() -> None:
    """A decoder that lets any close code through is caught."""

    def lenient(chunks: list[bytes], client: bool) -> Progress:
        return run_amop([chunks[0].replace(b"\x03\xe7", b"\x03\xe8")], client)

    assert divergence(forge(ws.CLOSE, b"\x03\xe7", masked=False), [], True) is None
    stream = forge(ws.CLOSE, b"\x03\xe7", masked=False)  # code 999
    assert divergence(stream, [], True, ours=lenient) is not None
