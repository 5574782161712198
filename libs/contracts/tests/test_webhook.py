"""The webhook models against LINE's webhook.yml: coverage, parsing, round trips, unknown types, rejects."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from tagline_contracts import line_openapi
from tagline_contracts import webhook as wh
from tagline_contracts.base import dump_line
from tagline_contracts.webhook import (
    EVENT_TYPES,
    WEBHOOK_EVENT_ADAPTER,
    CallbackRequest,
    DeliveryContext,
    EventMode,
    FollowDetail,
    FollowEvent,
    UnknownEvent,
    parse_callback,
    parse_event,
    parse_event_json,
)
from tagline_testing.webhook_samples import (
    DESTINATION,
    FILE,
    GROUP,
    GROUP_ID,
    IMAGE,
    OTHER_USER_ID,
    ROOM,
    ROOM_ID,
    SAMPLES,
    STICKER,
    TEXT,
    USER,
    USER_ID,
    event,
    message,
)

# ----------------------------------------------------------------------------------------------------
# The spec


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    """The component schemas of LINE's webhook.yml (package data of tagline-contracts)."""
    loaded: dict[str, Any] = yaml.safe_load(
        line_openapi.spec(line_openapi.WEBHOOK).read_text(encoding="utf-8")
    )
    schemas: dict[str, Any] = loaded["components"]["schemas"]
    return schemas


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _resolve(schemas: dict[str, Any], name: str) -> tuple[dict[str, Any], set[str]]:
    """All properties and required names of a schema, following ``allOf``."""
    schema = schemas[name]
    properties: dict[str, Any] = {}
    required: set[str] = set()
    for part in [*schema.get("allOf", []), schema]:
        if "$ref" in part:
            inherited, inherited_required = _resolve(schemas, _ref_name(part["$ref"]))
            properties |= inherited
            required |= inherited_required
        else:
            properties |= part.get("properties", {})
            required |= set(part.get("required", []))
    return properties, required


SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "CallbackRequest": wh.CallbackRequest,
    "Event": wh.BaseEvent,
    "DeliveryContext": wh.DeliveryContext,
    "UserSource": wh.UserSource,
    "GroupSource": wh.GroupSource,
    "RoomSource": wh.RoomSource,
    "MessageEvent": wh.MessageEvent,
    "ContentProvider": wh.ContentProvider,
    "TextMessageContent": wh.TextMessageContent,
    "Emoji": wh.Emoji,
    "Mention": wh.Mention,
    "UserMentionee": wh.UserMentionee,
    "AllMentionee": wh.AllMentionee,
    "ImageMessageContent": wh.ImageMessageContent,
    "ImageSet": wh.ImageSet,
    "VideoMessageContent": wh.VideoMessageContent,
    "AudioMessageContent": wh.AudioMessageContent,
    "FileMessageContent": wh.FileMessageContent,
    "LocationMessageContent": wh.LocationMessageContent,
    "StickerMessageContent": wh.StickerMessageContent,
    "UnsendEvent": wh.UnsendEvent,
    "UnsendDetail": wh.UnsendDetail,
    "FollowEvent": wh.FollowEvent,
    "FollowDetail": wh.FollowDetail,
    "UnfollowEvent": wh.UnfollowEvent,
    "JoinEvent": wh.JoinEvent,
    "LeaveEvent": wh.LeaveEvent,
    "MemberJoinedEvent": wh.MemberJoinedEvent,
    "JoinedMembers": wh.JoinedMembers,
    "MemberLeftEvent": wh.MemberLeftEvent,
    "LeftMembers": wh.LeftMembers,
    "PostbackEvent": wh.PostbackEvent,
    "PostbackContent": wh.PostbackContent,
    "VideoPlayCompleteEvent": wh.VideoPlayCompleteEvent,
    "VideoPlayComplete": wh.VideoPlayComplete,
    "BeaconEvent": wh.BeaconEvent,
    "BeaconContent": wh.BeaconContent,
    "AccountLinkEvent": wh.AccountLinkEvent,
    "LinkContent": wh.LinkContent,
    "MembershipEvent": wh.MembershipEvent,
    "JoinedMembershipContent": wh.JoinedMembershipContent,
    "LeftMembershipContent": wh.LeftMembershipContent,
    "RenewedMembershipContent": wh.RenewedMembershipContent,
    "ModuleEvent": wh.ModuleEvent,
    "AttachedModuleContent": wh.AttachedModuleContent,
    "DetachedModuleContent": wh.DetachedModuleContent,
    "ActivatedEvent": wh.ActivatedEvent,
    "ChatControl": wh.ChatControl,
    "DeactivatedEvent": wh.DeactivatedEvent,
    "BotSuspendedEvent": wh.BotSuspendedEvent,
    "BotResumedEvent": wh.BotResumedEvent,
    "PnpDeliveryCompletionEvent": wh.PnpDeliveryCompletionEvent,
    "PnpDelivery": wh.PnpDelivery,
}
"""Each concrete schema of webhook.yml and its model."""

