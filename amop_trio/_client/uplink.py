"""The client's connection to one node, whatever its protocol.

``AmopClient`` works in terms of topics, data, ws ``Status`` codes and seqs;
an ``Uplink`` turns those into frames and back. ``WsUplink`` (``ws_uplink``)
speaks ws (PROTOCOL.md section 1, ``ws://``/``wss://`` endpoints), ``ChannelUplink``
(``channel_uplink``) the 2.x channel protocol (section 2, ``channel://``).
``decode`` turns each frame from the node into one ``Inbound`` event for the
client's reader: a ``Delivery`` for its subscriptions, an ``Answer`` to a
request, or a ``ChannelVerifyRequest`` (the node asks this publisher to
challenge a private-topic subscriber). Answers always carry a ws ``Status``:
a channel result code is converted, so the client raises the same errors over
both protocols.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import trio

from .._errors import (
    AmopTimeoutError,
    ConnectError,
    ConnectionLostError,
    FrameTooLargeError,
    NoSubscriberError,
    RejectedError,
    WireError,
)
from .._requests import Deadlines, Pending
from .._transport.connection import FrameConnection, FrameTransport
from .._wire.fisco2_json import (
    ChannelVerifyResult,
)
from .._wire.fisco3 import new_seq
from .._wire.status import Status
from .cutover import Cutover, Side
from .events import Answer, Inbound

#: Status codes of a timed-out request: amop_trio's 1000, a 3.x node's -4008 (no answer
#: from the subscriber within 30 s).
_TIMEOUT_STATUSES = frozenset({Status.TIMEOUT, Status.SUBSCRIBER_TIMEOUT})
_NO_SUBSCRIBER_STATUSES = frozenset({Status.NO_SUBSCRIBER_NODE, Status.NO_SUBSCRIBER_CLIENT})


class Uplink(FrameConnection):
    """One live connection to a node, with the requests in flight on it."""

    def __init__(
        self, sock: FrameTransport, endpoint: str, outbox_size: int, max_frame_size: int
    ) -> None:
        super().__init__(sock, name=endpoint, outbox_size=outbox_size)
        self.endpoint = endpoint
        #: Whether the node answers each multicast (amop_trio nodes and 2.x nodes do).
        self.acks_multicast = False
        #: Whether a topic set sent replaces the last one (amop_trio and 2.x nodes);
        #: a 3.x node only ever adds topics until the connection closes.
        self.topics_replace = True
        #: Whether the node enforces private topics (2.x nodes, amop_trio nodes).
        self.private_topics = True
        self.max_frame_size = max_frame_size
        #: The largest frame this uplink sends: the node's limit when it says, else ours.
        self.max_send_size = max_frame_size
        self.pending: dict[bytes, Pending[Answer]] = {}
        #: Times out requests given a deadline (the client's).
        self.deadlines: Deadlines | None = None
        #: The client's topic version last sent on this uplink, and the topics the node holds.
        self.topics_version = -1
        self.topics_sent: frozenset[str] = frozenset()
        #: Unicasts delivered on this uplink whose reply has not gone out yet.
        self.unanswered = 0
        self._settled = trio.Event()
        #: While this uplink is being replaced, what decides which multicasts it delivers.
        self.cutover: Cutover | None = None
        self.cutover_side = Side.OLD

    async def request(self, seq: bytes, frame: bytes, deadline: float = math.inf) -> Answer:
        """Send ``frame`` and wait for the answer to ``seq``.

        Past ``deadline`` (trio time), ``AmopTimeoutError``; that needs
        ``deadlines`` set, or the caller's own cancel scope.
        """
        if self.closed:
            raise ConnectionLostError(f"connection to {self.endpoint} lost: {self.reason}")
        self.check_size(frame)
        waiter: Pending[Answer] = Pending()
        self.pending[seq] = waiter
        if deadline < math.inf and self.deadlines is not None:
            self.deadlines.add(deadline, waiter)
        try:
            await self._send_by(frame, deadline)
            await waiter.wait()
        finally:
            self.pending.pop(seq, None)
            self._note_settled()
        if waiter.error is not None:
            raise waiter.error
        assert waiter.result is not None
        return waiter.result

    def resolve(self, answer: Answer) -> bool:
        """Hand ``answer`` to the request waiting for it; False if none is."""
        waiter = self.pending.pop(answer.seq, None)
        if waiter is None:
            return False
        waiter.resolve(answer)
        return True

    def on_close(self, reason: str) -> None:
        for waiter in self.pending.values():
            waiter.fail(ConnectionLostError(f"connection to {self.endpoint} lost: {reason}"))
        self.pending.clear()
        self._note_settled()

    async def publish(self, topic: str, data: bytes, deadline: float = math.inf) -> Answer:
        """Unicast and wait for the reply; ``EncodeError`` if the protocol cannot carry it."""
        seq = new_seq()
        return await self.request(seq, self.unicast_frame(seq, topic, data), deadline)

    async def broadcast(self, topic: str, data: bytes, deadline: float = math.inf) -> Answer | None:
        """Multicast; the node's answer, or None from a node that sends none."""
        seq = new_seq()
        frame = self.multicast_frame(seq, topic, data)
        if self.acks_multicast:
            return await self.request(seq, frame, deadline)
        self.check_size(frame)
        if self.closed:
            raise ConnectionLostError(f"connection to {self.endpoint} lost: {self.reason}")
        await self._send_by(frame, deadline)
        return None

    def check_size(self, frame: bytes) -> None:
        """``FrameTooLargeError`` for a frame the node would refuse; nothing is sent."""
        if len(frame) > self.max_send_size:
            raise FrameTooLargeError(
                f"message of {len(frame)} bytes on the wire exceeds the node's limit of "
                f"{self.max_send_size} bytes; nothing was sent"
            )

    def reply_sent(self) -> None:
        """A unicast delivered on this uplink has been answered."""
        self.unanswered -= 1
        self._note_settled()

    def _note_settled(self) -> None:
        self._settled.set()
        self._settled = trio.Event()

    @property
    def idle(self) -> bool:
        """No request waits on this uplink and every unicast it delivered is answered."""
        return not self.pending and self.unanswered <= 0

    async def wait_idle(self) -> None:
        """Return once the uplink is ``idle`` or closed."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not (self.idle or self.closed):
            await self._settled.wait()

    async def _send_by(self, frame: bytes, deadline: float) -> None:
        """Send now if the outbox has room, else wait for room until ``deadline``.

        Not a cancel point when it sends at once: its callers are.
        """
        if self.send_nowait(frame):
            return  # noqa: ASYNC910 - the hot path: every caller is a cancel point already
        with trio.move_on_at(deadline) as scope:
            await self.send(frame)
        if scope.cancelled_caught:
            raise AmopTimeoutError(f"the outbox to {self.endpoint} stayed full")

    # -- what each protocol defines -------------------------------------------

    def decode(self, data: bytes) -> Inbound:
        """One frame from the node as an event; ``WireError`` if it is not a frame."""
        raise NotImplementedError

    def unicast_frame(self, seq: bytes, topic: str, data: bytes) -> bytes:
        raise NotImplementedError

    def multicast_frame(self, seq: bytes, topic: str, data: bytes) -> bytes:
        raise NotImplementedError

    def reply_frame(self, seq: bytes, topic: str, data: bytes, status: int = 0) -> bytes:
        """The answer to the unicast ``seq`` on ``topic`` (a failure if ``status``)."""
        raise NotImplementedError

    def verify_result_frame(self, result: ChannelVerifyResult) -> bytes:
        raise NotImplementedError

    async def send_topics(self, topics: Sequence[str]) -> Answer | None:
        """Send the complete topic set; the node's answer, if it sends one."""
        raise NotImplementedError

    async def node_status(self, topics_from: int = 0) -> Answer:
        """Ask an amop_trio node for its status, listing its topics from ``topics_from`` on."""
        raise NotImplementedError


