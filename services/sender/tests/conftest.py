"""Fixtures for sender tests: the LINE emulator over real HTTP, senders in-process, a Kafka producer."""

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
from tagline_contracts.members import (
    ChangeKind,
    FollowState,
    MemberChanged,
    MemberChangedEvent,
    MemberSnapshot,
)
from tagline_contracts.sending import SendMessages, SendRequested, send_request_key
from tagline_line_emulator import Emulator, EmulatorConfig, serve
from tagline_sender.app import create_app
from tagline_sender.service import SenderService
from tagline_sender.settings import SenderSettings

CHANNEL = "1234567890"


@dataclass
class RunningSender:
    service: SenderService
    client: httpx.AsyncClient


@dataclass
class EmulatorHandle:
    emu: Emulator
    url: str


@pytest.fixture
async def line() -> AsyncIterator[EmulatorHandle]:
    emu = Emulator(EmulatorConfig())
    async with serve(emu, host="127.0.0.1", port=0) as running:
        yield EmulatorHandle(emu, running.url)


SenderFactory = Callable[..., AbstractAsyncContextManager[RunningSender]]


@pytest.fixture
def start_sender(
    line: EmulatorHandle,
    namespace: str,
    mongo_db: AsyncDatabase[dict[str, Any]],
    kafka_bootstrap: str,
    mongodb_url: str,
) -> SenderFactory:
    """``async with start_sender(**settings) as sender:`` runs one sender instance against the emulator."""

    @asynccontextmanager
    async def start(
        channel: dict[str, Any] | None = None,
        clock: Callable[[], datetime] | None = None,
        **overrides: Any,
    ) -> AsyncIterator[RunningSender]:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "mongodb_url": mongodb_url,
            "channels": {CHANNEL: {"access_token": CHANNEL, **(channel or {})}},
            "line_api_url": line.url,
            "database": mongo_db.name,
            "topic_namespace": namespace,
            "topic_partitions": 3,
            "group_id": f"{namespace}sender",
            "poll_interval_s": 0.2,
            "quota_refresh_s": 0.5,
            "retry_base_s": 0.05,
            "retry_cap_s": 0.5,
            "request_timeout_s": 1.0,
            "lease_s": 5.0,
            "concurrency": 8,
            **overrides,
        }
        settings = SenderSettings(**values)
        app = create_app(settings) if clock is None else create_app(settings, clock=clock)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sender") as client,
        ):
            await app.state.service.readiness.wait()  # the lifespan starts it in the background
            yield RunningSender(app.state.service, client)

    return start


class Publisher:
    def __init__(self, producer: AIOKafkaProducer, namespace: str) -> None:
        self._producer = producer
        self._namespace = namespace

    async def raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        await self._producer.send_and_wait(f"{self._namespace}{topic}", value, key=key)

    async def send(self, request: SendMessages | dict[str, Any], channel: str = CHANNEL) -> None:
        payload = request if isinstance(request, SendMessages) else SendMessages.model_validate(request)
        now = datetime.now(UTC)
        envelope = SendRequested(
            event_id=new_event_id(), channel_id=channel, occurred_at=now, produced_at=now, payload=payload
        )
        await self.raw(
            topics.SEND_REQUESTS,
            envelope.model_dump_json(by_alias=True).encode(),
            send_request_key(channel, payload.target).encode(),
        )

    async def send_unchecked(self, request: dict[str, Any], channel: str = CHANNEL) -> None:
        """A ``SendMessages`` record as a producer that does not use the contracts could write it (the model
        would refuse to build it: invalid message objects, say)."""
        now = datetime.now(UTC).isoformat()
        target = request["target"]
        key = f"{channel}:{target['user_id']}" if target["kind"] == "user" else f"{channel}:{target['kind']}"
        envelope = {
            "event_id": new_event_id(),
            "channel_id": channel,
            "occurred_at": now,
            "produced_at": now,
            "schema": "SendMessages",
            "payload": request,
        }
        await self.raw(topics.SEND_REQUESTS, json.dumps(envelope).encode(), key.encode())

    async def member(
        self,
        user_id: str,
        *,
        version: int = 1,
        state: FollowState = FollowState.FOLLOWED,
        tags: list[str] | None = None,
        attributes: dict[str, Any] | None = None,
        channel: str = CHANNEL,
    ) -> None:
        now = datetime.now(UTC)
        kind = ChangeKind.FOLLOWED if state is FollowState.FOLLOWED else ChangeKind.BLOCKED
        change = MemberChanged(
            user_id=user_id,
            version=version,
            changes=[kind],
            snapshot=MemberSnapshot(
                user_id=user_id, follow_state=state, tags=tags or [], attributes=attributes or {}
            ),
        )
        envelope = MemberChangedEvent(
            event_id=new_event_id(), channel_id=channel, occurred_at=now, produced_at=now, payload=change
        )
        await self.raw(
            topics.MEMBER_CHANGES,
            envelope.model_dump_json(by_alias=True).encode(),
            f"{channel}:{user_id}".encode(),
        )


@pytest.fixture
def publish(kafka_producer: AIOKafkaProducer, namespace: str) -> Publisher:
    return Publisher(kafka_producer, namespace)
