"""Tagger: how fast the member pipeline turns a backlog of LINE events into member documents, its end-to-end
lag at a steady rate, and a one-event-one-write baseline over the same backlog (see README.md).

1. **The load**, built before anything runs: ``TAGLINE_BENCH_TAGGER_EVENTS`` (200,000) LINE events from
   ``TAGLINE_BENCH_TAGGER_USERS`` (20,000) users of one channel, about 15 % follows, 70 % text messages (some
   hitting the keyword rules, in Chinese and in full-width variants, the others not) and 15 % postbacks (most
   hitting a postback rule), made with ``WebhookBuilder`` and turned into records by ingest's own
   ``normalize`` (same key and value as ingest produces). All of them are published to ``line.events.v1``
   (a fresh namespace, 6 partitions) before the tagger starts, so the run measures a consumer draining a
   backlog. The rules are stored in the tagger's ``rules`` collection first, as the HTTP API stores them.
2. **The drain**: ``python -m tagline_tagger`` as its own process; ``/metrics`` is polled until
   ``tagline_tagger_inputs_applied_total`` reaches the number of events. Sustained events/s is measured
   between the first and the last poll that saw the counter move (from the first write to the last one).
   CPU is measured for the tagger, FerretDB, Kafka and this process.
3. **The lag**: an open-loop phase at ``TAGLINE_BENCH_TAGGER_LAG_SHARE`` (0.5) of the measured rate for
   ``TAGLINE_BENCH_TAGGER_LAG_SECONDS`` (10 s). Each event's lag runs from its scheduled send time to the
   moment its effect arrives on ``member.changes.v1`` (published after the member was written), matched by
   member and ``snapshot.last_interaction_at`` (the event's own timestamp).
4. **The baseline** (``baseline_tagger.py``): the same backlog, a fresh consumer group and database, one
   event per handler call with one read, one write, one publish and one commit each. It runs for
   ``TAGLINE_BENCH_TAGGER_BASELINE_SECONDS`` (20 s) after its first commit; its rate comes from the offsets
   its group committed.

Only correctness is asserted (every event applied exactly once: follow counts, tag counts, versions and
``member.changes`` records add up; no duplicates); the timings are printed. ``TAGLINE_BENCH_TAGGER_PROFILE=1``
runs the tagger under cProfile and prints where its time went.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pstats
import random
import signal
import sys
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo.asynchronous.database import AsyncDatabase

from bench.common import CpuClock, percentile, user_ids
from tagline_contracts import topics
from tagline_ingest.domain.normalize import normalize, parse_body
from tagline_platform.kafka import PRODUCER_CONFIG, ensure_topics
from tagline_platform.mongo import create_mongo_client
from tagline_tagger.adapters.mongo import TaggerStore
from tagline_tagger.domain.rules import Rule, RuleSpec
from tagline_tagger.jobs import rule_to_doc
from tagline_testing.envvars import env_float, env_int
from tagline_testing.processes import free_port, listener_pid
from tagline_testing.waiting import eventually
from tagline_testing.webhook import WebhookBuilder

pytestmark = pytest.mark.bench


EVENTS = env_int("TAGLINE_BENCH_TAGGER_EVENTS", 200_000)
USERS = env_int("TAGLINE_BENCH_TAGGER_USERS", 20_000)
LAG_SECONDS = env_float("TAGLINE_BENCH_TAGGER_LAG_SECONDS", 10.0)
LAG_SHARE = env_float("TAGLINE_BENCH_TAGGER_LAG_SHARE", 0.5)
BASELINE_SECONDS = env_float("TAGLINE_BENCH_TAGGER_BASELINE_SECONDS", 20.0)
DRAIN_TIMEOUT_S = env_float("TAGLINE_BENCH_TAGGER_TIMEOUT_S", 600.0)
STALL_S = env_float("TAGLINE_BENCH_TAGGER_STALL_S", 45.0)
PROFILE = os.environ.get("TAGLINE_BENCH_TAGGER_PROFILE", "") not in ("", "0", "false")
PARTITIONS = 6
POLL_S = 0.25
EVENTS_PER_BODY = 100  # events per webhook body when building the load (ingest's normalize runs per body)
LAG_WAIT_S = 60.0  # after the last lag event was sent, how long to wait for the rest of the effects

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
CACHE = ROOT / ".local" / "bench"

PROFILE_PATH = CACHE / "tagger-bench.prof"

CHANNEL = "2007000001"
SECRET = "bench-tagger-secret"  # noqa: S105 - signatures are not checked here (ingest's normalize only)

GOAL_EVENTS_PER_S = 20_000.0
GOAL_RATIO = 5.0

RULES: tuple[dict[str, Any], ...] = (
    {
        "name": "coupon",
        "tag": "coupon",
        "condition": {"kind": "keyword", "match": "contains", "patterns": ["優惠券", "#sale"]},
    },
    {"name": "vip", "tag": "vip", "condition": {"kind": "keyword", "match": "exact", "patterns": ["vip"]}},
    {
        "name": "plus one",
        "tag": "plus-one",
        "condition": {"kind": "keyword", "match": "prefix", "patterns": ["+1", "+2"]},
    },
    {"name": "buyer", "tag": "buyer", "condition": {"kind": "postback", "params": {"action": "buy"}}},
    {"name": "friend", "tag": "friend", "condition": {"kind": "follow", "when": "any"}},
)
"""The rules of the channel (``RuleSpec`` as the HTTP API takes them)."""

TEXTS: tuple[tuple[str, str | None], ...] = (
    ("我想要 優惠券！", "coupon"),
    ("請問優惠券怎麼用？", "coupon"),
    ("＃ＳＡＬＥ 還有嗎？", "coupon"),  # full-width: normalizes to "#sale 還有嗎?"
    ("ＶＩＰ", "vip"),
    ("Vip", "vip"),
    ("＋１", "plus-one"),
    ("+2 黑色 M", "plus-one"),
    ("請問還有貨嗎？", None),
    ("hello", None),
    ("想問運費怎麼算", None),
    ("謝謝！", None),
    ("Can I change my order?", None),
    ("已匯款，後五碼 12345", None),
    ("vip 會員怎麼申請", None),  # "vip" but not exactly: the exact rule must not fire
    ("優惠", None),  # half of the keyword: no hit
    ("我要 +1", None),  # "+1" not at the start: the prefix rule must not fire
)
"""Text messages and the tag each must put on the member (``None``: no rule fires)."""

POSTBACKS: tuple[tuple[str, str | None], ...] = (
    ("action=buy&item=A01&qty=1", "buyer"),
    ("action=buy&item=B07&qty=3", "buyer"),
    ("qty=2&action=buy&item=C11", "buyer"),
    ("action=buy&item=A01&qty=1&ref=richmenu", "buyer"),
    ("action=view&item=A01", None),
)


# --- the load ---------------------------------------------------------------------------------------------


@dataclass
class Expected:
    """What the published events must add up to in the member documents."""

    events: int = 0
    follows: int = 0
    tags: Counter[str] = field(default_factory=Counter)
    users: set[str] = field(default_factory=set)
    kinds: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes
    value: bytes
    member: str  # channel:userId, the member document's _id
    timestamp_ms: int  # the LINE event's timestamp (the member's last_interaction_at once applied)


class LoadMaker:
    """LINE events of the mix above, as ingest's records, with what they must change."""

    def __init__(self, users: list[str], seed: int) -> None:
        self.rng = random.Random(seed)
        self.users = users
        self.builder = WebhookBuilder(SECRET)
        self.expected = Expected()
        self.last_timestamp_ms = 0

    def _event(self) -> dict[str, Any]:
        rng, builder, expected = self.rng, self.builder, self.expected
        user = rng.choice(self.users)
        expected.users.add(user)
        expected.events += 1
        roll = rng.random()
        tag: str | None
        if roll < 0.15:
            event = builder.follow(user, unblocked=rng.random() < 0.2)
            expected.follows += 1
            expected.kinds["follow"] += 1
            tag = "friend"
        elif roll < 0.85:
            text, tag = rng.choice(TEXTS)
            event = builder.text(user, text)
            expected.kinds["text, hits a rule" if tag else "text, no rule"] += 1
        else:
            data, tag = rng.choice(POSTBACKS)
            event = builder.postback(user, data)
            expected.kinds["postback, hits a rule" if tag else "postback, no rule"] += 1
        if tag is not None:
            expected.tags[tag] += 1
        return event

    def records(self, count: int, *, first_timestamp_ms: int | None = None) -> list[Record]:
        """``count`` events as records; with ``first_timestamp_ms`` their timestamps are set from there on."""
        out: list[Record] = []
        next_ts = first_timestamp_ms
        while len(out) < count:
            events = [self._event() for _ in range(min(EVENTS_PER_BODY, count - len(out)))]
            if next_ts is not None:
                for event in events:
                    event["timestamp"] = next_ts
                    next_ts += 1
            body = parse_body(self.builder.body(events))
            for event, record in zip(events, normalize(CHANNEL, body, datetime.now(UTC)), strict=True):
                member = f"{CHANNEL}:{event['source']['userId']}"
                out.append(Record(record.key, record.value, member, int(event["timestamp"])))
                self.last_timestamp_ms = max(self.last_timestamp_ms, int(event["timestamp"]))
        return out


