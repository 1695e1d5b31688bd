"""The public names: what ``amop_trio`` and ``amop_trio.wire`` export, pinned.

A name added to or dropped from the public API fails here, so it is a decision,
not an accident; every exported name is importable, including the lazy ones.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

import amop_trio
from amop_trio import wire

PUBLIC = {
    "AmopClient",
    "AmopError",
    "AmopTimeoutError",
    "CertificateError",
    "ClientClosedError",
    "ConfigError",
    "ConnectError",
    "ConnectionLostError",
    "EncodeError",
    "FrameTooLargeError",
    "KeyFileError",
    "Message",
    "MessageKind",
    "NoSubscriberError",
    "Node",
    "NodeLimits",
    "NodeStatistics",
    "NotSupportedError",
    "RejectedError",
    "Status",
    "Subscription",
    "SubscriptionStatistics",
    "WireError",
    "open_amop",
    "open_node",
}

WIRE = {
    "DEFAULT_MAX_FRAME_SIZE",
    "EXT_RESPONSE",
    "AmopBody",
    "Frame",
    "HandshakeRequest",
    "HandshakeResponse",
    "PacketType",
    "Status",
    "decode_amop_body",
    "decode_frame",
    "decode_subtopic",
    "describe_status",
    "encode_amop_body",
    "encode_frame",
    "encode_subtopic",
    "new_seq",
}


def public_names(module: types.ModuleType) -> set[str]:
    """Public names of ``dir(module)`` that amop_trio defines (not submodules, not typing's)."""
    return {
        name
        for name in dir(module)
        if not name.startswith("_")
        and not isinstance(getattr(module, name), types.ModuleType)
        and str(getattr(getattr(module, name), "__module__", "")).startswith("amop_trio")
    }


def test_amop_trio_exports_exactly_its_public_api() -> None:
    assert set(amop_trio.__all__) == PUBLIC
    assert len(amop_trio.__all__) == len(PUBLIC)  # no name listed twice
    for name in amop_trio.__all__:
        assert getattr(amop_trio, name) is not None, name
    # Nothing public that __all__ does not list (the lazy ones appear once used).
    assert public_names(amop_trio) <= PUBLIC


def test_every_error_is_an_amop_error() -> None:
    errors = [getattr(amop_trio, n) for n in PUBLIC if n.endswith("Error")]
    assert errors
    for error in errors:
        assert issubclass(error, amop_trio.AmopError), error


def test_the_lazy_names_are_the_library_own_and_unknown_names_are_refused() -> None:
    from amop_trio._chain import ConfigError
    from amop_trio._security.certs import CertificateError
    from amop_trio._security.keys import KeyFileError

    assert amop_trio.CertificateError is CertificateError
    assert amop_trio.KeyFileError is KeyFileError
    assert amop_trio.ConfigError is ConfigError
    with pytest.raises(AttributeError, match="no attribute 'Nonesuch'"):
        amop_trio.Nonesuch  # noqa: B018


def test_the_wire_module_exports_exactly_the_codec() -> None:
    assert {name for name in dir(wire) if not name.startswith("_")} == WIRE
    assert wire.Status is amop_trio.Status
    for name in WIRE:
        value = getattr(wire, name)
        module = getattr(value, "__module__", "amop_trio._wire")
        assert module.startswith("amop_trio._wire"), (name, module)


def test_star_imports_give_the_same_names() -> None:
    namespace: dict[str, object] = {}
    exec("from amop_trio import *", namespace)
    assert set(namespace) - {"__builtins__"} == PUBLIC
    namespace = {}
    exec("from amop_trio.wire import *", namespace)
    assert set(namespace) - {"__builtins__"} == WIRE


def test_a_plain_client_import_does_not_load_cryptography() -> None:
    """The lazy names keep ``cryptography`` out of a client that needs no TLS or keys."""
    code = "import sys, amop_trio, amop_trio.wire; print('cryptography' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert importlib.import_module("amop_trio").KeyFileError.__name__ == "KeyFileError"
