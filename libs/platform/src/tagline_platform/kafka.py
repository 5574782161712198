"""Kafka plumbing: the FastStream broker factory and explicit, idempotent topic creation.

Producer guarantees come from here: every broker is created with ``enable_idempotence=True`` and
``acks="all"``, so an acknowledged message is durable on the broker and a producer retry never duplicates or
reorders messages of one partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker

from tagline_platform.errors import InfrastructureUnavailable
from tagline_platform.settings import ServiceSettings

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


def create_broker(
    settings: ServiceSettings,
    *,
    client_id: str,
    linger_ms: int = 2,
    request_timeout_ms: int = 10_000,
    **overrides: Any,
) -> KafkaBroker:
    """A FastStream ``KafkaBroker`` on aiokafka with an idempotent, ``acks=all`` producer.

    The broker does not connect here (no I/O at import or construction time); call ``await broker.start()``
    or ``await broker.connect()`` from the service's lifespan.
    """
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        request_timeout_ms=request_timeout_ms,
        allow_auto_create_topics=False,
        logger=logging.getLogger(f"tagline.{client_id}.kafka"),
        **overrides,
    )


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
        await admin.close()
    for topic, code, *rest in response.topic_errors:
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            message = rest[0] if rest else ""
            raise InfrastructureUnavailable(f"could not create topic {topic!r}: error {code} {message}")
    log.info("topics ready", extra={"topics": wanted, "partitions": partitions})
