"""The limits table's evaluator: every row, at its limit (passes) and one past it (refused, at its path).

Each case is also run through the whole validator (:func:`message_errors`: line-bot-sdk's models, then the
table), so "at the limit" is a message LINE's shape accepts too, and the table's error is the one reported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tagline_contracts.line_limits import (
    LIMITS,
    LineError,
    fit_text,
    message_limit_errors,
    request_limit_errors,
    utf16_len,
)
from tagline_contracts.line_messages import message_errors

Message = dict[str, Any]
APPLE = "🍎"  # two UTF-16 code units: LINE counts it as 2 characters
URL = "https://example.com/"


def url(length: int, scheme: str = "https://") -> str:
    return scheme + "e.com/" + "x" * (length - len(scheme) - 6)


def action(label: str = "ok", **extra: Any) -> Message:
    return {"type": "message", "label": label, "text": "ok", **extra}


def template(body: Message, **extra: Any) -> Message:
    return {"type": "template", "altText": "alt", "template": body, **extra}


def buttons(**fields: Any) -> Message:
    return template({"type": "buttons", "text": "pick", "actions": [action()], **fields})


def carousel(*columns: Message) -> Message:
    return template({"type": "carousel", "columns": list(columns)})


def column(**fields: Any) -> Message:
    return {"text": "column", "actions": [action()], **fields}


def image_carousel(**col: Any) -> Message:
    return template(
        {"type": "image_carousel", "columns": [{"imageUrl": URL + "a.jpg", "action": action(), **col}]}
    )


def imagemap(**fields: Any) -> Message:
    area = {"x": 0, "y": 0, "width": 1040, "height": 1040}
    return {
        "type": "imagemap",
        "baseUrl": URL + "rm",
        "altText": "map",
        "baseSize": {"width": 1040, "height": 1040},
        "actions": [{"type": "message", "text": "hi", "area": area}],
        **fields,
    }


def imagemap_action(**fields: Any) -> Message:
    return imagemap(actions=[{"area": {"x": 0, "y": 0, "width": 10, "height": 10}, **fields}])


def imagemap_video(**fields: Any) -> Message:
    video = {
        "originalContentUrl": URL + "v.mp4",
        "previewImageUrl": URL + "p.jpg",
        "area": {"x": 0, "y": 0, "width": 1040, "height": 585},
        **fields,
    }
    return imagemap(video=video)


def external_link(**fields: Any) -> Message:
    return imagemap_video(externalLink={"linkUri": URL, "label": "more", **fields})


def text_component(text: str = "hi") -> Message:
    return {"type": "text", "text": text}


def bubble(*contents: Message, **fields: Any) -> Message:
    body = {"type": "box", "layout": "vertical", "contents": list(contents) or [text_component()]}
    return {"type": "bubble", "body": body, **fields}


def flex(contents: Message, **fields: Any) -> Message:
    return {"type": "flex", "altText": "flex", "contents": contents, **fields}


def sized(make: Callable[[str], Message], size: int) -> Message:
    """``make(padding)`` whose compact JSON is exactly ``size`` bytes."""
    base = len(json.dumps(make(""), ensure_ascii=False, separators=(",", ":")).encode())
    built = make("x" * (size - base))
    assert len(json.dumps(built, ensure_ascii=False, separators=(",", ":")).encode()) == size
    return built


def text(value: str, **fields: Any) -> Message:
    return {"type": "text", "text": value, **fields}


def emojis(*indexes: int) -> list[Message]:
    return [{"index": i, "productId": "5ac1bfd5040ab15980c9b435", "emojiId": "001"} for i in indexes]


def quick_reply(item: Message) -> Message:
    return text("hi", quickReply={"items": [{"type": "action", "action": action(), **item}]})


def postback(**fields: Any) -> Message:
    return buttons(actions=[{"type": "postback", "label": "go", "data": "a=1", **fields}])


def uri_action(**fields: Any) -> Message:
    return buttons(actions=[{"type": "uri", "label": "go", "uri": URL, **fields}])


@dataclass(frozen=True)
class Case:
    """``row`` (kind, field) holds for ``ok``, refuses ``bad`` with ``message`` at ``messages[0].<prop>``."""

    name: str
    row: tuple[str, str]
    ok: Message
    bad: Message
    prop: str
    message: str


def length(low: int, high: int) -> str:
    return f"Length must be between {low} and {high}"


def size(low: int, high: int) -> str:
    return f"Size must be between {low} and {high}"


HTTPS = "must be an HTTPS URL (https://…)"
SCHEMES = "must be a URI with the scheme http, https, line, tel"
BIG_BUBBLE = bubble(text_component("y" * 29_000))

CASES = [
    Case(
        "sender icon",
        ("message", "sender.iconUrl"),
        text("hi", sender={"iconUrl": URL}),
        text("hi", sender={"iconUrl": "http://e.com/i.png"}),
        "sender.iconUrl",
        HTTPS,
    ),
    Case(
        "quick reply icon",
        ("quick reply button", "imageUrl"),
        quick_reply({"imageUrl": URL}),
        quick_reply({"imageUrl": "http://e.com/i.png"}),
        "quickReply.items[0].imageUrl",
        HTTPS,
    ),
    Case(
        "quick reply label",
        ("quick reply action", "label"),
        quick_reply({"action": action("x" * 20)}),
        quick_reply({"action": action("x" * 21)}),
        "quickReply.items[0].action.label",
        length(1, 20),
    ),
    Case(
        "quick reply label required",
        ("quick reply action", "label"),
        quick_reply({"action": action("x")}),
        quick_reply({"action": {"type": "message", "text": "ok"}}),
        "quickReply.items[0].action.label",
        "must be specified",
    ),
    Case("text", ("text message", "text"), text("x" * 5000), text("x" * 5001), "text", length(1, 5000)),
    Case(
        "text in UTF-16",
        ("text message", "text"),
        text(APPLE * 2500),
        text(APPLE * 2500 + "x"),
        "text",
        length(1, 5000),
    ),
    Case("empty text", ("text message", "text"), text("x"), text(""), "text", "must be specified"),
    Case(
        "emojis",
        ("text message", "emojis"),
        text("$" * 21, emojis=emojis(*range(20))),
        text("$" * 21, emojis=emojis(*range(21))),
        "emojis",
        size(0, 20),
    ),
    Case(
        "emoji on a $",
        ("text message", "emojis"),
        text(f"{APPLE}$", emojis=emojis(2)),
        text(f"{APPLE}$", emojis=emojis(1)),
        "emojis[0].index",
        "must be the position of a $ in text",
    ),
    Case(
        "emoji past the text",
        ("text message", "emojis"),
        text("a$", emojis=emojis(1)),
        text("a$", emojis=emojis(2)),
        "emojis[0].index",
        "must be the position of a $ in text",
    ),
    Case(
        "textV2",
        ("textV2 message", "text"),
        {"type": "textV2", "text": "x" * 5000},
        {"type": "textV2", "text": "x" * 5001},
        "text",
        length(1, 5000),
    ),
    Case(
        "textV2 substitutions",
        ("textV2 message", "substitution"),
        {
            "type": "textV2",
            "text": "hi",
            "substitution": {f"k{i}": {"type": "mention", "mentionee": {"type": "all"}} for i in range(100)},
        },
        {
            "type": "textV2",
            "text": "hi",
            "substitution": {f"k{i}": {"type": "mention", "mentionee": {"type": "all"}} for i in range(101)},
        },
        "substitution",
        size(0, 100),
    ),
    Case(
        "textV2 keys",
        ("textV2 message", "substitution"),
        {
            "type": "textV2",
            "text": "hi",
            "substitution": {"a" * 20: {"type": "mention", "mentionee": {"type": "all"}}},
        },
        {
            "type": "textV2",
            "text": "hi",
            "substitution": {"a" * 21: {"type": "mention", "mentionee": {"type": "all"}}},
        },
        "substitution." + "a" * 21,
        "key must be 1-20 characters of 0-9, a-z, A-Z and _",
    ),
    Case(
        "image",
        ("image message", "originalContentUrl"),
        {"type": "image", "originalContentUrl": url(2000), "previewImageUrl": URL},
        {"type": "image", "originalContentUrl": url(2001), "previewImageUrl": URL},
        "originalContentUrl",
        length(1, 2000),
    ),
    Case(
        "http image",
        ("image message", "originalContentUrl"),
        {"type": "image", "originalContentUrl": "HTTPS://e.com/a.jpg", "previewImageUrl": URL},
        {"type": "image", "originalContentUrl": "http://e.com/a.jpg", "previewImageUrl": URL},
        "originalContentUrl",
        HTTPS,
    ),
    Case(
        "image preview",
        ("image message", "previewImageUrl"),
        {"type": "image", "originalContentUrl": URL, "previewImageUrl": url(2000)},
        {"type": "image", "originalContentUrl": URL, "previewImageUrl": url(2000, "http://")},
        "previewImageUrl",
        HTTPS,
    ),
    Case(
        "video",
        ("video message", "originalContentUrl"),
        {"type": "video", "originalContentUrl": url(2000), "previewImageUrl": URL},
        {"type": "video", "originalContentUrl": url(2001), "previewImageUrl": URL},
        "originalContentUrl",
        length(1, 2000),
    ),
    Case(
        "video preview",
        ("video message", "previewImageUrl"),
        {"type": "video", "originalContentUrl": URL, "previewImageUrl": URL},
        {"type": "video", "originalContentUrl": URL, "previewImageUrl": "http://e.com/p.jpg"},
        "previewImageUrl",
        HTTPS,
    ),
    Case(
        "video tracking id",
        ("video message", "trackingId"),
        {"type": "video", "originalContentUrl": URL, "previewImageUrl": URL, "trackingId": "t" * 100},
        {"type": "video", "originalContentUrl": URL, "previewImageUrl": URL, "trackingId": "t" * 101},
        "trackingId",
        length(1, 100),
    ),
    Case(
        "audio",
        ("audio message", "originalContentUrl"),
        {"type": "audio", "originalContentUrl": URL, "duration": 1000},
        {"type": "audio", "originalContentUrl": "http://e.com/a.m4a", "duration": 1000},
        "originalContentUrl",
        HTTPS,
    ),
    Case(
        "location title",
        ("location message", "title"),
        {"type": "location", "title": "t" * 100, "address": "a", "latitude": 25.0, "longitude": 121.5},
        {"type": "location", "title": "t" * 101, "address": "a", "latitude": 25.0, "longitude": 121.5},
        "title",
        length(1, 100),
    ),
    Case(
        "location address",
        ("location message", "address"),
        {"type": "location", "title": "t", "address": "a" * 100, "latitude": 25.0, "longitude": 121.5},
        {"type": "location", "title": "t", "address": "a" * 101, "latitude": 25.0, "longitude": 121.5},
        "address",
        length(1, 100),
    ),
    Case(
        "imagemap base",
        ("imagemap message", "baseUrl"),
        imagemap(baseUrl=URL + "rm"),
        imagemap(baseUrl="http://e.com/rm"),
        "baseUrl",
        HTTPS,
    ),
    Case(
        "imagemap alt",
        ("imagemap message", "altText"),
        imagemap(altText="a" * 1500),
        imagemap(altText="a" * 1501),
        "altText",
        length(1, 1500),
    ),
    Case(
        "imagemap actions",
        ("imagemap message", "actions"),
        imagemap(actions=imagemap()["actions"] * 50),
        imagemap(actions=imagemap()["actions"] * 51),
        "actions",
        size(1, 50),
    ),
    Case(
        "imagemap video",
        ("imagemap message", "video.originalContentUrl"),
        imagemap_video(),
        imagemap_video(originalContentUrl="http://e.com/v.mp4"),
        "video.originalContentUrl",
        HTTPS,
    ),
    Case(
        "imagemap video preview",
        ("imagemap message", "video.previewImageUrl"),
        imagemap_video(previewImageUrl=url(2000)),
        imagemap_video(previewImageUrl=url(2001)),
        "video.previewImageUrl",
        length(1, 2000),
    ),
    Case(
        "imagemap link",
        ("imagemap message", "video.externalLink.linkUri"),
        external_link(linkUri=url(1000)),
        external_link(linkUri=url(1001)),
        "video.externalLink.linkUri",
        length(1, 1000),
    ),
    Case(
        "imagemap link scheme",
        ("imagemap message", "video.externalLink.linkUri"),
        external_link(linkUri="tel:0212345678"),
        external_link(linkUri="ftp://e.com/"),
        "video.externalLink.linkUri",
        SCHEMES,
    ),
    Case(
        "imagemap link label",
        ("imagemap message", "video.externalLink.label"),
        external_link(label="l" * 30),
        external_link(label="l" * 31),
        "video.externalLink.label",
        length(1, 30),
    ),
    Case(
        "imagemap action label",
        ("imagemap action", "label"),
        imagemap_action(type="message", text="hi", label="l" * 100),
        imagemap_action(type="message", text="hi", label="l" * 101),
        "actions[0].label",
        length(0, 100),
    ),
    Case(
        "imagemap uri",
        ("imagemap uri action", "linkUri"),
        imagemap_action(type="uri", linkUri=url(1000)),
        imagemap_action(type="uri", linkUri=url(1001)),
        "actions[0].linkUri",
        length(1, 1000),
    ),
    Case(
        "imagemap message",
        ("imagemap message action", "text"),
        imagemap_action(type="message", text="t" * 400),
        imagemap_action(type="message", text="t" * 401),
        "actions[0].text",
        length(1, 400),
    ),
    Case(
        "template alt",
        ("template message", "altText"),
        {**buttons(), "altText": "a" * 1500},
        {**buttons(), "altText": "a" * 1501},
        "altText",
        length(1, 1500),
    ),
    Case(
        "buttons image",
        ("buttons template", "thumbnailImageUrl"),
        buttons(thumbnailImageUrl=URL),
        buttons(thumbnailImageUrl="http://e.com/t.jpg"),
        "template.thumbnailImageUrl",
        HTTPS,
    ),
    Case(
        "buttons title",
        ("buttons template", "title"),
        buttons(title="t" * 40),
        buttons(title="t" * 41),
        "template.title",
        length(1, 40),
    ),
    Case(
        "buttons text",
        ("buttons template", "text"),
        buttons(text="x" * 160),
        buttons(text="x" * 161),
        "template.text",
        length(1, 160),
    ),
    Case(
        "buttons text with title",
        ("buttons template", "text"),
        buttons(text="x" * 60, title="t"),
        buttons(text="x" * 61, title="t"),
        "template.text",
        length(1, 60) + " (with an image or title)",
    ),
    Case(
        "buttons text with image",
        ("buttons template", "text"),
        buttons(text="x" * 60, thumbnailImageUrl=URL),
        buttons(text="x" * 61, thumbnailImageUrl=URL),
        "template.text",
        length(1, 60) + " (with an image or title)",
    ),
    Case(
        "buttons actions",
        ("buttons template", "actions"),
        buttons(actions=[action()] * 4),
        buttons(actions=[action()] * 5),
        "template.actions",
        size(1, 4),
    ),
    Case(
        "buttons without actions",
        ("buttons template", "actions"),
        buttons(actions=[action()]),
        buttons(actions=[]),
        "template.actions",
        size(1, 4),
    ),
    Case(
        "confirm text",
        ("confirm template", "text"),
        template({"type": "confirm", "text": "x" * 240, "actions": [action()] * 2}),
        template({"type": "confirm", "text": "x" * 241, "actions": [action()] * 2}),
        "template.text",
        length(1, 240),
    ),
    Case(
        "confirm actions",
        ("confirm template", "actions"),
        template({"type": "confirm", "text": "sure?", "actions": [action()] * 2}),
        template({"type": "confirm", "text": "sure?", "actions": [action()] * 3}),
        "template.actions",
        size(2, 2),
    ),
    Case(
        "confirm with one action",
        ("confirm template", "actions"),
        template({"type": "confirm", "text": "sure?", "actions": [action()] * 2}),
        template({"type": "confirm", "text": "sure?", "actions": [action()]}),
        "template.actions",
        size(2, 2),
    ),
    Case(
        "carousel columns",
        ("carousel template", "columns"),
        carousel(*[column()] * 10),
        carousel(*[column()] * 11),
        "template.columns",
        size(1, 10),
    ),
    Case(
        "carousel actions alike",
        ("carousel template", "columns"),
        carousel(column(), column()),
        carousel(column(), column(actions=[action()] * 2)),
        "template.columns[1].actions",
        "must have as many actions as columns[0] (1)",
    ),
    Case(
        "carousel titles alike",
        ("carousel template", "columns"),
        carousel(column(title="a"), column(title="b")),
        carousel(column(title="a"), column()),
        "template.columns[1].title",
        "must be set as in columns[0] (every column has a title, or none)",
    ),
    Case(
        "carousel images alike",
        ("carousel template", "columns"),
        carousel(column(), column()),
        carousel(column(), column(thumbnailImageUrl=URL)),
        "template.columns[1].thumbnailImageUrl",
        "must be left out as in columns[0] (every column has an image, or none)",
    ),
    Case(
        "column image",
        ("carousel column", "thumbnailImageUrl"),
        carousel(column(thumbnailImageUrl=URL)),
        carousel(column(thumbnailImageUrl="http://e.com/c.jpg")),
        "template.columns[0].thumbnailImageUrl",
        HTTPS,
    ),
    Case(
        "column title",
        ("carousel column", "title"),
        carousel(column(title="t" * 40)),
        carousel(column(title="t" * 41)),
        "template.columns[0].title",
        length(1, 40),
    ),
    Case(
        "column text",
        ("carousel column", "text"),
        carousel(column(text="x" * 120)),
        carousel(column(text="x" * 121)),
        "template.columns[0].text",
        length(1, 120),
    ),
    Case(
        "column text with title",
        ("carousel column", "text"),
        carousel(column(text="x" * 60, title="t")),
        carousel(column(text="x" * 61, title="t")),
        "template.columns[0].text",
        length(1, 60) + " (with an image or title)",
    ),
    Case(
        "column actions",
        ("carousel column", "actions"),
        carousel(column(actions=[action()] * 3)),
        carousel(column(actions=[action()] * 4)),
        "template.columns[0].actions",
        size(1, 3),
    ),
    Case(
        "image carousel columns",
        ("image_carousel template", "columns"),
        template({"type": "image_carousel", "columns": image_carousel()["template"]["columns"] * 10}),
        template({"type": "image_carousel", "columns": image_carousel()["template"]["columns"] * 11}),
        "template.columns",
        size(1, 10),
    ),
    Case(
        "image carousel image",
        ("image carousel column", "imageUrl"),
        image_carousel(imageUrl=url(2000)),
        image_carousel(imageUrl=url(2001)),
        "template.columns[0].imageUrl",
        length(1, 2000),
    ),
    Case(
        "template action label",
        ("template action", "label"),
        buttons(actions=[action("l" * 20)]),
        buttons(actions=[action("l" * 21)]),
        "template.actions[0].label",
        length(1, 20),
    ),
    Case(
        "template action label required",
        ("template action", "label"),
        buttons(actions=[action("l")]),
        buttons(actions=[{"type": "message", "text": "ok"}]),
        "template.actions[0].label",
        "must be specified",
    ),
    Case(
        "image carousel label",
        ("image carousel action", "label"),
        image_carousel(action=action("l" * 12)),
        image_carousel(action=action("l" * 13)),
        "template.columns[0].action.label",
        length(0, 12),
    ),
    Case(
        "flex alt",
        ("flex message", "altText"),
        flex(bubble(), altText="a" * 1500),
        flex(bubble(), altText="a" * 1501),
        "altText",
        length(1, 1500),
    ),
    Case(
        "flex bubbles",
        ("flex carousel", "contents"),
        flex({"type": "carousel", "contents": [bubble()] * 12}),
        flex({"type": "carousel", "contents": [bubble()] * 13}),
        "contents.contents",
        size(1, 12),
    ),
    Case(
        "flex carousel JSON",
        ("flex carousel", ""),
        flex(
            sized(
                lambda pad: {"type": "carousel", "contents": [BIG_BUBBLE, bubble(text_component(pad))]},
                50_000,
            )
        ),
        flex(
            sized(
                lambda pad: {"type": "carousel", "contents": [BIG_BUBBLE, bubble(text_component(pad))]},
                50_001,
            )
        ),
        "contents",
        "JSON must be at most 50,000 bytes, is 50,001",
    ),
    Case(
        "flex bubble JSON",
        ("flex bubble", ""),
        flex(sized(lambda pad: bubble(text_component(pad)), 30_000)),
        flex(sized(lambda pad: bubble(text_component(pad)), 30_001)),
        "contents",
        "JSON must be at most 30,000 bytes, is 30,001",
    ),
    Case(
        "flex image",
        ("flex image", "url"),
        flex(bubble(hero={"type": "image", "url": URL})),
        flex(bubble(hero={"type": "image", "url": "http://e.com/h.jpg"})),
        "contents.hero.url",
        HTTPS,
    ),
    Case(
        "flex video",
        ("flex video", "url"),
        flex(
            bubble(
                hero={
                    "type": "video",
                    "url": URL,
                    "previewUrl": URL,
                    "altContent": {"type": "image", "url": URL},
                }
            )
        ),
        flex(
            bubble(
                hero={
                    "type": "video",
                    "url": "http://e.com/v.mp4",
                    "previewUrl": URL,
                    "altContent": {"type": "image", "url": URL},
                }
            )
        ),
        "contents.hero.url",
        HTTPS,
    ),
    Case(
        "flex video preview",
        ("flex video", "previewUrl"),
        flex(
            bubble(
                hero={
                    "type": "video",
                    "url": URL,
                    "previewUrl": URL,
                    "altContent": {"type": "image", "url": URL},
                }
            )
        ),
        flex(
            bubble(
                hero={
                    "type": "video",
                    "url": URL,
                    "previewUrl": "http://e.com/p.jpg",
                    "altContent": {"type": "image", "url": URL},
                }
            )
        ),
        "contents.hero.previewUrl",
        HTTPS,
    ),
    Case(
        "flex icon",
        ("flex icon", "url"),
        flex(bubble({"type": "box", "layout": "baseline", "contents": [{"type": "icon", "url": URL}]})),
        flex(
            bubble(
                {
                    "type": "box",
                    "layout": "baseline",
                    "contents": [{"type": "icon", "url": "http://e.com/i.png"}],
                }
            )
        ),
        "contents.body.contents[0].contents[0].url",
        HTTPS,
    ),
    Case(
        "flex button label",
        ("flex button action", "label"),
        flex(bubble({"type": "button", "action": action("l" * 40)})),
        flex(bubble({"type": "button", "action": action("l" * 41)})),
        "contents.body.contents[0].action.label",
        length(1, 40),
    ),
    Case(
        "flex button label required",
        ("flex button action", "label"),
        flex(bubble({"type": "button", "action": action("l")})),
        flex(bubble({"type": "button", "action": {"type": "message", "text": "ok"}})),
        "contents.body.contents[0].action.label",
        "must be specified",
    ),
    Case(
        "flex action label",
        ("flex action", "label"),
        flex(bubble(action=action("l" * 40))),
        flex(bubble(action=action("l" * 41))),
        "contents.action.label",
        length(0, 40),
    ),
    Case(
        "postback display text",
        ("postback action", "displayText"),
        postback(displayText="d" * 300),
        postback(displayText="d" * 301),
        "template.actions[0].displayText",
        length(0, 300),
    ),
    Case(
        "postback text",
        ("postback action", "text"),
        postback(text="d" * 300),
        postback(text="d" * 301),
        "template.actions[0].text",
        length(0, 300),
    ),
    Case(
        "postback fill-in text",
        ("postback action", "fillInText"),
        postback(inputOption="openKeyboard", fillInText="d" * 300),
        postback(inputOption="openKeyboard", fillInText="d" * 301),
        "template.actions[0].fillInText",
        length(0, 300),
    ),
    Case(
        "message action text",
        ("message action", "text"),
        buttons(actions=[action(text="t" * 300)]),
        buttons(actions=[action(text="t" * 301)]),
        "template.actions[0].text",
        length(1, 300),
    ),
    Case(
        "uri action",
        ("uri action", "uri"),
        uri_action(uri=url(1000)),
        uri_action(uri=url(1001)),
        "template.actions[0].uri",
        length(1, 1000),
    ),
    Case(
        "uri action scheme",
        ("uri action", "uri"),
        uri_action(uri="line://nv/recommendOA/@linedevelopers"),
        uri_action(uri="javascript:alert(1)"),
        "template.actions[0].uri",
        SCHEMES,
    ),
    Case(
        "uri action desktop",
        ("uri action", "altUri.desktop"),
        uri_action(altUri={"desktop": URL}),
        uri_action(altUri={"desktop": "ftp://e.com"}),
        "template.actions[0].altUri.desktop",
        SCHEMES,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_limit_passes_at_it_and_is_refused_one_past_it(case: Case) -> None:
    assert message_limit_errors(case.ok, "messages[0]") == []
    assert message_limit_errors(case.bad, "messages[0]") == [
        LineError(f"messages[0].{case.prop}", case.message)
    ]
    assert message_errors([case.ok]) == []
    assert message_errors([case.bad]) == [LineError(f"messages[0].{case.prop}", case.message)]


def test_every_row_of_the_table_has_its_case() -> None:
    rows = {(row.kind, row.field) for row in LIMITS if not row.kind.endswith(" request")}
    assert rows - {case.row for case in CASES} == set()


def test_request_rows_and_paths_of_request_bodies() -> None:
    assert request_limit_errors("push", {"to": "", "messages": [text("hi")]}) == [
        LineError("to", "must be specified")
    ]
    body = {"to": ["U1"], "messages": [text("hi"), text("")]}
    assert request_limit_errors("multicast", body) == [LineError("messages[1].text", "must be specified")]


@pytest.mark.parametrize(
    "body",
    [
        None,
        7,
        "x",
        [],
        {"messages": "x"},
        {"messages": [None, 3, [], {"type": 5}]},
        {"to": 5, "messages": [{}]},
        {
            "messages": [
                {"type": "template", "template": {"type": "carousel", "columns": [1, {"actions": 3}]}}
            ]
        },
        {
            "messages": [
                {
                    "type": "flex",
                    "contents": {"type": "carousel", "contents": [{"type": "bubble", "body": []}]},
                }
            ]
        },
        {"messages": [{"type": "text", "text": 5, "emojis": [{"index": "0"}, {"index": True}, 3]}]},
    ],
)
def test_shapes_it_does_not_expect_are_left_to_the_structural_check(body: Any) -> None:
    assert request_limit_errors("push", body) == []


def test_deep_flex_boxes_do_not_exhaust_the_stack() -> None:
    box: Message = text_component()
    for _ in range(5_000):
        box = {"type": "box", "layout": "vertical", "contents": [box]}
    assert message_limit_errors(flex({"type": "bubble", "body": box}), "m") == []


def test_utf16_lengths_and_cutting_text_to_a_limit() -> None:
    assert utf16_len("abc") == 3 and utf16_len(APPLE) == 2 and utf16_len("價格") == 2
    assert fit_text("abc", 5) == "abc"
    assert fit_text("abcdef", 3) == "abc"
    assert fit_text(APPLE * 3, 5) == APPLE * 2  # never half an emoji
    assert fit_text("a" + APPLE, 2) == "a"
