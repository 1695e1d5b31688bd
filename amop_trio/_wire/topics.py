"""Wire names of private topics (PROTOCOL.md section 3), shared by client and node."""

from __future__ import annotations

import uuid

PRIVATE_PREFIX = "#!$TopicNeedVerify_"
VERIFY_PREFIX = "#!$VerifyChannel_"
PUSH_PREFIX = "#!$PushChannel_"


def private_topic(topic: str) -> str:
    """The wire name of private topic ``topic``."""
    return topic if topic.startswith(PRIVATE_PREFIX) else PRIVATE_PREFIX + topic


def is_private(topic: str) -> bool:
    return topic.startswith(PRIVATE_PREFIX)


def is_private_family(topic: str) -> bool:
    """Whether ``topic`` is a private topic, or one of the topics that serve private topics."""
    return topic.startswith((PRIVATE_PREFIX, VERIFY_PREFIX, PUSH_PREFIX))


def new_challenge_topic(private: str) -> str:
    """A subscriber's own challenge topic for the private topic ``private`` (wire name)."""
    return f"{VERIFY_PREFIX}{private}_{uuid.uuid4().hex}"


def private_of_challenge(challenge: str) -> str | None:
    """The private topic a challenge topic belongs to, or None if it is not one."""
    if not challenge.startswith(VERIFY_PREFIX):
        return None
    topic, sep, token = challenge[len(VERIFY_PREFIX) :].rpartition("_")
    if not sep or len(token) != 32 or not is_private(topic):
        return None
    return topic
