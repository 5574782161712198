"""The welcome message: a free reply to each follow, different for unblocked friends and per add-friend
source, sent once however often LINE redelivers the follow event."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tagline_contracts import topics
from tagline_ingest.domain.normalize import normalize, parse_body
from tagline_testing.kafka import read_topic
from tagline_testing.waiting import eventually
from tagline_testing.webhook import WebhookBuilder

CHANNEL = "1234567890"


def _text(text: str) -> list[dict[str, str]]:
    return [{"type": "text", "text": text}]


async def test_follows_get_the_welcome_by_reply_once(
    start_sender: Any, publish: Any, line: Any, kafka_bootstrap: str, namespace: str
) -> None:
    builder = WebhookBuilder("secret")
    welcome = {
        "messages": _text("歡迎加入！"),
        "unblocked_messages": _text("歡迎回來！"),
        "by_source": [{"source": "line_pay", "messages": _text("感謝使用 LINE Pay")}],
    }
    async with start_sender() as sender:
        answer = await sender.client.put(f"/channels/{CHANNEL}/welcome", json=welcome)
        assert answer.status_code == 200, answer.text
        bad = await sender.client.put(f"/channels/{CHANNEL}/welcome", json={"messages": []})
        assert bad.status_code == 422
        await publish.member("P1", attributes={"source": "line_pay"})  # the source is known before the follow
        await eventually(lambda: _projected(sender, "P1"), what="P1 in the sender's projection", timeout_s=30)
        events = [builder.follow("N1"), builder.follow("B1", unblocked=True), builder.follow("P1")]
        for event in events:
            line.emu.issue_reply_token(CHANNEL, event["source"]["userId"], token=event["replyToken"])
        records = normalize(CHANNEL, parse_body(builder.body(events)), datetime.now(UTC))
        for record in [*records, records[0]]:  # the first follow delivered twice
            await publish.raw(topics.LINE_EVENTS, record.value, record.key)
        await eventually(lambda: len(line.emu.deliveries(CHANNEL)) == 3, what="three welcomes", timeout_s=30)
        assert line.emu.count("reply", status=200) == 3 and line.emu.count("push") == 0  # free replies
        requests = await read_topic(
            kafka_bootstrap, f"{namespace}{topics.SEND_REQUESTS}", count=4, settle_s=1.0
        )
    texts = {
        json.loads(r.value)["payload"]["target"]["user_id"]: json.loads(r.value)["payload"]["messages"][0][
            "text"
        ]
        for r in requests
    }
    assert texts == {"N1": "歡迎加入！", "B1": "歡迎回來！", "P1": "感謝使用 LINE Pay"}
    # the only answer to a follow: replied at once, not after the gather window for other answers
    assert {json.loads(r.value)["payload"]["reply"]["sole"] for r in requests} == {True}
    assert line.emu.deliveries(CHANNEL) == {"N1": 1, "B1": 1, "P1": 1}


async def _projected(sender: Any, user_id: str) -> bool:
    return await sender.service.journey_store.member(CHANNEL, user_id) is not None
