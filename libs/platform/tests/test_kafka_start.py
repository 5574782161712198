"""What a service waits for in Kafka before its consumers start: topics listed with a leader for every
partition, and a coordinator for each of its consumer groups (a clean start logs no error)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from tagline_platform.errors import InfrastructureUnavailable
from tagline_platform.kafka import _until_led, ensure_topics, wait_for_coordinators
from tagline_testing.processes import free_port


class FakeAdmin:
    """Answers ``describe_topics`` as Kafka does right after a creation: not listed, then no leader yet."""

    def __init__(self, answers: list[list[dict[str, Any]]]) -> None:
        self._answers = answers
        self.calls = 0

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        self.calls += 1
        return self._answers.pop(0)


def _topic(name: str, *leaders: int, error: int = 0) -> dict[str, Any]:
    partitions = [{"error_code": 0, "partition": p, "leader": leader} for p, leader in enumerate(leaders)]
    return {"error_code": error, "topic": name, "partitions": partitions}


async def test_topics_count_as_created_once_every_partition_has_a_leader() -> None:
    admin = FakeAdmin(
        [
            [
                _topic("a", error=3),
                _topic("b", 1, 1),
            ],  # a: UNKNOWN_TOPIC_OR_PARTITION (not in the metadata yet)
            [_topic("a", 1, -1), _topic("b", 1, 1)],  # a: partition 1 has no leader yet
            [_topic("a", 1, 1), _topic("b", 1, 1)],
        ]
    )
    await _until_led(admin, ["a", "b"])
    assert admin.calls == 3


@pytest.mark.integration
async def test_a_consumer_subscribing_right_after_ensure_topics_logs_no_error(
    kafka_bootstrap: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    names = [f"{namespace}fresh-{n}.v1" for n in range(8)]
    await ensure_topics(kafka_bootstrap, names, partitions=6)
    group = f"{namespace}group"
    await wait_for_coordinators(kafka_bootstrap, [group])
    consumer = AIOKafkaConsumer(*names, bootstrap_servers=kafka_bootstrap, group_id=group)
    with caplog.at_level(logging.WARNING, logger="aiokafka"):
        await consumer.start()  # returns once the group assigned the partitions
        try:
            assert len(consumer.assignment()) == 6 * len(names)
        finally:
            await consumer.stop()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.integration
async def test_the_wait_for_a_coordinator_is_bounded_and_names_the_server() -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(InfrastructureUnavailable, match=f"Kafka at {nowhere}"):
        await wait_for_coordinators(nowhere, ["g"], timeout_s=1.0)
    assert time.monotonic() - started < 10
