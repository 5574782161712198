"""Liveshop: how fast live-stream comments become orders, how long a buyer waits for the confirmation, and
that no unit is ever sold twice (see README.md).

1. **The load**, built before anything runs: ``TAGLINE_BENCH_LIVESHOP_SESSIONS`` (4) live sessions of one
   channel, each with 10 products (7 plain ones with ``TAGLINE_BENCH_LIVESHOP_STOCK`` (200) units, A01
   featured, A02 limited to 2 per buyer; 3 with 6 variants of ``STOCK // 6`` units each), and
   ``TAGLINE_BENCH_LIVESHOP_COMMENTS`` (60,000) ``live.comments.v1`` records from
   ``TAGLINE_BENCH_LIVESHOP_BUYERS`` (20,000) buyers spread over them: the mix of :data:`TEXTS` ("+1",
   "A03+2", "A01 x2", "B02 紅 L +1", full-width "Ａ０２＋１", several items in one comment, "-1", a variant
   missing or unknown, and 10 % chatter such as "好美" that is no order), 1 % of them sent twice (a feed
   that redelivers; liveshop applies a comment id once). Demand is far above the stock, so most comments
   end on the waitlist.
2. **The drain**: the sessions are created and started over HTTP by a first liveshop process, which is
   then stopped; the whole backlog goes onto Kafka; then ONE ``python -m tagline_liveshop`` starts, and the
   clock runs from its start until every session's dashboard shows ``inputs_applied`` = the distinct
   comments sent to it. ``/metrics`` (``records_total``) is polled every 0.1 s; the dashboards are read
   once every record was handled (a dashboard read costs liveshop 16 FerretDB queries and the session's
   lock). Sustained comments/s runs from the first poll that saw a batch handled to the end. CPU seconds
   are read for liveshop, FerretDB, Kafka and this process.
3. **The latency**, the same process still running: for each rate of ``TAGLINE_BENCH_LIVESHOP_RATES``
   (500, 2000, 4000), fresh sessions (same catalogue) get comments of the same mix in an open loop at
   that rate for ``TAGLINE_BENCH_LIVESHOP_LATENCY_SECONDS`` (20 s). A consumer tails ``send.requests.v1``
   and matches each confirmation by ``payload.idempotency_key`` (``liveshop:<session>:c:<comment id>``).
   Latency runs from the comment's *scheduled* send time (no coordinated omission) to the moment the
   bench's consumer got the confirmation (``kafka ts``: to the record's Kafka timestamp instead). Every
   latency goes to ``.local/bench/liveshop-trace-<rate>.csv``.
4. **Correctness**, asserted: every order comment (drain and latency) got exactly one confirmation key and
   chatter none; per SKU, units in live orders + stock left = initial stock (oversold units, printed, must
   be 0; no negative stock); no waitlist for a SKU that still has stock; the per-buyer limit held;
   ``inputs_applied`` = distinct comments; the ``orders`` view matches the API; nothing dead-lettered.

Timings are printed, not asserted. ``TAGLINE_BENCH_LIVESHOP_PROFILE=1`` runs liveshop under cProfile and
prints where its time went. Other ``TAGLINE_LIVESHOP_*`` variables (``MAX_BATCH``…) reach the process.
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
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pymongo.asynchronous.database import AsyncDatabase

from bench.common import CpuClock, cpu_used, percentile, user_ids
from tagline_contracts import topics
from tagline_contracts.envelope import new_event_id
from tagline_contracts.live import LiveComment, LiveCommentRecord, session_key
from tagline_platform.kafka import PRODUCER_CONFIG, ensure_topics
from tagline_platform.mongo import create_mongo_client
from tagline_testing.envvars import env_float, env_int
from tagline_testing.processes import free_port, listener_pid
from tagline_testing.waiting import eventually

pytestmark = pytest.mark.bench

COMMENTS = env_int("TAGLINE_BENCH_LIVESHOP_COMMENTS", 60_000)
SESSIONS = env_int("TAGLINE_BENCH_LIVESHOP_SESSIONS", 4)
BUYERS = env_int("TAGLINE_BENCH_LIVESHOP_BUYERS", 20_000)
STOCK = env_int("TAGLINE_BENCH_LIVESHOP_STOCK", 200)
RATES = tuple(
    float(r)
    for r in os.environ.get("TAGLINE_BENCH_LIVESHOP_RATES", "500,2000,4000").replace("_", "").split(",")
    if r
)
LATENCY_SECONDS = env_float("TAGLINE_BENCH_LIVESHOP_LATENCY_SECONDS", 20.0)
DRAIN_TIMEOUT_S = env_float("TAGLINE_BENCH_LIVESHOP_TIMEOUT_S", 300.0)
STALL_S = env_float("TAGLINE_BENCH_LIVESHOP_STALL_S", 45.0)
PROFILE = os.environ.get("TAGLINE_BENCH_LIVESHOP_PROFILE", "") not in ("", "0", "false")
DUPLICATE_SHARE = 0.01
PARTITIONS = 6
METRICS_POLL_S = 0.1
LATENCY_WAIT_S = 60.0  # after the last scheduled comment, how long to wait for the rest of the confirmations

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".local" / "bench"
PROFILE_PATH = CACHE / "liveshop-bench.prof"

CHANNEL = "2007000002"

GOAL_COMMENTS_PER_S = 5_000.0
GOAL_P99_MS = 100.0

VARIANTS_RED_BLUE = ["紅 S", "紅 M", "紅 L", "藍 S", "藍 M", "藍 L"]
VARIANTS_WHITE_BLACK = ["白 S", "白 M", "白 L", "黑 S", "黑 M", "黑 L"]
RELEASED = frozenset({"cancelled", "expired"})
LIMITED = ("A02", 2)


def products() -> list[dict[str, Any]]:
    """The catalogue of every session (``ProductSpec`` as the HTTP API takes it)."""
    plain = [
        ("A01", "限量托特包", 1_280.0),
        ("A02", "保溫杯", 590.0),
        ("A03", "香氛蠟燭", 450.0),
        ("A04", "真皮短夾", 1_990.0),
        ("A05", "絲巾", 399.0),
        ("A06", "耳環", 299.0),
        ("A07", "髮夾組", 199.0),
    ]
    specs: list[dict[str, Any]] = [
        {"code": code, "name": name, "price": price, "stock": STOCK} for code, name, price in plain
    ]
    specs[1]["per_buyer_limit"] = LIMITED[1]
    per_variant = max(1, STOCK // 6)
    specs += [
        {
            "code": "B01",
            "name": "針織外套",
            "price": 1_580.0,
            "stock": per_variant,
            "variants": VARIANTS_RED_BLUE,
        },
        {
            "code": "B02",
            "name": "碎花洋裝",
            "price": 990.0,
            "stock": per_variant,
            "variants": VARIANTS_RED_BLUE,
            "aliases": ["洋裝"],
        },
        {
            "code": "B03",
            "name": "襯衫",
            "price": 790.0,
            "stock": per_variant,
            "variants": VARIANTS_WHITE_BLACK,
        },
    ]
    return specs


def initial_stock() -> dict[str, int]:
    stock: dict[str, int] = {}
    for spec in products():
        variants = spec.get("variants") or []
        if variants:
            stock.update({f"{spec['code']}|{v}": int(spec["stock"]) for v in variants})
        else:
            stock[spec["code"]] = int(spec["stock"])
    return stock


TEXTS: tuple[tuple[str, float, bool], ...] = (
    ("+1", 38, True),  # the featured product (A01)
    ("+2", 5, True),
    ("＋１", 3, True),  # full-width
    ("A03+2", 5, True),
    ("A01 x2", 3, True),
    ("a05 +1", 3, True),
    ("A05+1", 1, True),
    ("Ａ０２＋１", 3, True),  # A02: 2 per buyer
    ("A02+3", 2, True),  # above the limit: a note, at most 2
    ("A06×2", 2, True),
    ("+1 A07", 2, True),
    ("B02 紅 L +1", 5, True),
    ("洋裝 藍 M+1", 3, True),  # an alias of B02
    ("+1 B01 藍 S", 3, True),
    ("B03 白 M x2", 2, True),
    ("B01+1", 2, True),  # no variant: "which one?"
    ("B02 紅 +1", 1, True),  # a variant that does not exist: "no such variant"
    ("A01+1，A04+1", 3, True),  # two items
    ("-1", 2, True),  # one fewer of the featured product (waitlist first, then the order)
    ("A03-1", 1, True),
    ("好美", 3, False),
    ("主播好漂亮", 2, False),
    ("請問有現貨嗎？", 1, False),
    ("+1 好可愛", 1, True),  # chatter after the order: one of the featured product
    ("樓上+1", 1, False),  # "me too" before the +1: chat
    ("A01 是什麼顏色", 1, False),
    ("123", 1, False),
    ("哈哈哈", 1, False),
)
"""``(text, weight in %, is an order)``: every order comment gets exactly one confirmation (or note)."""


# --- the load ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    session_id: str
    comment_id: str
    key: bytes
    value: bytes
    order: bool

    @property
    def confirmation_key(self) -> str:
        return f"liveshop:{self.session_id}:c:{self.comment_id}"


@dataclass
class Load:
    records: list[Record] = field(default_factory=list)
    duplicates: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    distinct: Counter[str] = field(default_factory=Counter)  # session -> distinct comments
    order_keys: set[str] = field(default_factory=set)  # the confirmation keys the order comments must get
    buyers: set[str] = field(default_factory=set)


class LoadMaker:
    def __init__(self, buyers: list[str], seed: int) -> None:
        self.rng = random.Random(seed)
        self.buyers = buyers
        self.texts = [t for t, _, _ in TEXTS]
        self.weights = [w for _, w, _ in TEXTS]
        self.is_order = {t: o for t, _, o in TEXTS}
        self.serial = 0

    def comment(self, session_id: str, load: Load) -> Record:
        self.serial += 1
        comment_id = f"cm{self.serial:08d}"
        user = self.rng.choice(self.buyers)
        text = self.rng.choices(self.texts, self.weights)[0]
        now = datetime.now(UTC)
        envelope = LiveCommentRecord(
            event_id=new_event_id(),
            channel_id=CHANNEL,
            occurred_at=now,
            produced_at=now,
            payload=LiveComment(
                session_id=session_id, comment_id=comment_id, user_id=user, text=text, commented_at=now
            ),
        )
        record = Record(
            session_id,
            comment_id,
            session_key(CHANNEL, session_id).encode(),
            envelope.model_dump_json(by_alias=True).encode(),
            self.is_order[text],
        )
        load.kinds["order" if record.order else "chat"] += 1
        load.distinct[session_id] += 1
        load.buyers.add(user)
        if record.order:
            load.order_keys.add(record.confirmation_key)
        return record

    def load(self, session_ids: Sequence[str], count: int, *, duplicates: bool) -> Load:
        """``count`` records over ``session_ids``; with ``duplicates``, 1 % repeat an earlier record."""
        load = Load()
        while len(load.records) < count:
            if duplicates and load.records and self.rng.random() < DUPLICATE_SHARE:
                load.records.append(self.rng.choice(load.records))
                load.duplicates += 1
                continue
            load.records.append(self.comment(self.rng.choice(session_ids), load))
        return load


async def publish(kafka_bootstrap: str, topic: str, records: Sequence[Record]) -> float:
    """Every record, as fast as the producer takes them; returns records/s."""
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


# --- the process ------------------------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    process: asyncio.subprocess.Process
    log: Path
    client: httpx.AsyncClient
    launched: float

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def alive(self) -> None:
        if self.process.returncode is not None:
            pytest.fail(f"liveshop ({self.name}) exited ({self.process.returncode}):\n{self.tail()}")

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        response = await self.client.request(method, path, json=body)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()


@dataclass(frozen=True)
class Setup:
    kafka_bootstrap: str
    mongodb_url: str
    namespace: str
    database: str
    cpu_pids: dict[str, int | None]

    def topic(self, name: str) -> str:
        return f"{self.namespace}{name}"


@contextlib.asynccontextmanager
async def liveshop(setup: Setup, name: str, *, profile: bool = False) -> AsyncIterator[Process]:
    """``python -m tagline_liveshop`` on a free port (log in ``.local/bench/liveshop-bench-<name>.log``),
    answering ``/readyz`` when this yields; stopped afterwards.

    Under cProfile it gets SIGINT, not SIGTERM: uvicorn raises the signal it caught again after its graceful
    shutdown, and a SIGTERM would end the process before cProfile writes its file."""
    CACHE.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [sys.executable, "-m", "tagline_liveshop"]
    if profile:
        command = [sys.executable, "-m", "cProfile", "-o", str(PROFILE_PATH), "-m", "tagline_liveshop"]
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": setup.kafka_bootstrap,
        "MONGODB_URL": setup.mongodb_url,
        "TAGLINE_TOPIC_NAMESPACE": setup.namespace,
        "TAGLINE_TOPIC_PARTITIONS": str(PARTITIONS),
        "TAGLINE_LIVESHOP_DATABASE": setup.database,
        "TAGLINE_LIVESHOP_GROUP_ID": f"{setup.namespace}liveshop-{name}",
        "TAGLINE_LIVESHOP_PORT": str(port),
        "TAGLINE_LIVESHOP_JOBS": "false",  # no expiry, no POINTS: nothing but comments changes the sessions
    }
    log = CACHE / f"liveshop-bench-{name}.log"
    launched = time.perf_counter()
    with log.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, env=env, stdout=log_file, stderr=log_file
        )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client:
        running = Process(name, process, log, client, launched)
        try:

            async def ready() -> bool:
                running.alive()
                with contextlib.suppress(httpx.HTTPError):
                    return (await client.get("/readyz")).status_code == 200
                return False

            await eventually(ready, 60, f"liveshop ({name}) /readyz", interval_s=0.05)
            yield running
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT if profile else signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    print(f"  liveshop ({name}) did not stop within 30 s: killed", flush=True)
                    process.kill()
                    await process.wait()


async def create_sessions(shop: Process, count: int, title: str) -> list[str]:
    """``count`` sessions of the catalogue, started (live), over the HTTP API."""
    ids = []
    for n in range(count):
        body = {"title": f"{title} {n + 1}", "products": products(), "featured": "A01"}
        session = await shop.call("POST", f"/channels/{CHANNEL}/sessions", body, expect=201)
        await shop.call("POST", f"/sessions/{session['session_id']}/start")
        ids.append(str(session["session_id"]))
    return ids


async def metrics(shop: Process) -> dict[str, float]:
    """liveshop's ``/metrics`` as ``{"name{labels}": value}`` (``tagline_liveshop_`` dropped)."""
    response = await shop.client.get("/metrics")
    response.raise_for_status()
    values: dict[str, float] = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name.removeprefix("tagline_liveshop_")] = float(value)
    return values


