"""What a subscription hands out: a ``Message``, and the reply a unicast owes."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import trio

from .._errors import AmopError

if TYPE_CHECKING:
    from .uplink import Uplink

#: What ``publish``, ``broadcast`` and ``reply`` take as message data; text goes as UTF-8.
Data = bytes | bytearray | memoryview | str


def as_bytes(data: Data) -> bytes:
    """Message data as bytes; text is encoded as UTF-8."""
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)


class MessageKind(enum.Enum):
    """How a message was sent: to one subscriber, or to all of them."""

    UNICAST = "unicast"
    MULTICAST = "multicast"


class Message:
    """A message received on a subscription.

    ``topic`` and ``data`` are what the publisher sent; ``kind`` says whether
    it was a unicast or a multicast. A unicast expects exactly one
    ``await message.reply(data)``; when the application moves on without
    replying, the subscription sends an empty reply so the publisher never
    waits in vain.
    """

    __slots__ = ("_replied", "_seq", "_uplink", "_wire_topic", "data", "kind", "topic")

    def __init__(
        self,
        topic: str,
        data: bytes,
        kind: MessageKind,
        uplink: Uplink,
        seq: bytes,
        wire_topic: str,
    ) -> None:
        self.topic = topic
        self.data = data
        self.kind = kind
        self._uplink = uplink
        self._seq = seq
        self._wire_topic = wire_topic
        self._replied = kind is MessageKind.MULTICAST

    def __repr__(self) -> str:
        return f"<Message {self.kind.value} topic={self.topic!r} data={self.data[:32]!r}>"

    @property
    def replied(self) -> bool:
        """True once the message needs no reply any more."""
        return self._replied

    def reply_frame(self, data: bytes, status: int = 0) -> bytes:
        """The frame answering this unicast on the connection it came by."""
        return self._uplink.reply_frame(self._seq, self._wire_topic, data, status)

    async def reply(self, data: Data) -> None:
        """Answer a unicast; the publisher's ``publish`` returns ``data``.

        A cancel point; a schedule point only when the connection's outbox is
        full and the reply waits for room.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.kind is not MessageKind.UNICAST:
            raise AmopError("only unicast messages take a reply; this one was a multicast")
        if self._replied:
            raise AmopError(f"this message on topic {self.topic!r} has already been answered")
        uplink = self._uplink
        frame = self.reply_frame(as_bytes(data))
        uplink.check_size(frame)
        self._replied = True
        try:
            if not uplink.send_nowait(frame):  # the outbox is full: wait for room
                await uplink.send(frame)
        finally:
            uplink.reply_sent()

    def settle(self, status: int = 0) -> None:
        """Answer with an empty reply (or a failure status) if nobody did; never blocks."""
        if not self._replied:
            self._replied = True
            self._uplink.send_nowait(self.reply_frame(b"", status))
            self._uplink.reply_sent()
