"""Tagger: the RFM recomputation (``RfmJob.recompute``) of one channel with N buyers.

The issue asks for RFM "recomputed on demand and on a schedule, in well under a minute for 1,000,000
members". This times that job as the service runs it (the scheduled job and ``POST .../rfm/recompute`` both
call ``RfmJob.recompute``), on a ``TaggerService`` of its own (own databases, own topic namespace):

1. **Seeding**, straight into ``members`` (not through Kafka): N buyers, each a whole document made by
   ``member_to_doc(Member(...), now)`` as the pipeline writes it: followed, 1-4 tags with their records,
   attributes, the orders counted, the input ids seen (up to ``SEEN_IDS``), the Kafka offsets applied, a
   ``MemberChanged`` in the outbox, and raw R/F/M values (last order within two years, more of them recent;
   1-30 orders, 55 % one-time buyers; a log-normal order value). ``insert_many`` batches of ``SEED_BATCH``,
   ``SEED_IN_FLIGHT`` at a time. Two databases get the same members: **unscored** (no scores yet) and
   **scored** (the scores a fit of the same values at the same ``now`` gives, as if the pipeline had applied
   the first run's ``RfmScored``; writing them back costs FerretDB over a millisecond per member, see
   bench/README.md).
2. **First recomputation**, on the unscored database: every buyer changes, so every buyer gets an
   ``RfmScored`` on ``member.attributes.v1``.
3. **Second recomputation**, on the scored database with the same ``now``: nothing changes, nothing is
   published: a scheduled run in the steady state.
4. **Compact** (diagnostic, ``TAGLINE_BENCH_RFM_COMPACT``, default on): the second run again on a database
   whose member documents hold only what the job reads (ids, channel, the R/F/M values and scores), to show
   how much of the scan is the size of the member document.

Split of a run: the job's own ``scan_seconds``; the time spent inside the publish function (handing the
records to the producer, waiting for Kafka's acks); fit + ``score_all`` timed alone on the same columns; the
rest (fit, score, saving the model, building the envelopes) is what is left of the job's total. CPU of this
process, FerretDB, Kafka and the rest of the machine over each run.

The service's own ``start()`` would also start the member pipeline, which would consume the first run's
records and rewrite every member document while the job runs; the bench does the rest of ``start()`` (the
topics, the service's producer) and runs the jobs without the consumers.

Only correctness is asserted (buyers = N; changed = N, then 0; the segments add up to N and match a local fit;
the job's model equals a fit of the seeded values; N records on the topic, and a sample of them carries the
right scores). Timings are printed, with the goal (60 s per million buyers) as met or not met. Size:
``TAGLINE_BENCH_RFM_MEMBERS`` (default 100,000, about 2.5 minutes; a million takes about 30 minutes on
FerretDB, see bench/README.md). Every figure also goes to ``.local/bench/rfm-last-run.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo.asynchronous.database import AsyncDatabase

from tagline_contracts import topics
from tagline_contracts.attributes import RfmScoredEvent, TagOrigin
from tagline_contracts.members import (
    ChangeKind,
    FollowState,
    MemberChanged,
    MemberChangedEvent,
    MemberSnapshot,
)
from tagline_platform.kafka import Outgoing, create_producer, ensure_topics
from tagline_tagger.adapters.mongo import TaggerStore, member_to_doc
from tagline_tagger.domain.member import SEEN_IDS, Member, Rfm, TagRecord, member_key
from tagline_tagger.domain.rfm import RfmModel, RfmScore, days_since, fit, score_all
from tagline_tagger.jobs import ModelCache, RfmJob, RfmRun
from tagline_tagger.pipeline import MEMBER_TOPICS
from tagline_tagger.service import TaggerService
from tagline_tagger.settings import TaggerSettings
from tagline_testing.envvars import env_int
from tagline_testing.processes import cpu_seconds, listener_pid

pytestmark = pytest.mark.bench


MEMBERS = env_int("TAGLINE_BENCH_RFM_MEMBERS", 100_000)
COMPACT = env_int("TAGLINE_BENCH_RFM_COMPACT", 1) != 0
SEED_BATCH = 10_000
SEED_IN_FLIGHT = 3
GOAL_S_PER_MILLION = 60.0  # "well under a minute for 1,000,000 members"
PARTITIONS = 6
TOPIC_SAMPLE = 300  # records read back from the topic and checked against the expected scores

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".local" / "bench"

CHANNEL = "2007000001"
DAY_S = 86_400
REGIONS = ("TPE", "NTP", "TYN", "TXG", "TNN", "KHH", "HSZ")
TIERS = ("regular", "silver", "gold")
TAG_POOL: tuple[tuple[str, TagOrigin, str | None, int | None], ...] = (
    # name, origin, rule id, expiry in days (None: permanent)
    ("live_buyer", TagOrigin.BEHAVIOR, "rule-live-buyer", None),
    ("big_spender", TagOrigin.BEHAVIOR, "rule-big-spender", None),
    ("coupon_1111", TagOrigin.KEYWORD, "rule-kw-coupon", 30),
    ("skincare", TagOrigin.KEYWORD, "rule-kw-skincare", None),
    ("vip_import", TagOrigin.IMPORT, None, None),
    ("staff_pick", TagOrigin.MANUAL, None, None),
)


# --- the population ---------------------------------------------------------------------------------------


@dataclass
class Buyers:
    """The seeded buyers' raw values, as parallel columns (what the job reads back)."""

    user_ids: list[str]
    last_order_at: list[datetime]
    orders: list[int]
    monetary: list[float]

    def __len__(self) -> int:
        return len(self.user_ids)


