"""What a member did, as the rules see it: one :class:`Activity` per LINE event, order event or send result.

Handlers translate contracts into activities (``tagline_tagger.translate``); rules and the member model only
ever see this shape, so they are tested without Kafka or LINE payloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class ActivityKind(StrEnum):
    MESSAGE = "message"
    FOLLOW = "follow"
    UNFOLLOW = "unfollow"
    POSTBACK = "postback"
    BEACON = "beacon"
    VIDEO_PLAY_COMPLETE = "videoPlayComplete"
    ACCOUNT_LINK = "accountLink"
    OTHER = "other"
    """Any other LINE event from the member (unsend, membership, an event type LINE added later, …)."""
    ORDER = "order"
    CAMPAIGN = "campaign"
    """A send to the member was accepted by LINE (from ``send.results.v1``)."""


@dataclass(frozen=True, slots=True)
class OrderFacts:
    order_id: str
    kind: str
    """An ``OrderEventKind`` value: placed, paid, returned, …"""
    amount: float
    live: bool
    """The order came from a live session."""
    total_spend: float
    """The member's total paid spend after this event (RFM monetary)."""


@dataclass(frozen=True, slots=True)
class Activity:
    kind: ActivityKind
    event_id: str
    at: datetime
    """When it happened (UTC, aware): LINE's ``timestamp``, the order change time, the send result time."""
    event_type: str = ""
    """The LINE event type as received (``message``, ``follow``, …, or a type LINE added later)."""
    message_type: str | None = None
    """For messages: ``text``, ``sticker``, ``image``, ``video``, ``audio``, ``file``, ``location``, …"""
    text: str | None = None
    reply_token: str | None = None
    active: bool = True
    """``mode`` was ``active``; nothing may be sent for a ``standby`` event."""
    unblocked: bool = False
    """Follow events: ``follow.isUnblocked``."""
    postback_data: str | None = None
    beacon_hwid: str | None = None
    beacon_type: str | None = None
    video_tracking_id: str | None = None
    link_result: str | None = None
    order: OrderFacts | None = None
    campaign: str | None = None
