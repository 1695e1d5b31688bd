"""Small helpers shared by the client and the node."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import trio

from ._errors import AmopError


def unwrap_group(exc: BaseException) -> BaseException:
    """The one meaningful exception inside (nested) exception groups.

    Cancellations are ignored when something else is there. Returns ``exc``
    unchanged when it is not a group or holds several real exceptions.
    """
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, trio.Cancelled)] or list(
            exc.exceptions
        )
        if len(inner) != 1:
            return exc
        exc = inner[0]
    return exc


@contextmanager
def unwrapped_errors() -> Iterator[None]:
    """Re-raise the single real exception of a nursery's group as itself.

    Users of ``open_amop`` and ``open_node`` see ``ConnectError`` or their own
    exception, not an ``ExceptionGroup`` wrapping it.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        error = unwrap_group(group)
        if error is group:
            raise
        context = error.__context__
        try:
            raise error
        finally:
            error.__context__ = context


def backoff_delay(attempt: int, *, base: float = 0.1, cap: float = 5.0) -> float:
    """Exponential backoff with full jitter: a random delay in [0, min(cap, base·2^attempt)]."""
    return random.uniform(0, min(cap, base * (2 ** min(attempt, 16))))


def as_bytes(data: bytes | bytearray | memoryview | str) -> bytes:
    """Message data as bytes; text is encoded as UTF-8."""
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)


T = TypeVar("T")


class Pending(Generic[T]):
    """One request awaiting its answer: resolved with a result or failed with an error."""

    __slots__ = ("error", "event", "result")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.result: T | None = None
        self.error: AmopError | None = None

    def resolve(self, result: T) -> None:
        if not self.event.is_set():
            self.result = result
            self.event.set()

    def fail(self, error: AmopError) -> None:
        if not self.event.is_set():
            self.error = error
            self.event.set()
