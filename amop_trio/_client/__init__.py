"""The AMOP client: ``open_amop``, subscriptions, unicast and multicast.

One module per job: ``client`` (the public API and ``open_amop``),
``config`` (endpoints, TLS, limits), ``subscription`` (queues and the topic
registry), ``message``, ``private`` (private topics), ``supervisor`` (the
connection kept up), ``uplink`` with ``ws_uplink`` and ``channel_uplink`` (one
connection in each protocol).
"""

from .client import AmopClient as AmopClient
from .client import open_amop as open_amop
from .config import find_sdk_certs as find_sdk_certs
from .message import Message as Message
from .message import MessageKind as MessageKind
from .subscription import Subscription as Subscription
from .subscription import SubscriptionStatistics as SubscriptionStatistics
