"""Ingest while its Kafka hangs, comes back and goes away: 503 within LINE's deadline, never a false 200."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tagline_contracts import topics
from tagline_contracts.envelope import LineEventReceived
from tagline_testing.infra import DedicatedKafka, dedicated_kafka
from tagline_testing.kafka import read_topic
from tagline_testing.webhook import WebhookBuilder

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kafka_to_break(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DedicatedKafka]:
    state_dir: Path = tmp_path_factory.mktemp("kafka-outage")
    with dedicated_kafka(state_dir) as kafka:
        yield kafka


async def test_hung_then_stopped_broker(
    kafka_to_break: DedicatedKafka, start_ingest: Any, channel: Any, builder: WebhookBuilder
) -> None:
    acknowledged: list[str] = []

    async def post(user: str) -> int:
        event = builder.text(user, "hello")
        signed = builder.request([event])
        started = time.monotonic()
        response = await ingest.client.post(channel.url, content=signed.body, headers=signed.headers)
        assert time.monotonic() - started < 2.0, "always answered within LINE's 2 s"
        status: int = response.status_code
        if status == 200:
            acknowledged.append(event["webhookEventId"])
        return status

    async with start_ingest(
        kafka_bootstrap_servers=kafka_to_break.bootstrap, publish_timeout_s=0.8
    ) as ingest:
        assert await post("U" + "1" * 32) == 200

        kafka_to_break.freeze()
        try:
            assert await post("U" + "2" * 32) == 503
            assert (await ingest.client.get("/readyz")).status_code == 503
        finally:
            kafka_to_break.thaw()

        # Back again: the same process recovers without a restart.
        deadline = time.monotonic() + 30
        while await post("U" + "3" * 32) != 200:
            assert time.monotonic() < deadline, "ingest did not recover after the broker came back"
            await asyncio.sleep(0.5)

        records = await read_topic(
            kafka_to_break.bootstrap, ingest.settings.topic(topics.LINE_EVENTS), count=len(acknowledged)
        )
        on_kafka = {LineEventReceived.model_validate_json(r.value).event_id for r in records}
        assert set(acknowledged) <= on_kafka, "every event answered with 200 is durable on Kafka"

        kafka_to_break.stop()
        assert await post("U" + "4" * 32) == 503
        assert (await ingest.client.get("/readyz")).status_code == 503

    # Stopped with the broker gone: the producer's pending records are dropped (they were answered 503), and
    # nothing keeps retrying in the background of this process afterwards.
    left = [t for t in asyncio.all_tasks() if "sender_routine" in repr(t.get_coro()) and not t.done()]
    assert left == [], "the stopped producer's sender task is still running"
