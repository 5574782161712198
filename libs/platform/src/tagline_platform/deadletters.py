"""Dead-lettering: a message a consumer can never apply goes to ``<topic>.dlq.v1`` with the reason.

The consumer then carries on (DESIGN.md §4: bad input never crashes a consumer and is never silently dropped).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from tagline_contracts import topics
from tagline_contracts.deadletter import DeadLetter, as_text
from tagline_platform.consumers import ConsumerMetrics
from tagline_platform.settings import ServiceSettings

log = logging.getLogger("tagline.deadletters")


def reason(exc: Exception) -> str:
    """A short, readable reason: the first validation errors with their locations, else the message."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:10]
        )
    return str(exc)


def ids(record: Any) -> dict[str, str]:
    """``channel_id`` and ``event_id`` of a record for its log lines, as far as they can be read from it."""
    found: dict[str, str] = {}
    try:
        value = orjson.loads(record.value) if record.value else None
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        found = {k: v for k in ("channel_id", "event_id") if isinstance(v := value.get(k), str)}
    if "channel_id" not in found and record.key:
        channel, sep, _ = (as_text(record.key) or "").partition(":")  # keys are "<channel id>:<…>"
        if sep and channel:
            found["channel_id"] = channel
    return found


class DeadLetters:
    """Publishes :class:`DeadLetter` records for one consumer group (and counts them, given ``metrics``)."""

    def __init__(
        self,
        broker: KafkaBroker,
        settings: ServiceSettings,
        *,
        consumer: str,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        self._broker = broker
        self._settings = settings
        self._consumer = consumer
        self._metrics = metrics

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
        if self._metrics is not None:
            self._metrics.count_dead_letter(self._consumer, topic)
        log.warning(
            "dead-lettered",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "consumer": self._consumer,
                "error": error,
                **ids(record),
            },
        )
