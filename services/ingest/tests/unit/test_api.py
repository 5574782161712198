"""The webhook endpoint's answers, with a recording publisher standing in for Kafka (one handler, no I/O).

What reaches the real Kafka is tested in ../integration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from tagline_ingest.api import WebhookEndpoint, build_app
from tagline_ingest.domain.normalize import OutgoingRecord
from tagline_ingest.metrics import IngestMetrics
from tagline_testing.webhook import WebhookBuilder

SECRET = "0123456789abcdef0123456789abcdef"
URL = "/line/webhook/1234567890"


class RecordingPublisher:
    def __init__(self, *, delay_s: float = 0.0, fail: bool = False) -> None:
        self.published: list[OutgoingRecord] = []
        self.delay_s = delay_s
        self.fail = fail

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise ConnectionError("broker gone")
        self.published.extend(records)

    async def ready(self) -> bool:
        return not self.fail


async def _client(publisher: RecordingPublisher, **kwargs: Any) -> httpx.AsyncClient:
    metrics = IngestMetrics()
    webhook = WebhookEndpoint(
        secrets={"1234567890": SECRET.encode()},
        publisher=publisher,
        metrics=metrics,
        publish_timeout_s=kwargs.get("publish_timeout_s", 0.3),
        max_body_bytes=kwargs.get("max_body_bytes", 10_000),
        max_in_flight=kwargs.get("max_in_flight", 100),
    )
    app = build_app(webhook, publisher, metrics)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@pytest.fixture
def builder() -> WebhookBuilder:
    return WebhookBuilder(SECRET)


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


async def test_signed_events_are_published_in_order(
    publisher: RecordingPublisher, builder: WebhookBuilder
) -> None:
    events = [builder.follow("U1"), builder.text("U2", "hi"), builder.text("U1", "again")]
    signed = builder.request(events)
    async with await _client(publisher) as client:
        response = await client.post(URL, content=signed.body, headers=signed.headers)
    assert response.status_code == 200
    assert [r.event_id for r in publisher.published] == [e["webhookEventId"] for e in events]
    assert [r.key for r in publisher.published] == [b"1234567890:U1", b"1234567890:U2", b"1234567890:U1"]


async def test_empty_events_is_200_and_publishes_nothing(
    publisher: RecordingPublisher, builder: WebhookBuilder
) -> None:
    signed = builder.request([])
    async with await _client(publisher) as client:
        assert (await client.post(URL, content=signed.body, headers=signed.headers)).status_code == 200
    assert publisher.published == []


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"\xff\xfe not json", 400, "not valid JSON"),
        (b"[]", 400, "not a LINE webhook"),
        (b'{"destination": "U1"}', 400, "events"),
        (b'{"destination": "U1", "events": [{"timestamp": 1}]}', 400, "not a LINE webhook"),
        (b'{"destination": "U1", "events": "x"}', 400, "events"),
    ],
)
async def test_bad_bodies_get_400_with_the_reason(
    publisher: RecordingPublisher, builder: WebhookBuilder, body: bytes, status: int, detail: str
) -> None:
    signed = builder.sign_body(body)
    async with await _client(publisher) as client:
        response = await client.post(URL, content=signed.body, headers=signed.headers)
    assert response.status_code == status
    assert detail in response.json()["detail"]
    assert publisher.published == []


async def test_signature_is_checked_before_the_body_is_parsed(
    publisher: RecordingPublisher, builder: WebhookBuilder
) -> None:
    async with await _client(publisher) as client:
        response = await client.post(URL, content=b"{not json", headers={"x-line-signature": "AAAA"})
    assert response.status_code == 401


async def test_body_over_the_limit_is_413(publisher: RecordingPublisher, builder: WebhookBuilder) -> None:
    signed = builder.request([builder.text("U1", "x" * 2000)])
    async with await _client(publisher, max_body_bytes=1000) as client:
        response = await client.post(URL, content=signed.body, headers=signed.headers)
    assert response.status_code == 413
    assert publisher.published == []


async def test_unknown_channel_is_404(publisher: RecordingPublisher, builder: WebhookBuilder) -> None:
    signed = builder.request([builder.text("U1", "hi")])
    async with await _client(publisher) as client:
        response = await client.post("/line/webhook/42", content=signed.body, headers=signed.headers)
    assert response.status_code == 404


@pytest.mark.parametrize("publisher_state", [{"fail": True}, {"delay_s": 1.0}])
async def test_no_acknowledgement_in_time_is_503(
    builder: WebhookBuilder, publisher_state: dict[str, Any]
) -> None:
    publisher = RecordingPublisher(**publisher_state)
    signed = builder.request([builder.text("U1", "hi")])
    async with await _client(publisher, publish_timeout_s=0.2) as client:
        response = await client.post(URL, content=signed.body, headers=signed.headers)
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 503
    assert 'tagline_ingest_webhook_rejects_total{reason="kafka_unavailable"} 1.0' in metrics


async def test_requests_beyond_the_in_flight_limit_get_503_at_once(builder: WebhookBuilder) -> None:
    publisher = RecordingPublisher(delay_s=0.3)
    async with await _client(publisher, max_in_flight=2, publish_timeout_s=1.0) as client:
        requests = [builder.request([builder.text(f"U{i}", "hi")]) for i in range(4)]
        responses = await asyncio.gather(
            *(client.post(URL, content=r.body, headers=r.headers) for r in requests)
        )
    assert sorted(r.status_code for r in responses) == [200, 200, 503, 503]
    assert len(publisher.published) == 2, "shed requests publish nothing"


async def test_the_documented_fastapi_route_answers_like_the_fast_path(
    publisher: RecordingPublisher, builder: WebhookBuilder
) -> None:
    async with await _client(publisher) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        assert "/line/webhook/{channel_id}" in app.api.openapi()["paths"]
        direct = httpx.AsyncClient(transport=httpx.ASGITransport(app=app.api), base_url="http://t")
        async with direct:
            signed = builder.request([builder.text("U1", "hi")])
            assert (await direct.post(URL, content=signed.body, headers=signed.headers)).status_code == 200
            assert (await direct.post(URL, content=signed.body, headers={})).status_code == 401
    assert len(publisher.published) == 1
