"""What every Kafka consumer of a service shows on ``/metrics``, per consumer group and (logical) topic.

* ``tagline_<service>_records_handled_total``: records whose handler returned, so their offsets are committed
  (applied, skipped as not relevant, or dead-lettered).
* ``tagline_<service>_records_failed_total``: records of a handler call that raised; they are consumed again,
  so one record counts once per failed attempt.
* ``tagline_<service>_records_dead_lettered_total``: records sent to ``<topic>.dlq.v1`` (counted by
  :class:`~tagline_platform.deadletters.DeadLetters`).
* ``tagline_<service>_consumer_lag``: records on the topic that the group has not committed yet (the sum over
  partitions; a partition without a committed offset counts from its first record, as the services consume
  with ``auto_offset_reset="earliest"``), measured every few seconds by :class:`ConsumerLag`.
* ``tagline_<service>_consumer_lag_measured_timestamp_seconds``: when the lag was last measured; the lag keeps
  its last values while Kafka does not answer, so this tells how old they are.

A handler counts its records with ``with group.batch(records): ...`` (``group = consumers.group(...)``), and
its subscriber takes ``listener=group.listener()`` (wrapping its own rebalance listener, if it has one): that
records the group's first partition assignment, which the service's readiness waits for
(:mod:`tagline_platform.readiness`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tagline_platform.metrics import Metrics
from tagline_platform.tasks import finish

log = logging.getLogger("tagline.consumers")


class ConsumerMetrics:
    """The consumer metrics of one service instance, and the consumer groups it runs (for the lag)."""

    def __init__(self, metrics: Metrics, *, topic_namespace: str = "") -> None:
        self._namespace = topic_namespace
        labels = ("group", "topic")
        self.handled = metrics.counter(
            "records_handled", "Records whose handler returned (their offsets are committed).", labels
        )
        self.failed = metrics.counter(
            "records_failed", "Records of handler calls that raised (they are consumed again).", labels
        )
        self.dead_lettered = metrics.counter(
            "records_dead_lettered", "Records sent to the topic's dead-letter topic.", labels
        )
        self.lag = metrics.gauge(
            "consumer_lag",
            "Records on the topic not yet committed by the group (sum over partitions).",
            labels,
        )
        self.lag_measured = metrics.gauge(
            "consumer_lag_measured_timestamp_seconds", "Unix time the consumer lag was last measured."
        )
        self.groups: dict[str, frozenset[str]] = {}
        """Consumer group id → the physical topics it subscribes to."""
        self.assigned: set[str] = set()
        """Groups whose consumer has had its first partition assignment (:meth:`ConsumerGroup.listener`)."""

    def logical(self, topic: str) -> str:
        """``topic`` without this deployment's namespace (labels stay the same in every deployment)."""
        return topic.removeprefix(self._namespace) if self._namespace else topic

    def group(self, group_id: str, topics: Iterable[str]) -> ConsumerGroup:
        """Register consumer group ``group_id`` subscribing to the physical ``topics``."""
        self.groups[group_id] = self.groups.get(group_id, frozenset()) | frozenset(topics)
        return ConsumerGroup(self, group_id)

    def count_dead_letter(self, group_id: str, topic: str) -> None:
        self.dead_lettered.labels(group_id, self.logical(topic)).inc()

    def unassigned(self) -> list[str]:
        """The registered groups whose consumer has not received its first partition assignment yet."""
        return sorted(self.groups.keys() - self.assigned)


class ConsumerGroup:
    """Counts the records one consumer group's handler finishes or fails."""

    def __init__(self, metrics: ConsumerMetrics, group_id: str) -> None:
        self._metrics = metrics
        self.group_id = group_id

    @contextmanager
    def batch(self, records: Sequence[Any]) -> Iterator[None]:
        """Around a handler call: its aiokafka ``records`` count as handled, or as failed if it raises.

        A cancelled handler (shutdown) counts as neither: its records are consumed again, nothing failed."""
        per_topic = Tally(self._metrics.logical(record.topic) for record in records)
        try:
            yield
        except Exception:
            for topic, count in per_topic.items():
                self._metrics.failed.labels(self.group_id, topic).inc(count)
            raise
        for topic, count in per_topic.items():
            self._metrics.handled.labels(self.group_id, topic).inc(count)

    def listener(self, inner: ConsumerRebalanceListener | None = None) -> ConsumerRebalanceListener:
        """The rebalance listener for this group's subscriber: ``listener=group.listener()``, or
        ``group.listener(OwnListener(...))`` when the service has its own (called first).

        It records the group's first assignment: the consumer has joined its group and knows its partitions,
        so it will process what arrives on them. An empty assignment (more instances than partitions) counts:
        the instance has joined and gets partitions at the next rebalance.
        """
        return _FirstAssignment(self._metrics.assigned, self.group_id, inner)


