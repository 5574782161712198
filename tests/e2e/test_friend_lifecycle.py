"""A friend's whole life with a brand, through every service as its own process.

follow (signed webhook into ingest) → member with its source tag (tagger) → welcome reply (sender, free) →
a message matching two keyword rules with auto-replies → tagged, and both answers in one free reply (one
reply token per event) → journey step 1 at its time (sender, clock moved through the offset file) → a segment
campaign, published twice, reaches them once → they block → the journey's next step and the next campaign
do not reach them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tagline_contracts import topics
from tagline_contracts.envelope import new_event_id
from tagline_contracts.sending import SendMessages, SendRequested, send_request_key
from tagline_testing.stack import Client, Stack
from tagline_testing.waiting import eventually
from tagline_testing.webhook import WebhookBuilder

HOUR = 3600.0
COUPON, ASK = "優惠券：輸入 COUPON50", "客服會盡快回覆您"  # two rules' auto-replies to one message
USER = "U" + "f" * 32
BYSTANDER = "U" + "e" * 32  # follows too, never writes the keyword: the campaign's segment leaves them out


async def _webhook(stack: Stack, events: list[dict[str, Any]]) -> None:
    c = stack.config
    signed = WebhookBuilder(c.channel_secret).request(events)
    async with httpx.AsyncClient(timeout=10.0) as http:
        answer = await http.post(
            f"{stack.url('ingest')}/line/webhook/{c.channel_id}", content=signed.body, headers=signed.headers
        )
    assert answer.status_code == 200, answer.text


async def _campaign(
    producer: AIOKafkaProducer, stack: Stack, key: str, text: str, segment: dict[str, Any]
) -> None:
    c = stack.config
    request = SendMessages.model_validate(
        {
            "idempotency_key": key,
            "category": "marketing",
            "messages": [{"type": "text", "text": text}],
            "target": {"kind": "segment", "filter": segment},
            "labels": {"campaign": key},
        }
    )
    now = datetime.now(UTC)
    envelope = SendRequested(
        event_id=new_event_id(), channel_id=c.channel_id, occurred_at=now, produced_at=now, payload=request
    )
    await producer.send_and_wait(
        f"{c.namespace}{topics.SEND_REQUESTS}",
        envelope.model_dump_json(by_alias=True).encode(),
        key=send_request_key(c.channel_id, request.target).encode(),
    )


@pytest.mark.timeout(600)  # every service as its own process: about 70 s on a quiet machine
async def test_a_friend_from_follow_to_block(  # noqa: PLR0915 - one story, told in order
    stack: Stack, kafka_producer: AIOKafkaProducer
) -> None:
    c = stack.config
    tagger, sender, emu = (
        Client(stack.url("tagger")),
        Client(stack.url("sender")),
        Client(stack.url("line-emu")),
    )
    try:
        journey = await _set_up(tagger, sender, c.channel_id)
        await _wait_journey_loaded(sender, c.channel_id)

        async def rules_loaded() -> bool:
            return (await stack.metric("tagger", "tagline_tagger_rules_loaded") or 0) >= 3

        await eventually(rules_loaded, timeout_s=30, what="the tagger loaded the three rules")

        # 1. they follow; LINE's reply token is one the emulator issued
        follows = [WebhookBuilder(c.channel_secret).follow(user) for user in (USER, BYSTANDER)]
        for event in follows:
            await emu.call(
                "POST",
                f"/_emulator/channels/{c.channel_id}/reply-tokens",
                json={"userId": event["source"]["userId"], "token": event["replyToken"]},
            )
        await _webhook(stack, follows)

        async def member(user: str) -> dict[str, Any]:
            return dict(
                await tagger.call("GET", f"/channels/{c.channel_id}/members/{user}", expect=(200, 404))
            )

        async def tagged(tag: str, user: str = USER) -> bool:
            return tag in {
                t["name"] if isinstance(t, dict) else t for t in (await member(user)).get("tags", [])
            }

        await eventually(lambda: tagged("src_line_pay"), timeout_s=60, what="the follow tagged the friend")
        assert (await member(USER))["attributes"]["source"] == "line_pay"

        async def received(user: str = USER) -> dict[str, int]:
            """What LINE delivered to ``user``: message texts -> times (from the emulator's records)."""
            found = await emu.call("GET", f"/_emulator/channels/{c.channel_id}/received/{user}")
            return {item["messages"]: item["count"] for item in found["received"]}

        async def got(text: str, user: str = USER) -> bool:
            return text in await received(user)

        await eventually(lambda: got("歡迎加入！"), timeout_s=60, what="the welcome reply")
        await eventually(lambda: got("歡迎加入！", BYSTANDER), timeout_s=60, what="the other welcome")
        replies = await emu.call("GET", "/_emulator/requests", params={"endpoint": "reply", "status": 200})
        assert replies["total"] == 2, "each follow welcomed once, with its reply token (free)"

        async def entered() -> bool:
            stats = await sender.call("GET", f"/journeys/{journey['id']}/stats")
            return bool(sum(s.get("entered", 0) for s in stats["steps"]) == 2)

        await eventually(entered, timeout_s=60, what="both friends entered the journey")

        # 2. a message matching two keyword rules tags them, and both auto-replies go out as one reply with
        # the event's token (LINE would refuse a second reply, and a push instead would be paid); before the
        # sender's clock is moved on, so the token is fresh for it
        question = WebhookBuilder(c.channel_secret).text(USER, "請問有優惠嗎？")
        await emu.call(
            "POST",
            f"/_emulator/channels/{c.channel_id}/reply-tokens",
            json={"userId": USER, "token": question["replyToken"]},
        )
        await _webhook(stack, [question])
        await eventually(lambda: tagged("wants_coupon"), timeout_s=60, what="the keyword tag")

        async def auto_replies() -> list[str]:
            """What the friend received that holds an auto-reply (the tagger fires rules in rule id order)."""
            return [text for text in await received() if COUPON in text or ASK in text]

        async def one_reply_with_both() -> bool:
            return [set(text.split(" | ")) for text in await auto_replies()] == [{COUPON, ASK}]

        await eventually(one_reply_with_both, timeout_s=60, what="both auto-replies in one reply")
        replies = await emu.call("GET", "/_emulator/requests", params={"endpoint": "reply"})
        assert [r["status"] for r in replies["requests"]] == [200, 200, 200], "two welcomes, one auto-reply"

        # 3. step 1 is due the next day at 10:00 Taipei time: at least 10 h away, at most 34 h
        stack.advance(9 * HOUR)
        await _quiet(1.5)
        assert not await got("50 元折價券"), "step 1 went out before its time"
        stack.advance(26 * HOUR)
        await eventually(lambda: got("50 元折價券"), timeout_s=60, what="journey step 1")

        # 4. a campaign to the segment, published twice, reaches them once
        segment = {"op": "tags", "any": ["wants_coupon"]}
        await _wait_projection(sender, c.channel_id, segment, 1)
        for _ in range(2):
            await _campaign(kafka_producer, stack, "campaign-1", "本週優惠：全館 8 折", segment)
        await eventually(lambda: got("本週優惠：全館 8 折"), timeout_s=60, what="the campaign")

        # 5. they block (LINE knows at once and sends the unfollow event): they leave the journey; the
        # next step and the next campaign are not even attempted for them
        await emu.call("POST", f"/_emulator/channels/{c.channel_id}/block", json={"userIds": [USER]})
        await _webhook(stack, [WebhookBuilder(c.channel_secret).unfollow(USER)])

        async def blocked() -> bool:
            return (await member(USER)).get("follow_state") == "blocked"

        await eventually(blocked, timeout_s=60, what="the tagger saw the block")

        async def exited() -> bool:
            stats = await sender.call("GET", f"/journeys/{journey['id']}/stats")
            return bool(sum(s.get("exited", 0) for s in stats["steps"]) == 1)

        await eventually(exited, timeout_s=60, what="the friend left the journey")
        await _wait_projection(sender, c.channel_id, segment, 0)
        await _campaign(
            kafka_producer, stack, "campaign-2", "週末限定", {"op": "tags", "any": ["src_line_pay"]}
        )
        stack.advance(24 * HOUR)
        await eventually(lambda: got("第二天好禮", BYSTANDER), timeout_s=60, what="step 2 for the bystander")
        await eventually(
            lambda: got("週末限定", BYSTANDER), timeout_s=60, what="campaign 2 for the bystander"
        )
        await _quiet(2.0)

        [auto_reply] = await auto_replies()  # once, and never as a push of its own
        assert await received(USER) == {
            "歡迎加入！": 1,
            "50 元折價券": 1,
            auto_reply: 1,
            "本週優惠：全館 8 折": 1,
        }
        assert await received(BYSTANDER) == {
            "歡迎加入！": 1,
            "50 元折價券": 1,
            "第二天好禮": 1,
            "週末限定": 1,
        }
        attempts = await emu.call("GET", f"/_emulator/channels/{c.channel_id}/blocked-attempts")
        assert attempts["blockedAttempts"] == {}, "nothing was even tried for the friend who blocked"
        assert stack.errors_in_logs() == {}
    finally:
        for client in (tagger, sender, emu):
            await client.close()


async def _set_up(tagger: Client, sender: Client, channel_id: str) -> dict[str, Any]:
    """The brand's set-up: a follow tags the friend with where they came from, a keyword rule, a welcome
    and a two-step journey for friends from LINE Pay. Returns the journey."""
    await tagger.call(
        "POST",
        f"/channels/{channel_id}/rules",
        json={
            "name": "LINE Pay 好友",
            "tag": "src_line_pay",
            "condition": {"kind": "follow"},
            "set_attributes": {"source": "line_pay"},
        },
    )
    await tagger.call(
        "POST",
        f"/channels/{channel_id}/rules",
        json={
            "name": "想要優惠",
            "tag": "wants_coupon",
            "condition": {
                "kind": "keyword",
                "match": "contains",
                "patterns": ["優惠"],
                "auto_reply": [{"type": "text", "text": COUPON}],
            },
        },
    )
    await tagger.call(
        "POST",
        f"/channels/{channel_id}/rules",
        json={
            "name": "提問",
            "tag": "asked",
            "condition": {
                "kind": "keyword",
                "match": "contains",
                "patterns": ["請問"],
                "auto_reply": [{"type": "text", "text": ASK}],
            },
        },
    )
    await sender.call(
        "PUT",
        f"/channels/{channel_id}/welcome",
        json={"messages": [{"type": "text", "text": "歡迎加入！"}]},
    )
    journey = await sender.call(
        "POST",
        f"/channels/{channel_id}/journeys",
        json={
            "name": "LINE Pay 感謝禮",
            "trigger": {"kind": "friend_added", "sources": ["line_pay"]},
            "steps": [
                {"wait": 1, "at": "10:00", "otherwise": [{"type": "text", "text": "50 元折價券"}]},
                {"wait": 1, "at": "10:00", "otherwise": [{"type": "text", "text": "第二天好禮"}]},
            ],
        },
    )
    return dict(journey)


async def _quiet(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def _wait_journey_loaded(sender: Client, channel_id: str) -> None:
    """Journey definitions are reloaded every TAGLINE_SENDER_JOURNEY_REFRESH_S (0.5 s in the stack)."""
    await _quiet(1.5)


async def _wait_projection(sender: Client, channel_id: str, segment: dict[str, Any], count: int) -> None:
    """The sender plans campaigns from its own projection of member.changes: wait until it has caught up."""

    async def counted() -> bool:
        estimate = await sender.call(
            "POST",
            f"/channels/{channel_id}/estimate",
            json={
                "idempotency_key": "estimate",
                "category": "marketing",
                "messages": [{"type": "text", "text": "x"}],
                "target": {"kind": "segment", "filter": segment},
            },
        )
        return int(estimate["recipients"]) == count

    await eventually(counted, timeout_s=60, what=f"the sender's projection has {count} in the segment")