def _ms(at: datetime) -> datetime:
    """``at`` at BSON's precision (milliseconds), so what is read back equals what was generated."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def make_buyers(count: int, now: datetime, rng: random.Random) -> Buyers:
    """Buyers with a last order within two years (more of them recent), 1-30 orders (55 % one-time buyers,
    a long tail) and a log-normal order value around NT$1,000."""
    ids: set[str] = set()
    while len(ids) < count:
        ids.add(f"U{rng.getrandbits(128):032x}")
    user_ids = sorted(ids)
    rng.shuffle(user_ids)
    last: list[datetime] = []
    orders: list[int] = []
    monetary: list[float] = []
    two_years = 730 * DAY_S
    for _ in range(count):
        last.append(_ms(now - timedelta(seconds=two_years * rng.random() ** 1.6)))
        n = 1 if rng.random() < 0.55 else min(30, 2 + int(rng.expovariate(0.3)))
        orders.append(n)
        monetary.append(round(n * rng.lognormvariate(6.9, 0.6), 0))
    return Buyers(user_ids, last, orders, monetary)


def fit_and_score(buyers: Buyers, now: datetime) -> tuple[RfmModel, list[RfmScore], float]:
    """What the job computes between its scan and its publishing, alone: ``fit`` and ``score_all``."""
    recency_days = [days_since(at, now) for at in buyers.last_order_at]  # as the job measures them
    started = time.perf_counter()
    model = fit(recency_days, buyers.orders, buyers.monetary, now)
    scores = score_all(model, recency_days, buyers.orders, buyers.monetary)
    return model, scores, time.perf_counter() - started


class DocFactory:
    """Member documents for buyer ``i`` of :class:`Buyers`: whole (``member_to_doc``) or compact."""

    def __init__(self, buyers: Buyers, now: datetime) -> None:
        self.buyers = buyers
        self.now = now
        template_user = "U" + "0" * 32
        snapshot = MemberSnapshot(
            user_id=template_user,
            follow_state=FollowState.FOLLOWED,
            first_followed_at=now - timedelta(days=400),
            last_followed_at=now - timedelta(days=400),
            follow_count=1,
            last_interaction_at=now - timedelta(days=3),
            display_name="王小明",
            attributes={"region": "TPE", "tier": "silver", "birth_month": 7, "opt_in": True},
            tags=["coupon_1111", "live_buyer", "skincare"],
        )
        change = MemberChanged(
            user_id=template_user,
            version=12,
            changes=[ChangeKind.TAGGED],
            tags_added=["live_buyer"],
            snapshot=snapshot,
        )
        envelope = MemberChangedEvent(
            event_id=f"{CHANNEL}:{template_user}:12",
            channel_id=CHANNEL,
            occurred_at=now,
            produced_at=now,
            payload=change,
        )
        self._template_user = template_user
        self._outbox_value = envelope.model_dump_json(by_alias=True)

    def whole(self, i: int, rng: random.Random, scored: tuple[RfmModel, RfmScore] | None) -> dict[str, Any]:
        """The document the pipeline writes for buyer ``i`` (scored by ``scored``, or not yet)."""
        buyers, now = self.buyers, self.now
        user_id = buyers.user_ids[i]
        last_order_at, orders = buyers.last_order_at[i], buyers.orders[i]
        joined = _ms(last_order_at - timedelta(seconds=rng.uniform(0, 365 * DAY_S)))
        interacted = _ms(min(now, last_order_at + timedelta(seconds=rng.uniform(0, 30 * DAY_S))))
        tags: dict[str, TagRecord] = {}
        fired: dict[str, datetime] = {}
        for name, origin, rule_id, expiry_days in rng.sample(TAG_POOL, rng.randint(1, 4)):
            tags[name] = TagRecord(
                name=name,
                origin=origin,
                rule_id=rule_id,
                first_at=_ms(joined + timedelta(seconds=rng.uniform(0, 10 * DAY_S))),
                last_at=interacted,
                count=rng.randint(1, 5),
                expires_at=None if expiry_days is None else interacted + timedelta(days=expiry_days),
            )
            if rule_id is not None:
                fired[rule_id] = interacted
        # inputs: the follow, an order's "created" and "paid", messages and postbacks (mean 30)
        inputs = 1 + 2 * orders + int(rng.expovariate(1 / 30))
        rfm = Rfm(
            last_order_at=last_order_at,
            orders=orders,
            monetary=buyers.monetary[i],
            counted=[f"SO{i:08d}{k:03d}" for k in range(orders)],
        )
        segment = None
        if scored is not None:
            model, score = scored
            rfm.recency_score, rfm.frequency_score, rfm.monetary_score = (
                score.recency,
                score.frequency,
                score.monetary,
            )
            rfm.model_id, rfm.scored_at, segment = model.model_id, model.computed_at, score.segment
        member = Member(
            channel_id=CHANNEL,
            user_id=user_id,
            version=inputs,
            follow_state=FollowState.FOLLOWED,
            follow_state_at=joined,
            first_followed_at=joined,
            last_followed_at=joined,
            follow_count=1,
            last_interaction_at=interacted,
            display_name=f"會員{i:07d}",
            attributes={
                "region": REGIONS[i % len(REGIONS)],
                "tier": TIERS[min(2, orders // 5)],
                "birth_month": 1 + i % 12,
                "opt_in": i % 3 != 0,
            },
            tags=tags,
            rule_fired_at=fired,
            rfm=rfm,
            rfm_segment=segment,
            seen=[f"01K{i:012d}{k:011d}" for k in range(max(0, inputs - SEEN_IDS), inputs)],
            offsets={
                f"{topic.replace('.', '_')}:{i % PARTITIONS}": rng.randrange(10_000_000)
                for topic in MEMBER_TOPICS
            },
            outbox=[
                Outgoing(
                    topics.MEMBER_CHANGES,
                    member_key(CHANNEL, user_id).encode(),
                    self._outbox_value.replace(self._template_user, user_id).encode(),
                ).to_doc()
            ],
            created_at=joined,
        )
        return member_to_doc(member, now)

    def compact(self, i: int, scored: tuple[RfmModel, RfmScore]) -> dict[str, Any]:
        """Only what ``TaggerStore.rfm_rows`` filters on and returns (diagnostic)."""
        buyers = self.buyers
        model, score = scored
        return {
            "_id": member_key(CHANNEL, buyers.user_ids[i]),
            "channel_id": CHANNEL,
            "user_id": buyers.user_ids[i],
            "rfm": {
                "last_order_at": buyers.last_order_at[i],
                "orders": buyers.orders[i],
                "monetary": buyers.monetary[i],
                "r": score.recency,
                "f": score.frequency,
                "m": score.monetary,
                "model_id": model.model_id,
            },
            "rfm_segment": score.segment,
        }


async def seed(
    db: AsyncDatabase[dict[str, Any]],
    factory: DocFactory,
    *,
    scores: tuple[RfmModel, list[RfmScore]] | None,
    compact: bool = False,
) -> float:
    """Insert every buyer's document; returns the seconds it took."""
    members = db["members"]
    count = len(factory.buyers)
    gate = asyncio.Semaphore(SEED_IN_FLIGHT)
    written = 0
    started = last_report = time.perf_counter()

    def make(i: int, rng: random.Random) -> dict[str, Any]:
        scored = None if scores is None else (scores[0], scores[1][i])
        if compact:
            assert scored is not None
            return factory.compact(i, scored)
        return factory.whole(i, rng, scored)

    async def one(start: int) -> None:
        nonlocal written, last_report
        async with gate:
            rng = random.Random(start)  # the same documents in every database, scores aside
            docs = [make(i, rng) for i in range(start, min(count, start + SEED_BATCH))]
            result = await members.insert_many(docs, ordered=False)
            written += len(result.inserted_ids)
        if time.perf_counter() - last_report > 30:
            last_report = time.perf_counter()
            rate = written / (last_report - started)
            print(f"    {db.name}: {written:,} / {count:,} ({rate:,.0f}/s)", flush=True)

    await asyncio.gather(*(one(start) for start in range(0, count, SEED_BATCH)))
    assert written == count
    return time.perf_counter() - started