# --- the drain --------------------------------------------------------------------------------------------


@dataclass
class Drain:
    records: int = 0
    distinct: int = 0
    published_per_s: float = 0.0
    ready_s: float = 0.0  # process start -> /readyz
    first_s: float | None = None  # process start -> the first poll that saw a batch handled
    first_records: float = 0.0  # records handled by then (not in the sustained rate: their start is unseen)
    done_s: float | None = None  # process start -> every record counted and every dashboard complete
    records_seen: float = 0.0
    batches: float = 0.0
    batch_seconds: float = 0.0
    cpu_s: dict[str, float | None] = field(default_factory=dict)  # from the first batch to the end
    cpu_total_s: dict[str, float | None] = field(default_factory=dict)  # from the process start to the end
    progress: list[tuple[float, float]] = field(default_factory=list)  # (s since start, records counted)
    stalled: bool = False
    timed_out: bool = False

    @property
    def sustained(self) -> float:
        """Comment records handled / s from the end of the first batch to the end of the last one."""
        if self.first_s is None or self.done_s is None or self.done_s <= self.first_s:
            return 0.0
        return (self.records_seen - self.first_records) / (self.done_s - self.first_s)

    @property
    def from_start(self) -> float:
        return self.distinct / self.done_s if self.done_s else 0.0

    def cpupercentile(self, name: str) -> float | None:
        used = self.cpu_s.get(name)
        if used is None or self.first_s is None or self.done_s is None or self.done_s <= self.first_s:
            return None
        return 100 * used / (self.done_s - self.first_s)


