"""The sender's APIs that store LINE messages (welcome, journeys) refuse what the sender would refuse at send
time, with a 422 that names the message and the property (issue 14, 2.2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tagline_contracts import topics
from tagline_ingest.domain.normalize import normalize, parse_body
from tagline_testing.waiting import eventually
from tagline_testing.webhook import WebhookBuilder

pytestmark = pytest.mark.integration

CHANNEL = "1234567890"
TEXT = {"type": "text", "text": "歡迎加入！"}
IMAGE = {"type": "image", "originalContentUrl": "https://example.com/a.jpg"}  # no previewImageUrl
FIVE_ACTIONS = {
    "type": "template",
    "altText": "選一個",
    "template": {
        "type": "buttons",
        "text": "選一個",
        "actions": [{"type": "message", "label": f"{i}", "text": f"{i}"} for i in range(5)],
    },
}


def refusals(answer: httpx.Response) -> str:
    """pydantic's error messages of a 422, one per line."""
    assert answer.status_code == 422, answer.text
    return "\n".join(str(error["msg"]) for error in answer.json()["detail"])


def journey(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "週年慶", "trigger": {"kind": "friend_added"}, "steps": steps}


def branch(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "vip", "when": {"op": "tags", "any": ["vip"]}, "messages": messages}


async def test_welcome_and_journeys_refuse_messages_line_would_refuse(start_sender: Any) -> None:
    async with start_sender() as sender:
        client = sender.client

        async def welcome(body: dict[str, Any]) -> httpx.Response:
            answer: httpx.Response = await client.put(f"/channels/{CHANNEL}/welcome", json=body)
            return answer

        assert "messages[0].previewImageUrl: must be specified" in refusals(
            await welcome({"messages": [IMAGE]})
        )
        assert "messages[1].type: must be one of the following values: [" in refusals(
            await welcome({"messages": [TEXT, {"type": "txt", "text": "hi"}]})
        )
        assert "messages[0].text: must be specified" in refusals(
            await welcome({"messages": [{"type": "text", "text": ""}]})
        )
        assert "by_source[0].messages[0].template.actions: Size must be between 1 and 4" in refusals(
            await welcome({"messages": [TEXT], "by_source": [{"source": "ad", "messages": [FIVE_ACTIONS]}]})
        )
        assert (
            await welcome({"messages": [TEXT, {**IMAGE, "previewImageUrl": "https://e.com/p.jpg"}]})
        ).is_success
        assert (await client.get(f"/channels/{CHANNEL}/welcome")).json()["messages"][0] == TEXT

        typo = [{"wait": 1, "otherwise": [TEXT]}, {"wait": 1, "branches": [branch([TEXT, {"type": "txt"}])]}]
        created = await client.post(f"/channels/{CHANNEL}/journeys", json=journey(typo))
        assert "steps[1].branches[0].messages[1].type: must be one of" in refusals(created)
        five = [
            {"wait": 1, "otherwise": [TEXT]},
            {"wait": 1, "branches": [branch([TEXT, TEXT, FIVE_ACTIONS])]},
        ]
        created = await client.post(f"/channels/{CHANNEL}/journeys", json=journey(five))
        assert "steps[1].branches[0].messages[2].template.actions: Size must be between 1 and 4" in refusals(
            created
        )

        good = [
            {"wait": 1, "otherwise": [TEXT]},
            {"wait": 1, "branches": [branch([TEXT])], "otherwise": [TEXT]},
        ]
        created = await client.post(f"/channels/{CHANNEL}/journeys", json=journey(good))
        assert created.status_code == 201, created.text
        journey_id = created.json()["id"]
        replaced = await client.put(
            f"/journeys/{journey_id}", json=journey([{"wait": 2, "otherwise": [IMAGE]}])
        )
        assert "steps[0].otherwise[0].previewImageUrl: must be specified" in refusals(replaced)
        replaced = await client.put(
            f"/journeys/{journey_id}", json=journey([{"wait": 2, "otherwise": [TEXT]}])
        )
        assert replaced.status_code == 200, replaced.text
        assert (await client.get(f"/journeys/{journey_id}")).json()["steps"][0]["wait"] == 2


async def test_a_stored_welcome_line_would_refuse_sends_nothing_and_holds_up_no_follow(
    start_sender: Any, publish: Any, line: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A welcome stored before these checks existed (a ``txt`` type) is not sent, and the follows after it
    are still welcomed once the welcome is replaced: the welcome consumer does not retry it for ever."""
    builder = WebhookBuilder("secret")

    async def follow(user_id: str) -> None:
        event = builder.follow(user_id)
        line.emu.issue_reply_token(CHANNEL, user_id, token=event["replyToken"])
        [record] = normalize(CHANNEL, parse_body(builder.body([event])), datetime.now(UTC))
        await publish.raw(topics.LINE_EVENTS, record.value, record.key)

    async with start_sender() as sender:
        await sender.service.journey_store.put_welcome(CHANNEL, {"messages": [{"type": "txt", "text": "hi"}]})
        await follow("U1")
        await eventually(
            lambda: any("stored welcome is not valid" in r.getMessage() for r in caplog.records),
            what="the invalid welcome reported",
            timeout_s=30,
        )
        assert (await sender.client.put(f"/channels/{CHANNEL}/welcome", json={"messages": [TEXT]})).is_success
        await follow("U2")
        await eventually(lambda: "U2" in line.emu.deliveries(CHANNEL), what="U2 welcomed", timeout_s=30)
    assert line.emu.deliveries(CHANNEL) == {"U2": 1}
    [reported] = [r.getMessage() for r in caplog.records if "stored welcome is not valid" in r.getMessage()]
    assert "messages[0].type: must be one of" in reported