class _FirstAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, assigned: set[str], group_id: str, inner: ConsumerRebalanceListener | None) -> None:
        self._assigned = assigned
        self._group_id = group_id
        self._inner = inner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if self._inner is not None:
            await self._inner.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._inner is not None:
            await self._inner.on_partitions_assigned(assigned)
        if self._group_id not in self._assigned:
            log.info("consumer group joined", extra={"group_id": self._group_id, "partitions": len(assigned)})
            self._assigned.add(self._group_id)


class ConsumerLag:
    """Measures the lag of every group in :attr:`ConsumerMetrics.groups`; run :meth:`refresh` periodically.

    Kafka being away is not an error here: the measurement is skipped with a warning, the gauges keep their
    last values, and the clients are made again next time. Call :meth:`close` when the service stops."""

    def __init__(self, bootstrap_servers: str, metrics: ConsumerMetrics, *, timeout_s: float = 10.0) -> None:
        self._bootstrap = bootstrap_servers
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._failing = False

    async def refresh(self) -> None:
        """Measure every group's lag and set the gauges; never raises (except on cancellation)."""
        if not self._metrics.groups:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                lags = await self.measure()
        except Exception as exc:
            if not self._failing:  # once per outage, not every interval
                log.warning(
                    "consumer lag not measured; the gauges keep their last values", extra={"error": repr(exc)}
                )
            self._failing = True
            await self.close()
            return
        if self._failing:
            log.info("consumer lag measured again")
            self._failing = False
        for (group_id, topic), lag in lags.items():
            self._metrics.lag.labels(group_id, self._metrics.logical(topic)).set(lag)
        self._metrics.lag_measured.set_to_current_time()

    async def measure(self) -> dict[tuple[str, str], int]:
        """(group, physical topic) → records not committed yet; topics that do not exist are left out."""
        admin, offsets = await self._clients()
        wanted = sorted(set().union(*self._metrics.groups.values()))
        partitions: dict[str, list[TopicPartition]] = {}
        for described in await admin.describe_topics(wanted):
            if described["error_code"] == 0 and described["partitions"]:
                topic = described["topic"]
                partitions[topic] = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        every_partition = [tp for tps in partitions.values() for tp in tps]
        if not every_partition:
            return {}
        first = await offsets.beginning_offsets(every_partition)
        end = await offsets.end_offsets(every_partition)
        lags: dict[tuple[str, str], int] = {}
        for group_id, topics in self._metrics.groups.items():
            committed = await admin.list_consumer_group_offsets(group_id)
            for topic in sorted(topics):
                total = 0
                for tp in partitions.get(topic, ()):
                    done = committed.get(tp)
                    position = max(first[tp], done.offset if done is not None else -1)
                    total += max(0, end[tp] - position)
                if topic in partitions:
                    lags[group_id, topic] = total
        return lags

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._offsets is None:
            await self.close()
            admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, client_id="tagline-lag")
            offsets = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap, client_id="tagline-lag", enable_auto_commit=False
            )
            self._admin, self._offsets = admin, offsets
            await admin.start()
            await offsets.start()
        return self._admin, self._offsets

    async def close(self) -> bool:
        """Close the clients; whether both closed. Each close is bounded, so a hung broker does not hold up
        the service's shutdown (a close that fails or does not finish is logged as a warning, by name)."""
        admin, offsets = self._admin, self._offsets
        self._admin = self._offsets = None
        closed = True
        if offsets is not None:
            closed &= await finish("consumer lag: offsets consumer stop", offsets.stop(), **self._bounded)
        if admin is not None:
            closed &= await finish("consumer lag: admin client close", admin.close(), **self._bounded)
        return closed

    @property
    def _bounded(self) -> dict[str, Any]:
        return {"timeout_s": self._timeout_s, "failure_level": logging.WARNING}
