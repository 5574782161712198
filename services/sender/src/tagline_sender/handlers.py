"""FastStream subscribers: ``send.requests.v1`` → planner, ``member.changes.v1`` → projection.

Offsets are committed after the handler returns (``ack_policy`` with a ``group_id``; DESIGN.md §4). A
message that can never be applied goes to its DLQ topic with the reason and the handler returns normally;
an infrastructure failure raises, so FastStream seeks back and the message is consumed again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from tagline_contracts import topics
from tagline_contracts.envelope import LineEventReceived
from tagline_contracts.members import MemberChanged, MemberChangedEvent
from tagline_contracts.sending import SendRequested, SendResulted
from tagline_platform.consumers import ConsumerMetrics
from tagline_platform.deadletters import DeadLetters, ids, reason
from tagline_platform.kafka import batch_records
from tagline_sender.adapters.mongo import SenderStore
from tagline_sender.domain.planning import InvalidRequest
from tagline_sender.journeys import JourneyRunner
from tagline_sender.metrics import SenderMetrics
from tagline_sender.planner import Planner
from tagline_sender.settings import SenderSettings
from tagline_sender.welcomer import Welcomer

log = logging.getLogger("tagline.sender.handlers")

INFRA_RETRY_DELAY_S = 1.0
REQUESTS_FETCH_MAX_WAIT_MS = 100
"""Longest wait of a fetch of ``send.requests.v1``. A record that arrives while a fetch for the other, idle
partitions is in flight waits for that fetch to end (aiokafka's default: 500 ms); the replies to one event
must meet within the reply gather window (``TAGLINE_SENDER_REPLY_GATHER_MS``), so this is kept short."""


class PartitionListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells the dispatcher which ``send.requests.v1`` partitions this instance owns."""

    def __init__(self, topic: str, total: int, on_change: Callable[[set[int], int], None]) -> None:
        self._topic = topic
        self._total = total
        self._on_change = on_change

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._on_change(set(), self._total)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._on_change({tp.partition for tp in assigned if tp.topic == self._topic}, self._total)


def register(
    broker: KafkaBroker,
    settings: SenderSettings,
    *,
    store: SenderStore,
    planner: Planner,
    metrics: SenderMetrics,
    consumers: ConsumerMetrics,
    on_partitions: Callable[[set[int], int], None],
) -> None:
    requests_topic = settings.topic(topics.SEND_REQUESTS)
    changes_topic = settings.topic(topics.MEMBER_CHANGES)
    dead = DeadLetters(broker, settings, consumer=settings.group_id, metrics=consumers)
    requests = consumers.group(settings.group_id, [requests_topic])
    projection = consumers.group(f"{settings.group_id}-members", [changes_topic])

    @broker.subscriber(
        requests_topic,
        group_id=settings.group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        listener=requests.listener(
            PartitionListener(requests_topic, settings.topic_partitions, on_partitions)
        ),
        max_poll_interval_ms=600_000,
        fetch_max_wait_ms=REQUESTS_FETCH_MAX_WAIT_MS,
    )
    async def on_send_request(message: KafkaMessage) -> None:
        record: Any = message.raw_message
        with requests.batch((record,)):
            try:
                envelope = SendRequested.model_validate_json(record.value)
                await planner.plan(
                    envelope.channel_id,
                    envelope.payload,
                    partition=record.partition,
                    event_id=envelope.event_id,
                )
            except (ValidationError, InvalidRequest, ValueError) as exc:
                metrics.requests.labels("invalid").inc()
                await dead.send(topics.SEND_REQUESTS, record, reason(exc))
                return
            except Exception:
                log.exception("send request not planned; it will be consumed again", extra=ids(record))
                await asyncio.sleep(INFRA_RETRY_DELAY_S)
                raise
            metrics.requests.labels("planned").inc()

    @broker.subscriber(
        changes_topic,
        group_id=f"{settings.group_id}-members",
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=2_000,
        batch_timeout_ms=100,
        listener=projection.listener(),
    )
    async def on_member_changes(message: KafkaMessage) -> None:
        records = batch_records(message)
        with projection.batch(records):
            by_channel: dict[str, list[MemberChanged]] = {}
            for record in records:
                try:
                    envelope = MemberChangedEvent.model_validate_json(record.value)
                except ValidationError as exc:
                    metrics.member_changes.labels("invalid").inc()
                    await dead.send(topics.MEMBER_CHANGES, record, reason(exc))
                    continue
                by_channel.setdefault(envelope.channel_id, []).append(envelope.payload)
            try:
                for channel_id, changes in by_channel.items():
                    applied = await store.apply_member_changes(channel_id, changes)
                    metrics.member_changes.labels("applied").inc(applied)
                    metrics.member_changes.labels("stale").inc(len(changes) - applied)
            except Exception:
                log.exception("member changes not applied; they will be consumed again")
                await asyncio.sleep(INFRA_RETRY_DELAY_S)
                raise


def register_journeys(
    broker: KafkaBroker,
    settings: SenderSettings,
    *,
    runner: JourneyRunner,
    welcomer: Welcomer,
    consumers: ConsumerMetrics,
    clock: Callable[[], datetime],
) -> None:
    """Journey enrollment from ``member.changes.v1`` and journey stats from ``send.results.v1``.

    Member changes are keyed by member, so one instance applies a member's changes in order (its own consumer
    group, apart from the projection's); enrollments are written under their lock anyway (schedulers too)."""
    dead = DeadLetters(broker, settings, consumer=f"{settings.group_id}-journeys", metrics=consumers)
    enrollment = consumers.group(f"{settings.group_id}-journeys", [settings.topic(topics.MEMBER_CHANGES)])
    stats = consumers.group(f"{settings.group_id}-journeys-results", [settings.topic(topics.SEND_RESULTS)])
    welcomes = consumers.group(f"{settings.group_id}-welcome", [settings.topic(topics.LINE_EVENTS)])

    @broker.subscriber(
        settings.topic(topics.MEMBER_CHANGES),
        group_id=f"{settings.group_id}-journeys",
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=500,
        batch_timeout_ms=50,
        listener=enrollment.listener(),
    )
    async def on_member_changes_for_journeys(message: KafkaMessage) -> None:
        records = batch_records(message)
        with enrollment.batch(records):
            try:
                for record in records:
                    try:
                        envelope = MemberChangedEvent.model_validate_json(record.value)
                    except ValidationError as exc:
                        await dead.send(topics.MEMBER_CHANGES, record, reason(exc))
                        continue
                    await runner.on_changes(envelope.channel_id, [envelope.payload])
            except Exception:
                log.exception("journey enrollment failed; the changes will be consumed again")
                await asyncio.sleep(INFRA_RETRY_DELAY_S)
                raise

    @broker.subscriber(
        settings.topic(topics.SEND_RESULTS),
        group_id=f"{settings.group_id}-journeys-results",
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=500,
        batch_timeout_ms=50,
        listener=stats.listener(),
    )
    async def on_results_for_journeys(message: KafkaMessage) -> None:
        records = batch_records(message)
        with stats.batch(records):
            try:
                for record in records:
                    try:
                        result = SendResulted.model_validate_json(record.value)
                    except ValidationError:
                        continue  # not ours to dead-letter: the sender's results are validated where made
                    await runner.on_result(result.payload, clock())
            except Exception:
                log.exception("journey stats not recorded; the results will be consumed again")
                await asyncio.sleep(INFRA_RETRY_DELAY_S)
                raise

    @broker.subscriber(
        settings.topic(topics.LINE_EVENTS),
        group_id=f"{settings.group_id}-welcome",
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=500,
        batch_timeout_ms=20,
        listener=welcomes.listener(),
    )
    async def on_line_events_for_welcome(message: KafkaMessage) -> None:
        records = batch_records(message)
        with welcomes.batch(records):
            try:
                for record in records:
                    if record.value is None or b'"follow"' not in record.value:
                        continue  # cheap pre-filter: only follow events are welcomed
                    try:
                        envelope = LineEventReceived.model_validate_json(record.value)
                    except ValidationError:
                        continue  # ingest's records; the member pipeline dead-letters bad ones
                    await welcomer.on_event(envelope, clock())
            except Exception:
                log.exception("welcome not requested; the events will be consumed again")
                await asyncio.sleep(INFRA_RETRY_DELAY_S)
                raise