# --- measuring --------------------------------------------------------------------------------------------


@dataclass
class Phase:
    """One recomputation: the job's figures, and the time and CPU around it."""

    database: str = ""
    buyers: int = 0
    changed: int = 0
    total_s: float = 0.0
    scan_s: float = 0.0
    publish_s: float = 0.0  # inside the publish function: producer.send + waiting for the acks
    published: int = 0
    first_publish_at_s: float | None = None  # from the start of the job
    fit_score_s: float = 0.0  # fit + score_all alone on the same columns
    segments: dict[str, int] = field(default_factory=dict)
    cpu_s: dict[str, float | None] = field(default_factory=dict)

    @property
    def rest_s(self) -> float:
        """Fit, score, saving the model and building the envelopes: what is neither scan nor publish."""
        return max(0.0, self.total_s - self.scan_s - self.publish_s)

    @property
    def scan_rate(self) -> float:
        return self.buyers / self.scan_s if self.scan_s else 0.0


@dataclass
class RfmBench:
    members: int
    seen_ids: int = SEEN_IDS
    doc_bytes: float = 0.0
    compact_doc_bytes: float = 0.0
    seed_s: dict[str, float] = field(default_factory=dict)
    first: Phase = field(default_factory=Phase)
    second: Phase = field(default_factory=Phase)
    compact: Phase | None = None
    on_topic: int = 0
    on_topic_at_end: int = 0
    sample_checked: int = 0

    @property
    def goal_s(self) -> float:
        return GOAL_S_PER_MILLION * self.members / 1_000_000