# Discriminated base schemas: their properties are checked through the concrete schemas that extend them.
UNION_SCHEMAS: dict[str, tuple[Any, frozenset[str]]] = {
    "Event": (wh.WebhookEvent, wh.EVENT_TYPES),
    "Source": (wh.Source, wh.SOURCE_TYPES),
    "MessageContent": (wh.MessageContent, wh.MESSAGE_CONTENT_TYPES),
    "Mentionee": (wh.Mentionee, wh.MENTIONEE_TYPES),
    "MembershipContent": (wh.MembershipContent, wh.MEMBERSHIP_CONTENT_TYPES),
    "ModuleContent": (wh.ModuleContent, wh.MODULE_CONTENT_TYPES),
}

ENUM_SCHEMAS: dict[str, type[Any]] = {"EventMode": wh.EventMode}
ENUMS: dict[tuple[str, str], type[Any]] = {
    ("ContentProvider", "type"): wh.ContentProviderType,
    ("StickerMessageContent", "stickerResourceType"): wh.StickerResourceType,
    ("BeaconContent", "type"): wh.BeaconEventType,
    ("LinkContent", "result"): wh.LinkResult,
}


def _union_members(union: Any) -> dict[str, type[BaseModel]]:
    """``Tag`` → model of an ``Annotated[A | B | ..., Discriminator]`` alias."""
    members: dict[str, type[BaseModel]] = {}
    for member in typing.get_args(typing.get_args(union)[0]):
        model, tag = typing.get_args(member)
        members[tag.tag] = model
    return members


def test_event_types_equal_the_spec(spec: dict[str, Any]) -> None:
    assert set(EVENT_TYPES) == set(spec["Event"]["discriminator"]["mapping"])


@pytest.mark.parametrize("schema_name", sorted(UNION_SCHEMAS))
def test_every_discriminated_union_matches_the_spec(spec: dict[str, Any], schema_name: str) -> None:
    union, known = UNION_SCHEMAS[schema_name]
    mapping = {tag: _ref_name(ref) for tag, ref in spec[schema_name]["discriminator"]["mapping"].items()}
    members = _union_members(union)
    assert set(known) == set(mapping), f"{schema_name}: spec types differ from the models"
    unknown = members.pop(wh._UNKNOWN)
    assert unknown.__name__.startswith("Unknown")
    assert set(members) == set(mapping)
    for tag, model in members.items():
        assert model is SCHEMA_MODELS[mapping[tag]], f"{schema_name}[{tag}] is {model.__name__}"
        assert model.model_fields["type"].default == tag


def test_every_spec_schema_has_a_model(spec: dict[str, Any]) -> None:
    unmapped = set(spec) - set(SCHEMA_MODELS) - set(UNION_SCHEMAS) - set(ENUM_SCHEMAS)
    assert not unmapped, f"schemas in webhook.yml without a model: {sorted(unmapped)}"


# Required in webhook.yml but optional here: LINE leaves reply tokens out in standby mode, and rejecting one
# event would answer 400 for the whole request and lose every other event in it.
DELIBERATELY_OPTIONAL = frozenset({"replyToken", "quoteToken"})


@pytest.mark.parametrize("schema_name", sorted(SCHEMA_MODELS))
def test_model_fields_and_aliases_match_the_spec(spec: dict[str, Any], schema_name: str) -> None:
    model = SCHEMA_MODELS[schema_name]
    properties, required = _resolve(spec, schema_name)
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    assert set(fields) == set(properties), f"{model.__name__}: wire keys differ from webhook.yml"
    for key, field in fields.items():
        if key == "type" and field.default is not None and not field.is_required():
            continue  # discriminator literal with its own value as default: required in practice
        if key in DELIBERATELY_OPTIONAL:
            assert not field.is_required()
            continue
        assert field.is_required() == (key in required), f"{model.__name__}.{key}: required differs"


