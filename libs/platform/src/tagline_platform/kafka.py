"""Kafka plumbing: the FastStream broker factory, the bare producer factory and explicit topic creation.

Producer guarantees come from :data:`PRODUCER_CONFIG`, which both factories use.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from tagline_platform.errors import InfrastructureUnavailable
from tagline_platform.settings import ServiceSettings
from tagline_platform.tasks import finish

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


# What every Tagline producer shares: an acknowledged record is on every in-sync replica, and a producer
# retry never duplicates or reorders records of a partition. Batches larger than aiokafka's 16 KiB default
# keep the tail latency low when many small events arrive at once.
PRODUCER_CONFIG: dict[str, Any] = {
    "enable_idempotence": True,
    "acks": "all",
    "linger_ms": 2,
    "max_batch_size": 1024 * 1024,
    "request_timeout_ms": 10_000,
}


def create_producer(settings: ServiceSettings, *, client_id: str, **overrides: Any) -> AIOKafkaProducer:
    """A bare aiokafka producer with :data:`PRODUCER_CONFIG`, for hot paths that only publish (ingest).

    FastStream's ``publish`` costs about 10 µs more per message; where a service consumes as well, use
    :func:`create_broker`.
    """
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=client_id,
        **{**PRODUCER_CONFIG, **overrides},
    )


BROKER_STOP_TIMEOUT_S = 45.0
"""Bound of a service's ``broker.stop()`` (:func:`tagline_platform.tasks.finish`): FastStream first waits up
to its ``graceful_timeout`` (15 s) for the handler each subscriber is running, then stops the consumers
(commit, leave the group) and the producer (flush)."""


def create_broker(
    settings: ServiceSettings,
    *,
    client_id: str,
    **overrides: Any,
) -> KafkaBroker:
    """A FastStream ``KafkaBroker`` on aiokafka with an idempotent, ``acks=all`` producer.

    The broker does not connect here (no I/O at import or construction time); call ``await broker.start()``
    or ``await broker.connect()`` from the service's lifespan.
    """
    options: dict[str, Any] = {
        **PRODUCER_CONFIG,
        "client_id": client_id,
        "allow_auto_create_topics": False,
        "logger": logging.getLogger(f"tagline.{client_id}.kafka"),
        **overrides,
    }
    return KafkaBroker(settings.kafka_bootstrap_servers, **options)


async def ensure_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    *,
    partitions: int = 6,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are.

    Idempotent, so every service calls it at start-up for the topics it touches (DESIGN.md §3: the code never
    relies on broker auto-creation).
    """
    wanted = sorted(set(names))
    if not wanted:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="tagline-admin")
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            response = await admin.create_topics(
                [NewTopic(name, partitions, replication_factor) for name in wanted],
                timeout_ms=int(timeout_s * 1000),
            )
    except TimeoutError as exc:
        raise InfrastructureUnavailable(
            f"Kafka at {bootstrap_servers} did not answer within {timeout_s:.0f}s while creating topics"
        ) from exc
    finally:
        await finish("topic creation: admin client close", admin.close(), failure_level=logging.WARNING)
    for topic, code, *rest in response.topic_errors:
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            message = rest[0] if rest else ""
            raise InfrastructureUnavailable(f"could not create topic {topic!r}: error {code} {message}")
    log.info("topics ready", extra={"topics": wanted, "partitions": partitions})


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to publish: topic (physical name), key and JSON value. Storable in an outbox document."""

    topic: str
    key: bytes
    value: bytes

    @classmethod
    def of(cls, topic: str, key: str, envelope: BaseModel) -> Outgoing:
        """``envelope`` as it goes on Kafka (JSON by alias), keyed ``key``."""
        return cls(topic, key.encode(), envelope.model_dump_json(by_alias=True).encode())

    def to_doc(self) -> dict[str, Any]:
        return {"topic": self.topic, "key": self.key.decode(), "value": self.value.decode()}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Outgoing:
        return cls(doc["topic"], doc["key"].encode(), doc["value"].encode())


async def publish_all(producer: AIOKafkaProducer, messages: Sequence[Outgoing]) -> None:
    """Publish ``messages`` and wait until Kafka acknowledged every one (at least once; consumers dedupe).

    Waits for every acknowledgement before raising the first failure, so no send is left dangling."""
    sends: list[Awaitable[Any]] = [await producer.send(m.topic, m.value, key=m.key) for m in messages]
    for outcome in await asyncio.gather(*sends, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


def batch_records(message: Any) -> tuple[Any, ...]:
    """The aiokafka records of a FastStream batch message (a one-record batch arrives unwrapped)."""
    raw = message.raw_message
    return raw if isinstance(raw, tuple) else (raw,)
