"""Reading what landed on a topic, for assertions."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from tagline_platform.tasks import finish


async def read_topic(
    bootstrap_servers: str, topic: str, *, count: int, timeout_s: float = 15.0, settle_s: float = 0.0
) -> list[Any]:
    """Every record of ``topic`` from the beginning, once ``count`` arrived (or the timeout passed).

    With ``settle_s`` it keeps reading that long after ``count`` is reached, so extra (duplicate) records
    show up in the result instead of being missed. Records are ``aiokafka.ConsumerRecord``. The consumer's
    start and stop are bounded too (a stop that hangs is logged by name and left behind).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.start()
        partitions = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + timeout_s
        while not partitions and time.monotonic() < deadline:
            await consumer._client.force_metadata_update()  # no public API for this
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await asyncio.sleep(0.2)
        if not partitions:
            raise AssertionError(f"topic {topic!r} does not exist")
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        records: list[Any] = []
        settle_until: float | None = None
        while True:
            now = time.monotonic()
            if now >= deadline or (settle_until is not None and now >= settle_until):
                return records
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
            if len(records) >= count and settle_until is None:
                if settle_s <= 0:
                    return records
                settle_until = time.monotonic() + settle_s
    finally:
        await finish(f"read_topic({topic!r}): consumer stop", consumer.stop())
