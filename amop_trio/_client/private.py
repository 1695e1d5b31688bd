"""Private topics, on the client's side (PROTOCOL.md section 3).

A subscriber proves an approved key by signing the random bytes publishers
send to its challenge topic (``answer_challenges``). A publisher declares the
keys it approves (``PrivatePublisher``); its node then asks it to challenge
each subscriber on another node, and it reports the verdict back.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING

import trio

from .._errors import AmopError
from .._log import log_event
from .._wire.fisco2_json import (
    ChannelVerifyRequest,
    ChannelVerifyResult,
)
from .message import MessageKind

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from .subscription import Subscription

logger = logging.getLogger("amop_trio.client")


async def answer_challenges(challenges: Subscription, key: ec.EllipticCurvePrivateKey) -> None:
    """Sign every challenge a publisher sends to this subscriber's challenge topic."""
    from .._security.keys import sign_recoverable

    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        async for message in challenges:
            if message.kind is MessageKind.UNICAST:
                with contextlib.suppress(AmopError):
                    await message.reply(sign_recoverable(key, message.data))
    except AmopError:
        return  # the subscription ended with an error: its owner sees it


class PrivatePublisher:
    """The private topics this client publishes: the keys it approves for each."""

    def __init__(self) -> None:
        #: wire topic -> (approved keys, the registration that tells the node).
        self._topics: dict[str, tuple[list[ec.EllipticCurvePublicKey], Subscription]] = {}

    def registration(self, wire_topic: str) -> Subscription | None:
        entry = self._topics.get(wire_topic)
        return entry[1] if entry is not None else None

    def declare(
        self, wire_topic: str, keys: list[ec.EllipticCurvePublicKey], registration: Subscription
    ) -> None:
        self._topics[wire_topic] = (keys, registration)

    def new_challenge(self, request: ChannelVerifyRequest) -> bytes | None:
        """Random bytes to challenge the subscriber of ``request`` with; None if not ours."""
        if request.topic not in self._topics:
            return None
        return os.urandom(16)

    def verdict(
        self, request: ChannelVerifyRequest, challenge: bytes, signature: bytes
    ) -> ChannelVerifyResult:
        """Whether ``signature`` over ``challenge`` comes from an approved key, for the node."""
        from .._security.keys import verify_signature

        keys = self._topics[request.topic][0] if request.topic in self._topics else []
        verified = any(verify_signature(key, challenge, signature) for key in keys)
        log_event(
            logger, logging.INFO, "subscriber_checked", topic=request.topic, verified=verified
        )
        return ChannelVerifyResult(
            0 if verified else 1, request.node_id, request.topic, request.topic_for_cert
        )