def test_enums_match_the_spec(spec: dict[str, Any]) -> None:
    for name, enum in ENUM_SCHEMAS.items():
        assert {member.value for member in enum} == set(spec[name]["enum"]), name
    for (schema_name, key), enum in ENUMS.items():
        values = _resolve(spec, schema_name)[0][key]["enum"]
        assert {member.value for member in enum} == set(values), f"{schema_name}.{key}"


def test_samples_cover_every_event_and_message_type() -> None:
    kinds = {sample["type"] for sample, _ in SAMPLES.values()}
    messages = {sample["message"]["type"] for sample, _ in SAMPLES.values() if sample["type"] == "message"}
    assert kinds == set(EVENT_TYPES)
    assert messages == set(wh.MESSAGE_CONTENT_TYPES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_parses_to_its_model_and_round_trips(name: str) -> None:
    sample, model = SAMPLES[name]
    parsed = parse_event(sample)
    assert type(parsed) is model
    assert parsed.type == sample["type"]
    assert parsed.webhook_event_id == sample["webhookEventId"]
    assert dump_line(parsed) == sample
    assert parse_event_json(json.dumps(sample)) == parsed


def test_callback_with_every_sample_round_trips() -> None:
    body = {"destination": DESTINATION, "events": [sample for sample, _ in SAMPLES.values()]}
    request = parse_callback(json.dumps(body).encode())
    assert request.destination == DESTINATION
    assert [type(e) for e in request.events] == [model for _, model in SAMPLES.values()]
    assert dump_line(request) == body
    assert json.loads(request.model_dump_json(by_alias=True, exclude_none=True)) == body


def test_connectivity_check_has_no_events() -> None:
    assert parse_callback(b'{"destination": "' + DESTINATION.encode() + b'", "events": []}').events == []


MESSAGE_CONTENT_MODELS = {
    "text": wh.TextMessageContent,
    "image": wh.ImageMessageContent,
    "video": wh.VideoMessageContent,
    "audio": wh.AudioMessageContent,
    "file": wh.FileMessageContent,
    "location": wh.LocationMessageContent,
    "sticker": wh.StickerMessageContent,
}


@pytest.mark.parametrize("kind", sorted(MESSAGE_CONTENT_MODELS))
def test_message_content_types(kind: str) -> None:
    parsed = parse_event(SAMPLES[f"message-{kind}"][0])
    assert isinstance(parsed, wh.MessageEvent)
    assert type(parsed.message) is MESSAGE_CONTENT_MODELS[kind]
    assert parsed.reply_token == "b60d432864f44d079f6d8efe86cf404b"


def _parse(name: str) -> Any:
    return parse_event(SAMPLES[name][0])


def test_text_fields() -> None:
    text = _parse("message-text").message
    assert isinstance(text, wh.TextMessageContent)
    assert text.text.startswith("@All")
    assert text.quote_token == "q3Plxr4AgKd..."
    assert text.quoted_message_id == "468789532432007169"
    assert text.mark_as_read_token == "30yhdy232..."
    assert text.emojis == [
        wh.Emoji(index=29, length=6, product_id="5ac1bfd5040ab15980c9b435", emoji_id="001")
    ]
    assert text.mention is not None
    everyone, user = text.mention.mentionees
    assert isinstance(everyone, wh.AllMentionee)
    assert (everyone.index, everyone.length) == (0, 4)
    assert isinstance(user, wh.UserMentionee)
    assert (user.user_id, user.is_self, user.index, user.length) == (OTHER_USER_ID, False, 5, 8)


def test_media_fields() -> None:
    image = _parse("message-image").message
    assert isinstance(image, wh.ImageMessageContent)
    assert image.content_provider.type == wh.ContentProviderType.LINE
    assert image.image_set == wh.ImageSet(id=IMAGE["imageSet"]["id"], index=2, total=2)
    video = _parse("message-video").message
    assert isinstance(video, wh.VideoMessageContent)
    assert video.duration == 60000
    assert video.content_provider.type == "external"
    assert video.content_provider.original_content_url == "https://example.com/original.mp4"
    assert video.content_provider.preview_image_url == "https://example.com/preview.jpg"
    audio = _parse("message-audio").message
    assert isinstance(audio, wh.AudioMessageContent)
    assert audio.duration == 60000
    file = _parse("message-file").message
    assert isinstance(file, wh.FileMessageContent)
    assert (file.file_name, file.file_size) == ("file.txt", 2138)
    location = _parse("message-location").message
    assert isinstance(location, wh.LocationMessageContent)
    assert (location.latitude, location.longitude, location.title) == (35.67966, 139.0, "my location")


def test_sticker_fields() -> None:
    sticker = _parse("message-sticker").message
    assert isinstance(sticker, wh.StickerMessageContent)
    assert (sticker.package_id, sticker.sticker_id) == ("11537", "52002738")
    assert sticker.sticker_resource_type == wh.StickerResourceType.MESSAGE
    assert sticker.keywords is not None
    assert "Sparkle" in sticker.keywords
    assert sticker.text == "Let's hang out this weekend!"


def test_sticker_resource_type_accepts_values_added_later() -> None:
    sample = message(STICKER | {"stickerResourceType": "ANIMATED_3D"})
    parsed = parse_event(sample)
    assert isinstance(parsed, wh.MessageEvent)
    assert isinstance(parsed.message, wh.StickerMessageContent)
    assert parsed.message.sticker_resource_type == "ANIMATED_3D"
    assert dump_line(parsed) == sample


def test_event_details() -> None:
    assert _parse("follow").follow.is_unblocked is True
    assert _parse("unfollow").mode == EventMode.STANDBY
    assert _parse("unsend").unsend.message_id == "325708"
    assert [m.user_id for m in _parse("memberJoined").joined.members] == [USER_ID, OTHER_USER_ID]
    assert [m.user_id for m in _parse("memberLeft").left.members] == [USER_ID]
    assert _parse("videoPlayComplete").video_play_complete.tracking_id == "track-id"
    beacon = _parse("beacon").beacon
    assert (beacon.hwid, beacon.type, beacon.dm) == (
        "d41d8cd98f",
        wh.BeaconEventType.ENTER,
        "1234567890abcdef",
    )
    assert _parse("accountLink").link.result == wh.LinkResult.OK
    assert _parse("activated").chat_control.expire_at == 1_700_000_600_000
    assert _parse("delivery").delivery.data == "wwdf0a5e2f0b6..."


def test_postback_params() -> None:
    picked = _parse("postback").postback
    assert picked.data == "storeId=12345"
    assert picked.params == wh.PostbackParams(datetime="2017-12-25T01:00")
    assert picked.params.date is None
    switched = _parse("postback-richmenu")
    assert switched.reply_token is None
    assert switched.postback.params.new_rich_menu_alias_id == "richmenu-alias-b"
    assert switched.postback.params.status == "SUCCESS"


def test_postback_params_keep_keys_added_later() -> None:
    sample = event("postback", postback={"data": "d", "params": {"date": "2017-12-25", "color": "red"}})
    parsed = parse_event(sample)
    assert isinstance(parsed, wh.PostbackEvent)
    params = parsed.postback.params
    assert params is not None
    assert params.date == "2017-12-25"
    assert params.model_extra == {"color": "red"}
    assert dump_line(parsed) == sample


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        ("joined", wh.JoinedMembershipContent),
        ("left", wh.LeftMembershipContent),
        ("renewed", wh.RenewedMembershipContent),
    ],
)
def test_membership_content(kind: str, model: type[Any]) -> None:
    membership = _parse(f"membership-{kind}").membership
    assert type(membership) is model
    assert membership.membership_id == 3189


