"""LINE webhook event samples shaped as in ``webhook.yml``: one per event type and message subtype.

``SAMPLES`` maps a name to (event JSON, the contract model it must parse to). Shared by the contracts tests
and by every service that normalizes or consumes webhook events.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tagline_contracts import webhook as wh

DESTINATION = "U" + "f" * 32
USER_ID = "U4af4980629" + "0" * 22
OTHER_USER_ID = "U91eeaf62d9" + "1" * 22
GROUP_ID = "Ca56f94637c" + "2" * 22
ROOM_ID = "Ra8dbf4673c" + "3" * 22
USER = {"type": "user", "userId": USER_ID}
GROUP = {"type": "group", "groupId": GROUP_ID, "userId": USER_ID}
ROOM = {"type": "room", "roomId": ROOM_ID, "userId": USER_ID}


def event(kind: str, source: dict[str, Any] | None = USER, **fields: Any) -> dict[str, Any]:
    """A webhook event with the common fields of webhook.yml's ``Event``."""
    common: dict[str, Any] = {
        "type": kind,
        "mode": "active",
        "timestamp": 1_700_000_000_000,
        "webhookEventId": "01HZX8Q4YB2V7W9F3K5M6N7P8R",
        "deliveryContext": {"isRedelivery": False},
    }
    if source is not None:
        common["source"] = source
    return common | fields


def message(content: dict[str, Any], source: dict[str, Any] = USER) -> dict[str, Any]:
    return event("message", source, replyToken="b60d432864f44d079f6d8efe86cf404b", message=content)


TEXT: dict[str, Any] = {
    "type": "text",
    "id": "468789577898262530",
    "quoteToken": "q3Plxr4AgKd...",
    "quotedMessageId": "468789532432007169",
    "markAsReadToken": "30yhdy232...",
    "text": "@All @example Good Morning!! (love)",
    "emojis": [{"index": 29, "length": 6, "productId": "5ac1bfd5040ab15980c9b435", "emojiId": "001"}],
    "mention": {
        "mentionees": [
            {"index": 0, "length": 4, "type": "all"},
            {"index": 5, "length": 8, "userId": OTHER_USER_ID, "type": "user", "isSelf": False},
        ]
    },
}
IMAGE: dict[str, Any] = {
    "type": "image",
    "id": "354718705033693861",
    "quoteToken": "yHAz4Ua2wx7...",
    "contentProvider": {"type": "line"},
    "imageSet": {
        "id": "E005D41A7288F41B65593ED38FF6E9834B046AB36A37921A56BC236F13A91855",
        "index": 2,
        "total": 2,
    },
}
VIDEO: dict[str, Any] = {
    "type": "video",
    "id": "325708",
    "quoteToken": "yHAz4Ua2wx7...",
    "duration": 60000,
    "contentProvider": {
        "type": "external",
        "originalContentUrl": "https://example.com/original.mp4",
        "previewImageUrl": "https://example.com/preview.jpg",
    },
}
AUDIO: dict[str, Any] = {
    "type": "audio",
    "id": "325708",
    "duration": 60000,
    "contentProvider": {"type": "line"},
}
FILE: dict[str, Any] = {"type": "file", "id": "325708", "fileName": "file.txt", "fileSize": 2138}
LOCATION: dict[str, Any] = {
    "type": "location",
    "id": "325708",
    "title": "my location",
    "address": "1-3 Kioicho, Chiyoda-ku, Tokyo, 102-8282, Japan",
    "latitude": 35.67966,
    "longitude": 139,
}
STICKER: dict[str, Any] = {
    "type": "sticker",
    "id": "1501597916",
    "quoteToken": "q3Plxr4AgKd...",
    "stickerId": "52002738",
    "packageId": "11537",
    "stickerResourceType": "MESSAGE",
    "keywords": ["Anticipation", "Sparkle", "Straight face", "Staring", "Thinking"],
    "text": "Let's hang out this weekend!",
}

