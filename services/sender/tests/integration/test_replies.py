"""Replies against real Kafka, FerretDB and the LINE API emulator: one reply per inbound event, never a second
paid push, and the channel's reply_fallback for a stale or refused token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tagline_contracts import topics
from tagline_contracts.envelope import new_event_id
from tagline_contracts.sending import SendMessages, SendRequested, send_request_key
from tagline_ingest.domain.normalize import normalize, parse_body
from tagline_line_emulator import Fault
from tagline_testing.kafka import read_topic
from tagline_testing.metrics import samples
from tagline_testing.webhook import WebhookBuilder

pytestmark = pytest.mark.integration

CHANNEL = "1234567890"
GATHER_MS = 3_000  # the default (1 s) with room for a test machine whose cores are busy with other tests
Eventually = Callable[..., Awaitable[None]]


def texts(*words: str) -> list[dict[str, str]]:
    return [{"type": "text", "text": word} for word in words]


def reply_request(key: str, token: str, messages: list[dict[str, str]], user: str = "U1") -> dict[str, Any]:
    """What the tagger publishes for an auto-reply (and liveshop for a chat order): one user, the token."""
    now = datetime.now(UTC)
    return {
        "idempotency_key": key,
        "category": "transactional",
        "messages": messages,
        "target": {"kind": "user", "user_id": user},
        "reply": {"token": token, "received_at": now.isoformat()},
    }


async def send_together(producer: AIOKafkaProducer, namespace: str, *requests: dict[str, Any]) -> None:
    """Publish requests in one batch, as the tagger publishes the auto-replies of one message."""
    now = datetime.now(UTC)
    for request in requests:
        payload = SendMessages.model_validate(request)
        envelope = SendRequested(
            event_id=new_event_id(), channel_id=CHANNEL, occurred_at=now, produced_at=now, payload=payload
        )
        await producer.send(
            f"{namespace}{topics.SEND_REQUESTS}",
            envelope.model_dump_json(by_alias=True).encode(),
            key=send_request_key(CHANNEL, payload.target).encode(),
        )
    await producer.flush()


async def results(kafka_bootstrap: str, namespace: str, count: int) -> dict[str, dict[str, Any]]:
    """The send results by request id (read once ``count`` are there, and a moment longer for any more)."""
    records = await read_topic(
        kafka_bootstrap, f"{namespace}{topics.SEND_RESULTS}", count=count, timeout_s=30, settle_s=1.0
    )
    found = [json.loads(r.value)["payload"] for r in records]
    by_key = {result["request_id"]: result for result in found}
    assert len(by_key) == len(found), f"one result per request: {found}"
    return by_key


def left_out(metrics: str, reason: str) -> float:
    found = samples(metrics, "tagline_sender_reply_requests_left_out_total")
    return sum(value for labels, value in found if labels.get("reason") == reason)


async def test_two_replies_to_one_event_go_out_as_one_reply(
    start_sender: Any, kafka_producer: AIOKafkaProducer, line: Any, kafka_bootstrap: str, namespace: str
) -> None:
    token = line.emu.issue_reply_token(CHANNEL, "U1")
    # a channel that would pay for a push: the second reply must still not become one
    async with start_sender(channel={"reply_fallback": "push"}, reply_gather_ms=GATHER_MS):
        await send_together(
            kafka_producer,
            namespace,
            reply_request("autoreply:rule-a:ev1", token, texts("滿千折百")),
            reply_request("autoreply:rule-b:ev1", token, texts("新品上市")),
        )
        by_key = await results(kafka_bootstrap, namespace, 2)
    assert line.emu.received(CHANNEL, "U1") == {
        "滿千折百 | 新品上市": 1
    }  # one reply, both messages, in order
    assert line.emu.count("reply") == 1 and line.emu.count("push") == 0
    assert line.emu.usage(CHANNEL) == 0  # the quota's "used" did not move: replies are free
    for key in ("autoreply:rule-a:ev1", "autoreply:rule-b:ev1"):
        result = by_key[key]
        assert (result["outcome"], result["method"], result["messages_counted"]) == ("accepted", "reply", 0)
        assert result["user_ids"] == ["U1"] and result["line_request_id"]


async def test_beyond_five_messages_whole_requests_in_arrival_order(
    start_sender: Any, kafka_producer: AIOKafkaProducer, line: Any, kafka_bootstrap: str, namespace: str
) -> None:
    token = line.emu.issue_reply_token(CHANNEL, "U1")
    async with start_sender(channel={"reply_fallback": "push"}, reply_gather_ms=GATHER_MS) as sender:
        await send_together(
            kafka_producer,
            namespace,
            reply_request("first", token, texts("a1", "a2", "a3")),
            reply_request("second", token, texts("b1", "b2", "b3")),
            reply_request("third", token, texts("c1", "c2")),
        )
        by_key = await results(kafka_bootstrap, namespace, 3)
        metrics = (await sender.client.get("/metrics")).text
    # 3 + 3 do not fit in LINE's 5: the second request is not split and not pushed; the third still fits
    assert line.emu.received(CHANNEL, "U1") == {"a1 | a2 | a3 | c1 | c2": 1}
    assert line.emu.count("reply") == 1 and line.emu.count("push") == 0
    assert by_key["first"]["outcome"] == by_key["third"]["outcome"] == "accepted"
    second = by_key["second"]
    assert second["outcome"] == "failed" and second["messages_counted"] == 0
    assert "3 of LINE's 5 message objects" in second["reason"] and "never pushed" in second["reason"]
    assert left_out(metrics, "over_limit") == 1


async def test_each_request_that_joins_restarts_the_gather_window(
    start_sender: Any, publish: Any, line: Any, eventually: Eventually, kafka_bootstrap: str, namespace: str
) -> None:
    token = line.emu.issue_reply_token(CHANNEL, "U1")
    async with start_sender(reply_gather_ms=GATHER_MS):
        # 4 s from the first to the last, each 2 s after the one before (a slow chain of producers)
        for key in ("chain-1", "chain-2", "chain-3"):
            await publish.send(reply_request(key, token, texts(key)))
            await asyncio.sleep(2.0)
        by_key = await results(kafka_bootstrap, namespace, 3)
    assert line.emu.received(CHANNEL, "U1") == {"chain-1 | chain-2 | chain-3": 1}
    assert {r["outcome"] for r in by_key.values()} == {"accepted"}


async def test_a_reply_arriving_after_the_events_reply_is_never_pushed(
    start_sender: Any, publish: Any, line: Any, eventually: Eventually, kafka_bootstrap: str, namespace: str
) -> None:
    token = line.emu.issue_reply_token(CHANNEL, "U1")
    async with start_sender(channel={"reply_fallback": "push"}) as sender:
        await publish.send(reply_request("on-time", token, texts("收到訂單")))
        await eventually(lambda: line.emu.count("reply") == 1, what="the first reply")
        await publish.send(reply_request("late", token, texts("加碼優惠")))
        by_key = await results(kafka_bootstrap, namespace, 2)
        metrics = (await sender.client.get("/metrics")).text
    assert by_key["on-time"]["outcome"] == "accepted"
    late = by_key["late"]
    assert late["outcome"] == "failed" and "single-use" in late["reason"] and "never pushed" in late["reason"]
    assert line.emu.count("reply") == 1, "the spent token was not even tried again"
    assert line.emu.count("push") == 0 and line.emu.usage(CHANNEL) == 0
    assert left_out(metrics, "late") == 1


async def test_an_unanswered_group_reply_is_retried_and_never_followed_by_a_push(
    start_sender: Any, kafka_producer: AIOKafkaProducer, line: Any, kafka_bootstrap: str, namespace: str
) -> None:
    # LINE takes the reply but the answer never comes back: the retry finds the token spent
    line.emu.inject(Fault(endpoint="reply", kind="timeout_after_accept", times=1, delay_s=3.0))
    token = line.emu.issue_reply_token(CHANNEL, "U1")
    async with start_sender(
        channel={"reply_fallback": "push"}, request_timeout_s=0.5, reply_gather_ms=GATHER_MS
    ):
        await send_together(
            kafka_producer,
            namespace,
            reply_request("g-1", token, texts("one")),
            reply_request("g-2", token, texts("two")),
        )
        by_key = await results(kafka_bootstrap, namespace, 2)
    assert line.emu.received(CHANNEL, "U1") == {"one | two": 1}, [
        (r["request_id"], r["reason"]) for r in by_key.values()
    ]
    assert line.emu.count("reply", status=400) >= 1 and line.emu.count("push") == 0
    assert {r["outcome"] for r in by_key.values()} == {"accepted"}
    assert all("consumed by an earlier attempt" in r["reason"] for r in by_key.values())


@pytest.mark.parametrize("fallback", ["drop", "push"])
async def test_a_refused_group_reply_follows_the_fallback_as_one_push_at_most(
    fallback: str,
    start_sender: Any,
    kafka_producer: AIOKafkaProducer,
    line: Any,
    kafka_bootstrap: str,
    namespace: str,
) -> None:
    async with start_sender(channel={"reply_fallback": fallback}, reply_gather_ms=GATHER_MS):
        # a token LINE refuses ("Invalid reply token": expired on its side)
        await send_together(
            kafka_producer,
            namespace,
            reply_request("x-1", "unknown-token", texts("one")),
            reply_request("x-2", "unknown-token", texts("two")),
        )
        by_key = await results(kafka_bootstrap, namespace, 2)
    assert line.emu.count("reply") == 1, "the group's token was tried once"
    first, second = by_key["x-1"], by_key["x-2"]
    if fallback == "push":
        assert line.emu.received(CHANNEL, "U1") == {"one | two": 1} and line.emu.count("push") == 1
        assert line.emu.usage(CHANNEL) == 1  # one push, one billable message for the event
        assert first["outcome"] == second["outcome"] == "accepted"
        assert first["method"] == second["method"] == "push"
        assert (first["messages_counted"], second["messages_counted"]) == (1, 0)
    else:
        assert line.emu.count("push") == 0 and line.emu.usage(CHANNEL) == 0
        assert first["outcome"] == second["outcome"] == "failed"
        assert "reply_fallback is drop" in first["reason"] and "reply_fallback is drop" in second["reason"]


@pytest.mark.parametrize("fallback", ["drop", "push"])
async def test_single_replies_and_the_channels_fallback_for_a_stale_or_refused_token(
    fallback: str,
    start_sender: Any,
    publish: Any,
    line: Any,
    eventually: Eventually,
    kafka_bootstrap: str,
    namespace: str,
) -> None:
    fresh = line.emu.issue_reply_token(CHANNEL, "U1")
    old = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    async with start_sender(channel={"reply_fallback": fallback}):
        await publish.send(reply_request("r-fresh", fresh, texts("hi")))
        # a token LINE does not know (expired on its side) is refused with 400
        await publish.send(reply_request("r-bad", "nope", texts("hi"), user="U2"))
        # a token older than the sender's TTL is not even tried
        stale = reply_request("r-old", "old", texts("hi"), user="U3")
        await publish.send({**stale, "reply": {"token": "old", "received_at": old}})
        by_key = await results(kafka_bootstrap, namespace, 3)
    assert line.emu.count("reply", status=200) == 1 and line.emu.count("reply", status=400) == 1
    assert by_key["r-fresh"]["outcome"] == "accepted" and by_key["r-fresh"]["method"] == "reply"
    pushed = sorted(r.recipients[0] for r in line.emu.requests(endpoint="push") if r.accepted)
    if fallback == "push":
        assert pushed == ["U2", "U3"] and line.emu.usage(CHANNEL) == 2
        assert {by_key[k]["method"] for k in ("r-bad", "r-old")} == {"push"}
        assert {by_key[k]["messages_counted"] for k in ("r-bad", "r-old")} == {1}
    else:
        assert pushed == [] and line.emu.usage(CHANNEL) == 0
        for key, why in (("r-bad", "refused by LINE"), ("r-old", "stale")):
            assert by_key[key]["outcome"] == "failed" and by_key[key]["messages_counted"] == 0
            assert why in by_key[key]["reason"] and "reply_fallback is drop" in by_key[key]["reason"]


async def test_welcomes_are_never_pushed_by_default(
    start_sender: Any, publish: Any, line: Any, eventually: Eventually, kafka_bootstrap: str, namespace: str
) -> None:
    builder = WebhookBuilder("secret")
    async with start_sender() as sender:
        answer = await sender.client.put(f"/channels/{CHANNEL}/welcome", json={"messages": texts("歡迎！")})
        assert answer.status_code == 200, answer.text
        events = [builder.follow(f"N{i}") for i in range(3)]
        line.emu.issue_reply_token(CHANNEL, "N0", token=events[0]["replyToken"])  # LINE refuses the others
        for record in normalize(CHANNEL, parse_body(builder.body(events)), datetime.now(UTC)):
            await publish.raw(topics.LINE_EVENTS, record.value, record.key)
        by_key = await results(kafka_bootstrap, namespace, 3)
    assert sorted(r["outcome"] for r in by_key.values()) == ["accepted", "failed", "failed"]
    assert line.emu.deliveries(CHANNEL) == {"N0": 1}
    assert line.emu.count("push") == 0 and line.emu.usage(CHANNEL) == 0


@pytest.mark.parametrize("fallback", ["drop", "push"])
async def test_the_estimate_shows_the_fallback_and_what_a_failing_token_would_cost(
    fallback: str, start_sender: Any, line: Any
) -> None:
    line.emu.set_quota(CHANNEL, 100_000)
    async with start_sender(channel={"reply_fallback": fallback, "plan": "high"}) as sender:
        body = reply_request("est", "tok", texts("hi"))
        fresh = (await sender.client.post(f"/channels/{CHANNEL}/estimate", json=body)).json()
        old = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        stale_body = {**body, "reply": {"token": "tok", "received_at": old}}
        stale = (await sender.client.post(f"/channels/{CHANNEL}/estimate", json=stale_body)).json()
        plain = {k: v for k, v in body.items() if k != "reply"}
        push = (await sender.client.post(f"/channels/{CHANNEL}/estimate", json=plain)).json()
    assert (fresh["method"], fresh["billable_messages"], fresh["reply_fallback"]) == ("reply", 0, fallback)
    expected = {"reply_fallback": fallback, "method": "push", "billable_messages": 1, "cost_ntd": 0.0}
    if fallback == "drop":
        expected |= {"method": "none", "billable_messages": 0}
    assert fresh["if_reply_fails"] == expected
    assert (stale["method"], stale["billable_messages"]) == (
        expected["method"],
        expected["billable_messages"],
    )
    assert push["method"] == "push" and push["if_reply_fails"] is None


async def test_the_only_answer_to_an_event_does_not_wait_the_gather_window(
    start_sender: Any, publish: Any, line: Any, eventually: Eventually, kafka_bootstrap: str, namespace: str
) -> None:
    # a window far longer than the wait below: only a reply sent without it can arrive in time
    token = line.emu.issue_reply_token(CHANNEL, "U1")
    async with start_sender(reply_gather_ms=10_000):
        request = reply_request("welcome:ev1", token, texts("歡迎加入"))
        request["reply"]["sole"] = True
        await publish.send(request)
        await eventually(
            lambda: line.emu.count("reply") == 1, timeout_s=7, what="the sole reply, before the window"
        )
        late = reply_request("autoreply:ev1", token, texts("遲到"))
        await publish.send(late)
        by_key = await results(kafka_bootstrap, namespace, 2)
    assert line.emu.received(CHANNEL, "U1") == {"歡迎加入": 1}
    assert by_key["welcome:ev1"]["outcome"] == "accepted"
    assert (
        by_key["autoreply:ev1"]["outcome"] == "failed" and "never pushed" in by_key["autoreply:ev1"]["reason"]
    )
