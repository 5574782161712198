"""Fixtures for liveshop tests: liveshops in-process, the LINE emulator (POINTS), a producer of each input."""

from __future__ import annotations

import json
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
from tagline_contracts.envelope import new_event_id
from tagline_contracts.live import (
    LiveComment,
    LiveCommentRecord,
    OrderStatusChanged,
    OrderStatusRecord,
    order_key,
    session_key,
)
from tagline_ingest.domain.normalize import normalize, parse_body
from tagline_line_emulator import Emulator, EmulatorConfig, serve
from tagline_liveshop.app import create_app
from tagline_liveshop.pipeline import CONSUMED
from tagline_liveshop.service import LiveshopService
from tagline_liveshop.settings import LiveshopSettings
from tagline_platform.kafka import ensure_topics
from tagline_testing.kafka import read_topic
from tagline_testing.webhook import WebhookBuilder

CHANNEL = "1234567890"
PARTITIONS = 3


@dataclass
class EmulatorHandle:
    emu: Emulator
    url: str


@pytest.fixture
async def line() -> AsyncIterator[EmulatorHandle]:
    emu = Emulator(EmulatorConfig())
    async with serve(emu, host="127.0.0.1", port=0) as running:
        yield EmulatorHandle(emu, running.url)


@dataclass
class RunningLiveshop:
    service: LiveshopService
    client: httpx.AsyncClient

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        response = await self.client.request(method, path, json=body)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    async def create_session(self, channel: str = CHANNEL, **spec: Any) -> dict[str, Any]:
        body = {"title": "live", **spec}
        return dict(await self.call("POST", f"/channels/{channel}/sessions", body, expect=201))


LiveshopFactory = Callable[..., AbstractAsyncContextManager[RunningLiveshop]]


@pytest.fixture
def liveshop_settings(
    namespace: str,
    mongo_db: AsyncDatabase[dict[str, Any]],
    kafka_bootstrap: str,
    mongodb_url: str,
    line: EmulatorHandle,
) -> Callable[..., LiveshopSettings]:
    def make(**overrides: Any) -> LiveshopSettings:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "mongodb_url": mongodb_url,
            "database": mongo_db.name,
            "topic_namespace": namespace,
            "topic_partitions": PARTITIONS,
            "group_id": f"{namespace}liveshop",
            "points_url": line.url,
            "points_interval_s": 0.2,
            "expiry_interval_s": 0.5,
            "live_refresh_s": 0.2,
            **overrides,
        }
        return LiveshopSettings(**values)

    return make


@pytest.fixture
def start_liveshop(liveshop_settings: Callable[..., LiveshopSettings]) -> LiveshopFactory:
    """``async with start_liveshop(**settings) as shop:`` runs one liveshop instance in this process."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[RunningLiveshop]:
        app = create_app(liveshop_settings(**overrides))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://liveshop") as client,
        ):
            await app.state.service.readiness.wait()  # the lifespan starts it in the background
            yield RunningLiveshop(app.state.service, client)

    return start


class Inputs:
    """Publishes liveshop inputs the way their producers do (ingest's own normalization for LINE events)."""

    def __init__(self, producer: AIOKafkaProducer, namespace: str, bootstrap: str) -> None:
        self._producer = producer
        self._namespace = namespace
        self._bootstrap = bootstrap
        self.line = WebhookBuilder("secret")

    def topic(self, name: str) -> str:
        return f"{self._namespace}{name}"

    async def raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        await self._producer.send_and_wait(self.topic(topic), value, key=key)

    def comment_record(
        self, session_id: str, comment_id: str, user_id: str, text: str, *, channel: str = CHANNEL
    ) -> tuple[bytes, bytes]:
        now = datetime.now(UTC)
        envelope = LiveCommentRecord(
            event_id=new_event_id(),
            channel_id=channel,
            occurred_at=now,
            produced_at=now,
            payload=LiveComment(
                session_id=session_id, comment_id=comment_id, user_id=user_id, text=text, commented_at=now
            ),
        )
        return session_key(channel, session_id).encode(), envelope.model_dump_json(by_alias=True).encode()

    async def comments(self, session_id: str, *items: tuple[str, str, str], channel: str = CHANNEL) -> None:
        """Publish ``(comment_id, user_id, text)`` comments to ``live.comments.v1``, then flush."""
        for comment_id, user_id, text in items:
            key, value = self.comment_record(session_id, comment_id, user_id, text, channel=channel)
            await self._producer.send(self.topic(topics.LIVE_COMMENTS), value, key=key)
        await self._producer.flush()

    async def chat(self, *events: dict[str, Any], channel: str = CHANNEL) -> list[str]:
        """LINE webhook events on ``line.events.v1``; returns their event ids."""
        records = normalize(channel, parse_body(self.line.body(list(events))), datetime.now(UTC))
        for record in records:
            await self._producer.send(self.topic(topics.LINE_EVENTS), record.value, key=record.key)
        await self._producer.flush()
        return [record.event_id for record in records]

    async def status(
        self,
        order_id: str,
        status: str,
        *,
        channel: str = CHANNEL,
        event_id: str | None = None,
        **fields: Any,
    ) -> str:
        now = datetime.now(UTC)
        envelope = OrderStatusRecord(
            event_id=event_id or new_event_id(),
            channel_id=channel,
            occurred_at=now,
            produced_at=now,
            payload=OrderStatusChanged.model_validate({"order_id": order_id, "status": status, **fields}),
        )
        await self.raw(
            topics.SHOP_ORDER_STATUS,
            envelope.model_dump_json(by_alias=True).encode(),
            order_key(channel, order_id).encode(),
        )
        return envelope.event_id

    async def read(
        self, name: str, count: int, *, timeout_s: float = 30.0, settle_s: float = 0.0
    ) -> list[Any]:
        """The JSON values on logical topic ``name`` (every record from the beginning)."""
        records = await read_topic(
            self._bootstrap, self.topic(name), count=count, timeout_s=timeout_s, settle_s=settle_s
        )
        return [json.loads(r.value) for r in records]


@pytest.fixture
def inputs(kafka_producer: AIOKafkaProducer, namespace: str, kafka_bootstrap: str) -> Inputs:
    return Inputs(kafka_producer, namespace, kafka_bootstrap)


@pytest.fixture
async def liveshop_topics(kafka_bootstrap: str, namespace: str) -> None:
    """Create liveshop's topics up front (to publish before any liveshop has started)."""
    names = [*CONSUMED, topics.SEND_REQUESTS, topics.SHOP_ORDERS, *(topics.dlq(n) for n in CONSUMED)]
    await ensure_topics(kafka_bootstrap, [f"{namespace}{name}" for name in names], partitions=PARTITIONS)
