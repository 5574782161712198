"""Publishes ingest's records to Kafka through FastStream.

Durability comes from the broker factory (idempotent producer, ``acks=all``): a record counts as published
when its future resolves, i.e. when every in-sync replica has it. All records of a request are handed to the
producer first and then awaited together, so they share produce requests; records with the same key go to
the same partition in the order they were handed over, which keeps one source's events in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from faststream.kafka import KafkaBroker

from tagline_ingest.domain.normalize import OutgoingRecord
from tagline_platform.errors import InfrastructureUnavailable
from tagline_platform.kafka import ensure_topics

log = logging.getLogger(__name__)

HEADERS_CONTENT_TYPE = "application/json"


class KafkaEventPublisher:
    """Owns the broker connection; reconnects in the background while Kafka is away at start-up."""

    def __init__(
        self,
        broker_factory: Callable[[], KafkaBroker],
        *,
        bootstrap_servers: str,
        topic: str,
        partitions: int,
        retry_interval_s: float = 1.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self._broker_factory = broker_factory
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._partitions = partitions
        self._retry_interval_s = retry_interval_s
        self._stop_timeout_s = stop_timeout_s
        self._broker: KafkaBroker | None = None
        self._connector: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._broker is not None

    async def start(self) -> None:
        """Connect now if Kafka answers, otherwise keep trying in the background (readiness stays false)."""
        if not await self._try_connect():
            self._connector = asyncio.create_task(self._connect_loop(), name="kafka-connect")

    async def _try_connect(self) -> bool:
        broker = self._broker_factory()
        try:
            await ensure_topics(self._bootstrap, [self._topic], partitions=self._partitions, timeout_s=5.0)
            await broker.connect()
        except Exception as exc:  # aiokafka raises several unrelated kinds; any of them means "not yet"
            log.warning("kafka not reachable yet", extra={"bootstrap": self._bootstrap, "error": repr(exc)})
            with contextlib.suppress(Exception):
                await broker.stop()
            return False
        self._broker = broker
        log.info("kafka connected", extra={"bootstrap": self._bootstrap, "topic": self._topic})
        return True

    async def _connect_loop(self) -> None:
        while not await self._try_connect():  # noqa: ASYNC110 - polling a remote server, no event to await
            await asyncio.sleep(self._retry_interval_s)

    async def stop(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        broker, self._broker = self._broker, None
        if broker is not None:
            # Stopping flushes what is still pending; with the broker gone that waits forever. Whatever is
            # pending was answered 503 (never 200), so LINE redelivers it: giving up here loses nothing.
            try:
                async with asyncio.timeout(self._stop_timeout_s):
                    await broker.stop()
            except TimeoutError:
                log.warning(
                    "kafka producer did not flush within %.0fs; unacknowledged events dropped "
                    "(they were answered 503)",
                    self._stop_timeout_s,
                )

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        broker = self._broker
        if broker is None:
            raise InfrastructureUnavailable("not connected to Kafka")
        pending = [
            await broker.publish(
                record.value,
                self._topic,
                key=record.key,
                headers={"content-type": HEADERS_CONTENT_TYPE, "event-type": record.event_type},
                no_confirm=True,
            )
            for record in records
        ]
        await asyncio.gather(*pending)

    async def ready(self) -> bool:
        broker = self._broker
        return broker is not None and await broker.ping(timeout=1.0)
