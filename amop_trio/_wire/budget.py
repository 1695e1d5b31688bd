"""What a decoder asks before it buffers a frame it has only begun to receive.

A frame's header says how long it is before its body arrives. A decoder
given a ``BufferBudget`` asks it for that many bytes (what it holds for the
frame or message not complete yet) before it waits for them, and gives them
back once it is complete; a budget that cannot hold them makes the decoder
refuse the frame at once (``FrameTooLargeError``), so bytes that cannot be
afforded are never buffered. A node shares one budget among all its
clients' connections (``_node.budget``). Pure: no I/O.
"""

from __future__ import annotations

from typing import Protocol


class BufferBudget(Protocol):
    """One connection's share of a budget for bytes of frames not complete yet."""

    def hold(self, size: int) -> bool:
        """Hold ``size`` bytes from now on, in place of what was held; False if it cannot.

        ``hold(0)`` gives everything back and always succeeds. A refusal
        leaves what was held as it was.
        """
        ...
