"""Ingest against the real Kafka: what a signed webhook puts on line.events.v1, and what it must not."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from tagline_contracts import topics
from tagline_contracts.envelope import LineEventReceived
from tagline_testing.kafka import read_topic
from tagline_testing.webhook import WebhookBuilder

pytestmark = pytest.mark.integration


async def test_several_users_events_land_once_each_with_keys_and_order_per_user(
    kafka_bootstrap: str, start_ingest: Any, channel: Any, builder: WebhookBuilder
) -> None:
    users = ["U" + c * 32 for c in "abc"]
    events = [
        builder.follow(users[0]),
        builder.text(users[1], "我要 +1"),
        builder.text(users[0], "hello"),
        builder.postback(users[2], "action=buy&item=A01", {"datetime": "2026-11-23T10:00"}),
        builder.unfollow(users[1]),
        builder.text(users[0], "ＶＩＰ"),
        builder.event(
            "message",
            None,
            source={"type": "group", "groupId": "C" + "9" * 32, "userId": users[2]},
            replyToken="r",
            message={
                "id": "1",
                "type": "sticker",
                "packageId": "1",
                "stickerId": "2",
                "stickerResourceType": "STATIC",
            },
        ),
        builder.event("messageEdited", users[2], edited={"text": "new"}),  # a type LINE may add one day
        builder.follow(users[1], unblocked=True),
    ]
    async with start_ingest(kafka_bootstrap_servers=kafka_bootstrap) as ingest:
        client = ingest.client
        signed = builder.request(events)
        response = await client.post(channel.url, content=signed.body, headers=signed.headers)
        assert response.status_code == 200, response.text

    records = await read_topic(
        kafka_bootstrap, ingest.settings.topic(topics.LINE_EVENTS), count=len(events), settle_s=1.0
    )
    assert len(records) == len(events), "every event exactly once"
    by_id = {e["webhookEventId"]: e for e in events}
    received = [LineEventReceived.model_validate_json(r.value) for r in records]
    assert sorted(m.event_id for m in received) == sorted(by_id)

    for record, message in zip(records, received, strict=True):
        original = by_id[message.event_id]
        source = original["source"]
        source_id = source.get("groupId") or source["userId"]
        assert record.key == f"{channel.id}:{source_id}".encode()
        assert message.channel_id == channel.id
        assert message.source_id == source_id
        assert int(message.occurred_at.timestamp() * 1000) == original["timestamp"]
        assert orjson.loads(record.value)["payload"] == original, "payload is LINE's event, nothing lost"

    # Order per source: one partition per key, offsets follow the request's order.
    for user in users:
        sent = [
            e["webhookEventId"]
            for e in events
            if e["source"].get("userId") == user and "groupId" not in e["source"]
        ]
        got = [
            m.event_id
            for r, m in sorted(zip(records, received, strict=True), key=lambda p: p[0].offset)
            if r.key == f"{channel.id}:{user}".encode()
        ]
        assert got == sent

    unknown = next(m for m in received if m.event_type == "messageEdited")
    assert orjson.loads(unknown.payload.model_dump_json(by_alias=True, exclude_none=True))["edited"] == {
        "text": "new"
    }


async def test_each_channel_verifies_with_its_own_secret(
    kafka_bootstrap: str, start_ingest: Any, other_channel: Any, builder: WebhookBuilder
) -> None:
    async with start_ingest(kafka_bootstrap_servers=kafka_bootstrap) as ingest:
        client = ingest.client
        signed = builder.request([builder.text("U" + "1" * 32, "hi")])  # signed with channel.id's secret
        wrong = await client.post(other_channel.url, content=signed.body, headers=signed.headers)
        assert wrong.status_code == 401


async def test_rejected_requests_publish_nothing(
    kafka_bootstrap: str, start_ingest: Any, channel: Any, builder: WebhookBuilder
) -> None:
    events = [builder.text("U" + "1" * 32, "hi")]
    async with start_ingest(kafka_bootstrap_servers=kafka_bootstrap, max_body_bytes=4096) as ingest:
        client = ingest.client
        good = builder.request(events)
        bad_sig = {
            **good.headers,
            "x-line-signature": builder.request(events, secret="x" * 32).headers["x-line-signature"],
        }
        no_sig = {"content-type": "application/json"}
        cases = [
            (channel.url, good.body, bad_sig, 401),
            (channel.url, good.body, no_sig, 401),
            ("/line/webhook/999", good.body, good.headers, 404),
            (channel.url, *_signed(builder, b"{not json"), 400),
            (channel.url, *_signed(builder, b'{"destination": "U1", "events": {"a": 1}}'), 400),
            (channel.url, *_signed(builder, b'{"events": [{"no": "type"}]}'), 400),
            (channel.url, *_signed(builder, builder.body([builder.text("U" + "1" * 32, "x" * 5000)])), 413),
        ]
        for url, body, headers, status in cases:
            response = await client.post(url, content=body, headers=headers)
            assert response.status_code == status, (url, body[:60], response.text)
            assert response.json()["detail"], "a clear reason is given"

    records = await read_topic(
        kafka_bootstrap, ingest.settings.topic(topics.LINE_EVENTS), count=1, timeout_s=2.0
    )
    assert records == []


def _signed(builder: WebhookBuilder, body: bytes) -> tuple[bytes, dict[str, str]]:
    signed = builder.sign_body(body)
    return signed.body, signed.headers


async def test_connectivity_check_with_no_events_is_ok(
    kafka_bootstrap: str, start_ingest: Any, channel: Any, builder: WebhookBuilder
) -> None:
    async with start_ingest(kafka_bootstrap_servers=kafka_bootstrap) as ingest:
        client = ingest.client
        signed = builder.request([])
        assert (
            await client.post(channel.url, content=signed.body, headers=signed.headers)
        ).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        metrics = (await client.get("/metrics")).text
        assert 'tagline_ingest_webhook_requests_total{status="200"} 1.0' in metrics


async def test_unreachable_broker_answers_503_never_200(
    start_ingest: Any, channel: Any, builder: WebhookBuilder, unused_tcp_port: int
) -> None:
    async with start_ingest(
        kafka_bootstrap_servers=f"127.0.0.1:{unused_tcp_port}", publish_timeout_s=0.5
    ) as ingest:
        client = ingest.client
        signed = builder.request([builder.text("U" + "1" * 32, "hi")])
        started = time.monotonic()
        response = await client.post(channel.url, content=signed.body, headers=signed.headers)
        assert response.status_code == 503
        assert time.monotonic() - started < 2.0, "LINE gives up after 2 s"
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200