async def applied(shop: Process, session_ids: Sequence[str]) -> dict[str, int]:
    boards = await asyncio.gather(*(shop.call("GET", f"/sessions/{sid}/dashboard") for sid in session_ids))
    return {sid: int(board["inputs_applied"]) for sid, board in zip(session_ids, boards, strict=True)}


async def measure_drain(
    drain: Drain, shop: Process, load: Load, cpu: CpuClock, cpu_start: dict[str, float | None]
) -> None:
    """Poll ``/metrics`` and the dashboards until every session applied every distinct comment."""
    session_ids = sorted(load.distinct)
    expected = dict(load.distinct)
    cpu_first: dict[str, float | None] | None = None
    last_progress = time.perf_counter()
    last_report = time.perf_counter()
    previous = -1.0
    while True:
        shop.alive()
        values = await metrics(shop)
        now = time.perf_counter()
        since = now - shop.launched
        seen = values.get("records_total", 0.0)
        drain.progress.append((round(since, 3), seen))
        if seen > 0 and drain.first_s is None:
            drain.first_s, drain.first_records = since, seen
            cpu_first = cpu.read()
        if seen != previous:
            previous, last_progress = seen, now
        # a dashboard read costs liveshop a journal read-ahead (16 FerretDB queries) and waits for the
        # session's lock, so the dashboards are read only once every record has been handled
        if seen >= drain.records and await applied(shop, session_ids) == expected:
            done = cpu.read()
            drain.done_s = since
            drain.records_seen = seen
            drain.batches = values.get("batch_seconds_count", 0.0)
            drain.batch_seconds = values.get("batch_seconds_sum", 0.0)
            drain.cpu_s = cpu_used(cpu_first or cpu_start, done)
            drain.cpu_total_s = cpu_used(cpu_start, done)
            return
        if now - last_progress > STALL_S:
            drain.stalled = True
            return
        if since > DRAIN_TIMEOUT_S:
            drain.timed_out = True
            return
        if now - last_report > 5:
            last_report = now
            print(f"  {since:6.1f} s: {seen:,.0f} / {drain.records:,} records", flush=True)
        await asyncio.sleep(METRICS_POLL_S)


