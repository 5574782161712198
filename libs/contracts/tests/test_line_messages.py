"""The one validator of LINE message objects: line-bot-sdk's models with paths, storability, LINE's limits."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tagline_contracts import line_messages
from tagline_contracts.line_messages import (
    InvalidMessages,
    LineError,
    check_line_messages,
    message_errors,
    validate_line_messages,
)
from tagline_contracts.sending import SendMessages

TEXT = {"type": "text", "text": "hi"}


def errors(*messages: Any, where: str = "messages") -> list[str]:
    return [str(e) for e in message_errors(list(messages), where)]


def test_valid_messages_of_every_kind_pass() -> None:
    sticker = {"type": "sticker", "packageId": "446", "stickerId": "1988"}
    flex = {
        "type": "flex",
        "altText": "menu",
        "contents": {"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": [TEXT]}},
    }
    assert errors(TEXT, sticker, flex) == []
    validate_line_messages([TEXT, sticker])
    assert check_line_messages((TEXT,), "auto_reply") == (TEXT,)


def test_what_line_bot_sdk_refuses_is_named_by_its_path() -> None:
    assert errors({"type": "image", "originalContentUrl": "https://e.com/a.jpg"}) == [
        "messages[0].previewImageUrl: must be specified"
    ]
    assert errors(TEXT, {"type": "txt", "text": "hi"})[0].startswith(
        "messages[1].type: must be one of the following values: [audio, coupon, flex, image, imagemap,"
    )
    assert errors({"text": "no type"})[0].startswith("messages[0].type: must be one of")
    assert errors({"type": "text", "text": 5}) == ["messages[0].text: str type expected"]
    assert errors({"type": "template", "altText": "a", "template": {"type": "buttons", "text": "t"}}) == [
        "messages[0].template.actions: must be specified"
    ]
    assert errors({"type": "template", "altText": "a", "template": "buttons"}) == [
        "messages[0].template: must be an object"
    ]
    bad_component = {"type": "box", "layout": "vertical", "contents": [TEXT, {"type": "bogus"}]}
    flex = {"type": "flex", "altText": "a", "contents": {"type": "bubble", "body": bad_component}}
    assert errors(flex)[0].startswith("messages[0].contents.body.contents[1].type: must be one of")
    quick = {
        **TEXT,
        "quickReply": {"items": [{"type": "action", "action": {"type": "messagee", "label": "a"}}]},
    }
    assert errors(quick)[0].startswith("messages[0].quickReply.items[0].action.type: must be one of")
    item = {"type": "action", "action": {"type": "message", "label": "a", "text": "a"}}
    assert errors({**TEXT, "quickReply": {"items": [item] * 14}}) == [
        "messages[0].quickReply.items: Size must be between 0 and 13"
    ]
    assert errors({**TEXT, "quickReply": {"items": [item] * 13}}) == []


def test_what_cannot_be_stored_or_is_not_an_object_is_refused() -> None:
    assert errors("hello") == ["messages[0]: must be an object"]
    assert errors({"type": "text", "text": "hi", "$set": 1}) == [
        "messages[0]: messages[0] has a key that cannot be stored: '$set'"
    ]
    assert errors({"type": "text", "text": "hi", "x": float("nan")}) == [
        "messages[0]: messages[0].x is not a finite number"
    ]


def test_all_problems_are_named_with_the_callers_path() -> None:
    found = errors({"type": "text", "text": ""}, {"type": "txt"}, where="steps[2].otherwise")
    assert found[0] == "steps[2].otherwise[0].text: must be specified"
    assert found[1].startswith("steps[2].otherwise[1].type: must be one of")
    with pytest.raises(InvalidMessages) as refused:
        validate_line_messages([{"type": "text", "text": ""}] * 12)
    assert len(refused.value.errors) == 12
    assert str(refused.value).endswith("messages[9].text: must be specified; and 2 more")


def test_a_send_request_cannot_hold_a_message_line_refuses() -> None:
    values = {"idempotency_key": "k", "category": "marketing", "target": {"kind": "user", "user_id": "U1"}}
    SendMessages.model_validate({**values, "messages": [TEXT]})
    with pytest.raises(ValidationError, match=r"messages\[0\]\.originalContentUrl: must be an HTTPS URL"):
        SendMessages.model_validate(
            {
                **values,
                "messages": [{"type": "image", "originalContentUrl": "http://e", "previewImageUrl": "x"}],
            }
        )


def test_remembering_valid_messages_never_hides_an_error_and_stays_bounded() -> None:
    bad = {"type": "text", "text": ""}
    assert errors(TEXT) == [] and errors(TEXT) == []
    assert errors(bad) == errors(bad) == ["messages[0].text: must be specified"]
    for i in range(line_messages._REMEMBERED + 10):
        assert errors({"type": "text", "text": f"hi {i}"}) == []
    assert len(line_messages._valid) <= line_messages._REMEMBERED
    assert errors(bad) == ["messages[0].text: must be specified"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "type",
        "text",
        "template",
        "actions",
        "columns",
        "contents",
        "altText",
        "quickReply",
        "items",
        "action",
        "emojis",
        "index",
        "label",
        "uri",
        "body",
        "originalContentUrl",
        "previewImageUrl",
        "substitution",
    ]
)
TYPES = st.sampled_from(
    [
        "text",
        "textV2",
        "image",
        "template",
        "buttons",
        "confirm",
        "carousel",
        "image_carousel",
        "flex",
        "bubble",
        "box",
        "imagemap",
        "message",
        "uri",
        "postback",
        "action",
        "sticker",
        "video",
    ]
)
LINE_ISH = st.recursive(
    TYPES | st.integers(-3, 30) | st.text(max_size=5) | JSON,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE_ISH, min_size=1, max_size=3))
def test_any_json_gets_errors_or_passes_never_an_exception(messages: list[Any]) -> None:
    found = message_errors(messages)
    assert all(isinstance(e, LineError) and e.property.startswith("messages[") for e in found)
