"""Work besides the member pipeline: the rule cache, RFM recomputation, expired-tag sweeps, tag coverage,
and tags from send results.

None of these write member documents: what they find out about a member goes to ``member.attributes.v1``
keyed by the member, so the pipeline instance owning the member applies it (the single-writer rule of
``tagline_tagger.pipeline``). Their event ids are derived from what they describe, so a job that runs twice
(two instances, a restart) produces duplicates the pipeline drops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from tagline_contracts import topics
from tagline_contracts.attributes import (
    MemberUpdated,
    MemberUpdatedEvent,
    RfmScored,
    RfmScoredEvent,
    TagGrant,
)
from tagline_contracts.members import FollowState
from tagline_contracts.sending import SendOutcome, SendResulted
from tagline_platform.kafka import Outgoing
from tagline_platform.mongo import utc_minute
from tagline_tagger.adapters.mongo import EXPIRY_BUCKET_FORMAT, TaggerStore, expiry_bucket
from tagline_tagger.domain.activity import Activity, ActivityKind
from tagline_tagger.domain.member import member_key
from tagline_tagger.domain.rfm import (
    DEFAULT_THRESHOLDS,
    MIN_QUINTILE_POPULATION,
    AbsoluteThresholds,
    RfmModel,
    days_since,
    fit,
    score_all,
)
from tagline_tagger.domain.rules import Rule, RuleSet
from tagline_tagger.metrics import TaggerMetrics
from tagline_tagger.pipeline import PublishAll

log = logging.getLogger("tagline.tagger.jobs")

PUBLISH_CHUNK = 10_000
"""Messages a job hands to the producer at once (bounds memory on a 1,000,000-member recomputation)."""


class RuleCache:
    """The compiled rules every pipeline batch uses; reloaded from the store every few seconds, so a rule
    created through any instance's API takes effect in every instance without a restart. Only the rules of
    the channels served are loaded (one indexed equality per channel: the pipeline and the send results
    consumer drop the others' records anyway)."""

    def __init__(self, store: TaggerStore, metrics: TaggerMetrics, channels: Iterable[str]) -> None:
        self._store = store
        self._metrics = metrics
        self._channels = sorted(channels)
        self.rules = RuleSet.empty()
        self._reported: set[tuple[Any, Any]] = set()  # invalid stored rules logged (id, version): once each

    def current(self) -> RuleSet:
        return self.rules

    async def refresh(self) -> None:
        rules = []
        per_channel = await asyncio.gather(*(self._store.all_rules(c) for c in self._channels))
        for doc in (doc for docs in per_channel for doc in docs):
            try:
                rules.append(Rule.model_validate(rule_from_doc(doc)))
            except ValidationError as exc:  # stored before a check it fails (LINE's limits): the others apply
                if (doc.get("_id"), doc.get("version")) not in self._reported:
                    self._reported.add((doc.get("_id"), doc.get("version")))
                    log.error(  # noqa: TRY400 - the reason is the message; a traceback says nothing more
                        "stored rule is not valid; ignored until it is updated: %s",
                        exc,
                        extra={"rule_id": doc.get("_id"), "channel_id": doc.get("channel_id")},
                    )
        self.rules = RuleSet.compile(rules)
        self._metrics.rules.set(len(self.rules))


def rule_to_doc(rule: Rule) -> dict[str, Any]:
    return {"_id": rule.id, **rule.model_dump(mode="python", exclude={"id"})}


def rule_from_doc(doc: dict[str, Any]) -> dict[str, Any]:
    data = {key: value for key, value in doc.items() if key != "_id"}
    data["id"] = doc["_id"]
    return data


class ModelCache:
    """The latest RFM model per channel (orders are scored with it as they arrive)."""

    def __init__(self, store: TaggerStore) -> None:
        self._store = store
        self._models: dict[str, RfmModel] = {}

    def get(self, channel_id: str) -> RfmModel | None:
        return self._models.get(channel_id)

    def put(self, channel_id: str, model: RfmModel) -> None:
        self._models[channel_id] = model

    async def refresh(self) -> None:
        self._models = await self._store.rfm_models_by_channel()


@dataclass(frozen=True)
class RfmRun:
    channel_id: str
    model: RfmModel
    buyers: int
    changed: int
    seconds: float
    scan_seconds: float
    segments: dict[str, int]


class RfmJob:
    def __init__(
        self,
        store: TaggerStore,
        models: ModelCache,
        publish_all: PublishAll,
        *,
        topic_of: Callable[[str], str],
        metrics: TaggerMetrics,
        min_population: int = MIN_QUINTILE_POPULATION,
        thresholds: AbsoluteThresholds = DEFAULT_THRESHOLDS,
    ) -> None:
        self._store = store
        self._models = models
        self._publish_all = publish_all
        self._topic = topic_of(topics.MEMBER_ATTRIBUTES)
        self._metrics = metrics
        self._min_population = min_population
        self._thresholds = thresholds

    async def recompute(self, channel_id: str, now: datetime) -> RfmRun:
        """Make the channel's model from every buyer (quintiles from ``min_population`` buyers on, else the
        absolute thresholds), store it, and send each buyer whose scores changed an ``RfmScored`` (applied by
        the pipeline; scores of a newer model are never replaced)."""
        started = time.perf_counter()
        users: list[str] = []
        recency_days: list[float] = []
        orders: list[int] = []
        monetary: list[float] = []
        current: list[tuple[Any, Any, Any]] = []
        async for doc in self._store.rfm_rows(channel_id):
            rfm = doc["rfm"]
            users.append(doc["user_id"])
            recency_days.append(days_since(rfm["last_order_at"], now))
            orders.append(rfm["orders"])
            monetary.append(rfm["monetary"])
            current.append((rfm.get("r"), rfm.get("f"), rfm.get("m")))
        scanned = time.perf_counter()
        model = fit(
            recency_days,
            orders,
            monetary,
            now,
            min_population=self._min_population,
            thresholds=self._thresholds,
        )
        scores = score_all(model, recency_days, orders, monetary)
        await self._store.save_rfm_model(channel_id, model)
        self._models.put(channel_id, model)
        segments: dict[str, int] = {}
        batch: list[Outgoing] = []
        changed = 0
        for user_id, score, before in zip(users, scores, current, strict=True):
            segments[score.segment] = segments.get(score.segment, 0) + 1
            if before == (score.recency, score.frequency, score.monetary):
                continue
            changed += 1
            envelope = RfmScoredEvent(
                event_id=f"rfm:{model.model_id}:{user_id}",
                channel_id=channel_id,
                occurred_at=now,
                produced_at=now,
                payload=RfmScored(
                    user_id=user_id,
                    recency=score.recency,
                    frequency=score.frequency,
                    monetary=score.monetary,
                    segment=score.segment,
                    model_id=model.model_id,
                    computed_at=model.computed_at,
                ),
            )
            batch.append(Outgoing.of(self._topic, member_key(channel_id, user_id), envelope))
            if len(batch) >= PUBLISH_CHUNK:
                await self._publish_all(batch)
                batch = []
        await self._publish_all(batch)
        self._metrics.rfm_runs.labels(channel_id).inc()
        run = RfmRun(
            channel_id=channel_id,
            model=model,
            buyers=len(users),
            changed=changed,
            seconds=time.perf_counter() - started,
            scan_seconds=scanned - started,
            segments=segments,
        )
        log.info(
            "rfm recomputed",
            extra={
                "channel_id": channel_id,
                "buyers": run.buyers,
                "scoring": model.scoring,
                "changed": changed,
                "seconds": run.seconds,
            },
        )
        return run


SWEEP_SETTLE = timedelta(minutes=10)
"""How long after its minute a bucket is swept again before it counts as finished: covers a member written
with a batch's time while the batch took long, and clocks of instances that differ. A member written with a
next expiry in a finished bucket would wait for its next input to lose the tag."""

MAX_SWEEP_BUCKETS = 1_440
"""Minutes one sweep catches up on per channel (a day; after a longer stop, the next sweeps go on)."""


class Sweeper:
    """Members whose tags expired but who did nothing since get an empty ``MemberUpdated``: applying it
    removes the expired tags (and publishes the change), done by the member's owner like any other input.

    Members are found by the minute of their next tag expiry (``expiry_bucket``, an indexed equality), minute
    by minute from where the last sweep of the channel got to (``sweeps``); a channel never swept starts at
    its first counted member."""

    def __init__(
        self,
        store: TaggerStore,
        publish_all: PublishAll,
        channels: frozenset[str],
        *,
        topic_of: Callable[[str], str],
    ) -> None:
        self._store = store
        self._publish_all = publish_all
        self._channels = sorted(channels)
        self._topic = topic_of(topics.MEMBER_ATTRIBUTES)

    async def sweep(self, now: datetime) -> int:
        swept = 0
        for channel_id in self._channels:
            swept += await self._sweep(channel_id, now)
        return swept

    async def _sweep(self, channel_id: str, now: datetime) -> int:
        first = await self._first_bucket(channel_id)
        if first is None:
            return 0  # no member counted yet: nothing can expire
        stamp = now.strftime("%Y%m%dT%H%M")
        last = min(utc_minute(now), first + timedelta(minutes=MAX_SWEEP_BUCKETS - 1))
        finished = min(last, utc_minute(now - SWEEP_SETTLE))
        batch: list[Outgoing] = []
        swept = 0
        at = first
        while at <= last:
            async for user_id, expiry in self._store.expiring_members(channel_id, expiry_bucket(at)):
                if expiry > now:
                    continue
                key = member_key(channel_id, user_id)
                batch.append(
                    Outgoing.of(
                        self._topic,
                        key,
                        MemberUpdatedEvent(
                            event_id=f"sweep:{stamp}:{key}",
                            channel_id=channel_id,
                            occurred_at=now,
                            produced_at=now,
                            payload=MemberUpdated(user_id=user_id),
                        ),
                    )
                )
                if len(batch) >= PUBLISH_CHUNK:
                    swept += len(batch)
                    await self._publish_all(batch)
                    batch = []
            at += timedelta(minutes=1)
        swept += len(batch)
        await self._publish_all(batch)
        if finished >= first:
            await self._store.mark_swept(channel_id, expiry_bucket(finished))
        return swept

    async def _first_bucket(self, channel_id: str) -> datetime | None:
        """The first minute to sweep: after the last finished one, else the channel's first counted member."""
        through = await self._store.swept_through(channel_id)
        if through is not None:
            return datetime.strptime(through, EXPIRY_BUCKET_FORMAT).replace(tzinfo=UTC) + timedelta(minutes=1)
        since = (await self._store.load_counts(channel_id)).since
        return None if since is None else utc_minute(since)


@dataclass(frozen=True)
class Coverage:
    channel_id: str
    followed: int
    tagged: int
    by_origin: dict[str, int]
    by_tag: dict[str, int]
    computed_at: datetime
    unknown_follow_state: int = 0
    """Members whose follow state Tagline has not seen (imported or tagged with ``?create=true`` before any
    event of theirs): in neither ``followed`` nor ``tagged``, since they may not be friends (any more)."""

    @staticmethod
    def ratio(part: int, whole: int) -> float:
        return round(part / whole, 6) if whole else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "channel_id": self.channel_id,
            "followed": self.followed,
            "tagged": self.tagged,
            "coverage": self.ratio(self.tagged, self.followed),
            "unknown_follow_state": self.unknown_follow_state,
            "by_origin": {
                o: {"members": n, "coverage": self.ratio(n, self.followed)}
                for o, n in sorted(self.by_origin.items())
            },
            "by_tag": {
                t: {"members": n, "coverage": self.ratio(n, self.followed)}
                for t, n in sorted(self.by_tag.items(), key=lambda item: (-item[1], item[0]))
            },
            "computed_at": self.computed_at.isoformat(),
        }


