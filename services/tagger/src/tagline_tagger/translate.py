"""Contracts → :class:`~tagline_tagger.domain.activity.Activity` (what the member model and the rules see)."""

from __future__ import annotations

from typing import Any

from tagline_contracts.envelope import LineEventReceived
from tagline_contracts.webhook import (
    AccountLinkEvent,
    BeaconEvent,
    FollowEvent,
    MessageEvent,
    PostbackEvent,
    UnfollowEvent,
    UserSource,
    VideoPlayCompleteEvent,
)
from tagline_tagger.domain.activity import Activity, ActivityKind

NOT_MEMBER_EVENTS = frozenset(
    {
        "join",
        "leave",
        "memberJoined",
        "memberLeft",
        "activated",
        "deactivated",
        "botSuspended",
        "botResumed",
        "delivery",
    }
)
"""Event types about groups, rooms or the channel itself: they change no member."""


def member_activity(envelope: LineEventReceived) -> tuple[str, Activity] | None:
    """``(user_id, activity)`` for an event from a user in a 1:1 chat with the account, else ``None``."""
    event = envelope.payload
    source = event.source
    if not isinstance(source, UserSource) or not source.user_id or envelope.event_type in NOT_MEMBER_EVENTS:
        return None
    details: dict[str, Any]
    if isinstance(event, MessageEvent):
        text = getattr(event.message, "text", None)
        kind = ActivityKind.MESSAGE
        details = {"message_type": event.message.type, "text": text if isinstance(text, str) else None}
    elif isinstance(event, FollowEvent):
        kind, details = ActivityKind.FOLLOW, {"unblocked": event.follow.is_unblocked}
    elif isinstance(event, UnfollowEvent):
        kind, details = ActivityKind.UNFOLLOW, {}
    elif isinstance(event, PostbackEvent):
        kind, details = ActivityKind.POSTBACK, {"postback_data": event.postback.data}
    elif isinstance(event, BeaconEvent):
        kind, details = (
            ActivityKind.BEACON,
            {"beacon_hwid": event.beacon.hwid, "beacon_type": event.beacon.type},
        )
    elif isinstance(event, VideoPlayCompleteEvent):
        kind, details = (
            ActivityKind.VIDEO_PLAY_COMPLETE,
            {"video_tracking_id": event.video_play_complete.tracking_id},
        )
    elif isinstance(event, AccountLinkEvent):
        kind, details = ActivityKind.ACCOUNT_LINK, {"link_result": event.link.result}
    else:
        kind, details = ActivityKind.OTHER, {}
    reply_token = getattr(event, "reply_token", None)
    activity = Activity(
        kind=kind,
        event_id=envelope.event_id,
        at=envelope.occurred_at,  # the event's own timestamp (also on redelivery)
        event_type=envelope.event_type,
        active=envelope.mode == "active",
        reply_token=reply_token if isinstance(reply_token, str) else None,
        **details,
    )
    return source.user_id, activity
