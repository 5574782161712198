"""LINE's limits the OpenAPI document does not state, over HTTP: each is answered 400 with LINE's body, has
no effect, and the same body one step inside the limit is accepted (issue 14, 2.3)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tagline_line_emulator import Emulator


def action(i: int) -> dict[str, Any]:
    return {"type": "message", "label": f"choice {i}", "text": f"{i}"}


def template(body: dict[str, Any]) -> dict[str, Any]:
    return {"type": "template", "altText": "a template", "template": body}


def buttons(actions: int = 1, text: str = "pick one") -> dict[str, Any]:
    return template({"type": "buttons", "text": text, "actions": [action(i) for i in range(actions)]})


def carousel(columns: int) -> dict[str, Any]:
    column = {"text": "a column", "actions": [action(0)]}
    return template({"type": "carousel", "columns": [column] * columns})


def bubble(text: str = "hi") -> dict[str, Any]:
    return {
        "type": "bubble",
        "body": {"type": "box", "layout": "vertical", "contents": [{"type": "text", "text": text}]},
    }


def flex_carousel(bubbles: int) -> dict[str, Any]:
    return {
        "type": "flex",
        "altText": "cards",
        "contents": {"type": "carousel", "contents": [bubble()] * bubbles},
    }


def imagemap(actions: int) -> dict[str, Any]:
    area = {"x": 0, "y": 0, "width": 520, "height": 520}
    return {
        "type": "imagemap",
        "baseUrl": "https://example.com/bot/images/rm001",
        "altText": "a map",
        "baseSize": {"width": 1040, "height": 1040},
        "actions": [{"type": "message", "text": "hi", "area": area}] * actions,
    }


def image(url: str) -> dict[str, Any]:
    return {"type": "image", "originalContentUrl": url, "previewImageUrl": "https://example.com/p.jpg"}


def emoji_text(index: int) -> dict[str, Any]:
    return {
        "type": "text",
        "text": "🍎 $ sale",
        "emojis": [{"index": index, "productId": "5ac1bfd5040ab15980c9b435", "emojiId": "001"}],
    }


# (the ten cases of the issue) name, refused message, the same one step inside the limit, property, message
CASES = [
    (
        "empty text",
        {"type": "text", "text": ""},
        {"type": "text", "text": "x"},
        "messages[0].text",
        "must be specified",
    ),
    (
        "buttons with 5 actions",
        buttons(5),
        buttons(4),
        "messages[0].template.actions",
        "Size must be between 1 and 4",
    ),
    (
        "confirm with 3 actions",
        template({"type": "confirm", "text": "sure?", "actions": [action(i) for i in range(3)]}),
        template({"type": "confirm", "text": "sure?", "actions": [action(i) for i in range(2)]}),
        "messages[0].template.actions",
        "Size must be between 2 and 2",
    ),
    (
        "carousel of 11 columns",
        carousel(11),
        carousel(10),
        "messages[0].template.columns",
        "Size must be between 1 and 10",
    ),
    (
        "flex carousel of 13 bubbles",
        flex_carousel(13),
        flex_carousel(12),
        "messages[0].contents.contents",
        "Size must be between 1 and 12",
    ),
    (
        "buttons text of 161",
        buttons(text="x" * 161),
        buttons(text="x" * 160),
        "messages[0].template.text",
        "Length must be between 1 and 160",
    ),
    (
        "imagemap with 51 actions",
        imagemap(51),
        imagemap(50),
        "messages[0].actions",
        "Size must be between 1 and 50",
    ),
    (
        "altText of 1,501",
        {**buttons(), "altText": "x" * 1501},
        {**buttons(), "altText": "x" * 1500},
        "messages[0].altText",
        "Length must be between 1 and 1500",
    ),
    (
        "emoji index not on a $",
        emoji_text(2),
        emoji_text(3),
        "messages[0].emojis[0].index",
        "must be the position of a $ in text",
    ),
    (
        "http image",
        image("http://example.com/a.jpg"),
        image("https://example.com/a.jpg"),
        "messages[0].originalContentUrl",
        "must be an HTTPS URL (https://…)",
    ),
]


@pytest.mark.parametrize(
    ("refused", "accepted", "prop", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_a_limit_of_lines_reference_is_a_400_in_lines_shape(
    http: aiohttp.ClientSession,
    emu: Emulator,
    channel: str,
    refused: dict[str, Any],
    accepted: dict[str, Any],
    prop: str,
    message: str,
) -> None:
    async with http.post("/v2/bot/message/push", json={"to": "U1", "messages": [refused]}) as resp:
        assert (resp.status, await resp.json()) == (
            400,
            {
                "message": "The request body has 1 error(s)",
                "details": [{"message": message, "property": prop}],
            },
        )
    assert emu.deliveries(channel) == {}
    async with http.post("/v2/bot/message/push", json={"to": "U1", "messages": [accepted]}) as resp:
        assert resp.status == 200, await resp.text()
    assert emu.deliveries(channel) == {"U1": 1}


async def test_limits_apply_to_every_message_of_every_send_endpoint(
    http: aiohttp.ClientSession, emu: Emulator, channel: str
) -> None:
    ok = {"type": "text", "text": "ok"}
    bodies = {
        "multicast": {"to": ["U1", "U2"], "messages": [ok, buttons(5)]},
        "broadcast": {"messages": [ok, ok, carousel(11)]},
    }
    expected = {"multicast": "messages[1].template.actions", "broadcast": "messages[2].template.columns"}
    for endpoint, body in bodies.items():
        async with http.post(f"/v2/bot/message/{endpoint}", json=body) as resp:
            assert resp.status == 400
            assert [d["property"] for d in (await resp.json())["details"]] == [expected[endpoint]]
    async with http.post("/v2/bot/message/push", json={"to": "", "messages": [ok]}) as resp:
        assert (await resp.json())["details"] == [{"message": "must be specified", "property": "to"}]
    assert emu.deliveries(channel) == {}