async def publish_backlog(kafka_bootstrap: str, topic: str, records: Sequence[Record]) -> float:
    """Every record, as fast as the producer takes them (no wait per record); returns records/s."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, **PRODUCER_CONFIG)
    await producer.start()
    try:
        started = time.perf_counter()
        for record in records:
            await producer.send(topic, record.value, key=record.key)
        await producer.flush()
        return len(records) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def store_rules(db: AsyncDatabase[dict[str, Any]]) -> list[Rule]:
    """The rules, stored as the tagger's HTTP API stores them (ids in creation order)."""
    store = TaggerStore(db)
    now = datetime.now(UTC)
    rules = []
    for i, raw in enumerate(RULES):
        spec = RuleSpec.model_validate(raw)
        rule = Rule(
            **spec.model_dump(),
            id=f"bench-rule-{i:02d}",
            channel_id=CHANNEL,
            version=1,
            created_at=now,
            updated_at=now,
        )
        await store.insert_rule(rule_to_doc(rule))
        rules.append(rule)
    return rules


# --- processes --------------------------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@contextlib.asynccontextmanager
async def running(
    name: str, command: list[str], env: dict[str, str], stop: signal.Signals = signal.SIGTERM
) -> AsyncIterator[Process]:
    """Start ``command`` (output in ``.local/bench/tagger-bench-<name>.log``); send it ``stop`` afterwards.

    Under cProfile the tagger must get SIGINT: after its graceful shutdown uvicorn raises the signal it caught
    again, and a SIGTERM would then end the process before cProfile writes its file (a SIGINT becomes a
    KeyboardInterrupt, after which it does).
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / f"tagger-bench-{name}.log"
    with log.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, env={**os.environ, **env}, stdout=log_file, stderr=log_file
        )
    try:
        yield Process(name, process, log)
    finally:
        if process.returncode is None:
            process.send_signal(stop)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                print(f"  {name} did not stop within 30 s of SIGTERM: killed", flush=True)
                process.kill()
                await process.wait()


async def metrics(client: httpx.AsyncClient) -> dict[str, float]:
    """The tagger's ``/metrics`` as ``{"name{labels}": value}``."""
    response = await client.get("/metrics")
    response.raise_for_status()
    values: dict[str, float] = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _counter(values: dict[str, float], name: str) -> float:
    return values.get(f"tagline_tagger_{name}", 0.0)


