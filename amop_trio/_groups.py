"""Exception groups from nurseries, unwrapped so users see the one error that matters."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio


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
