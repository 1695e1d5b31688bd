"""JSON written the way FISCO BCOS nodes write it (jsoncpp), for answers SDKs read.

Real nodes serialise with jsoncpp, whose objects are ``std::map``s: keys come
out in bytewise order, whatever order they were set in. ``Json::FastWriter``
(every 2.x answer, the 3.x handshake answer) writes compact JSON and a
trailing newline; the 3.x JSON-RPC answers use a ``StreamWriterBuilder`` with
no indentation: compact, no newline. Non-ASCII text is written as raw UTF-8,
as jsoncpp 1.7 does (FISCO BCOS 2.x builds jsoncpp 1.7.7).

SDKs parse these bytes with their own JSON readers, so the order and the
newline rarely matter to them; writing the very bytes of a real node keeps
what they see (and what a recorded conversation replays) identical.
"""

from __future__ import annotations

import json
from typing import Any


def _compact(value: Any) -> bytes:
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    # A lone surrogate (JSON can spell "\ud800") has no UTF-8 form: keep it escaped.
    return text.encode("utf-8", "backslashreplace")


def fast_writer(value: Any) -> bytes:
    """``Json::FastWriter().write(value)``: compact, sorted keys, a trailing newline."""
    return _compact(value) + b"\n"


def stream_writer(value: Any) -> bytes:
    """jsoncpp's ``StreamWriterBuilder`` with ``indentation=""``: compact, sorted, no newline."""
    return _compact(value)
