"""Fixtures for ingest tests: the app in-process (its lifespan run for real) and an HTTP client to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tagline_ingest.app import create_app
from tagline_ingest.settings import IngestSettings
from tagline_testing.webhook import WebhookBuilder


@dataclass(frozen=True)
class Channel:
    id: str
    secret: str

    @property
    def url(self) -> str:
        return f"/line/webhook/{self.id}"


MAIN = Channel("1234567890", "0123456789abcdef0123456789abcdef")
OTHER = Channel("2000000001", "fedcba9876543210fedcba9876543210")


@dataclass(frozen=True)
class RunningIngest:
    settings: IngestSettings
    client: httpx.AsyncClient


IngestFactory = Callable[..., AbstractAsyncContextManager[RunningIngest]]


@pytest.fixture
def channel() -> Channel:
    return MAIN


@pytest.fixture
def other_channel() -> Channel:
    return OTHER


@pytest.fixture
def builder() -> WebhookBuilder:
    return WebhookBuilder(MAIN.secret)


@pytest.fixture
def start_ingest(namespace: str) -> IngestFactory:
    """``async with start_ingest(kafka_bootstrap_servers=…, **settings) as ingest:`` runs one ingest app."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[RunningIngest]:
        values: dict[str, Any] = {
            "channel_secrets": {MAIN.id: MAIN.secret, OTHER.id: OTHER.secret},
            "topic_partitions": 3,
            "topic_namespace": namespace,
            **overrides,
        }
        settings = IngestSettings(**values)
        app = create_app(settings)
        async with (
            app.api.router.lifespan_context(app.api),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client,
        ):
            yield RunningIngest(settings, client)

    return start
