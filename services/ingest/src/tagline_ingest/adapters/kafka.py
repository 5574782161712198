"""Publishes ingest's records to Kafka with one idempotent aiokafka producer.

Durability comes from :data:`tagline_platform.kafka.PRODUCER_CONFIG` (idempotent producer, ``acks=all``): a
record counts as published when its future resolves, i.e. when every in-sync replica has it. All records of
a request are handed to the producer first and then awaited together, so they share produce requests with
each other and with concurrent requests; records with the same key go to the same partition in the order
they were handed over, which keeps one source's events in order.

Ingest only publishes, so it uses the bare producer rather than a FastStream broker: on this hot path
FastStream's per-message overhead (command objects, correlation ids) was measurable (see bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer

from tagline_ingest.domain.errors import EventTooLarge
from tagline_ingest.domain.normalize import OutgoingRecord
from tagline_platform.errors import InfrastructureUnavailable
from tagline_platform.kafka import ensure_topics, stop_producer
from tagline_platform.tasks import cancel_all

log = logging.getLogger(__name__)

CONTENT_TYPE = ("content-type", b"application/json")

MAX_REQUEST_BYTES = 1_048_576
"""aiokafka's ``max_request_size`` (and, less 12 bytes, the broker's default ``message.max.bytes``)."""
RECORD_OVERHEAD_BYTES = 256
"""More than a record batch adds to key, value and the event type header: header, varints, header names."""


class KafkaEventPublisher:
    """Owns the producer; keeps trying to connect in the background while Kafka is away at start-up."""

    def __init__(
        self,
        producer_factory: Callable[[], AIOKafkaProducer],
        *,
        bootstrap_servers: str,
        topic: str,
        partitions: int,
        retry_interval_s: float = 1.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self._producer_factory = producer_factory
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._partitions = partitions
        self._retry_interval_s = retry_interval_s
        self._stop_timeout_s = stop_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect now if Kafka answers, otherwise keep trying in the background (readiness stays false)."""
        if not await self._try_connect():
            self._connector = asyncio.create_task(self._connect_loop(), name="kafka-connect")

    async def _try_connect(self) -> bool:
        producer = self._producer_factory()
        try:
            await ensure_topics(self._bootstrap, [self._topic], partitions=self._partitions, timeout_s=5.0)
            await producer.start()
        except Exception as exc:  # aiokafka raises several unrelated kinds; any of them means "not yet"
            log.warning("kafka not reachable yet", extra={"bootstrap": self._bootstrap, "error": repr(exc)})
            with contextlib.suppress(Exception):
                await producer.stop()
            return False
        self._producer = producer
        log.info("kafka connected", extra={"bootstrap": self._bootstrap, "topic": self._topic})
        return True

    async def _connect_loop(self) -> None:
        while not await self._try_connect():  # noqa: ASYNC110 - polling a remote server, no event to await
            await asyncio.sleep(self._retry_interval_s)

    async def stop(self) -> bool:
        """Stop connecting and stop the producer; whether both finished in time (each step is bounded)."""
        stopped = True
        if self._connector is not None:
            stopped = not await cancel_all([self._connector])
        producer, self._producer = self._producer, None
        if producer is not None:
            # Stopping flushes what is still pending; with the broker gone that waits forever. Whatever is
            # pending was answered 503 (never 200), so LINE redelivers it: giving up here loses nothing.
            stopped &= await stop_producer(
                producer,
                "kafka producer stop (unacknowledged events, answered 503, are dropped)",
                timeout_s=self._stop_timeout_s,
            )
        return stopped

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        producer = self._producer
        if producer is None:
            raise InfrastructureUnavailable("not connected to Kafka")
        # Checked before anything is handed over: the producer refuses such a record only when it gets to
        # it, after the request's earlier records went out (and every redelivery would fail the same way).
        for index, r in enumerate(records):
            size = len(r.key) + len(r.value) + len(r.event_type) + RECORD_OVERHEAD_BYTES
            if size > MAX_REQUEST_BYTES:
                raise EventTooLarge(
                    f"event {index} makes a Kafka record of about {size} bytes, over {MAX_REQUEST_BYTES}"
                )
        send = producer.send
        topic = self._topic
        pending = [
            await send(
                topic, r.value, key=r.key, headers=[CONTENT_TYPE, ("event-type", r.event_type.encode())]
            )
            for r in records
        ]
        await asyncio.gather(*pending)

    async def ready(self) -> bool:
        producer = self._producer
        if producer is None:
            return False
        try:
            async with asyncio.timeout(1.0):
                await producer.client.fetch_all_metadata()
        except Exception:
            return False
        return True