# --- measurements -----------------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    applied: float
    writes: float
    batches: float
    batch_seconds: float
    cpu: dict[str, float | None]


@dataclass
class Drain:
    events: int
    published_per_s: float = 0.0
    ready_s: float = 0.0  # tagger process start -> /readyz answers
    samples: list[Sample] = field(default_factory=list)
    stalled: bool = False
    timed_out: bool = False
    ferretdb_answers: bool | None = None

    @property
    def window(self) -> tuple[Sample, Sample] | None:
        """First and last sample of the sustained window (from the first write to the last)."""
        moving = [s for s in self.samples if s.applied > 0]
        if len(moving) < 2:
            return None
        last = next((s for s in moving if s.applied >= moving[-1].applied), moving[-1])
        return moving[0], last

    def per_s(self, attr: str) -> float:
        window = self.window
        if window is None:
            return 0.0
        first, last = window
        return (getattr(last, attr) - getattr(first, attr)) / (last.t - first.t) if last.t > first.t else 0.0

    def cpu_pct(self, name: str) -> float | None:
        window = self.window
        if window is None:
            return None
        first, last = window
        a, b = first.cpu.get(name), last.cpu.get(name)
        return None if a is None or b is None or last.t <= first.t else 100 * (b - a) / (last.t - first.t)

    @property
    def applied(self) -> int:
        return int(self.samples[-1].applied) if self.samples else 0

    @property
    def writes(self) -> int:
        return int(self.samples[-1].writes) if self.samples else 0


@dataclass
class Lag:
    target_per_s: float
    sent: int = 0
    seconds: float = 0.0
    matched: int = 0
    lags_ms: list[float] = field(default_factory=list)

    def pct(self, q: float) -> float | None:
        return percentile(self.lags_ms, q)


