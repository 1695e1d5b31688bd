"""Structured, quiet-by-default logging: ``event key=value …`` lines.

Nothing here configures handlers; the ``amop`` command does, applications
decide for themselves.
"""

from __future__ import annotations

import logging
from typing import Any


def _format_value(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="'):
        return '"' + text.replace('"', '\\"') + '"'
    return text


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``event`` with ``fields`` as ``key=value`` pairs, if the level is on."""
    if logger.isEnabledFor(level):
        pairs = " ".join(f"{k}={_format_value(v)}" for k, v in fields.items())
        logger.log(level, "%s %s", event, pairs) if pairs else logger.log(level, "%s", event)