def check_answer(answer: Answer, topic: str) -> None:
    """Raise the typed error a failure answer stands for; nothing for success."""
    status = answer.status
    if status == 0:
        return
    detail = answer.payload[:1000].decode("utf-8", "replace")
    if status in _TIMEOUT_STATUSES:
        raise AmopTimeoutError(
            f"the subscriber of {topic!r} did not reply in time (status {status})"
        )
    if status in _NO_SUBSCRIBER_STATUSES:
        raise NoSubscriberError(status, detail or f"nobody subscribes to {topic!r}")
    raise RejectedError(status, detail)


async def first_answer(sock: FrameTransport, uplink: Uplink, seq: bytes, timeout: float) -> Answer:
    """The node's answer to the handshake ``seq``; other frames before it are skipped."""
    with trio.fail_after(timeout):
        while True:
            event = uplink.decode(await sock.receive())
            if isinstance(event, Answer) and event.seq == seq:
                return event


_Info = TypeVar("_Info")


async def handshake(
    uplink: Uplink,
    url: str,
    seq: bytes,
    request: bytes,
    accept: Callable[[Answer], _Info],
    timeout: float,
) -> _Info:
    """Send the handshake, read its answer, and let ``accept`` judge it.

    On any failure the socket is closed and the error said as a ``ConnectError``.
    """
    sock = uplink.sock
    try:
        await sock.send_many((request,))
        try:
            return accept(await first_answer(sock, uplink, seq, timeout))
        except WireError as exc:
            raise ConnectError(f"node at {url} sent an invalid handshake answer: {exc}") from None
    except (ConnectError, trio.TooSlowError, WireError, ConnectionLostError) as exc:
        with trio.CancelScope(shield=True):
            await sock.aclose()
        raise handshake_error(exc, url, timeout) from None
    except BaseException:
        with trio.CancelScope(shield=True):
            await sock.aclose()
        raise


def handshake_error(exc: Exception, url: str, timeout: float) -> ConnectError:
    """The ``ConnectError`` a handshake that failed with ``exc`` raises."""
    if isinstance(exc, ConnectError):
        return exc
    if isinstance(exc, trio.TooSlowError):
        return ConnectError(f"node at {url} did not answer the handshake within {timeout:g} s")
    hint = ""
    if url.startswith("channel://"):
        hint = " (a TLS port? pass certs or an ssl_context)"
    return ConnectError(f"handshake with {url} failed: {exc}{hint}")