@dataclass
class Baseline:
    seconds: float = 0.0
    events: int = 0
    startup_s: float = 0.0  # process start -> first commit
    cpu: dict[str, float | None] = field(default_factory=dict)
    changes_published: int = 0

    @property
    def per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


@dataclass
class Checks:
    members: int = 0
    follow_count: int = 0
    tag_counts: dict[str, int] = field(default_factory=dict)
    versions: int = 0
    changes_on_kafka: int = 0
    duplicates: float = 0.0
    invalid: float = 0.0
    ran: bool = False
    failures: list[str] = field(default_factory=list)


async def measure_drain(drain: Drain, client: httpx.AsyncClient, cpu: CpuClock, tagger: Process) -> None:
    """Poll ``/metrics`` until every event was applied, the tagger stalls or the timeout passes."""
    started = time.perf_counter()
    last_progress = started
    last_report = started
    previous = -1.0
    while True:
        values = await metrics(client)
        now = time.perf_counter()
        sample = Sample(
            t=now,
            applied=_counter(values, "inputs_applied_total"),
            writes=_counter(values, "member_writes_total"),
            batches=_counter(values, "batch_seconds_count"),
            batch_seconds=_counter(values, "batch_seconds_sum"),
            cpu=cpu.read(),
        )
        drain.samples.append(sample)
        if sample.applied != previous:
            previous, last_progress = sample.applied, now
        if sample.applied >= drain.events:
            return
        if tagger.process.returncode is not None:
            pytest.fail(f"the tagger exited ({tagger.process.returncode}):\n{tagger.tail()}")
        if now - last_progress > STALL_S:
            drain.stalled = True
            return
        if now - started > DRAIN_TIMEOUT_S:
            drain.timed_out = True
            return
        if now - last_report > 10:
            last_report = now
            print(
                f"  {now - started:6.1f} s: {sample.applied:,.0f} / {drain.events:,} applied, "
                f"{sample.writes:,.0f} member writes, {sample.batches:,.0f} batches",
                flush=True,
            )
        await asyncio.sleep(POLL_S)


async def ferretdb_answers(mongodb_url: str) -> bool:
    """Whether FerretDB still serves a command that takes its registry lock (a wedged one answers ping)."""
    client = create_mongo_client(mongodb_url, app_name="tagline-bench-probe", socketTimeoutMS=5_000)
    try:
        await asyncio.wait_for(client.list_database_names(), 10)
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), 5)
    return True


def _millis(value: str) -> int:
    return round(datetime.fromisoformat(value).timestamp() * 1000)


