"""amop_trio: AMOP messaging for FISCO BCOS on Trio.

``open_amop`` connects a client to a node, ``open_node`` runs a node; the
sans-I/O codec lives in ``amop_trio.wire``. Every exception amop_trio raises
on purpose is exported here and derives from ``AmopError``.
"""

from typing import TYPE_CHECKING, Any

from ._chain import ConfigError as ConfigError
from ._client import AmopClient as AmopClient
from ._client import Message as Message
from ._client import MessageKind as MessageKind
from ._client import Subscription as Subscription
from ._client import SubscriptionStatistics as SubscriptionStatistics
from ._client import open_amop as open_amop
from ._errors import AmopError as AmopError
from ._errors import AmopTimeoutError as AmopTimeoutError
from ._errors import ClientClosedError as ClientClosedError
from ._errors import ConnectError as ConnectError
from ._errors import ConnectionLostError as ConnectionLostError
from ._errors import EncodeError as EncodeError
from ._errors import FrameTooLargeError as FrameTooLargeError
from ._errors import NoSubscriberError as NoSubscriberError
from ._errors import NotSupportedError as NotSupportedError
from ._errors import RejectedError as RejectedError
from ._errors import WireError as WireError
from ._node.limits import NodeLimits as NodeLimits
from ._node.limits import NodeStatistics as NodeStatistics
from ._node.server import Node as Node
from ._node.server import open_node as open_node
from ._wire.status import Status as Status

if TYPE_CHECKING:
    from ._security.certs import CertificateError as CertificateError
    from ._security.keys import KeyFileError as KeyFileError

__version__ = "0.1.0"

#: Exported, but imported on first use: their modules load ``cryptography``,
#: which a client without TLS or private topics never needs.
_LAZY = {
    "CertificateError": "._security.certs",
    "KeyFileError": "._security.keys",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
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
]
