"""The running liveshop: the comment pipeline, the expiry and POINTS jobs, started and stopped together.

Tests start several in one process (each with its own broker, producer and Mongo client)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage

from tagline_contracts import topics
from tagline_contracts.line_messages import warm_up
from tagline_liveshop.adapters.store import LiveshopStore
from tagline_liveshop.domain.model import SessionStatus
from tagline_liveshop.domain.session import Changes, LiveSession
from tagline_liveshop.metrics import LiveshopMetrics
from tagline_liveshop.pipeline import CONSUMED, LiveIndex, Pipeline
from tagline_liveshop.points import CLAIM_MARGIN_S, Granter, PointsGateway
from tagline_liveshop.settings import LiveshopSettings
from tagline_liveshop.writer import SessionWriter
from tagline_platform.consumers import ConsumerLag, ConsumerMetrics
from tagline_platform.deadletters import DeadLetters
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

log = logging.getLogger("tagline.liveshop")

INFRA_RETRY_DELAY_S = 1.0


class LiveshopService:
    def __init__(self, settings: LiveshopSettings, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = LiveshopMetrics()
        self.mongo = create_mongo_client(settings.mongodb_url, app_name="tagline-liveshop")
        self.store = LiveshopStore(
            self.mongo[settings.database], lock_stale_after_s=settings.lock_stale_after_s
        )
        self.broker = create_broker(settings, client_id="tagline-liveshop")
        self._producer: AIOKafkaProducer | None = None  # created in start(): aiokafka needs the running loop
        self.consumers = ConsumerMetrics(self.metrics.metrics, topic_namespace=settings.topic_namespace)
        self.lag = ConsumerLag(settings.kafka_bootstrap_servers, self.consumers)
        self.readiness = Readiness(self.consumers)
        self.readiness.probe("Kafka", lambda: self.broker.ping(timeout=2.0))
        self.readiness.probe("MongoDB", lambda: self.mongo.admin.command("ping"))
        self.dead = DeadLetters(self.broker, settings, consumer=settings.group_id, metrics=self.consumers)
        self.writer = SessionWriter(
            self.store, self.publish_all, topic_of=settings.topic, clock=clock, cache_size=settings.cache_size
        )
        self.live = LiveIndex()
        self.pipeline = Pipeline(self.writer, self.live, dead_letter=self.dead.send, logical=self.logical)
        self.gateway = PointsGateway(
            settings.points_url, token=settings.points_token, timeout_s=settings.points_timeout_s
        )
        self.granter = Granter(
            self.store,
            self.gateway,
            self.publish_all,
            topic_of=settings.topic,
            clock=clock,
            claim_s=settings.points_timeout_s + CLAIM_MARGIN_S,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._register()

    def logical(self, physical: str) -> str:
        return physical.removeprefix(self.settings.topic_namespace)

    # ---- wiring ----------------------------------------------------------------------------------------
    def _register(self) -> None:
        settings = self.settings
        pipeline = self.pipeline
        metrics = self.metrics
        inputs = self.consumers.group(settings.group_id, [settings.topic(name) for name in CONSUMED])

        @self.broker.subscriber(
            *(settings.topic(name) for name in CONSUMED),
            group_id=settings.group_id,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            batch=True,
            max_records=settings.max_batch,
            batch_timeout_ms=settings.batch_timeout_ms,
            # most of the 18 partitions are idle: aiokafka's default 500 ms wait on them held back the busy
            # ones (p99 comment → confirmation 874 → 563 ms at 500/s in bench/test_liveshop_bench.py)
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            max_poll_interval_ms=600_000,
            listener=inputs.listener(),
        )
        async def on_inputs(message: KafkaMessage) -> None:
            records = batch_records(message)
            started = time.perf_counter()
            with inputs.batch(records):
                try:
                    await pipeline.handle(records)
                except Exception:
                    log.exception("liveshop batch not applied; it will be consumed again")
                    await asyncio.sleep(INFRA_RETRY_DELAY_S)
                    raise
            metrics.batch_seconds.observe(time.perf_counter() - started)
            metrics.records.inc(len(records))

    async def publish_all(self, messages: Sequence[Outgoing]) -> None:
        if not messages:
            return
        if self._producer is None:
            raise RuntimeError("liveshop is not started")
        await publish_all(self._producer, messages)

    # ---- commands used by the API and jobs ----------------------------------------------------------------
    async def run(self, session_id: str, work: Callable[[LiveSession, Changes], Any]) -> Any:
        result = await self.writer.run(session_id, work)
        session = await self.writer.read(session_id)
        self.live.set(session.header.channel_id, session_id, session.header.status is SessionStatus.LIVE)
        return result

    async def refresh_live(self) -> None:
        self.live.replace(await self.store.session_ids(status=SessionStatus.LIVE.value))

    async def expire_due(self) -> int:
        """Expire the unpaid orders whose reservation ran out, in every session that has some."""
        now = self.clock()
        expired = 0
        for session_id in await self.store.due_sessions(now):
            found = await self.writer.run(session_id, lambda s, c: s.expire(now, c))
            expired += len(found)
        if expired:
            log.info("orders expired", extra={"count": expired})
        return expired

    # ---- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Topics, clients, live sessions, then the consumer; ``/readyz`` answers meanwhile (readiness.py)."""
        # the message validator's line-bot-sdk (about a second to import) now, not in the first batch
        await asyncio.to_thread(warm_up)
        settings = self.settings
        produced = [topics.SEND_REQUESTS, topics.SHOP_ORDERS]
        self.readiness.starting("creating topics")
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            [settings.topic(n) for n in (*CONSUMED, *produced)]
            + [settings.topic(topics.dlq(n)) for n in CONSUMED],
            partitions=settings.topic_partitions,
        )
        self.readiness.starting("waiting for Kafka's group coordinator")
        await wait_for_coordinators(settings.kafka_bootstrap_servers, self.consumers.groups)
        self.readiness.starting("connecting")
        self._producer = create_producer(settings, client_id="tagline-liveshop-out")
        await self._producer.start()
        await self.store.ensure_indexes()
        await self.refresh_live()
        self.readiness.starting("joining consumer groups")
        await self.broker.start()
        self._tasks += [
            asyncio.create_task(every(settings.live_refresh_s, self.refresh_live), name="live"),
            asyncio.create_task(every(settings.consumer_lag_interval_s, self.lag.refresh), name="lag"),
        ]
        if settings.jobs:
            self._tasks += [
                asyncio.create_task(every(settings.expiry_interval_s, self.expire_due), name="expiry"),
                asyncio.create_task(self.granter.run_forever(settings.points_interval_s), name="points"),
            ]

    async def stop(self) -> None:
        """Stop the jobs, let the batch in hand finish and commit, then close every client.

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
        finished.append(await finish("POINTS client close", self.gateway.close()))
        finished.append(await finish("mongo client close", self.mongo.close()))
        log_stopped(log, finished)
