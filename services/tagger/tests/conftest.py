"""Fixtures for tagger tests: taggers in-process, a producer that speaks every input topic."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pymongo.asynchronous.database import AsyncDatabase

from tagline_contracts import topics
from tagline_contracts.attributes import MemberUpdated, MemberUpdatedEvent
from tagline_contracts.envelope import new_event_id
from tagline_contracts.orders import OrderEvent, OrderEventRecord
from tagline_contracts.sending import SendResult, SendResulted
from tagline_ingest.domain.normalize import normalize, parse_body
from tagline_platform.kafka import ensure_topics
from tagline_tagger.app import create_app
from tagline_tagger.pipeline import MEMBER_TOPICS
from tagline_tagger.service import TaggerService
from tagline_tagger.settings import TaggerSettings
from tagline_testing.webhook import WebhookBuilder

CHANNEL = "1234567890"
PARTITIONS = 3


@dataclass
class RunningTagger:
    service: TaggerService
    client: httpx.AsyncClient

    async def member(self, user_id: str, channel: str = CHANNEL) -> dict[str, Any] | None:
        return await self.service.store.get_member(channel, user_id)


TaggerFactory = Callable[..., AbstractAsyncContextManager[RunningTagger]]


@pytest.fixture
def tagger_settings(
    namespace: str, mongo_db: AsyncDatabase[dict[str, Any]], kafka_bootstrap: str, mongodb_url: str
) -> Callable[..., TaggerSettings]:
    def make(**overrides: Any) -> TaggerSettings:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "mongodb_url": mongodb_url,
            "database": mongo_db.name,
            "topic_namespace": namespace,
            "topic_partitions": PARTITIONS,
            "group_id": f"{namespace}tagger",
            "channels": [CHANNEL],
            "batch_timeout_ms": 20,
            "rules_refresh_s": 0.2,
            "sweep_interval_s": 3600,
            "coverage_refresh_s": 3600,
            **overrides,
        }
        return TaggerSettings(**values)

    return make


@pytest.fixture
def start_tagger(tagger_settings: Callable[..., TaggerSettings]) -> TaggerFactory:
    """``async with start_tagger(**settings) as tagger:`` runs one tagger instance in this process."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[RunningTagger]:
        app = create_app(tagger_settings(**overrides))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tagger") as client,
        ):
            await app.state.service.readiness.wait()  # the lifespan starts it in the background
            yield RunningTagger(app.state.service, client)

    return start


class Inputs:
    """Publishes tagger inputs the way their producers do (ingest's own normalization for LINE events)."""

    def __init__(self, producer: AIOKafkaProducer, namespace: str) -> None:
        self._producer = producer
        self._namespace = namespace
        self.line = WebhookBuilder("secret")

    async def raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        await self._producer.send_and_wait(f"{self._namespace}{topic}", value, key=key)

    async def events(self, *events: dict[str, Any], channel: str = CHANNEL) -> list[str]:
        """Publish LINE webhook events to ``line.events.v1``; returns their event ids."""
        records = normalize(channel, parse_body(self.line.body(list(events))), datetime.now(UTC))
        for record in records:
            await self._producer.send(f"{self._namespace}{topics.LINE_EVENTS}", record.value, key=record.key)
        await self._producer.flush()
        return [record.event_id for record in records]

    async def update(
        self, update: MemberUpdated | dict[str, Any], *, channel: str = CHANNEL, event_id: str | None = None
    ) -> str:
        payload = update if isinstance(update, MemberUpdated) else MemberUpdated.model_validate(update)
        now = datetime.now(UTC)
        envelope = MemberUpdatedEvent(
            event_id=event_id or new_event_id(),
            channel_id=channel,
            occurred_at=now,
            produced_at=now,
            payload=payload,
        )
        await self.raw(
            topics.MEMBER_ATTRIBUTES,
            envelope.model_dump_json(by_alias=True).encode(),
            f"{channel}:{payload.user_id}".encode(),
        )
        return envelope.event_id

    async def order(
        self, order: OrderEvent | dict[str, Any], *, channel: str = CHANNEL, event_id: str | None = None
    ) -> str:
        payload = order if isinstance(order, OrderEvent) else OrderEvent.model_validate(order)
        now = datetime.now(UTC)
        envelope = OrderEventRecord(
            event_id=event_id or new_event_id(),
            channel_id=channel,
            occurred_at=payload.placed_at,
            produced_at=now,
            payload=payload,
        )
        await self.raw(
            topics.SHOP_ORDERS,
            envelope.model_dump_json(by_alias=True).encode(),
            f"{channel}:{payload.user_id}".encode(),
        )
        return envelope.event_id

    async def result(self, result: SendResult | dict[str, Any], *, channel: str = CHANNEL) -> None:
        payload = result if isinstance(result, SendResult) else SendResult.model_validate(result)
        now = datetime.now(UTC)
        envelope = SendResulted(
            event_id=new_event_id(), channel_id=channel, occurred_at=now, produced_at=now, payload=payload
        )
        await self.raw(
            topics.SEND_RESULTS,
            envelope.model_dump_json(by_alias=True).encode(),
            f"{channel}:{payload.request_id}".encode(),
        )


@pytest.fixture
def inputs(kafka_producer: AIOKafkaProducer, namespace: str) -> Inputs:
    return Inputs(kafka_producer, namespace)


@pytest.fixture
async def tagger_topics(kafka_bootstrap: str, namespace: str) -> None:
    """Create the tagger's topics up front (to publish before any tagger has started)."""
    names = [*MEMBER_TOPICS, topics.SEND_RESULTS, topics.MEMBER_CHANGES, topics.SEND_REQUESTS]
    await ensure_topics(kafka_bootstrap, [f"{namespace}{name}" for name in names], partitions=PARTITIONS)