SAMPLES: dict[str, tuple[dict[str, Any], type[BaseModel]]] = {
    "message-text": (message(TEXT, GROUP), wh.MessageEvent),
    "message-image": (message(IMAGE), wh.MessageEvent),
    "message-video": (message(VIDEO), wh.MessageEvent),
    "message-audio": (message(AUDIO), wh.MessageEvent),
    "message-file": (message(FILE, ROOM), wh.MessageEvent),
    "message-location": (message(LOCATION), wh.MessageEvent),
    "message-sticker": (message(STICKER), wh.MessageEvent),
    "unsend": (event("unsend", GROUP, unsend={"messageId": "325708"}), wh.UnsendEvent),
    "follow": (
        event("follow", replyToken="85cbe770fa8b4f45bbe077b1d4be4a36", follow={"isUnblocked": True}),
        wh.FollowEvent,
    ),
    "unfollow": (event("unfollow", mode="standby"), wh.UnfollowEvent),
    "join": (
        event("join", {"type": "group", "groupId": GROUP_ID}, replyToken="0f3779fba3b349968c5d07db31eab56f"),
        wh.JoinEvent,
    ),
    "leave": (event("leave", {"type": "group", "groupId": GROUP_ID}), wh.LeaveEvent),
    "memberJoined": (
        event(
            "memberJoined",
            {"type": "group", "groupId": GROUP_ID},
            replyToken="0f3779fba3b349968c5d07db31eabf65",
            joined={"members": [USER, {"type": "user", "userId": OTHER_USER_ID}]},
        ),
        wh.MemberJoinedEvent,
    ),
    "memberLeft": (
        event("memberLeft", {"type": "room", "roomId": ROOM_ID}, left={"members": [USER]}),
        wh.MemberLeftEvent,
    ),
    "postback": (
        event(
            "postback",
            replyToken="b60d432864f44d079f6d8efe86cf404b",
            postback={"data": "storeId=12345", "params": {"datetime": "2017-12-25T01:00"}},
        ),
        wh.PostbackEvent,
    ),
    "postback-richmenu": (
        event(
            "postback",
            postback={
                "data": "richmenu-changed-to-b",
                "params": {"newRichMenuAliasId": "richmenu-alias-b", "status": "SUCCESS"},
            },
        ),
        wh.PostbackEvent,
    ),
    "videoPlayComplete": (
        event(
            "videoPlayComplete",
            replyToken="nHuyWiB7yP5Zw52FIkcQobQuGDXCTA",
            videoPlayComplete={"trackingId": "track-id"},
        ),
        wh.VideoPlayCompleteEvent,
    ),
    "beacon": (
        event(
            "beacon",
            replyToken="nHuyWiB7yP5Zw52FIkcQobQuGDXCTA",
            beacon={"hwid": "d41d8cd98f", "type": "enter", "dm": "1234567890abcdef"},
        ),
        wh.BeaconEvent,
    ),
    "accountLink": (
        event(
            "accountLink",
            replyToken="b60d432864f44d079f6d8efe86cf404b",
            link={"result": "ok", "nonce": "xxxxxxxxxxxxxxx"},
        ),
        wh.AccountLinkEvent,
    ),
    "membership-joined": (
        event("membership", replyToken="r1", membership={"type": "joined", "membershipId": 3189}),
        wh.MembershipEvent,
    ),
    "membership-left": (
        event("membership", replyToken="r2", membership={"type": "left", "membershipId": 3189}),
        wh.MembershipEvent,
    ),
    "membership-renewed": (
        event("membership", replyToken="r3", membership={"type": "renewed", "membershipId": 3189}),
        wh.MembershipEvent,
    ),
    "module-attached": (
        event(
            "module",
            None,
            module={
                "type": "attached",
                "botId": "U" + "e" * 32,
                "scopes": ["message:send", "message:receive"],
            },
        ),
        wh.ModuleEvent,
    ),
    "module-detached": (
        event("module", None, module={"type": "detached", "botId": "U" + "e" * 32, "reason": "bot_deleted"}),
        wh.ModuleEvent,
    ),
    "activated": (event("activated", chatControl={"expireAt": 1_700_000_600_000}), wh.ActivatedEvent),
    "deactivated": (event("deactivated", mode="standby"), wh.DeactivatedEvent),
    "botSuspended": (event("botSuspended", None), wh.BotSuspendedEvent),
    "botResumed": (event("botResumed", None), wh.BotResumedEvent),
    "delivery": (event("delivery", delivery={"data": "wwdf0a5e2f0b6..."}), wh.PnpDeliveryCompletionEvent),
}
