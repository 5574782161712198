"""The dead-letter tool's Kafka I/O: read ranges of a topic without a consumer group, publish replays.

It never joins a consumer group and never commits offsets, so using it changes nothing for the services.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from tagline_platform.dlq.records import KafkaRecord, Position, Replay
from tagline_platform.errors import InfrastructureUnavailable
from tagline_platform.kafka import create_producer
from tagline_platform.settings import ServiceSettings

CLIENT_ID = "tagline-dlq"


class DlqClient:
    """Reads topics by position or time and publishes replays. Use as ``async with DlqClient(settings):``."""

    def __init__(self, settings: ServiceSettings, *, timeout_s: float = 15.0) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> DlqClient:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            client_id=CLIENT_ID,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
        )
        try:
            await self._within(consumer.start(), "connecting")
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if self._consumer is not None:
            await self._consumer.stop()

    async def _within(self, work: Any, doing: str) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await work
        except TimeoutError as exc:
            raise InfrastructureUnavailable(
                f"Kafka at {self._settings.kafka_bootstrap_servers} did not answer within "
                f"{self._timeout_s:.0f}s ({doing})"
            ) from exc
        except KafkaError as exc:
            raise InfrastructureUnavailable(
                f"Kafka at {self._settings.kafka_bootstrap_servers}: {exc} ({doing})"
            ) from exc

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("use DlqClient in `async with`")
        return self._consumer

    # ---- metadata ------------------------------------------------------------------------------------
    async def existing(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` that exist, in their order."""
        present: set[str] = await self._within(self.consumer.topics(), "listing topics")
        return [name for name in names if name in present]

    async def offsets(self, topic: str) -> dict[int, tuple[int, int]]:
        """Partition → (first offset, end offset) of ``topic``; empty if the topic does not exist."""
        partitions = self.consumer.partitions_for_topic(topic)
        if not partitions:
            # The consumer's own metadata covers the topics it tracks; ask about this one only if it exists (a
            # metadata request naming a topic may create it where the broker auto-creates topics).
            if not await self.existing([topic]):
                return {}
            await self._within(self.consumer._client.add_topic(topic), "reading metadata")  # no public API
            partitions = self.consumer.partitions_for_topic(topic)
        if not partitions:
            return {}
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        first = await self._within(self.consumer.beginning_offsets(tps), "reading offsets")
        end = await self._within(self.consumer.end_offsets(tps), "reading offsets")
        return {tp.partition: (first[tp], end[tp]) for tp in tps}

    # ---- reading ---------------------------------------------------------------------------------------
    async def read(self, topic: str, ranges: Mapping[int, tuple[int, int]]) -> list[KafkaRecord]:
        """The records of ``topic`` in ``ranges`` (partition → [start, end)), by partition and offset."""
        pending = {
            TopicPartition(topic, p): (start, end) for p, (start, end) in ranges.items() if start < end
        }
        if not pending:
            return []
        consumer = self.consumer
        consumer.assign(list(pending))
        for tp, (start, _end) in pending.items():
            consumer.seek(tp, start)
        found: list[KafkaRecord] = []
        deadline = time.monotonic() + self._timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise InfrastructureUnavailable(f"reading {topic} took longer than {self._timeout_s:.0f}s")
            batches = await consumer.getmany(*pending, timeout_ms=200)
            for tp, records in batches.items():
                end = pending[tp][1] if tp in pending else 0
                found.extend(KafkaRecord.of(r) for r in records if r.offset < end)
            for tp in list(pending):
                if await consumer.position(tp) >= pending[tp][1]:
                    del pending[tp]
        return sorted(found, key=lambda r: (r.partition, r.offset))

    async def tail(self, topic: str, per_partition: int) -> tuple[dict[int, int], list[KafkaRecord]]:
        """The number of records per partition, and the last ``per_partition`` records of each partition."""
        offsets = await self.offsets(topic)
        counts = {p: end - first for p, (first, end) in offsets.items()}
        ranges = {p: (max(first, end - per_partition), end) for p, (first, end) in offsets.items()}
        return counts, await self.read(topic, ranges)

    async def everything(self, topic: str) -> list[KafkaRecord]:
        return await self.read(topic, await self.offsets(topic))

    async def since(self, topic: str, moment: datetime) -> list[KafkaRecord]:
        """The records of ``topic`` with a timestamp at or after ``moment``."""
        offsets = await self.offsets(topic)
        if not offsets:
            return []
        wanted = {TopicPartition(topic, p): int(moment.timestamp() * 1000) for p in offsets}
        starts = await self._within(self.consumer.offsets_for_times(wanted), "finding offsets by time")
        ranges: dict[int, tuple[int, int]] = {}
        for tp, found in starts.items():
            _first, end = offsets[tp.partition]
            ranges[tp.partition] = (end if found is None else found.offset, end)
        return await self.read(topic, ranges)

    async def at(self, topic: str, position: Position) -> KafkaRecord | None:
        """The record at ``position`` of ``topic``; None if there is none (deleted, or beyond)."""
        first, end = (await self.offsets(topic)).get(position.partition, (0, 0))
        if not first <= position.offset < end:
            return None
        records = await self.read(topic, {position.partition: (position.offset, position.offset + 1)})
        return next((r for r in records if r.offset == position.offset), None)

    # ---- writing -------------------------------------------------------------------------------------
    async def publish(self, replay: Replay) -> Position:
        """Publish ``replay`` (acks=all, idempotent producer) and return where it landed."""
        if self._producer is None:
            producer = create_producer(self._settings, client_id=CLIENT_ID)
            await self._within(producer.start(), "connecting the producer")
            self._producer = producer
        metadata = await self._within(
            self._producer.send_and_wait(
                replay.topic, replay.value, key=replay.key, headers=list(replay.headers)
            ),
            f"publishing to {replay.topic}",
        )
        return Position(metadata.partition, metadata.offset)
