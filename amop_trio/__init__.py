"""amop_trio: AMOP messaging for FISCO BCOS on Trio.

``open_amop`` connects a client to a node, ``open_node`` runs a node; the
sans-I/O codec lives in ``amop_trio.wire``.
"""

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

__version__ = "0.1.0"

__all__ = [
    "AmopClient",
    "AmopError",
    "AmopTimeoutError",
    "ClientClosedError",
    "ConnectError",
    "ConnectionLostError",
    "EncodeError",
    "FrameTooLargeError",
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
    "open_amop",
    "open_node",
]
