"""Contracts → :class:`~tagline_tagger.domain.activity.Activity` (what the member model and the rules see)."""

from __future__ import annotations

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
    at = envelope.occurred_at  # the event's own timestamp (also on redelivery)
    common = {
        "event_id": envelope.event_id,
        "at": at,
        "event_type": envelope.event_type,
        "active": envelope.mode == "active",
    }
    activity: Activity
    if isinstance(event, MessageEvent):
        text = getattr(event.message, "text", None)
        activity = Activity(
            kind=ActivityKind.MESSAGE,
            message_type=event.message.type,
            text=text if isinstance(text, str) else None,
            reply_token=event.reply_token,
            **common,  # type: ignore[arg-type]
        )
    elif isinstance(event, FollowEvent):
        activity = Activity(
            kind=ActivityKind.FOLLOW,
            unblocked=event.follow.is_unblocked,
            reply_token=event.reply_token,
            **common,  # type: ignore[arg-type]
        )
    elif isinstance(event, UnfollowEvent):
        activity = Activity(kind=ActivityKind.UNFOLLOW, **common)  # type: ignore[arg-type]
    elif isinstance(event, PostbackEvent):
        activity = Activity(
            kind=ActivityKind.POSTBACK,
            postback_data=event.postback.data,
            reply_token=event.reply_token,
            **common,  # type: ignore[arg-type]
        )
    elif isinstance(event, BeaconEvent):
        activity = Activity(
            kind=ActivityKind.BEACON,
            beacon_hwid=event.beacon.hwid,
            beacon_type=event.beacon.type,
            reply_token=event.reply_token,
            **common,  # type: ignore[arg-type]
        )
    elif isinstance(event, VideoPlayCompleteEvent):
        activity = Activity(
            kind=ActivityKind.VIDEO_PLAY_COMPLETE,
            video_tracking_id=event.video_play_complete.tracking_id,
            reply_token=event.reply_token,
            **common,  # type: ignore[arg-type]
        )
    elif isinstance(event, AccountLinkEvent):
        activity = Activity(
            kind=ActivityKind.ACCOUNT_LINK,
            link_result=event.link.result,
            reply_token=event.reply_token,
            **common,  # type: ignore[arg-type]
        )
    else:
        activity = Activity(kind=ActivityKind.OTHER, **common)  # type: ignore[arg-type]
    return source.user_id, activity