def _machine_busy_s() -> float:
    times = psutil.cpu_times()
    return float(sum(times)) - times.idle - getattr(times, "iowait", 0.0)


class Meter:
    """CPU seconds of some processes between :meth:`start` and :meth:`read`, and of everything else on the
    machine (``others``: the machine is shared, e.g. with other benchmarks)."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self.before: dict[str, float | None] = {}
        self.machine_before = 0.0

    def start(self) -> None:
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.machine_before = _machine_busy_s()

    def read(self) -> dict[str, float | None]:
        used: dict[str, float | None] = {}
        for name, pid in self.pids.items():
            now, then = cpu_seconds(pid), self.before.get(name)
            used[name] = None if now is None or then is None else now - then
        known = sum(v for v in used.values() if v is not None)
        used["others"] = max(0.0, _machine_busy_s() - self.machine_before - known)
        return used


class TimedPublish:
    """Wraps the service's ``publish_all``: the time spent in it, and when it was first called."""

    def __init__(self, service: TaggerService) -> None:
        self._service = service
        self.phase = Phase()
        self.job_started = 0.0

    def reset(self, phase: Phase) -> None:
        self.phase = phase
        self.job_started = time.perf_counter()

    async def __call__(self, messages: Sequence[Outgoing]) -> None:
        phase = self.phase
        entered = time.perf_counter()
        if phase.first_publish_at_s is None and messages:
            phase.first_publish_at_s = entered - self.job_started
        await self._service.publish_all(messages)
        phase.publish_s += time.perf_counter() - entered
        phase.published += len(messages)