async def compute_coverage(store: TaggerStore, channel_id: str, now: datetime) -> Coverage:
    """標籤覆蓋率: the share of followed members with at least one active tag, overall, by origin, by tag.

    From the channel's member counts, which the pipeline keeps as it writes members (one read by ``_id``,
    however many members; ``tagline_tagger.domain.counts``). A tag that expired counts until the sweep has
    removed it, as in the member documents."""
    counts = await store.load_counts(channel_id)
    return Coverage(
        channel_id,
        counts.members.get(FollowState.FOLLOWED.value, 0),
        counts.tagged,
        dict(counts.by_origin),
        dict(counts.by_tag),
        now,
        counts.members.get(FollowState.UNKNOWN.value, 0),
    )


def publish_coverage(metrics: TaggerMetrics, coverage: Coverage) -> None:
    channel = coverage.channel_id
    metrics.followed.labels(channel).set(coverage.followed)
    metrics.coverage.labels(channel, "all").set(coverage.ratio(coverage.tagged, coverage.followed))
    for origin, count in coverage.by_origin.items():
        metrics.coverage.labels(channel, f"origin:{origin}").set(coverage.ratio(count, coverage.followed))
    for tag, count in coverage.by_tag.items():
        metrics.coverage.labels(channel, f"tag:{tag}").set(coverage.ratio(count, coverage.followed))