# --- the latency ------------------------------------------------------------------------------------------


@dataclass
class Step:
    rate: float
    session_ids: list[str] = field(default_factory=list)
    sent: int = 0
    orders: int = 0
    send_seconds: float = 0.0
    confirmed: int = 0
    duplicates: int = 0  # confirmation records of a key already seen (at least once; the sender dedupes)
    unexpected: int = 0  # confirmations of comments that are chat
    last_after_send_s: float | None = None  # last scheduled comment -> last confirmation
    latencies_ms: list[float] = field(default_factory=list)
    kafka_latencies_ms: list[float] = field(default_factory=list)
    offsets_s: list[float] = field(
        default_factory=list
    )  # each latency's comment: scheduled s after the start
    batches: float = 0.0
    batch_seconds: float = 0.0
    records: float = 0.0
    cpu_s: dict[str, float | None] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def pct(self, q: float, *, kafka: bool = False) -> float | None:
        return percentile(self.kafka_latencies_ms if kafka else self.latencies_ms, q)

    def quarters(self, q: float) -> list[float | None]:
        """The ``q`` percentile of the comments scheduled in each quarter of the step."""
        span = max(self.offsets_s, default=0.0) or 1.0
        parts: list[list[float]] = [[], [], [], []]
        for offset, latency in zip(self.offsets_s, self.latencies_ms, strict=True):
            parts[min(3, int(4 * offset / span))].append(latency)
        return [percentile(part, q) for part in parts]

    @property
    def achieved(self) -> float:
        return self.sent / self.send_seconds if self.send_seconds else 0.0

    def cpupercentile(self, name: str) -> float | None:
        used = self.cpu_s.get(name)
        seconds = self.send_seconds + (self.last_after_send_s or 0.0)
        return None if used is None or seconds <= 0 else 100 * used / seconds

    @property
    def keeps_up(self) -> bool:
        """Every order confirmed and the last one within a second of the last comment."""
        return (
            self.confirmed == self.orders
            and self.last_after_send_s is not None
            and self.last_after_send_s < 1.0
        )


class Confirmations:
    """Matches the confirmations on ``send.requests.v1`` to the comments' scheduled send times."""

    def __init__(self, step: Step, load: Load) -> None:
        self.step = step
        self.scheduled: dict[str, tuple[float, float, float]] = {}  # key -> (perf_counter, wall, offset)
        self.chat = {r.confirmation_key for r in load.records if not r.order}
        self.seen: set[str] = set()
        self.last_arrival = 0.0

    def take(self, value: bytes, timestamp_ms: int, arrived: float) -> None:
        step = self.step
        key = orjson.loads(value)["payload"]["idempotency_key"]
        if key in self.seen:
            step.duplicates += 1
        elif key in self.chat:
            step.unexpected += 1
        elif (at := self.scheduled.get(key)) is not None:
            self.seen.add(key)
            step.confirmed += 1
            self.last_arrival = arrived
            step.latencies_ms.append(1000 * (arrived - at[0]))
            step.kafka_latencies_ms.append(timestamp_ms - 1000 * at[1])
            step.offsets_s.append(at[2])

    async def read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=50)
            arrived = time.perf_counter()
            for part in batch.values():
                for message in part:
                    self.take(message.value, message.timestamp, arrived)