def test_module_content() -> None:
    attached = _parse("module-attached").module
    assert isinstance(attached, wh.AttachedModuleContent)
    assert attached.scopes == ["message:send", "message:receive"]
    detached = _parse("module-detached").module
    assert isinstance(detached, wh.DetachedModuleContent)
    assert detached.reason == "bot_deleted"


@pytest.mark.parametrize(
    ("source", "source_id", "user_id"),
    [
        (USER, USER_ID, USER_ID),
        ({"type": "user"}, None, None),
        (GROUP, GROUP_ID, USER_ID),
        ({"type": "group", "groupId": GROUP_ID}, GROUP_ID, None),
        (ROOM, ROOM_ID, USER_ID),
        ({"type": "room", "roomId": ROOM_ID}, ROOM_ID, None),
        (None, None, None),
        ({"type": "square", "squareChatId": "S1"}, None, None),
        ({"type": "square", "squareChatId": "S1", "userId": USER_ID}, None, USER_ID),
    ],
    ids=[
        "user",
        "user-no-id",
        "group",
        "group-no-user",
        "room",
        "room-no-user",
        "none",
        "unknown",
        "unknown-with-user",
    ],
)
def test_source_and_user_ids(
    source: dict[str, Any] | None, source_id: str | None, user_id: str | None
) -> None:
    for sample in (event("unfollow", source), event("messageEdited", source)):
        parsed = parse_event(sample)
        assert (parsed.source_id, parsed.user_id) == (source_id, user_id)
        assert dump_line(parsed) == sample


