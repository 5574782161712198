"""Keyword rules' auto-replies are validated as the sender validates them at send time: a 422 naming the
message and the property, instead of a rule that fires replies which dead-letter (issue 14, 2.2)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from tagline_tagger.domain.rules import Rule
from tagline_tagger.jobs import rule_to_doc

pytestmark = pytest.mark.integration

CHANNEL = "1234567890"
TEXT = {"type": "text", "text": "價格請見官網"}


def rule(auto_reply: list[dict[str, Any]]) -> dict[str, Any]:
    condition = {"kind": "keyword", "match": "contains", "patterns": ["價格"], "auto_reply": auto_reply}
    return {"name": "價格詢問", "tag": "asked-price", "condition": condition}


def refusals(answer: httpx.Response) -> str:
    assert answer.status_code == 422, answer.text
    return "\n".join(str(error["msg"]) for error in answer.json()["detail"])


async def test_rules_refuse_auto_replies_line_would_refuse(start_tagger: Any) -> None:
    confirm: dict[str, Any] = {
        "type": "template",
        "altText": "確定嗎？",
        "template": {
            "type": "confirm",
            "text": "確定嗎？",
            "actions": [{"type": "message", "label": x, "text": x} for x in ("是", "否", "也許")],
        },
    }
    async with start_tagger() as tagger:
        client = tagger.client
        answer = await client.post(f"/channels/{CHANNEL}/rules", json=rule([{"type": "txt"}]))
        assert "auto_reply[0].type: must be one of the following values: [" in refusals(answer)
        answer = await client.post(f"/channels/{CHANNEL}/rules", json=rule([TEXT, confirm]))
        assert "auto_reply[1].template.actions: Size must be between 2 and 2" in refusals(answer)

        created = await client.post(f"/channels/{CHANNEL}/rules", json=rule([TEXT]))
        assert created.status_code == 201, created.text
        rule_id = created.json()["id"]
        answer = await client.put(f"/rules/{rule_id}", json=rule([{"type": "text", "text": ""}]))
        assert "auto_reply[0].text: must be specified" in refusals(answer)
        answer = await client.put(f"/rules/{rule_id}", json=rule([TEXT, {**TEXT, "text": "x" * 5_001}]))
        assert "auto_reply[1].text: Length must be between 1 and 5000" in refusals(answer)
        two = [{"type": "message", "label": x, "text": x} for x in ("是", "否")]
        good = {**confirm, "template": {**confirm["template"], "actions": two}}
        updated = await client.put(f"/rules/{rule_id}", json=rule([TEXT, good]))
        assert updated.status_code == 200, updated.text
        assert updated.json()["condition"]["auto_reply"][1] == good


async def test_a_stored_rule_line_would_refuse_is_ignored_and_the_others_apply(
    start_tagger: Any,
    inputs: Any,
    mongo_db: AsyncDatabase[dict[str, Any]],
    eventually: Callable[..., Awaitable[None]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rule stored before these checks existed (an auto-reply of type ``txt``) no longer loads; it is logged
    once and ignored, the tagger starts and every other rule applies."""
    now = datetime.now(UTC)
    old = Rule.model_validate(
        {
            **rule([TEXT]),
            "id": "old-1",
            "channel_id": CHANNEL,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
    )
    doc = rule_to_doc(old)
    doc["condition"]["auto_reply"] = [{"type": "txt", "text": "hi"}]
    doc["tag"] = "old-tag"
    await mongo_db["rules"].insert_one(doc)
    async with start_tagger() as tagger:
        created = await tagger.client.post(f"/channels/{CHANNEL}/rules", json=rule([TEXT]))
        assert created.status_code == 201, created.text
        await eventually(lambda: len(tagger.service.rules.current()) == 1, 10, "the valid rule loaded")
        await inputs.events(inputs.line.text("U1", "請問價格"))

        async def tagged() -> bool:
            member = await tagger.member("U1")
            return member is not None and "asked-price" in member["tags"]

        await eventually(tagged, 30, "U1 tagged by the valid rule")
        assert "old-tag" not in (await tagger.member("U1"))["tags"]
    reported = [r.getMessage() for r in caplog.records if "stored rule is not valid" in r.getMessage()]
    assert len(reported) == 1 and "auto_reply[0].type: must be one of" in reported[0]
