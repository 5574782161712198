"""What travels on each topic: its key, the envelope model(s) of its records, who may publish it.

The one table the API documentation (``deploy/local/gen_docs.py``) and the dead-letter tool read, so a new
topic in :mod:`tagline_contracts.topics` without an entry here fails their tests. Which Tagline service
publishes or consumes a topic is not recorded here: that is in the services' code (and their AsyncAPI
documents).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pydantic import BaseModel

from tagline_contracts import topics
from tagline_contracts.attributes import MemberUpdatedEvent, RfmScoredEvent
from tagline_contracts.deadletter import DeadLetter
from tagline_contracts.envelope import LineEventReceived
from tagline_contracts.live import LiveCommentRecord, OrderStatusRecord
from tagline_contracts.members import MemberChangedEvent
from tagline_contracts.orders import OrderEventRecord
from tagline_contracts.sending import SendRequested, SendResulted

DLQ_MARKER = ".dlq."


@dataclass(frozen=True, slots=True)
class TopicContract:
    """One logical topic: ``key`` says how records are keyed, ``messages`` the models a value may be."""

    name: str
    key: str
    messages: tuple[type[BaseModel], ...]
    summary: str
    external_producers: str | None = None
    """Who outside Tagline publishes to the topic, if anyone may."""


_TOPICS = (
    TopicContract(
        topics.LINE_EVENTS,
        "channel:sourceId",
        (LineEventReceived,),
        "Normalized LINE webhook events, one record per event (event_id = webhookEventId).",
    ),
    TopicContract(
        topics.MEMBER_ATTRIBUTES,
        "channel:userId",
        (MemberUpdatedEvent, RfmScoredEvent),
        "Facts about a member that do not come from LINE: attribute upserts, manual tags, RFM scores.",
        "CRM, POS, forms (attribute upserts, imports, manual tags)",
    ),
    TopicContract(
        topics.MEMBER_CHANGES,
        "channel:userId",
        (MemberChangedEvent,),
        "Every change of a member (followed, blocked, tagged, untagged, ...) with its full snapshot.",
    ),
    TopicContract(
        topics.SEND_REQUESTS,
        "channel:userId (one user) | channel:users | channel:segment",
        (SendRequested,),
        "What to send, to whom, why, under an idempotency key.",
        "any system that wants a LINE message sent (campaign tools, CRM)",
    ),
    TopicContract(
        topics.SEND_RESULTS,
        "channel:requestId",
        (SendResulted,),
        "What became of a send request: accepted, deferred or failed, with counts and cost.",
    ),
    TopicContract(
        topics.LIVE_COMMENTS,
        "channel:sessionId",
        (LiveCommentRecord,),
        "Viewer comments of a live stream (a comment id is applied once).",
        "stream platforms",
    ),
    TopicContract(
        topics.SHOP_ORDER_STATUS,
        "channel:orderId",
        (OrderStatusRecord,),
        "What the merchant's e-commerce backend says happened to an order: paid, shipped, archived, ...",
        "the merchant's e-commerce backend",
    ),
    TopicContract(
        topics.SHOP_ORDERS,
        "channel:userId",
        (OrderEventRecord,),
        "A buyer's order as it changes: placed, changed, paid, archived, points granted, ...",
        "other shop integrations",
    ),
)

CATALOG: Mapping[str, TopicContract] = MappingProxyType({t.name: t for t in _TOPICS})
"""Every topic of :data:`tagline_contracts.topics.ALL`, by logical name."""


def is_dlq(topic: str) -> bool:
    """Whether logical ``topic`` is a dead-letter topic (``<base>.dlq.v<n>``)."""
    return DLQ_MARKER in topic


def original_of(dlq_topic: str) -> str:
    """The topic a dead-letter topic belongs to: ``line.events.dlq.v1`` → ``line.events.v1``."""
    base, marker, version = dlq_topic.rpartition(DLQ_MARKER)
    if not marker or not base or not version:
        raise ValueError(f"{dlq_topic!r} is not a dead-letter topic")
    return f"{base}.{version}"


def contract(topic: str) -> TopicContract:
    """The contract of logical ``topic``; a dead-letter topic's records are :class:`DeadLetter`."""
    if is_dlq(topic):
        original = CATALOG[original_of(topic)]
        return TopicContract(
            topic,
            original.key,
            (DeadLetter,),
            f"Records of {original.name} a consumer could not apply, with the reason, keyed like the refused "
            "record (operators inspect and replay them: python -m tagline_platform.dlq).",
        )
    return CATALOG[topic]