async def tail(setup: Setup, topic: str) -> AIOKafkaConsumer:
    """A started consumer of every partition of ``topic``, positioned at its end.

    ``fetch_max_wait_ms`` is low so that a fetch the broker holds for idle partitions never delays the next
    one (aiokafka sends one fetch per broker at a time; its default wait is 500 ms)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=setup.kafka_bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5
    )
    await consumer.start()
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:  # resolve the end offsets now, before anything is sent
        await consumer.position(tp)
    return consumer


async def send_open_loop(setup: Setup, step: Step, load: Load, confirmations: Confirmations) -> float:
    """Send every record at its scheduled time (``step.rate``); returns when the last one was scheduled."""
    producer = AIOKafkaProducer(bootstrap_servers=setup.kafka_bootstrap, **PRODUCER_CONFIG)
    await producer.start()
    topic = setup.topic(topics.LIVE_COMMENTS)
    try:
        interval = 1.0 / step.rate
        started, wall = time.perf_counter(), time.time()
        for i, record in enumerate(load.records):
            at = started + i * interval
            delay = at - time.perf_counter()
            if delay > 0.001:
                await asyncio.sleep(delay)
            if record.order:
                confirmations.scheduled[record.confirmation_key] = (at, wall + i * interval, i * interval)
            await producer.send(topic, record.value, key=record.key)
            step.sent += 1
        await producer.flush()
        step.send_seconds = time.perf_counter() - started
        return started + (len(load.records) - 1) * interval
    finally:
        await producer.stop()


async def measure_step(step: Step, setup: Setup, shop: Process, load: Load, cpu: CpuClock) -> None:
    """Send ``load`` at ``step.rate`` (open loop), timing each order comment until its confirmation."""
    confirmations = Confirmations(step, load)
    consumer = await tail(setup, setup.topic(topics.SEND_REQUESTS))
    try:
        reader = asyncio.create_task(confirmations.read(consumer))
        before, cpu_before = await metrics(shop), cpu.read()
        try:
            last_scheduled = await send_open_loop(setup, step, load, confirmations)
            with contextlib.suppress(AssertionError):
                await eventually(lambda: step.confirmed >= step.orders, LATENCY_WAIT_S, "the confirmations")
            await asyncio.sleep(0.5)  # late duplicates
            if step.confirmed:
                step.last_after_send_s = confirmations.last_arrival - last_scheduled
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        after, cpu_after = await metrics(shop), cpu.read()
    finally:
        await consumer.stop()
    step.records = after.get("records_total", 0.0) - before.get("records_total", 0.0)
    step.batches = after.get("batch_seconds_count", 0.0) - before.get("batch_seconds_count", 0.0)
    step.batch_seconds = after.get("batch_seconds_sum", 0.0) - before.get("batch_seconds_sum", 0.0)
    step.cpu_s = cpu_used(cpu_before, cpu_after)
    step.missing = sorted(load.order_keys - confirmations.seen)[:5]


# --- correctness ------------------------------------------------------------------------------------------


@dataclass
class Checks:
    sessions: int = 0
    orders: int = 0
    units_sold: int = 0
    oversold_units: int = 0
    negative_stock: int = 0
    waitlist_units: int = 0
    drain_confirmations: int = 0
    drain_confirmation_duplicates: int = 0
    dead_letters: int = 0
    failures: list[str] = field(default_factory=list)
    ran: bool = False


def _sku(line: dict[str, Any]) -> str:
    return str(line["code"]) if line.get("variant") is None else f"{line['code']}|{line['variant']}"


async def all_orders(shop: Process, session_id: str) -> list[dict[str, Any]]:
    orders: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        path = f"/sessions/{session_id}/orders?limit=1000" + (f"&after={after}" if after else "")
        page = await shop.call("GET", path)
        orders += page["orders"]
        after = page["next_after"]
        if after is None:
            return orders


def stock_failures(
    checks: Checks, short: str, stock: dict[str, int], sold: Counter[str], waitlist: dict[str, Any]
) -> None:
    """Per SKU: sold + left = initial, nothing oversold or negative, nobody waiting while stock is left."""
    initial = initial_stock()
    failures = checks.failures
    if set(stock) != set(initial):
        failures.append(f"{short}: SKUs {sorted(stock)} != {sorted(initial)}")
    for sku, units in initial.items():
        left = stock.get(sku, 0)
        checks.units_sold += sold[sku]
        checks.oversold_units += max(0, sold[sku] - units)
        if left < 0:
            checks.negative_stock += 1
            failures.append(f"{short}: {sku} has {left} units of stock")
        if sold[sku] + left != units:
            failures.append(f"{short}: {sku}: {sold[sku]} sold + {left} left != {units} initial")
        if left > 0 and waitlist.get(sku):
            failures.append(f"{short}: {sku} has {left} units left and buyers waiting")


async def check_session(
    checks: Checks, shop: Process, db: AsyncDatabase[dict[str, Any]], session_id: str, distinct: int
) -> None:
    """The stock adds up (:func:`stock_failures`), the limit held, every comment applied, the view agrees."""
    failures = checks.failures
    board = await shop.call("GET", f"/sessions/{session_id}/dashboard")
    orders = await all_orders(shop, session_id)
    waitlist: dict[str, list[dict[str, Any]]] = await shop.call("GET", f"/sessions/{session_id}/waitlist")
    checks.sessions += 1
    checks.orders += len(orders)
    sold: Counter[str] = Counter()
    limited: Counter[str] = Counter()
    for order in orders:
        for line in [] if order["state"] in RELEASED else order["lines"]:
            sold[_sku(line)] += int(line["quantity"])
            if line["code"] == LIMITED[0]:
                limited[order["user_id"]] += int(line["quantity"])
    for entry in (e for entries in waitlist.values() for e in entries):
        checks.waitlist_units += int(entry["quantity"])
        if entry["code"] == LIMITED[0]:
            limited[entry["user_id"]] += int(entry["quantity"])
    short = session_id[-6:]
    stock_failures(checks, short, {k: int(v) for k, v in board["stock"].items()}, sold, waitlist)
    if sum(sold.values()) != board["units"]:
        failures.append(f"{short}: orders hold {sum(sold.values())} units, the dashboard {board['units']}")
    over = {user: n for user, n in limited.items() if n > LIMITED[1]}
    if over:
        failures.append(f"{short}: {len(over)} buyers hold more than {LIMITED[1]} of {LIMITED[0]}")
    if board["inputs_applied"] != distinct:
        failures.append(f"{short}: {board['inputs_applied']} inputs applied, {distinct} distinct comments")
    # the orders view (written after each journal entry) must match the session
    view = {doc["_id"]: doc async for doc in db["orders"].find({"session_id": session_id})}
    if set(view) != {o["_id"] for o in orders}:
        failures.append(f"{short}: the orders view has {len(view)} orders, the session {len(orders)}")
    elif any(view[o["_id"]]["units"] != sum(x["quantity"] for x in o["lines"]) for o in orders):
        failures.append(f"{short}: the orders view's units differ from the session's")


async def drain_confirmations(setup: Setup, load: Load, checks: Checks) -> None:
    """Every order comment of the drain got exactly one confirmation key, chat none (read from the start)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=setup.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(setup.topic(topics.SEND_REQUESTS), p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        for tp, offset in (await consumer.beginning_offsets(partitions)).items():
            consumer.seek(tp, offset)  # explicitly: a lazy seek_to_beginning after end_offsets read nothing
        prefixes = tuple(f"liveshop:{sid}:c:" for sid in load.distinct)
        keys: Counter[str] = Counter()
        deadline = time.monotonic() + 180
        remaining = set(partitions)
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5_000)
            for part in batch.values():
                for message in part:
                    key = orjson.loads(message.value)["payload"]["idempotency_key"]
                    if key.startswith(prefixes):
                        keys[key] += 1
            remaining = {tp for tp in remaining if await consumer.position(tp) < end[tp]}
        if remaining:
            checks.failures.append(f"drain: could not read {setup.topic(topics.SEND_REQUESTS)} to its end")
    finally:
        await consumer.stop()
    checks.drain_confirmations = len(keys)
    checks.drain_confirmation_duplicates = sum(keys.values()) - len(keys)
    missing = load.order_keys - set(keys)
    extra = set(keys) - load.order_keys
    if missing:
        checks.failures.append(
            f"drain: {len(missing):,} order comments got no confirmation, e.g. {min(missing)}"
        )
    if extra:
        checks.failures.append(f"drain: {len(extra):,} chat comments got a confirmation, e.g. {min(extra)}")