# ----------------------------------------------------------------------------------------------------
# Types and fields LINE adds later

MESSAGE_EDITED = event(
    "messageEdited",
    replyToken="r",
    message={"type": "text", "id": "1", "text": "edited", "editedAt": 1_700_000_000_100},
    somethingNew={"nested": [1, 2.5, None, True, "x"]},
    raw="a key that happens to be called raw",
)


def test_unknown_event_type_is_kept_raw() -> None:
    parsed = parse_event(MESSAGE_EDITED)
    assert isinstance(parsed, UnknownEvent)
    assert parsed.type == "messageEdited"
    assert parsed.raw == MESSAGE_EDITED
    assert parsed.timestamp == 1_700_000_000_000
    assert parsed.mode is EventMode.ACTIVE
    assert parsed.webhook_event_id == "01HZX8Q4YB2V7W9F3K5M6N7P8R"
    assert parsed.delivery_context == DeliveryContext(is_redelivery=False)
    assert parsed.source_id == USER_ID
    assert dump_line(parsed) == MESSAGE_EDITED
    assert parsed.model_dump() == MESSAGE_EDITED
    assert json.loads(parsed.model_dump_json()) == MESSAGE_EDITED
    assert WEBHOOK_EVENT_ADAPTER.dump_python(parsed, mode="json") == MESSAGE_EDITED


def test_unknown_event_round_trips_inside_a_callback() -> None:
    body = {"destination": DESTINATION, "events": [MESSAGE_EDITED, SAMPLES["follow"][0]]}
    request = parse_callback(json.dumps(body).encode())
    assert [type(e) for e in request.events] == [UnknownEvent, FollowEvent]
    assert json.loads(request.model_dump_json(by_alias=True, exclude_none=True)) == body
    assert parse_callback(request.model_dump_json().encode()) == request


def test_unknown_event_with_invalid_common_fields_still_parses() -> None:
    sample = {
        "type": "x",
        "timestamp": "soon",
        "mode": "paused",
        "source": {"userId": 1},
        "deliveryContext": 3,
    }
    parsed = parse_event(sample)
    assert isinstance(parsed, UnknownEvent)
    assert (parsed.timestamp, parsed.mode, parsed.source, parsed.delivery_context) == (None, None, None, None)
    assert parsed.webhook_event_id is None
    assert dump_line(parsed) == sample


@pytest.mark.parametrize(
    ("content", "model"),
    [
        ({"type": "poll", "id": "42", "question": "?"}, wh.UnknownMessageContent),
        (
            {"type": "text", "id": "1", "text": "hi", "quoteToken": "q", "new": {"a": None}},
            wh.TextMessageContent,
        ),
    ],
    ids=["unknown-type", "unknown-field"],
)
def test_message_content_added_later(content: dict[str, Any], model: type[BaseModel]) -> None:
    sample = message(content)
    parsed = parse_event(sample)
    assert isinstance(parsed, wh.MessageEvent)
    assert type(parsed.message) is model
    assert parsed.message.id == content["id"]
    assert dump_line(parsed) == sample


def test_unknown_message_content_keeps_raw() -> None:
    sample = message({"type": "poll", "id": "42", "choices": [{"label": "a", "votes": None}]})
    parsed = parse_event(sample)
    assert isinstance(parsed, wh.MessageEvent)
    assert isinstance(parsed.message, wh.UnknownMessageContent)
    assert parsed.message.raw == sample["message"]
    assert dump_line(parsed) == sample


