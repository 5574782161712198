"""Dead-lettering: a message a consumer can never apply goes to ``<topic>.dlq.v1`` with the reason.

The consumer then carries on (DESIGN.md §4: bad input never crashes a consumer and is never silently dropped).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from tagline_contracts import topics
from tagline_contracts.deadletter import DeadLetter, as_text
from tagline_platform.settings import ServiceSettings

log = logging.getLogger("tagline.deadletters")


def reason(exc: Exception) -> str:
    """A short, readable reason: the first validation errors with their locations, else the message."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:10]
        )
    return str(exc)


class DeadLetters:
    """Publishes :class:`DeadLetter` records for one consumer group."""

    def __init__(self, broker: KafkaBroker, settings: ServiceSettings, *, consumer: str) -> None:
        self._broker = broker
        self._settings = settings
        self._consumer = consumer

    async def send(self, topic: str, record: Any, error: str) -> None:
        """Dead-letter the aiokafka ``record`` consumed from logical topic ``topic``."""
        letter = DeadLetter(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=as_text(record.key),
            value=as_text(record.value) or "",
            error=error,
            consumer=self._consumer,
            failed_at=datetime.now(UTC),
        )
        await self._broker.publish(
            letter.model_dump_json(by_alias=True).encode(),
            topic=self._settings.topic(topics.dlq(topic)),
            key=record.key,
        )
        log.warning("dead-lettered", extra={"topic": record.topic, "offset": record.offset, "error": error})
