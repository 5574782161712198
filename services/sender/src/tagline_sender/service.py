"""The running sender: Kafka subscribers, dispatcher and quota refresher, started and stopped together.

Tests start several of these in one process (each with its own broker, Mongo client and dispatcher) to race
instances against one channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tagline_contracts import topics
from tagline_contracts.sending import SendResult, SendResulted
from tagline_platform.consumers import ConsumerLag, ConsumerMetrics
from tagline_platform.kafka import (
    BROKER_STOP_TIMEOUT_S,
    Outgoing,
    create_broker,
    ensure_topics,
    wait_for_coordinators,
)
from tagline_platform.mongo import create_mongo_client
from tagline_platform.readiness import Readiness
from tagline_platform.tasks import STOP_TIMEOUT_S, cancel_all, every, finish, log_stopped, utc_now
from tagline_sender import handlers
from tagline_sender.adapters.journeys import JourneyStore
from tagline_sender.adapters.line import SdkLineGateway
from tagline_sender.adapters.mongo import SenderStore
from tagline_sender.dispatcher import DispatchConfig, Dispatcher, RateLimiter
from tagline_sender.journeys import JourneyCache, JourneyRunner
from tagline_sender.metrics import SenderMetrics
from tagline_sender.planner import Planner
from tagline_sender.ports import LineGateway
from tagline_sender.quota import QuotaKeeper
from tagline_sender.settings import SenderSettings
from tagline_sender.welcomer import Welcomer

log = logging.getLogger("tagline.sender")


class SenderService:
    def __init__(
        self,
        settings: SenderSettings,
        *,
        clock: Callable[[], datetime] = utc_now,
        line: LineGateway | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.channels = settings.load_channels()
        self.plans = settings.all_plans()
        self.metrics = SenderMetrics()
        self.consumers = ConsumerMetrics(self.metrics.metrics, topic_namespace=settings.topic_namespace)
        self.lag = ConsumerLag(settings.kafka_bootstrap_servers, self.consumers)
        self.readiness = Readiness(self.consumers)
        self.mongo = create_mongo_client(settings.mongodb_url, app_name="tagline-sender")
        self.store = SenderStore(self.mongo[settings.database], clock=clock)
        self.line = line or SdkLineGateway(
            settings.line_api_url, timeout_s=settings.request_timeout_s, pool_size=settings.concurrency * 2
        )
        self.quota = QuotaKeeper(self.store, self.line, self.channels, settings.marketing_headroom_ratio)
        self.broker = create_broker(settings, client_id="tagline-sender")
        self.readiness.probe("Kafka", lambda: self.broker.ping(timeout=2.0))
        self.readiness.probe("MongoDB", lambda: self.mongo.admin.command("ping"))
        self.dispatcher = Dispatcher(
            self.store,
            self.quota,
            self.line,
            self.channels,
            self.plans,
            RateLimiter(settings.limits(), settings.rate_limit_safety),
            self._publish_result,
            DispatchConfig(
                concurrency=settings.concurrency,
                poll_interval_s=settings.poll_interval_s,
                lease=timedelta(seconds=settings.lease_s),
                reply_ttl=timedelta(seconds=settings.reply_token_ttl_s),
                retry=settings.retry_policy(),
                rate_limit_safety=settings.rate_limit_safety,
            ),
            clock=clock,
            instance_id=settings.instance_id,
            on_outcome=self.metrics.outcome,
            on_reply_left_out=self.metrics.reply_left_out,
        )
        self.planner = Planner(
            self.store,
            self.channels,
            reply_ttl=timedelta(seconds=settings.reply_token_ttl_s),
            reply_gather=timedelta(milliseconds=settings.reply_gather_ms),
            max_recipients=settings.max_planned_recipients,
            enqueue=self.dispatcher.enqueue,
            clock=clock,
        )
        handlers.register(
            self.broker,
            settings,
            store=self.store,
            planner=self.planner,
            metrics=self.metrics,
            consumers=self.consumers,
            on_partitions=self.dispatcher.set_partitions,
        )
        self.journey_store = JourneyStore(self.mongo[settings.database])
        self.journey_cache = JourneyCache(self.journey_store)
        self.journeys = JourneyRunner(
            self.journey_store, self.journey_cache, self._publish, topic_of=settings.topic, clock=clock
        )
        self.welcomer = Welcomer(
            self.journey_store,
            self._publish,
            topic_of=settings.topic,
            reply_ttl=timedelta(seconds=settings.reply_token_ttl_s),
        )
        if settings.journeys:
            handlers.register_journeys(
                self.broker,
                settings,
                runner=self.journeys,
                welcomer=self.welcomer,
                consumers=self.consumers,
                clock=clock,
            )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Topics, indexes, then the consumers and the dispatcher; ``/readyz`` answers meanwhile."""
        names = [topics.SEND_REQUESTS, topics.SEND_RESULTS, topics.MEMBER_CHANGES, topics.LINE_EVENTS]
        self.readiness.starting("creating topics")
        await ensure_topics(
            self.settings.kafka_bootstrap_servers,
            [self.settings.topic(n) for n in names]
            + [self.settings.topic(topics.dlq(n)) for n in (topics.SEND_REQUESTS, topics.MEMBER_CHANGES)],
            partitions=self.settings.topic_partitions,
        )
        self.readiness.starting("waiting for Kafka's group coordinator")
        await wait_for_coordinators(self.settings.kafka_bootstrap_servers, self.consumers.groups)
        self.readiness.starting("connecting")
        await self.store.ensure_indexes()
        await self.journey_store.ensure_indexes()
        if not self.channels:
            log.warning(
                "no channels configured (TAGLINE_SENDER_CHANNELS / _FILE): every request is dead-lettered"
            )
        self.readiness.starting("joining consumer groups")
        await self.broker.start()
        self.dispatcher.start()
        self._tasks += [
            asyncio.create_task(
                every(self.settings.quota_refresh_s, self.refresh_quota), name="sender-quota-refresh"
            ),
            asyncio.create_task(
                every(self.settings.quota_gauge_refresh_s, self.publish_quota), name="quota-gauge"
            ),
            asyncio.create_task(every(self.settings.consumer_lag_interval_s, self.lag.refresh), name="lag"),
        ]
        await self.journey_cache.refresh()
        if self.settings.journeys:
            self._tasks += [
                asyncio.create_task(
                    every(self.settings.journey_refresh_s, self.journey_cache.refresh),
                    name="journey-defs",
                ),
                asyncio.create_task(
                    every(self.settings.journey_poll_s, self.journeys.run_due), name="journey-steps"
                ),
            ]

    async def _publish(self, message: Outgoing) -> None:
        await self.broker.publish(message.value, topic=message.topic, key=message.key)

    async def stop(self) -> None:
        """Stop the jobs, let LINE calls and handlers in progress finish (and commit), close every client.

        Every step is bounded (:func:`~tagline_platform.tasks.finish`): one that hangs is logged by name and
        left behind, and the shutdown goes on with the next."""
        grace_s = self.settings.shutdown_grace_s
        finished = [
            not await cancel_all(self._tasks),
            await self.lag.close(),  # bounded inside
            await finish(  # results still go out
                "dispatcher stop", self.dispatcher.stop(grace_s=grace_s), timeout_s=grace_s + STOP_TIMEOUT_S
            ),
            await finish(  # waits for running handlers (the broker's graceful_timeout), commits
                "kafka broker stop", self.broker.stop(), timeout_s=BROKER_STOP_TIMEOUT_S
            ),
            await finish("LINE client close", self.line.close()),
            await finish("mongo client close", self.mongo.close()),
        ]
        log_stopped(log, finished)

    async def refresh_quota(self) -> None:
        """Reconcile every channel's ledger with LINE, and resume deferred sends where room appeared."""
        now = self.clock()
        for channel_id in self.channels:
            try:
                remaining = await self.quota.refresh(channel_id, now)
            except Exception:
                log.exception("quota refresh failed", extra={"channel_id": channel_id})
                continue
            self.metrics.quota_remaining.labels(channel_id).set(remaining)
            if remaining > 0:
                resumed = await self.store.resume_deferred(channel_id, now)
                if resumed:
                    log.info(
                        "deferred deliveries resumed", extra={"channel_id": channel_id, "count": resumed}
                    )

    async def publish_quota(self) -> None:
        """Set the quota gauge from each channel's ledger (no LINE call): it moves with every reservation."""
        now = self.clock()
        for channel_id in self.channels:
            try:
                doc = await self.quota.ledger(channel_id, now)
            except Exception as exc:
                log.warning("quota gauge not updated", extra={"channel_id": channel_id, "error": repr(exc)})
                continue
            self.metrics.quota_remaining.labels(channel_id).set(doc["remaining"])

    async def _publish_result(self, channel_id: str, event_id: str, result: SendResult) -> None:
        now = datetime.now(UTC)
        envelope = SendResulted(
            event_id=event_id, channel_id=channel_id, occurred_at=now, produced_at=now, payload=result
        )
        await self.broker.publish(
            envelope.model_dump_json(by_alias=True).encode(),
            topic=self.settings.topic(topics.SEND_RESULTS),
            key=f"{channel_id}:{result.request_id}".encode(),
        )
