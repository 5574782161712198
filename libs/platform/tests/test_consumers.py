"""Consumer metrics: handled / failed / dead-lettered counts, and the lag measured on the real Kafka."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from tagline_platform.consumers import ConsumerLag, ConsumerMetrics
from tagline_platform.deadletters import DeadLetters
from tagline_platform.kafka import ensure_topics
from tagline_platform.metrics import Metrics
from tagline_platform.settings import ServiceSettings
from tagline_testing.processes import free_port


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(f"tagline_test_{name}", labels)


def _records(*topics: str) -> list[Any]:
    return [SimpleNamespace(topic=topic) for topic in topics]


async def test_a_batch_counts_as_handled_per_topic_or_as_failed_when_the_handler_raises() -> None:
    metrics = Metrics("test")
    group = ConsumerMetrics(metrics, topic_namespace="ns.").group("g", ["ns.a.v1", "ns.b.v1"])

    with group.batch(_records("ns.a.v1", "ns.a.v1", "ns.b.v1")):
        pass
    with pytest.raises(ConnectionError), group.batch(_records("ns.a.v1")):
        raise ConnectionError("mongo went away")

    async def cancelled() -> None:
        with group.batch(_records("ns.b.v1")):
            await asyncio.sleep(10)

    task = asyncio.create_task(cancelled())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert _value(metrics, "records_handled_total", group="g", topic="a.v1") == 2
    assert _value(metrics, "records_handled_total", group="g", topic="b.v1") == 1  # not the cancelled one
    assert _value(metrics, "records_failed_total", group="g", topic="a.v1") == 1
    assert _value(metrics, "records_failed_total", group="g", topic="b.v1") is None


@pytest.mark.integration
async def test_lag_counts_what_each_group_has_not_committed_per_topic(
    kafka_bootstrap: str, namespace: str, kafka_producer: AIOKafkaProducer
) -> None:
    a, b, missing = f"{namespace}a.v1", f"{namespace}b.v1", f"{namespace}missing.v1"
    await ensure_topics(kafka_bootstrap, [a, b], partitions=2)
    for partition, count in ((0, 5), (1, 3)):
        for n in range(count):
            await kafka_producer.send_and_wait(a, b"x%d" % n, partition=partition)
    for n in range(4):
        await kafka_producer.send_and_wait(b, b"y%d" % n, partition=0)

    metrics = Metrics("test")
    consumers = ConsumerMetrics(metrics, topic_namespace=namespace)
    consumers.group(f"{namespace}g1", [a, b])
    consumers.group(f"{namespace}g2", [a, missing])
    committer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=f"{namespace}g1")
    await committer.start()
    committer.assign([TopicPartition(a, 0), TopicPartition(a, 1)])
    lag = ConsumerLag(kafka_bootstrap, consumers)
    try:
        await committer.commit({TopicPartition(a, 0): OffsetAndMetadata(2, "")})
        await lag.refresh()
        # a: 5 - 2 on partition 0, and partition 1 has no commit, so all 3 count; b: nothing committed
        assert _value(metrics, "consumer_lag", group=f"{namespace}g1", topic="a.v1") == 6
        assert _value(metrics, "consumer_lag", group=f"{namespace}g1", topic="b.v1") == 4
        assert _value(metrics, "consumer_lag", group=f"{namespace}g2", topic="a.v1") == 8
        assert _value(metrics, "consumer_lag", group=f"{namespace}g2", topic="missing.v1") is None
        measured = _value(metrics, "consumer_lag_measured_timestamp_seconds")
        assert measured is not None
        assert measured > 0

        await committer.commit(
            {TopicPartition(a, 0): OffsetAndMetadata(5, ""), TopicPartition(a, 1): OffsetAndMetadata(3, "")}
        )
        await lag.refresh()
        assert _value(metrics, "consumer_lag", group=f"{namespace}g1", topic="a.v1") == 0
        assert _value(metrics, "consumer_lag", group=f"{namespace}g2", topic="a.v1") == 8
    finally:
        await lag.close()
        await committer.stop()


@pytest.mark.integration
async def test_lag_keeps_its_last_values_while_kafka_does_not_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics("test")
    consumers = ConsumerMetrics(metrics)
    consumers.group("g", ["a.v1"])
    consumers.lag.labels("g", "a.v1").set(7)
    lag = ConsumerLag(f"127.0.0.1:{free_port()}", consumers, timeout_s=3.0)
    with caplog.at_level(logging.WARNING, logger="tagline.consumers"):
        await lag.refresh()
        await lag.refresh()
    await lag.close()
    assert _value(metrics, "consumer_lag", group="g", topic="a.v1") == 7
    assert _value(metrics, "consumer_lag_measured_timestamp_seconds") == 0
    warnings = [r for r in caplog.records if r.name == "tagline.consumers"]
    assert len(warnings) == 1  # once per outage, not every interval
    assert "not measured" in warnings[0].getMessage()


class _Broker:
    def __init__(self) -> None:
        self.published: list[tuple[bytes, str]] = []

    async def publish(self, value: bytes, *, topic: str, key: bytes | None) -> None:
        self.published.append((value, topic))


async def test_dead_letters_are_counted_and_logged_with_channel_and_event_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics("test")
    consumers = ConsumerMetrics(metrics, topic_namespace="ns.")
    broker: Any = _Broker()
    dead = DeadLetters(broker, ServiceSettings(topic_namespace="ns."), consumer="g", metrics=consumers)
    envelope = SimpleNamespace(
        topic="ns.line.events.v1",
        partition=1,
        offset=7,
        key=b"123:U1",
        value=b'{"event_id": "01E", "channel_id": "123", "payload": 1}',
    )
    garbage = SimpleNamespace(topic="ns.line.events.v1", partition=0, offset=3, key=b"456:U2", value=b"{no")
    with caplog.at_level(logging.WARNING, logger="tagline.deadletters"):
        await dead.send("line.events.v1", envelope, "payload: not a webhook event")
        await dead.send("line.events.v1", garbage, "not JSON")

    assert [topic for _, topic in broker.published] == ["ns.line.events.dlq.v1"] * 2
    assert _value(metrics, "records_dead_lettered_total", group="g", topic="line.events.v1") == 2
    first, second = (r.__dict__ for r in caplog.records if r.name == "tagline.deadletters")
    assert (first["channel_id"], first["event_id"], first["offset"]) == ("123", "01E", 7)
    assert (second["channel_id"], second["offset"], second["consumer"]) == ("456", 3, "g")
    assert "event_id" not in second
