"""Operability of the liveshop process: /metrics counts its records and shows its lag; SIGTERM exits 0."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tagline_contracts import topics
from tagline_testing.metrics import sample, samples
from tagline_testing.processes import ServiceProcess, is_error

pytestmark = pytest.mark.integration

CONSUMED = (topics.LIVE_COMMENTS, topics.LINE_EVENTS, topics.SHOP_ORDER_STATUS)
Eventually = Callable[..., Awaitable[None]]


async def test_metrics_show_records_and_lag_and_sigterm_stops_it_cleanly(
    liveshop_settings: Any,
    kafka_producer: AIOKafkaProducer,
    eventually: Eventually,
    namespace: str,
    tmp_path: Path,
) -> None:
    settings = liveshop_settings()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MONGODB_URL": settings.mongodb_url,
        "TAGLINE_TOPIC_NAMESPACE": namespace,
        "TAGLINE_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "TAGLINE_LIVESHOP_DATABASE": settings.database,
        "TAGLINE_LIVESHOP_GROUP_ID": settings.group_id,
        "TAGLINE_LIVESHOP_POINTS_URL": settings.points_url,
        "TAGLINE_LIVESHOP_CONSUMER_LAG_INTERVAL_S": "0.2",
    }
    shop = ServiceProcess("liveshop", env, tmp_path)
    try:
        await shop.wait_ready()
        await kafka_producer.send_and_wait(f"{namespace}{topics.LIVE_COMMENTS}", b"{not json", key=b"c:1")
        labels = {"group": settings.group_id, "topic": topics.LIVE_COMMENTS}

        async def settled() -> bool:
            response = await shop.get("/metrics")
            if response is None:
                return False
            text = response.text
            lags = {s["topic"]: v for s, v in samples(text, "tagline_liveshop_consumer_lag")}
            return (
                sample(text, "tagline_liveshop_records_handled_total", **labels) == 1
                and sample(text, "tagline_liveshop_records_dead_lettered_total", **labels) == 1
                and lags == dict.fromkeys(CONSUMED, 0)
            )

        await eventually(settled, 20, "the bad comment handled and dead-lettered, no lag left")
        code, _ = shop.terminate(20)
    finally:
        shop.kill()

    assert code == 0, shop.output()
    logs = shop.logs()
    assert all("raw" not in entry for entry in logs), shop.output()
    assert [e for e in logs if is_error(e)] == []
    assert [e["logger"] for e in logs if e.get("msg") == "stopped cleanly"] == ["tagline.liveshop"]
    [letter] = [e for e in logs if e.get("msg") == "dead-lettered"]
    assert letter["consumer"] == settings.group_id
    assert letter["offset"] == 0
