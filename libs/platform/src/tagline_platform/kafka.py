"""Kafka plumbing: the FastStream broker factory, the bare producer factory, explicit topic creation and the
wait for the group coordinator at start-up.

Producer guarantees come from :data:`PRODUCER_CONFIG`, which both factories use.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from tagline_platform.errors import InfrastructureUnavailable
from tagline_platform.settings import ServiceSettings
from tagline_platform.tasks import finish

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
_POLL_S = 0.1


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
    """Create the topics that do not exist yet (existing ones are left as they are) and return once Kafka's
    metadata lists every one of them with a leader for each partition.

    Idempotent, so every service calls it at start-up for the topics it touches (DESIGN.md §3: the code never
    relies on broker auto-creation). Kafka acknowledges a creation before its metadata lists the new topic,
    and lists a partition's leader before that leader serves it: a client that asked in between was told "not
    found in cluster metadata" or NOT_LEADER_OR_FOLLOWER, which aiokafka logs at error level (and retries).
    Hence the wait until the metadata lists a leader for every partition and every leader answers a
    ListOffsets request for it.
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
            for topic, code, *rest in response.topic_errors:
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    message = rest[0] if rest else ""
                    raise InfrastructureUnavailable(
                        f"could not create topic {topic!r}: error {code} {message}"
                    )
            partitions_led = await _until_led(admin, wanted)
            await _until_served(bootstrap_servers, partitions_led)
    except TimeoutError as exc:
        raise InfrastructureUnavailable(
            f"Kafka at {bootstrap_servers} did not create and lead the topics within {timeout_s:.0f}s"
        ) from exc
    finally:
        await finish("topic creation: admin client close", admin.close(), failure_level=logging.WARNING)
    log.info("topics ready", extra={"topics": wanted, "partitions": partitions})


async def _until_led(admin: AIOKafkaAdminClient, names: list[str]) -> list[TopicPartition]:
    """Poll the metadata of ``names`` until each topic is listed with a leader for every partition."""
    while True:
        described = await admin.describe_topics(names)
        waiting = [
            topic["topic"]
            for topic in described
            if topic["error_code"] != 0
            or not topic["partitions"]
            or any(p["error_code"] != 0 or p["leader"] < 0 for p in topic["partitions"])
        ]
        if not waiting:
            return [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
        await asyncio.sleep(_POLL_S)


async def _until_served(bootstrap_servers: str, partitions: list[TopicPartition]) -> None:
    """Return once the leader of every partition answers a ListOffsets request for it (aiokafka retries
    NOT_LEADER_OR_FOLLOWER here without logging it; the caller bounds the wait)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, client_id="tagline-admin", enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def wait_for_coordinators(
    bootstrap_servers: str, group_ids: Iterable[str], *, timeout_s: float = 60.0
) -> None:
    """Return once Kafka names a coordinator for every consumer group in ``group_ids``.

    A new Kafka creates its ``__consumer_offsets`` topic when a client first asks for a group coordinator and
    answers COORDINATOR_NOT_AVAILABLE until that topic is led and loaded; a consumer started meanwhile logs
    "Group Coordinator Request failed" at error level (aiokafka) until it is. Services call this before
    starting their consumers, so a clean start logs no error. ``deploy/local/infra.py up`` already waits for
    a coordinator; other Kafkas (Docker, testcontainers, a cluster) may not have one yet.
    """
    wanted = sorted(set(group_ids))
    if not wanted:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="tagline-admin")
    waited: list[str] = []
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            for group_id in wanted:
                while not await _coordinator_known(admin, group_id):
                    if not waited:
                        log.info(
                            "waiting for Kafka's group coordinator (a new Kafka creates __consumer_offsets "
                            "when first asked)",
                            extra={"group_id": group_id},
                        )
                    waited.append(group_id)
                    await asyncio.sleep(_POLL_S)
    except TimeoutError as exc:
        raise InfrastructureUnavailable(
            f"Kafka at {bootstrap_servers} named no group coordinator for {wanted} within {timeout_s:.0f}s"
        ) from exc
    except KafkaError as exc:  # bootstrap: nothing answers there
        raise InfrastructureUnavailable(f"Kafka at {bootstrap_servers} does not answer: {exc}") from exc
    finally:
        await finish("coordinator wait: admin client close", admin.close(), failure_level=logging.WARNING)
    if waited:
        log.info("group coordinator available", extra={"groups": wanted, "attempts": len(waited)})


async def _coordinator_known(admin: AIOKafkaAdminClient, group_id: str) -> bool:
    """Whether Kafka names ``group_id``'s coordinator now (False while it cannot yet: retriable errors)."""
    try:
        await admin.find_coordinator(group_id)
    except KafkaError as exc:
        if exc.retriable:
            return False
        raise InfrastructureUnavailable(f"no group coordinator for {group_id!r}: {exc!r}") from exc
    return True


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


async def stop_producer(producer: AIOKafkaProducer, what: str, *, timeout_s: float | None = None) -> bool:
    """Stop ``producer`` (it flushes what is pending) within ``timeout_s``; whether it finished in time.

    With the broker gone the flush never ends; giving up on it alone would leave the producer's sender task
    retrying in the background for the life of the process (a test process goes on to other tests). So on
    timeout the sender is closed and the client disconnected: what was pending is dropped. Callers only give
    up on records nobody was told were stored (ingest answered 503 for them; a journal entry or an outbox
    publishes them again).
    """
    if await finish(what, producer.stop(), timeout_s=timeout_s):
        return True
    sender: Any = getattr(producer, "_sender", None)  # aiokafka has no public "abort"
    if sender is not None:
        await finish(f"{what}: abandon pending records", sender.close(), failure_level=logging.WARNING)
    await finish(f"{what}: disconnect", producer.client.close(), failure_level=logging.WARNING)
    return False