async def measure_lag(
    lag: Lag, kafka_bootstrap: str, events_topic: str, changes_topic: str, records: Sequence[Record]
) -> None:
    """Send ``records`` at ``lag.target_per_s`` (open loop) and time each one until its member change."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, **PRODUCER_CONFIG)
    await producer.start()
    pending: dict[str, deque[tuple[int, float]]] = defaultdict(deque)  # member -> (timestamp, scheduled)
    try:
        partitions = [TopicPartition(changes_topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end offsets now, before anything is sent
            await consumer.position(tp)

        async def read_changes() -> None:
            while True:
                batch = await consumer.getmany(timeout_ms=100)
                arrived = time.perf_counter()
                for part in batch.values():
                    for message in part:
                        snapshot = orjson.loads(message.value)["payload"]["snapshot"]
                        seen_at = snapshot.get("last_interaction_at")
                        queue = pending.get(message.key.decode())
                        if seen_at is None or not queue:
                            continue
                        upto = _millis(seen_at)
                        while queue and queue[0][0] <= upto:
                            lag.lags_ms.append(1000 * (arrived - queue.popleft()[1]))
                            lag.matched += 1

        reader = asyncio.create_task(read_changes())
        try:
            interval = 1.0 / lag.target_per_s
            started = time.perf_counter()
            for i, record in enumerate(records):
                scheduled = started + i * interval
                delay = scheduled - time.perf_counter()
                if delay > 0.001:
                    await asyncio.sleep(delay)
                pending[record.member].append((record.timestamp_ms, scheduled))
                await producer.send(events_topic, record.value, key=record.key)
                lag.sent += 1
            await producer.flush()
            lag.seconds = time.perf_counter() - started
            with contextlib.suppress(AssertionError):
                await eventually(lambda: lag.matched >= lag.sent, LAG_WAIT_S, "the lag phase's effects")
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    finally:
        await producer.stop()
        await consumer.stop()


async def _end_offsets(kafka_bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        offsets = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
        return int(sum(offsets.values()))
    finally:
        await consumer.stop()


async def check_members(
    checks: Checks, db: AsyncDatabase[dict[str, Any]], expected: Expected, writes: int
) -> None:
    """Every event applied once: the member documents add up to what was published."""
    checks.ran = True
    tag_counts: Counter[str] = Counter()
    async for doc in db["members"].find(
        {}, {"_id": 0, "follow_count": 1, "version": 1, "tag_records.name": 1, "tag_records.count": 1}
    ):
        checks.members += 1
        checks.follow_count += int(doc.get("follow_count", 0))
        checks.versions += int(doc.get("version", 0))
        for record in doc.get("tag_records") or []:
            tag_counts[record["name"]] += int(record["count"])
    checks.tag_counts = dict(sorted(tag_counts.items()))
    failures = checks.failures
    if checks.members != len(expected.users):
        failures.append(f"{checks.members:,} member documents, expected {len(expected.users):,}")
    if checks.follow_count != expected.follows:
        failures.append(f"follow_count sums to {checks.follow_count:,}, expected {expected.follows:,}")
    if tag_counts != expected.tags:
        failures.append(f"tag counts {dict(tag_counts)} != the hits published {dict(expected.tags)}")
    if checks.duplicates:
        failures.append(f"the tagger skipped {checks.duplicates:,.0f} inputs as duplicates (none were sent)")
    if checks.invalid:
        failures.append(f"{checks.invalid:,.0f} records were invalid")
    # Every write carried a change here (each event is newer than the member's last interaction), so
    # versions, member writes and MemberChanged records are the same number.
    if not checks.versions == writes == checks.changes_on_kafka:
        failures.append(
            f"versions {checks.versions:,}, member writes {writes:,} and member.changes records "
            f"{checks.changes_on_kafka:,} differ"
        )


def _used(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


async def _committed(admin: Any, group_id: str) -> int:
    offsets = await admin.list_consumer_group_offsets(group_id)
    return int(sum(meta.offset for meta in offsets.values() if meta.offset >= 0))


@dataclass(frozen=True)
class Setup:
    """Where one benchmark run lives: its Kafka, FerretDB, topic namespace and databases."""

    kafka_bootstrap: str
    mongodb_url: str
    namespace: str
    cpu_pids: dict[str, int | None]

    @property
    def events_topic(self) -> str:
        return f"{self.namespace}{topics.LINE_EVENTS}"

    @property
    def changes_topic(self) -> str:
        return f"{self.namespace}{topics.MEMBER_CHANGES}"

    @property
    def database(self) -> str:
        return self.namespace.rstrip(".").replace(".", "_")

    @property
    def baseline_database(self) -> str:
        return f"{self.database}_baseline"


async def run_baseline(baseline: Baseline, setup: Setup) -> None:
    """The baseline over the same backlog (its own group, database and output topic), for a fixed time."""
    namespace = f"{setup.namespace}baseline."
    changes_topic = f"{namespace}{topics.MEMBER_CHANGES}"
    group_id = f"{namespace}tagger"
    await ensure_topics(setup.kafka_bootstrap, [changes_topic], partitions=PARTITIONS)
    command = [
        sys.executable,
        str(BENCH_DIR / "baseline_tagger.py"),
        "--topic",
        setup.events_topic,
        "--changes-topic",
        changes_topic,
        "--group-id",
        group_id,
        "--database",
        setup.baseline_database,
    ]
    env = {"KAFKA_BOOTSTRAP_SERVERS": setup.kafka_bootstrap, "MONGODB_URL": setup.mongodb_url}
    admin = AIOKafkaAdminClient(bootstrap_servers=setup.kafka_bootstrap)
    await admin.start()
    try:
        started = time.perf_counter()
        async with running("baseline", command, env) as process:

            async def committed() -> bool:
                if process.process.returncode is not None:
                    pytest.fail(f"the baseline exited ({process.process.returncode}):\n{process.tail()}")
                return await _committed(admin, group_id) > 0

            await eventually(committed, 60, "the baseline's first commit", interval_s=0.2)
            baseline.startup_s = time.perf_counter() - started
            await asyncio.sleep(2.0)  # warm-up: connections, first reads
            cpu = CpuClock({"baseline": process.pid, **setup.cpu_pids})
            cpu_before, before = cpu.read(), await _committed(admin, group_id)
            t0 = time.perf_counter()
            await asyncio.sleep(BASELINE_SECONDS)
            after, cpu_after = await _committed(admin, group_id), cpu.read()
            baseline.seconds = time.perf_counter() - t0
            baseline.events = after - before
            baseline.cpu = {name: _used(cpu_before[name], cpu_after[name]) for name in cpu_after}
    finally:
        await admin.close()
    baseline.changes_published = await _end_offsets(setup.kafka_bootstrap, changes_topic)


async def run_tagger(
    setup: Setup, db: AsyncDatabase[dict[str, Any]], maker: LoadMaker, drain: Drain, checks: Checks
) -> Lag | None:
    """The tagger as its own process: drain the backlog, then the lag phase, then the checks."""
    port = free_port()
    command = [sys.executable, "-m", "tagline_tagger"]
    if PROFILE:
        command = [sys.executable, "-m", "cProfile", "-o", str(PROFILE_PATH), "-m", "tagline_tagger"]
    env = {
        "TAGLINE_TAGGER_JOBS": os.environ.get("TAGLINE_TAGGER_JOBS", "false"),
        "KAFKA_BOOTSTRAP_SERVERS": setup.kafka_bootstrap,
        "MONGODB_URL": setup.mongodb_url,
        "TAGLINE_TOPIC_NAMESPACE": setup.namespace,
        "TAGLINE_TOPIC_PARTITIONS": str(PARTITIONS),
        "TAGLINE_TAGGER_PORT": str(port),
        "TAGLINE_TAGGER_DATABASE": setup.database,
        "TAGLINE_TAGGER_GROUP_ID": f"{setup.namespace}tagger",
        "TAGLINE_TAGGER_CHANNELS": json.dumps([CHANNEL]),
    }
    lag: Lag | None = None
    launched = time.perf_counter()
    async with (
        running("tagger", command, env, signal.SIGINT if PROFILE else signal.SIGTERM) as tagger,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client,
    ):

        async def ready() -> bool:
            if tagger.process.returncode is not None:
                pytest.fail(f"the tagger exited ({tagger.process.returncode}):\n{tagger.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get("/readyz")).status_code == 200
            return False

        await eventually(ready, 60, "the tagger's /readyz", interval_s=0.1)
        drain.ready_s = time.perf_counter() - launched
        cpu = CpuClock({"tagger": tagger.pid, **setup.cpu_pids, "bench": os.getpid()})
        await measure_drain(drain, client, cpu, tagger)
        rate = drain.per_s("applied")
        print(f"  drained: {drain.applied:,} events applied, {rate:,.0f} events/s", flush=True)
        if drain.stalled or drain.timed_out:
            drain.ferretdb_answers = await ferretdb_answers(setup.mongodb_url)
            print(f"  tagger log (end):\n{tagger.tail(1500)}", flush=True)
            return None
        if rate > 0 and LAG_SECONDS > 0:
            lag = Lag(max(10.0, LAG_SHARE * rate))
            lag_records = maker.records(
                int(lag.target_per_s * LAG_SECONDS), first_timestamp_ms=maker.last_timestamp_ms + 1
            )
            await measure_lag(
                lag, setup.kafka_bootstrap, setup.events_topic, setup.changes_topic, lag_records
            )
            print(f"  lag: p50 {_fmt(lag.pct(0.5))} ms, p99 {_fmt(lag.pct(0.99))} ms", flush=True)
        values = await metrics(client)
        checks.duplicates = _counter(values, "inputs_duplicate_total")
        checks.invalid = sum(v for k, v in values.items() if 'result="invalid"' in k)
        writes = int(_counter(values, "member_writes_total"))
        checks.changes_on_kafka = await _end_offsets(setup.kafka_bootstrap, setup.changes_topic)
        await check_members(checks, db, maker.expected, writes)
    return lag


def print_profile(path: Path) -> str:
    """The tagger's cProfile, by own time and by cumulative time (also written next to the profile)."""
    out = CACHE / "tagger-bench-profile.txt"
    with out.open("w") as stream:
        stats = pstats.Stats(str(path), stream=stream)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)
    return out.read_text()