def campaign_tags(result: SendResulted, rules: RuleSet, *, topic_of: Callable[[str], str]) -> list[Outgoing]:
    """Tags from a send LINE accepted whose labels name a campaign (``campaign_received`` rules)."""
    payload = result.payload
    campaign = payload.labels.get("campaign")
    if payload.outcome is not SendOutcome.ACCEPTED or not campaign:
        return []
    activity = Activity(
        kind=ActivityKind.CAMPAIGN, event_id=result.event_id, at=result.occurred_at, campaign=campaign
    )
    hits = rules.hits(result.channel_id, activity)
    if not hits:
        return []
    grants = [
        TagGrant(name=hit.tag, origin=hit.origin, rule_id=hit.rule_id, expires_at=hit.expires_at)
        for hit in hits
    ]
    topic = topic_of(topics.MEMBER_ATTRIBUTES)
    return [
        Outgoing.of(
            topic,
            member_key(result.channel_id, user_id),
            MemberUpdatedEvent(
                event_id=f"campaign:{result.event_id}:{user_id}",
                channel_id=result.channel_id,
                occurred_at=result.occurred_at,
                produced_at=result.produced_at,
                payload=MemberUpdated(user_id=user_id, tags_add=grants),
            ),
        )
        for user_id in payload.user_ids
    ]
