"""amop_trio's handshake opt-in (``_wire/extensions.py``) and jsoncpp's bytes (``jsoncpp.py``)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from amop_trio._wire.extensions import Grant, requested_extras
from amop_trio._wire.jsoncpp import fast_writer, stream_writer


def test_fast_writer_sorts_keys_and_ends_with_a_newline() -> None:
    value = {"protocolVersion": 2, "groupInfoList": [], "groupBlockNumber": [{"group0": 1}]}
    assert fast_writer(value) == (
        b'{"groupBlockNumber":[{"group0":1}],"groupInfoList":[],"protocolVersion":2}\n'
    )
    assert stream_writer({"b": 1, "a": None}) == b'{"a":null,"b":1}'
    # Keys by UTF-8 bytes (std::map): upper case before lower case, ASCII before the rest.
    assert fast_writer({"b": 0, "B": 0, "é": 0, "a b": 0}) == (
        '{"B":0,"a b":0,"b":0,"é":0}\n'.encode()
    )
    # Non-ASCII text stays raw UTF-8; a lone surrogate stays escaped, still valid JSON.
    assert fast_writer(["主题"]) == '["主题"]\n'.encode()
    assert json.loads(fast_writer(["\ud800"])) == ["\ud800"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_fast_writer_round_trips(value: Any) -> None:
    assert json.loads(fast_writer(value)) == value
    assert fast_writer(value).count(b"\n") == 1


def test_requested_extras_only_from_a_list_of_names() -> None:
    assert requested_extras({"amopTrio": ["acks", "status", 1, None]}) == {"acks", "status"}
    for value in (None, True, 1, "acks", {"acks": True}):
        assert requested_extras({"amopTrio": value}) == frozenset()
    assert requested_extras({"amopAcks": True}) == frozenset()


def test_grant_round_trip_and_lenient_reading() -> None:
    grant = Grant(frozenset({"status", "acks"}), "node-1", 1 << 25)
    assert grant.to_json() == {
        "extras": ["acks", "status"],
        "maxFrameSize": 1 << 25,
        "nodeId": "node-1",
    }
    assert Grant.from_json(json.loads(json.dumps(grant.to_json()))) == grant
    assert Grant.from_json([1]) is None
    assert Grant.from_json({"extras": "acks", "maxFrameSize": True, "nodeId": 3}) == Grant(
        frozenset()
    )