# --- the report -------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def report(
    drain: Drain, lag: Lag | None, baseline: Baseline | None, expected: Expected, checks: Checks
) -> str:
    window = drain.window
    seconds = (window[1].t - window[0].t) if window else 0.0
    rate = drain.per_s("applied")
    writes_per_s = drain.per_s("writes")
    batches = (window[1].batches - window[0].batches) if window else 0.0
    batch_s = (window[1].batch_seconds - window[0].batch_seconds) if window else 0.0
    tagger_cpu, ferret_cpu = drain.cpu_pct("tagger"), drain.cpu_pct("ferretdb")
    status = " STALLED" if drain.stalled else " TIMED OUT" if drain.timed_out else ""
    rows: list[tuple[str, str]] = [
        (
            "load (backlog + lag phase)",
            f"{drain.events:,} + {lag.sent if lag else 0:,} events from {len(expected.users):,} users: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(expected.kinds.items())),
        ),
        ("backlog published (producer, no wait per record)", f"{drain.published_per_s:,.0f} events/s"),
        ("tagger start -> /readyz", f"{drain.ready_s:.1f} s"),
        (
            "tagger: events applied" + status,
            f"{drain.applied:,} / {drain.events:,} ({drain.writes:,} member writes = "
            f"{drain.writes / max(1, drain.applied):.2f} per event)",
        ),
        (
            "tagger: sustained events/s (first write -> last write)",
            f"{rate:,.0f} over {seconds:,.1f} s ({writes_per_s:,.0f} member writes/s)",
        ),
        (
            "tagger: batches in that window",
            f"{batches:,.0f}, mean {(rate * seconds) / batches if batches else 0:,.0f} events and "
            f"{1000 * batch_s / batches if batches else 0:,.0f} ms each",
        ),
        (
            "CPU, % of one core: tagger / FerretDB / Kafka / bench",
            " / ".join(_fmt(drain.cpu_pct(n), 0, " %") for n in ("tagger", "ferretdb", "kafka", "bench")),
        ),
        (
            "CPU per event: tagger; FerretDB per member write",
            f"{_fmt(tagger_cpu and 10_000 * tagger_cpu / rate if rate else None, 0, ' us')}; "
            f"{_fmt(ferret_cpu and 10_000 * ferret_cpu / writes_per_s if writes_per_s else None, 0, ' us')}",
        ),
    ]
    if lag is not None:
        rows += [
            (
                f"lag: open loop at {lag.target_per_s:,.0f} events/s",
                f"{lag.sent:,} sent in {lag.seconds:.1f} s, effects seen for {lag.matched:,}",
            ),
            (
                "lag: scheduled send -> member.changes, p50 / p90 / p99 / max",
                " / ".join(_fmt(lag.pct(q), 0, " ms") for q in (0.5, 0.9, 0.99, 1.0)),
            ),
        ]
    if baseline is not None:
        base_cpu = baseline.cpu.get("baseline")
        rows += [
            (
                "baseline: events/s (one event per call, commit each)",
                f"{baseline.per_s:,.0f} ({baseline.events:,} in {baseline.seconds:.1f} s; first commit "
                f"{baseline.startup_s:.1f} s after start)",
            ),
            (
                "baseline CPU, % of one core: baseline / FerretDB / Kafka",
                " / ".join(
                    _fmt(100 * v / baseline.seconds if v is not None and baseline.seconds else None, 0, " %")
                    for v in (base_cpu, baseline.cpu.get("ferretdb"), baseline.cpu.get("kafka"))
                ),
            ),
            (
                "baseline CPU per event: baseline; FerretDB",
                " ; ".join(
                    _fmt(1e6 * v / baseline.events if v is not None and baseline.events else None, 0, " us")
                    for v in (base_cpu, baseline.cpu.get("ferretdb"))
                ),
            ),
        ]
    if checks.ran:
        rows += [
            (
                "check: members / follow_count / versions / member.changes",
                f"{checks.members:,} / {checks.follow_count:,} (sent {expected.follows:,}) / "
                f"{checks.versions:,} / {checks.changes_on_kafka:,}",
            ),
            (
                "check: tag counts (sent)",
                ", ".join(f"{t} {n:,} ({expected.tags[t]:,})" for t, n in checks.tag_counts.items()),
            ),
            ("check: result", "ok" if not checks.failures else "FAILED: " + "; ".join(checks.failures)),
        ]
    else:
        rows.append(("check: result", "not run (the drain did not finish)"))
    width = max(len(r[0]) for r in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    lines.append("")
    verdict = "met" if rate >= GOAL_EVENTS_PER_S else "NOT met"
    lines.append(f"sustained events/s = {rate:,.0f} (goal >= {GOAL_EVENTS_PER_S:,.0f}: {verdict})")
    if baseline is not None and baseline.per_s > 0:
        ratio = rate / baseline.per_s
        verdict = "met" if ratio >= GOAL_RATIO else "NOT met"
        lines.append(
            f"tagger/baseline events/s = {rate:,.0f} / {baseline.per_s:,.0f} = {ratio:.2f}x "
            f"(goal >= {GOAL_RATIO:g}x: {verdict})"
        )
    if drain.stalled:
        lines.append(
            f"the tagger applied nothing for {STALL_S:.0f} s with {drain.events - drain.applied:,} events "
            "left; "
            + (
                "FerretDB no longer answers: it is wedged (an update command of 100 or more existing "
                "documents deadlocks FerretDB 1.24, see bench/README.md); restart it, e.g. "
                "python3 deploy/local/infra.py down && python3 deploy/local/infra.py up"
                if drain.ferretdb_answers is False
                else "FerretDB still answers"
            )
        )
    lines.append(f"machine: {os.cpu_count()} CPUs; the tagger, FerretDB, Kafka and this process share it")
    return "\n".join(lines)


# --- the benchmark ----------------------------------------------------------------------------------------


def write_json(
    drain: Drain, lag: Lag | None, baseline: Baseline | None, expected: Expected, checks: Checks
) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    figures = {
        "events": EVENTS,
        "users": USERS,
        "drain": {
            **{k: v for k, v in asdict(drain).items() if k != "samples"},
            "events_per_s": drain.per_s("applied"),
            "writes_per_s": drain.per_s("writes"),
            "cpu_pct": {n: drain.cpu_pct(n) for n in ("tagger", "ferretdb", "kafka", "bench")},
            "samples": [asdict(s) for s in drain.samples],
        },
        "lag": None
        if lag is None
        else {
            **{k: v for k, v in asdict(lag).items() if k != "lags_ms"},
            **{f"p{round(100 * q)}_ms": lag.pct(q) for q in (0.5, 0.9, 0.99, 1.0)},
        },
        "baseline": None if baseline is None else {**asdict(baseline), "per_s": baseline.per_s},
        "checks": asdict(checks),
        "expected": {
            "events": expected.events,
            "follows": expected.follows,
            "tags": dict(expected.tags),
            "kinds": dict(expected.kinds),
        },
    }
    (CACHE / "tagger-last-run.json").write_text(json.dumps(figures, indent=2, default=str))


async def test_tagger_drains_a_backlog_against_the_one_event_one_write_baseline(
    kafka_bootstrap: str, mongodb_url: str, namespace: str
) -> None:
    setup = Setup(
        kafka_bootstrap,
        mongodb_url,
        namespace,
        {"ferretdb": listener_pid(mongodb_url), "kafka": listener_pid(kafka_bootstrap)},
    )
    maker = LoadMaker(user_ids(USERS, random.Random(2007)), seed=2007)
    started = time.perf_counter()
    backlog = maker.records(EVENTS)
    print(
        f"\ntagger benchmark: {EVENTS:,} events from {USERS:,} users built in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    await ensure_topics(kafka_bootstrap, [setup.events_topic], partitions=PARTITIONS)
    drain = Drain(EVENTS)
    drain.published_per_s = await publish_backlog(kafka_bootstrap, setup.events_topic, backlog)
    print(f"  published the backlog at {drain.published_per_s:,.0f} events/s", flush=True)
    del backlog

    mongo = create_mongo_client(mongodb_url, app_name="tagline-bench", socketTimeoutMS=120_000)
    db, baseline_db = mongo[setup.database], mongo[setup.baseline_database]
    lag: Lag | None = None
    baseline: Baseline | None = None
    checks = Checks()
    try:
        await store_rules(db)
        await store_rules(baseline_db)
        lag = await run_tagger(setup, db, maker, drain, checks)
        if PROFILE and PROFILE_PATH.is_file():
            print(print_profile(PROFILE_PATH)[:12_000], flush=True)
        if not (drain.stalled or drain.timed_out):
            baseline = Baseline()
            await run_baseline(baseline, setup)
            print(f"  baseline: {baseline.per_s:,.0f} events/s", flush=True)
    finally:
        print("\n" + report(drain, lag, baseline, maker.expected, checks), flush=True)
        write_json(drain, lag, baseline, maker.expected, checks)
        if drain.ferretdb_answers is not False:  # a wedged FerretDB would not answer the drop either
            for name in (db.name, baseline_db.name):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(mongo.drop_database(name), 60)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(mongo.close(), 10)

    assert not drain.stalled, (
        f"the tagger stopped applying events after {drain.applied:,} of {drain.events:,}"
    )
    assert not drain.timed_out, (
        f"the tagger applied only {drain.applied:,} of {drain.events:,} events in time"
    )
    assert lag is None or lag.matched == lag.sent, f"no effect seen for {lag.sent - lag.matched:,} lag events"
    assert not checks.failures, "\n".join(checks.failures)