@pytest.mark.parametrize(
    ("sample", "attribute", "model"),
    [
        (
            event(
                "follow",
                {"type": "square", "squareChatId": "S1"},
                replyToken="r",
                follow={"isUnblocked": False},
            ),
            "source",
            wh.UnknownSource,
        ),
        (
            event("membership", replyToken="r", membership={"type": "paused", "membershipId": 7}),
            "membership",
            wh.UnknownMembershipContent,
        ),
        (
            event("module", None, module={"type": "suspended", "botId": "Ub"}),
            "module",
            wh.UnknownModuleContent,
        ),
    ],
    ids=["source", "membership", "module"],
)
def test_unknown_nested_types_keep_raw(sample: dict[str, Any], attribute: str, model: type[Any]) -> None:
    parsed = parse_event(sample)
    nested = getattr(parsed, attribute)
    assert type(nested) is model
    assert nested.raw == sample[attribute]
    assert dump_line(parsed) == sample


def test_unknown_mentionee_keeps_raw() -> None:
    mentionee = {"type": "bot", "index": 0, "length": 4, "botId": "Ub"}
    sample = message(
        {"type": "text", "id": "1", "text": "@bot", "quoteToken": "q", "mention": {"mentionees": [mentionee]}}
    )
    parsed = parse_event(sample)
    assert isinstance(parsed, wh.MessageEvent)
    assert isinstance(parsed.message, wh.TextMessageContent)
    assert parsed.message.mention is not None
    (only,) = parsed.message.mention.mentionees
    assert isinstance(only, wh.UnknownMentionee)
    assert (only.index, only.length, only.raw) == (0, 4, mentionee)
    assert dump_line(parsed) == sample


def test_unknown_membership_reads_its_id() -> None:
    parsed = parse_event(
        event("membership", replyToken="r", membership={"type": "paused", "membershipId": 7})
    )
    assert isinstance(parsed, wh.MembershipEvent)
    assert isinstance(parsed.membership, wh.UnknownMembershipContent)
    assert parsed.membership.membership_id == 7


def test_fields_added_later_are_kept_everywhere() -> None:
    sample = event(
        "follow",
        {"type": "user", "userId": USER_ID, "language": "zh-TW"},
        replyToken="r",
        follow={"isUnblocked": False, "route": "qr"},
        deliveryContext={"isRedelivery": True, "attempt": 2},
        newTopLevel={"a": [1, {"b": "c"}]},
    )
    parsed = parse_event(sample)
    assert isinstance(parsed, FollowEvent)
    assert parsed.model_extra == {"newTopLevel": {"a": [1, {"b": "c"}]}}
    assert parsed.follow.model_extra == {"route": "qr"}
    assert parsed.delivery_context.is_redelivery is True
    assert parsed.delivery_context.model_extra == {"attempt": 2}
    assert dump_line(parsed) == sample


@settings(max_examples=300)
@given(data=st.data())
def test_any_object_with_an_unknown_type_round_trips(data: st.DataObject) -> None:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text()
    )
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )
    common_keys = st.sampled_from(
        ["timestamp", "mode", "webhookEventId", "deliveryContext", "source", "raw", "replyToken", "message"]
    )
    looks_valid = st.sampled_from(
        [1_700_000_000_000, "active", "standby", {"isRedelivery": True}, USER, GROUP]
    )
    obj = data.draw(st.dictionaries(common_keys | st.text(max_size=12), values | looks_valid, max_size=8))
    obj["type"] = data.draw(st.text().filter(lambda kind: kind not in EVENT_TYPES))

    parsed = parse_event(obj)
    assert isinstance(parsed, UnknownEvent)
    assert parsed.raw == obj
    assert dump_line(parsed) == obj
    from_json = parse_event_json(json.dumps(obj))
    assert json.loads(from_json.model_dump_json()) == obj


# ----------------------------------------------------------------------------------------------------
# Construction in Python and invalid input


def test_built_in_python_and_dumped_as_line_json() -> None:
    follow = FollowEvent(
        timestamp=1,
        mode=EventMode.ACTIVE,
        webhook_event_id="01HZX8Q4YB2V7W9F3K5M6N7P8R",
        delivery_context=DeliveryContext(is_redelivery=False),
        source=wh.UserSource(user_id=USER_ID),
        reply_token="r",
        follow=FollowDetail(is_unblocked=False),
    )
    unknown = UnknownEvent.model_validate(MESSAGE_EDITED)
    request = CallbackRequest(destination=DESTINATION, events=[follow, unknown])
    dumped = dump_line(request)
    assert dumped["events"][0]["webhookEventId"] == "01HZX8Q4YB2V7W9F3K5M6N7P8R"
    assert dumped["events"][0]["follow"] == {"isUnblocked": False}
    assert dumped["events"][1] == MESSAGE_EDITED
    assert parse_callback(json.dumps(dumped).encode()) == request


