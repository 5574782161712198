"""The running tagger: the member pipeline, the send-results consumer, the scheduled jobs, started and stopped
together. Tests start several in one process (each with its own broker, producer and Mongo client)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from tagline_contracts import topics
from tagline_contracts.line_messages import warm_up
from tagline_contracts.sending import SendResulted
from tagline_platform.consumers import ConsumerLag, ConsumerMetrics
from tagline_platform.deadletters import DeadLetters, reason
from tagline_platform.errors import ConfigurationError
from tagline_platform.kafka import (
    BROKER_STOP_TIMEOUT_S,
    Outgoing,
    batch_records,
    create_broker,
    create_producer,
    ensure_topics,
    publish_all,
    stop_producer,
    wait_for_coordinators,
)
from tagline_platform.mongo import create_mongo_client
from tagline_platform.readiness import Readiness
from tagline_platform.tasks import cancel_all, every, finish, log_stopped, utc_now
from tagline_tagger.adapters.mongo import TaggerStore
from tagline_tagger.jobs import (
    ModelCache,
    RfmJob,
    RuleCache,
    Sweeper,
    campaign_tags,
    compute_coverage,
    publish_coverage,
)
from tagline_tagger.metrics import TaggerMetrics
from tagline_tagger.pipeline import MEMBER_TOPICS, MemberPipeline
from tagline_tagger.settings import TaggerSettings

log = logging.getLogger("tagline.tagger")

INFRA_RETRY_DELAY_S = 1.0


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._on_change()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._on_change()


class TaggerService:
    def __init__(self, settings: TaggerSettings, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self.channels = settings.load_channels()
        """The channels served: the API answers 404 for others, the pipeline dead-letters their records."""
        self.metrics = TaggerMetrics()
        self.mongo = create_mongo_client(settings.mongodb_url, app_name="tagline-tagger")
        self.store = TaggerStore(
            self.mongo[settings.database], lookup_concurrency=settings.lookup_concurrency
        )
        self.broker = create_broker(settings, client_id="tagline-tagger")
        self._producer: AIOKafkaProducer | None = None  # created in start(): aiokafka needs the running loop
        self.rules = RuleCache(self.store, self.metrics, self.channels)
        self.models = ModelCache(self.store)
        self.consumers = ConsumerMetrics(self.metrics.metrics, topic_namespace=settings.topic_namespace)
        self.lag = ConsumerLag(settings.kafka_bootstrap_servers, self.consumers)
        self.readiness = Readiness(self.consumers)
        self.readiness.probe("Kafka", lambda: self.broker.ping(timeout=2.0))
        self.readiness.probe("MongoDB", lambda: self.mongo.admin.command("ping"))
        self.dead = DeadLetters(self.broker, settings, consumer=settings.group_id, metrics=self.consumers)
        self.pipeline = MemberPipeline(
            self.store,
            rules=self.rules.current,
            models=self.models.get,
            publish_all=self.publish_all,
            dead_letter=self.dead.send,
            channels=self.channels,
            topic_of=settings.topic,
            clock=clock,
            metrics=self.metrics,
            cache_size=settings.cache_size,
            reply_ttl=timedelta(seconds=settings.reply_ttl_s),
        )
        self.rfm = RfmJob(
            self.store,
            self.models,
            self.publish_all,
            topic_of=settings.topic,
            metrics=self.metrics,
            min_population=settings.rfm_min_population,
            thresholds=settings.rfm_thresholds,
        )
        self.sweeper = Sweeper(self.store, self.publish_all, self.channels, topic_of=settings.topic)
        self._tasks: list[asyncio.Task[None]] = []
        self._register()

    # ---- wiring ----------------------------------------------------------------------------------------
    def _register(self) -> None:
        settings = self.settings
        pipeline = self.pipeline
        metrics = self.metrics
        members = self.consumers.group(settings.group_id, [settings.topic(n) for n in MEMBER_TOPICS])
        results = self.consumers.group(f"{settings.group_id}-results", [settings.topic(topics.SEND_RESULTS)])

        @self.broker.subscriber(
            *(settings.topic(name) for name in MEMBER_TOPICS),
            group_id=settings.group_id,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            batch=True,
            max_records=settings.max_batch,
            batch_timeout_ms=settings.batch_timeout_ms,
            # Co-partitioning: partition p of every member topic goes to the same instance (pipeline.py).
            partition_assignment_strategy=(RangePartitionAssignor,),
            listener=members.listener(_Rebalance(pipeline.partitions_changed)),
            max_poll_interval_ms=600_000,
        )
        async def on_member_inputs(message: KafkaMessage) -> None:
            records = batch_records(message)
            started = time.perf_counter()
            with members.batch(records):
                try:
                    await pipeline.handle(records)
                except Exception:
                    log.exception("member batch not applied; it will be consumed again")
                    await asyncio.sleep(INFRA_RETRY_DELAY_S)
                    raise
            metrics.batch_seconds.observe(time.perf_counter() - started)

        @self.broker.subscriber(
            settings.topic(topics.SEND_RESULTS),
            group_id=f"{settings.group_id}-results",
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            batch=True,
            max_records=500,
            batch_timeout_ms=100,
            listener=results.listener(),
        )
        async def on_send_results(message: KafkaMessage) -> None:
            records = batch_records(message)
            with results.batch(records):
                await self._on_send_results(records)

    async def _on_send_results(self, records: Sequence[Any]) -> None:
        outgoing: list[Outgoing] = []
        rules = self.rules.current()
        for record in records:
            try:
                result = SendResulted.model_validate_json(record.value)
            except ValidationError as exc:
                self.metrics.inputs.labels(topics.SEND_RESULTS, "invalid").inc()
                await self.dead.send(topics.SEND_RESULTS, record, reason(exc))
                continue
            if result.channel_id not in self.channels:
                continue  # the sender may serve channels this tagger does not: no campaign rules for them
            outgoing.extend(campaign_tags(result, rules, topic_of=self.settings.topic))
        try:
            await self.publish_all(outgoing)
        except Exception:
            log.exception("campaign tags not published; the results will be consumed again")
            await asyncio.sleep(INFRA_RETRY_DELAY_S)
            raise

    async def publish_all(self, messages: Sequence[Outgoing]) -> None:
        """Publish and wait until Kafka acknowledged every message (at least once; consumers dedupe)."""
        if not messages:
            return
        if self._producer is None:
            raise RuntimeError("the tagger is not started")
        await publish_all(self._producer, messages)

    # ---- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Topics, clients, caches, then the consumers; ``/readyz`` answers meanwhile (readiness.py)."""
        # the message validator's line-bot-sdk (about a second to import) now, not in the first batch
        await asyncio.to_thread(warm_up)
        settings = self.settings
        if not self.channels:
            raise ConfigurationError(
                "the tagger serves no channel: set TAGLINE_TAGGER_CHANNELS to a JSON list of channel ids "
                '(e.g. ["1234567890"]) or TAGLINE_TAGGER_CHANNELS_FILE to a file holding one'
            )
        consumed = [*MEMBER_TOPICS, topics.SEND_RESULTS]
        produced = [topics.MEMBER_CHANGES, topics.SEND_REQUESTS]
        self.readiness.starting("creating topics")
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            [settings.topic(n) for n in (*consumed, *produced)]
            + [settings.topic(topics.dlq(n)) for n in consumed],
            partitions=settings.topic_partitions,
        )
        self.readiness.starting("waiting for Kafka's group coordinator")
        await wait_for_coordinators(settings.kafka_bootstrap_servers, self.consumers.groups)
        self.readiness.starting("connecting")
        self._producer = create_producer(settings, client_id="tagline-tagger-out")
        await self._producer.start()
        await self._check_copartitioned(self._producer)
        await self.store.ensure_indexes()
        await self.rules.refresh()
        await self.models.refresh()
        self.readiness.starting("joining consumer groups")
        await self.broker.start()
        self._tasks = [
            asyncio.create_task(every(settings.rules_refresh_s, self.rules.refresh), name="rules"),
            asyncio.create_task(every(settings.consumer_lag_interval_s, self.lag.refresh), name="lag"),
        ]
        if settings.jobs:
            self._tasks += [
                asyncio.create_task(every(settings.sweep_interval_s, self.sweep), name="sweep"),
                asyncio.create_task(every(settings.coverage_refresh_s, self.refresh_coverage), name="cov"),
                asyncio.create_task(every(settings.rfm_interval_s, self.scheduled_rfm), name="rfm"),
            ]

    async def stop(self) -> None:
        """Stop the jobs, let the batches in hand finish and commit, then close every client.

        Every step is bounded (:func:`~tagline_platform.tasks.finish`): one that hangs is logged by name and
        left behind, and the shutdown goes on with the next."""
        finished = [
            not await cancel_all(self._tasks),
            await self.lag.close(),  # bounded inside
            await finish(  # waits for running handlers (the broker's graceful_timeout), commits
                "kafka broker stop", self.broker.stop(), timeout_s=BROKER_STOP_TIMEOUT_S
            ),
        ]
        if self._producer is not None:  # flushes what is in flight
            finished.append(await stop_producer(self._producer, "kafka producer stop"))
        finished.append(await finish("mongo client close", self.mongo.close()))
        log_stopped(log, finished)

    async def _check_copartitioned(self, producer: AIOKafkaProducer) -> None:
        """The single-writer rule needs the member topics to have the same number of partitions."""
        counts = {
            name: len(await producer.partitions_for(self.settings.topic(name)) or ())
            for name in MEMBER_TOPICS
        }
        if len(set(counts.values())) != 1:
            raise ConfigurationError(
                f"the member topics must have the same number of partitions (co-partitioned), got {counts}"
            )

    # ---- jobs ------------------------------------------------------------------------------------------
    async def sweep(self) -> int:
        return await self.sweeper.sweep(self.clock())

    async def _channels_with_members(self) -> list[str]:
        """The channels served that have members (their member counts: one read by ``_id`` each)."""
        channels = sorted(self.channels)
        counts = await asyncio.gather(*(self.store.load_counts(channel) for channel in channels))
        return [channel for channel, found in zip(channels, counts, strict=True) if found.total]

    async def refresh_coverage(self) -> None:
        now = self.clock()
        for channel_id in await self._channels_with_members():
            publish_coverage(self.metrics, await compute_coverage(self.store, channel_id, now))

    async def scheduled_rfm(self) -> None:
        """Recompute each channel's RFM once per interval, in one instance (the first to claim the slot)."""
        now = self.clock()
        slot = int(now.timestamp() // self.settings.rfm_interval_s)
        for channel_id in await self._channels_with_members():
            if await self.store.claim_run_slot(f"rfm:{channel_id}:{slot}", now):
                await self.rfm.recompute(channel_id, now)  # else another instance has this slot
