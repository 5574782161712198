"""Composition root: ``create_app(settings)`` wires settings, Kafka and the HTTP API.

No I/O at import time: connecting happens in the lifespan.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tagline_contracts import topics
from tagline_ingest.adapters.kafka import KafkaEventPublisher
from tagline_ingest.api import IngestApp, WebhookEndpoint, build_app
from tagline_ingest.metrics import IngestMetrics
from tagline_ingest.settings import IngestSettings
from tagline_platform.kafka import create_producer
from tagline_platform.tasks import log_stopped

log = logging.getLogger(__name__)


def create_app(settings: IngestSettings) -> IngestApp:
    metrics = IngestMetrics()
    publisher = KafkaEventPublisher(
        lambda: create_producer(settings, client_id="tagline-ingest"),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topic=settings.topic(topics.LINE_EVENTS),
        partitions=settings.topic_partitions,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await publisher.start()
        try:
            yield
        finally:  # waits until Kafka acknowledged what is in flight (bounded)
            log_stopped(log, [await publisher.stop()])

    secrets = settings.load_channel_secrets()
    if not secrets:
        log.warning(
            "no channel secrets configured: every webhook will get 404 "
            "(set TAGLINE_INGEST_CHANNEL_SECRETS or TAGLINE_INGEST_CHANNEL_SECRETS_FILE)"
        )
    webhook = WebhookEndpoint(
        secrets=secrets,
        publisher=publisher,
        metrics=metrics,
        publish_timeout_s=settings.publish_timeout_s,
        max_body_bytes=settings.max_body_bytes,
        max_in_flight=settings.max_in_flight_requests,
    )
    return build_app(webhook, publisher, metrics, lifespan=lifespan)