def test_models_are_frozen() -> None:
    parsed = _parse("follow")
    with pytest.raises(ValidationError):
        parsed.timestamp = 2


def _body(*events: Any) -> bytes:
    return json.dumps({"destination": DESTINATION, "events": list(events)}).encode()


FOLLOW = SAMPLES["follow"][0]
INVALID_BODIES: dict[str, bytes] = {
    "not-json": b"not json",
    "empty": b"",
    "truncated": _body(FOLLOW)[:-3],
    "array": b"[]",
    "not-a-webhook": b'{"foo": 1}',
    "empty-object": b"{}",
    "no-events": json.dumps({"destination": DESTINATION}).encode(),
    "no-destination": b'{"events": []}',
    "destination-not-str": b'{"destination": 1, "events": []}',
    "events-object": json.dumps({"destination": DESTINATION, "events": {}}).encode(),
    "events-string": json.dumps({"destination": DESTINATION, "events": "follow"}).encode(),
    "events-null": json.dumps({"destination": DESTINATION, "events": None}).encode(),
    "event-not-object": _body(1),
    "event-without-type": _body({k: v for k, v in FOLLOW.items() if k != "type"}),
    "event-type-not-str": _body(FOLLOW | {"type": 1}),
    "event-type-null": _body(FOLLOW | {"type": None}),
    "missing-timestamp": _body({k: v for k, v in FOLLOW.items() if k != "timestamp"}),
    "missing-webhook-event-id": _body({k: v for k, v in FOLLOW.items() if k != "webhookEventId"}),
    "timestamp-str": _body(FOLLOW | {"timestamp": "1700000000000"}),
    "timestamp-float": _body(FOLLOW | {"timestamp": 1.5}),
    "redelivery-str": _body(FOLLOW | {"deliveryContext": {"isRedelivery": "false"}}),
    "follow-missing-detail": _body({k: v for k, v in FOLLOW.items() if k != "follow"}),
    "follow-unblocked-str": _body(FOLLOW | {"follow": {"isUnblocked": "yes"}}),
    "source-without-type": _body(FOLLOW | {"source": {"userId": USER_ID}}),
    "group-without-id": _body(FOLLOW | {"source": {"type": "group"}}),
    "message-missing": _body(event("message")),
    "message-without-type": _body(message({"id": "1", "text": "hi"})),
    "text-not-str": _body(message(TEXT | {"text": 123})),
    "file-size-str": _body(message(FILE | {"fileSize": "2138"})),
    "membership-id-str": _body(
        event("membership", replyToken="r", membership={"type": "left", "membershipId": "1"})
    ),
    "mentionee-without-type": _body(message(TEXT | {"mention": {"mentionees": [{"index": 0, "length": 1}]}})),
}


@pytest.mark.parametrize("name", sorted(INVALID_BODIES))
def test_invalid_bodies_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError):
        parse_callback(INVALID_BODIES[name])


def test_missing_type_error_says_so() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_callback(INVALID_BODIES["event-without-type"])
    (error,) = caught.value.errors()
    assert error["type"] == "missing_type"
    assert error["loc"] == ("events", 0)


@pytest.mark.parametrize("obj", [{}, {"type": 5}, {"kind": "message"}], ids=["empty", "int-type", "no-type"])
def test_parse_event_rejects_objects_without_a_string_type(obj: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_event(obj)


def test_values_line_may_add_later_are_kept_not_rejected() -> None:
    """A new mode or content provider must not turn a whole webhook request into a 400 (and lose it)."""
    event = wh.parse_event(FOLLOW | {"mode": "paused"})
    assert event.mode == "paused"
    text_without_tokens = {k: v for k, v in TEXT.items() if k != "quoteToken"}
    parsed = wh.parse_event(message(text_without_tokens) | {"mode": "standby"})
    assert isinstance(parsed, wh.MessageEvent)
    assert parsed.message.quote_token is None  # type: ignore[union-attr]