async def dead_letters(setup: Setup) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=setup.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        names = [setup.topic(topics.dlq(name)) for name in (topics.LIVE_COMMENTS, topics.LINE_EVENTS)]
        offsets = await consumer.end_offsets([TopicPartition(n, p) for n in names for p in range(PARTITIONS)])
        return int(sum(offsets.values()))
    finally:
        await consumer.stop()


def print_profile(path: Path) -> str:
    out = CACHE / "liveshop-bench-profile.txt"
    with out.open("w") as stream:
        stats = pstats.Stats(str(path), stream=stream)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(70)
    return out.read_text()


# --- the report -------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


CPU_NAMES = ("liveshop", "ferretdb", "kafka", "bench")


def report(drain: Drain, drain_load: Load, steps: list[Step], checks: Checks) -> str:
    status = " STALLED" if drain.stalled else " TIMED OUT" if drain.timed_out else ""
    window = (drain.done_s or 0.0) - (drain.first_s or 0.0)
    rows: list[tuple[str, str]] = [
        (
            "drain load",
            f"{drain.records:,} records = {drain.distinct:,} distinct comments "
            f"+ {drain_load.duplicates:,} repeats, "
            f"{SESSIONS} sessions, {len(drain_load.buyers):,} buyers; "
            f"{drain_load.kinds['order']:,} orders, {drain_load.kinds['chat']:,} chat",
        ),
        ("backlog published (producer, no wait per record)", f"{drain.published_per_s:,.0f} records/s"),
        (
            "liveshop start -> /readyz; -> first batch",
            f"{drain.ready_s:.1f} s; {_fmt(drain.first_s, 1, ' s')}",
        ),
        (
            "drain: start -> every dashboard complete" + status,
            f"{_fmt(drain.done_s, 1, ' s')} = {drain.from_start:,.0f} comments/s (with start-up)",
        ),
        (
            "drain: sustained (end of 1st batch -> complete)",
            f"{drain.sustained:,.0f} comments/s over {window:.1f} s",
        ),
        (
            "drain: batches",
            f"{drain.batches:,.0f}, mean "
            f"{drain.records_seen / drain.batches if drain.batches else 0:,.0f} records "
            f"and {1000 * drain.batch_seconds / drain.batches if drain.batches else 0:,.0f} ms each",
        ),
        (
            "drain CPU, % of one core: liveshop / FerretDB / Kafka / bench",
            " / ".join(_fmt(drain.cpupercentile(n), 0, " %") for n in CPU_NAMES),
        ),
        (
            "drain CPU per comment: liveshop / FerretDB",
            " / ".join(
                _fmt(
                    1e6 * v / drain.distinct
                    if (v := drain.cpu_s.get(n)) is not None and drain.distinct
                    else None,
                    0,
                    " us",
                )
                for n in ("liveshop", "ferretdb")
            ),
        ),
    ]
    for step in steps:
        rows += [
            (
                f"latency @ {step.rate:,.0f}/s: sent",
                f"{step.sent:,} in {step.send_seconds:.1f} s ({step.achieved:,.0f}/s), "
                f"{step.orders:,} orders, confirmed {step.confirmed:,}, "
                f"last {_fmt(step.last_after_send_s, 2, ' s')} after the last comment",
            ),
            (
                f"latency @ {step.rate:,.0f}/s: p50 / p95 / p99 / max",
                " / ".join(_fmt(step.pct(q), 1, " ms") for q in (0.5, 0.95, 0.99, 1.0))
                + f" (kafka ts p99 {_fmt(step.pct(0.99, kafka=True), 1, ' ms')})",
            ),
            (
                f"latency @ {step.rate:,.0f}/s: p50 / p99 by quarter",
                ", ".join(
                    f"{_fmt(a, 0)} / {_fmt(b, 0)}"
                    for a, b in zip(step.quarters(0.5), step.quarters(0.99), strict=True)
                )
                + " ms",
            ),
            (
                f"latency @ {step.rate:,.0f}/s: batches",
                f"{step.batches:,.0f}, mean "
                f"{step.records / step.batches if step.batches else 0:,.1f} records and "
                f"{1000 * step.batch_seconds / step.batches if step.batches else 0:,.1f} ms each",
            ),
            (
                f"latency @ {step.rate:,.0f}/s: CPU % liveshop / FerretDB / Kafka / bench",
                " / ".join(_fmt(step.cpupercentile(n), 0, " %") for n in CPU_NAMES),
            ),
        ]
    if checks.ran:
        rows += [
            (
                "check: sessions / orders / units sold / waitlisted",
                f"{checks.sessions} / {checks.orders:,} / {checks.units_sold:,} / {checks.waitlist_units:,}",
            ),
            (
                "check: oversold units / SKUs with negative stock",
                f"{checks.oversold_units} / {checks.negative_stock}",
            ),
            (
                "check: drain confirmations (distinct keys, repeats)",
                f"{checks.drain_confirmations:,} for {drain_load.kinds['order']:,} order comments, "
                f"{checks.drain_confirmation_duplicates:,} repeated",
            ),
            ("check: dead letters", f"{checks.dead_letters}"),
            ("check: result", "ok" if not checks.failures else "FAILED: " + "; ".join(checks.failures[:10])),
        ]
    else:
        rows.append(("check: result", "not run"))
    width = max(len(r[0]) for r in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    lines.append("")
    verdict = "met" if drain.sustained >= GOAL_COMMENTS_PER_S else "NOT met"
    lines.append(
        f"sustained comments/s = {drain.sustained:,.0f} (goal >= {GOAL_COMMENTS_PER_S:,.0f}: {verdict})"
    )
    for step in steps:
        p99 = step.pct(0.99)
        verdict = "met" if p99 is not None and p99 < GOAL_P99_MS and step.keeps_up else "NOT met"
        lines.append(
            f"p99 comment -> confirmation at {step.rate:,.0f} comments/s = {_fmt(p99, 1, ' ms')} "
            f"(goal < {GOAL_P99_MS:.0f} ms: {verdict}; {'keeps up' if step.keeps_up else 'falls behind'})"
        )
    lines.append(f"oversold units = {checks.oversold_units} (must be 0)")
    lines.append(f"machine: {os.cpu_count()} CPUs; liveshop, FerretDB, Kafka and this process share it")
    return "\n".join(lines)


def write_json(drain: Drain, steps: list[Step], checks: Checks) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    figures = {
        "comments": COMMENTS,
        "sessions": SESSIONS,
        "buyers": BUYERS,
        "stock": STOCK,
        "drain": {**asdict(drain), "sustained_per_s": drain.sustained, "from_start_per_s": drain.from_start},
        "latency": [
            {
                **{
                    k: v
                    for k, v in asdict(s).items()
                    if k not in ("latencies_ms", "kafka_latencies_ms", "offsets_s")
                },
                "p99_ms_by_quarter": s.quarters(0.99),
                **{f"p{round(100 * q)}_ms": s.pct(q) for q in (0.5, 0.95, 0.99, 1.0)},
                "kafka_p99_ms": s.pct(0.99, kafka=True),
                "achieved_per_s": s.achieved,
                "keeps_up": s.keeps_up,
            }
            for s in steps
        ],
        "checks": asdict(checks),
    }
    (CACHE / "liveshop-last-run.json").write_text(json.dumps(figures, indent=2, default=str))
    for s in steps:  # every order comment: scheduled offset, latency, latency to the Kafka timestamp
        rows = zip(s.offsets_s, s.latencies_ms, s.kafka_latencies_ms, strict=True)
        (CACHE / f"liveshop-trace-{s.rate:.0f}.csv").write_text(
            "offset_s,latency_ms,kafka_latency_ms\n"
            + "".join(f"{o:.4f},{a:.1f},{b:.0f}\n" for o, a, b in rows)
        )


# --- the benchmark ----------------------------------------------------------------------------------------


async def run_steps(setup: Setup, shop: Process, maker: LoadMaker, cpu: CpuClock) -> list[tuple[Step, Load]]:
    """The latency phase: one open-loop step per rate of ``RATES``, each on fresh sessions."""
    done: list[tuple[Step, Load]] = []
    for rate in RATES:
        step = Step(rate)
        step.session_ids = await create_sessions(shop, SESSIONS, f"latency {rate:.0f}")
        load = maker.load(step.session_ids, max(1, int(rate * LATENCY_SECONDS)), duplicates=False)
        step.orders = load.kinds["order"]
        await measure_step(step, setup, shop, load, cpu)
        done.append((step, load))
        print(
            f"  latency at {rate:,.0f}/s: p50 {_fmt(step.pct(0.5), 1)} ms, "
            f"p99 {_fmt(step.pct(0.99), 1)} ms, confirmed {step.confirmed:,} / {step.orders:,}",
            flush=True,
        )
    return done


async def run_checks(
    checks: Checks,
    *,
    setup: Setup,
    shop: Process,
    db: AsyncDatabase[dict[str, Any]],
    drain_load: Load,
    steps: list[tuple[Step, Load]],
) -> None:
    checks.ran = True
    for load in [drain_load, *(load for _, load in steps)]:
        for sid, distinct in sorted(load.distinct.items()):
            await check_session(checks, shop, db, sid, distinct)
    for step, _ in steps:
        if step.confirmed != step.orders:
            checks.failures.append(
                f"latency @ {step.rate:,.0f}/s: {step.orders - step.confirmed:,} order comments got "
                f"no confirmation, e.g. {step.missing}"
            )
        if step.unexpected:
            checks.failures.append(f"latency @ {step.rate:,.0f}/s: {step.unexpected} chat confirmed")
    await drain_confirmations(setup, drain_load, checks)
    checks.dead_letters = await dead_letters(setup)
    if checks.dead_letters:
        checks.failures.append(f"{checks.dead_letters} records dead-lettered")


async def test_liveshop_turns_comments_into_orders_fast_and_never_oversells(
    kafka_bootstrap: str, mongodb_url: str, namespace: str
) -> None:
    setup = Setup(
        kafka_bootstrap,
        mongodb_url,
        namespace,
        namespace.rstrip(".").replace(".", "_"),
        {"ferretdb": listener_pid(mongodb_url), "kafka": listener_pid(kafka_bootstrap)},
    )
    maker = LoadMaker(user_ids(BUYERS, random.Random(2007)), seed=2007)
    comments_topic = setup.topic(topics.LIVE_COMMENTS)
    print(
        f"\nliveshop benchmark: {COMMENTS:,} comments over {SESSIONS} sessions from {BUYERS:,} buyers",
        flush=True,
    )
    mongo = create_mongo_client(mongodb_url, app_name="tagline-bench", socketTimeoutMS=60_000)
    steps: list[tuple[Step, Load]] = []
    checks = Checks()
    drain_load = Load()
    drain = Drain()
    try:
        async with liveshop(setup, "admin") as admin:  # creates the topics and the drain's sessions
            drain_sessions = await create_sessions(admin, SESSIONS, "drain")
        await ensure_topics(kafka_bootstrap, [comments_topic], partitions=PARTITIONS)
        started = time.perf_counter()
        drain_load = maker.load(drain_sessions, COMMENTS, duplicates=True)
        drain = Drain(records=len(drain_load.records), distinct=sum(drain_load.distinct.values()))
        print(f"  built the backlog in {time.perf_counter() - started:.1f} s", flush=True)
        drain.published_per_s = await publish(kafka_bootstrap, comments_topic, drain_load.records)
        print(f"  published the backlog at {drain.published_per_s:,.0f} records/s", flush=True)

        async with liveshop(setup, "measured", profile=PROFILE) as shop:
            cpu = CpuClock({"liveshop": shop.pid, **setup.cpu_pids, "bench": os.getpid()})
            cpu_start = cpu.read()  # the process is about 2 s old here (it answers /readyz)
            drain.ready_s = time.perf_counter() - shop.launched
            await measure_drain(drain, shop, drain_load, cpu, cpu_start)
            print(
                f"  drained: {drain.distinct:,} comments in {_fmt(drain.done_s, 1, ' s')} from start, "
                f"{drain.sustained:,.0f} comments/s sustained",
                flush=True,
            )
            if drain.done_s is None:
                print(f"  liveshop log (end):\n{shop.tail(1500)}", flush=True)
            else:
                steps = await run_steps(setup, shop, maker, cpu)
                await run_checks(
                    checks,
                    setup=setup,
                    shop=shop,
                    db=mongo[setup.database],
                    drain_load=drain_load,
                    steps=steps,
                )
        if PROFILE and PROFILE_PATH.is_file():
            print(print_profile(PROFILE_PATH)[:14_000], flush=True)
    finally:
        print("\n" + report(drain, drain_load, [step for step, _ in steps], checks), flush=True)
        write_json(drain, [step for step, _ in steps], checks)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(mongo.drop_database(setup.database), 60)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(mongo.close(), 10)

    assert drain.done_s is not None, (
        f"liveshop did not apply the backlog (last progress {drain.progress[-1:]})"
    )
    assert checks.oversold_units == 0, f"{checks.oversold_units} units oversold"
    assert checks.negative_stock == 0
    assert not checks.failures, "\n".join(checks.failures)