async def recompute(
    service: TaggerService, database: str, timed: TimedPublish, meter: Meter, now: datetime
) -> tuple[Phase, RfmRun]:
    """``RfmJob.recompute`` on ``database``, wired as ``TaggerService`` wires its own job."""
    settings = service.settings
    store = TaggerStore(service.mongo[database], lookup_concurrency=settings.lookup_concurrency)
    job = RfmJob(store, ModelCache(store), timed, topic_of=settings.topic, metrics=service.metrics)
    phase = Phase(database=database)
    timed.reset(phase)
    meter.start()
    run = await job.recompute(CHANNEL, now)
    phase.cpu_s = meter.read()
    phase.buyers, phase.changed = run.buyers, run.changed
    phase.total_s, phase.scan_s = run.seconds, run.scan_seconds
    phase.segments = dict(sorted(run.segments.items(), key=lambda item: -item[1]))
    return phase, run


async def records_on_topic(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # no public API for this
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert partitions, f"topic {topic!r} does not exist"
        begin = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        return sum(end[tp] - begin[tp] for tp in partitions)
    finally:
        await consumer.stop()


async def check_topic_sample(
    bootstrap: str, topic: str, expected: dict[str, RfmScore], model: RfmModel
) -> int:
    """Read the first records of one partition and compare them with the scores of a local fit."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while len(records) < TOPIC_SAMPLE and time.monotonic() < deadline:
            batch = await consumer.getmany(partition, timeout_ms=500, max_records=TOPIC_SAMPLE)
            records.extend(batch.get(partition, []))
    finally:
        await consumer.stop()
    assert records, "no RfmScored record could be read back"
    for record in records[:TOPIC_SAMPLE]:
        event = RfmScoredEvent.model_validate_json(record.value)
        payload = event.payload
        want = expected[payload.user_id]
        assert record.key == member_key(CHANNEL, payload.user_id).encode()
        assert (payload.recency, payload.frequency, payload.monetary, payload.segment) == (
            want.recency,
            want.frequency,
            want.monetary,
            want.segment,
        ), f"{payload.user_id}: published scores differ from a fit of the seeded values"
        assert payload.model_id == model.model_id
        assert event.event_id == f"rfm:{model.model_id}:{payload.user_id}"
    return min(len(records), TOPIC_SAMPLE)


# --- the report -------------------------------------------------------------------------------------------


def _cpu(value: float | None, seconds: float) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f} s ({100 * value / seconds:,.0f} %)" if seconds else f"{value:,.1f} s"


def _phase_rows(label: str, phase: Phase, check: bool) -> list[tuple[str, str, str]]:
    return [
        (
            label,
            f"{phase.total_s:,.1f} s: {phase.buyers:,} buyers, {phase.changed:,} changed",
            "ok" if check else "FAILED",
        ),
        ("  scan (the job's scan_seconds)", f"{phase.scan_s:,.1f} s = {phase.scan_rate:,.0f} docs/s", ""),
        ("  fit + score_all (timed alone, same columns)", f"{phase.fit_score_s:,.2f} s", ""),
        (
            "  publish (inside publish_all: send + acks)",
            f"{phase.publish_s:,.1f} s for {phase.published:,} records"
            + (
                f" = {phase.published / phase.publish_s:,.0f}/s"
                if phase.publish_s and phase.published
                else ""
            ),
            "",
        ),
        (
            "  rest (fit, score, model save, envelopes)",
            f"{phase.rest_s:,.1f} s"
            + (
                f"; first publish call at {phase.first_publish_at_s:,.1f} s"
                if phase.first_publish_at_s is not None
                else ""
            ),
            "",
        ),
        (
            "  CPU (% of one core)",
            ", ".join(f"{name} {_cpu(v, phase.total_s)}" for name, v in phase.cpu_s.items()),
            "",
        ),
    ]


def report(bench: RfmBench) -> str:
    n = bench.members
    rows: list[tuple[str, str, str]] = [
        ("buyers (members with orders)", f"{n:,}", ""),
        (
            "member document, BSON (mean of 200)",
            f"{bench.doc_bytes:,.0f} bytes (SEEN_IDS {bench.seen_ids}); "
            f"compact {bench.compact_doc_bytes:,.0f}",
            "",
        ),
    ]
    rows += [
        (
            f"seeding {name} (insert_many)",
            f"{seconds:,.1f} s = {n / seconds if seconds else 0:,.0f} docs/s",
            "",
        )
        for name, seconds in bench.seed_s.items()
    ]
    rows += _phase_rows("first recompute (everyone unscored)", bench.first, bench.first.changed == n)
    segments = bench.first.segments
    rows.append(
        (
            "  segments",
            ", ".join(f"{name} {count:,}" for name, count in segments.items()),
            "ok" if sum(segments.values()) == n else "FAILED",
        )
    )
    rows += _phase_rows("second recompute (nothing changed)", bench.second, bench.second.changed == 0)
    if bench.compact is not None:
        rows += _phase_rows(
            "diagnostic: second run on compact documents", bench.compact, bench.compact.changed == 0
        )
    rows += [
        (
            "RfmScored on member.attributes.v1 (after run 1 / at the end)",
            f"{bench.on_topic:,} / {bench.on_topic_at_end:,}",
            "ok" if bench.on_topic == bench.on_topic_at_end == n else "FAILED",
        ),
        ("  sample read back and checked", f"{bench.sample_checked:,}", ""),
    ]
    for label, phase in (("first run", bench.first), ("second run", bench.second)):
        met = "met" if phase.total_s < bench.goal_s else "NOT met"
        rows.append(
            (
                f"goal: under {bench.goal_s:,.0f} s for {n:,} ({label})",
                f"{met}: {phase.total_s:,.1f} s = scan {phase.scan_s:,.1f} + publish {phase.publish_s:,.1f}"
                f" + rest {phase.rest_s:,.1f}",
                "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = [
        f"{'figure'.ljust(widths[0])}  {'value'.ljust(widths[1])}  check",
        "-" * (widths[0] + widths[1] + 9),
    ]
    lines += [f"{a.ljust(widths[0])}  {b.ljust(widths[1])}  {c}".rstrip() for a, b, c in rows]
    lines.append(f"machine: {os.cpu_count()} CPUs; this process, FerretDB and Kafka share it")
    return "\n".join(lines)


# --- the benchmark ----------------------------------------------------------------------------------------


@dataclass
class Workload:
    """The buyers, and the model and scores a local fit of them gives at ``now``."""

    now: datetime
    buyers: Buyers
    model: RfmModel
    scores: list[RfmScore]
    fit_score_s: float
    factory: DocFactory

    @classmethod
    def make(cls, count: int) -> Workload:
        now = _ms(datetime.now(UTC))
        buyers = make_buyers(count, now, random.Random(42))
        model, scores, fit_score_s = fit_and_score(buyers, now)
        return cls(now, buyers, model, scores, fit_score_s, DocFactory(buyers, now))

    def document_sizes(self, bench: RfmBench) -> None:
        sample = range(min(200, len(self.buyers)))
        whole = [self.factory.whole(i, random.Random(i), None) for i in sample]
        compact = [self.factory.compact(i, (self.model, self.scores[i])) for i in sample]
        bench.doc_bytes = sum(len(bson.encode(doc)) for doc in whole) / len(sample)
        bench.compact_doc_bytes = sum(len(bson.encode(doc)) for doc in compact) / len(sample)


async def seed_databases(
    bench: RfmBench, work: Workload, mongo_db: AsyncDatabase[dict[str, Any]], service: TaggerService
) -> None:
    """The unscored database (the test's own), the scored one and, for the diagnostic, the compact one."""
    scored = (work.model, work.scores)
    client = service.mongo
    bench.seed_s["unscored"] = await seed(mongo_db, work.factory, scores=None)
    bench.seed_s["scored"] = await seed(client[f"{mongo_db.name}_scored"], work.factory, scores=scored)
    if COMPACT:
        bench.seed_s["compact"] = await seed(
            client[f"{mongo_db.name}_compact"], work.factory, scores=scored, compact=True
        )
    print(f"  seeded: {', '.join(f'{k} {v:.1f} s' for k, v in bench.seed_s.items())}", flush=True)


async def start_publishing(service: TaggerService) -> None:
    """``TaggerService.start()`` minus the consumers: the topics, and the service's own producer, set the way
    ``start()`` sets it, so the job publishes through ``TaggerService.publish_all`` unchanged."""
    settings = service.settings
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        [settings.topic(name) for name in MEMBER_TOPICS],
        partitions=settings.topic_partitions,
    )
    producer = create_producer(settings, client_id="tagline-tagger-out")
    await producer.start()
    service._producer = producer


async def test_rfm_recompute_of_n_buyers(
    kafka_bootstrap: str, mongodb_url: str, namespace: str, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    print(f"\nRFM benchmark: {MEMBERS:,} buyers", flush=True)
    work = Workload.make(MEMBERS)
    bench = RfmBench(MEMBERS)
    work.document_sizes(bench)
    settings = TaggerSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        mongodb_url=mongodb_url,
        database=mongo_db.name,
        topic_namespace=namespace,
        topic_partitions=PARTITIONS,
        group_id=f"{namespace}tagger",
        channels=[CHANNEL],
    )
    service = TaggerService(settings, clock=lambda: work.now)
    topic = settings.topic(topics.MEMBER_ATTRIBUTES)
    meter = Meter(
        {"tests": os.getpid(), "ferretdb": listener_pid(mongodb_url), "kafka": listener_pid(kafka_bootstrap)}
    )
    timed = TimedPublish(service)
    compact_run: RfmRun | None = None
    try:
        await seed_databases(bench, work, mongo_db, service)
        await start_publishing(service)

        bench.first, first = await recompute(service, mongo_db.name, timed, meter, work.now)
        print(f"  first recompute: {bench.first.total_s:.1f} s", flush=True)
        bench.on_topic = await records_on_topic(kafka_bootstrap, topic)
        expected = dict(zip(work.buyers.user_ids, work.scores, strict=True))
        bench.sample_checked = await check_topic_sample(kafka_bootstrap, topic, expected, work.model)

        bench.second, second = await recompute(service, f"{mongo_db.name}_scored", timed, meter, work.now)
        print(f"  second recompute: {bench.second.total_s:.1f} s", flush=True)
        if COMPACT:
            bench.compact, compact_run = await recompute(
                service, f"{mongo_db.name}_compact", timed, meter, work.now
            )
            print(f"  compact recompute: {bench.compact.total_s:.1f} s", flush=True)
        for phase in (bench.first, bench.second, bench.compact):
            if phase is not None:
                phase.fit_score_s = work.fit_score_s
        bench.on_topic_at_end = await records_on_topic(kafka_bootstrap, topic)
    finally:
        print("\n" + report(bench), flush=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "rfm-last-run.json").write_text(json.dumps(asdict(bench), indent=2))
        for suffix in ("_scored", "_compact"):
            await service.mongo.drop_database(f"{mongo_db.name}{suffix}")
        await service.stop()

    assert first.buyers == MEMBERS, "the scan did not find every buyer"
    assert first.model == work.model, "the job's model differs from a fit of the seeded values"
    assert first.changed == MEMBERS, "an unscored buyer was not published"
    assert sum(first.segments.values()) == MEMBERS
    assert first.segments == dict(Counter(score.segment for score in work.scores))
    assert bench.on_topic == MEMBERS, "not one RfmScored per buyer on member.attributes.v1"
    for run in (second, compact_run):
        if run is not None:
            assert run.buyers == MEMBERS
            assert run.model == work.model
            assert run.changed == 0, "a recomputation with nothing changed published scores"
            assert run.segments == first.segments
    assert bench.on_topic_at_end == MEMBERS, "a recomputation with nothing changed published scores"
