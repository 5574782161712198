"""Sender: one marketing send to a segment of N members against the LINE emulator, next to a baseline.

The emulator runs as its own process (``python -m tagline_line_emulator``) with the channel's monthly quota
set to exactly N, so an overshoot would show as a 429 "monthly limit" and as usage above N. The sender's
member projection is seeded straight into its ``members`` collection (not through Kafka; see
:func:`seed_members`): N followed members tagged ``bench``, plus blocked members and untagged followers that
must not be reached.
One sender runs in this process (``create_app`` + its lifespan, as deployed minus the HTTP server); one
``SendRequested`` with the segment ``{"op": "tags", "any": ["bench"]}`` goes onto ``send.requests.v1``, and
the clock runs until the emulator has counted N delivered messages (or the timeout, or 20 s without progress
while the sender has no pending delivery left). Afterwards, once FerretDB is idle, the planner's segment
query, ``SenderStore.blocked_ids`` and ``apply_member_changes`` are timed alone on the full projection.

The baseline, in the same run on a fresh emulator channel: line-bot-sdk v3's ``AsyncMessagingApi``, one
``push_message`` per recipient in a sequential loop, for a sample of recipients.

Only correctness is asserted (rate limit, quota, duplicates, blocked members, everyone reached); the
timings are printed. Sizes: ``TAGLINE_BENCH_SENDER_MEMBERS`` (default 1,000,000),
``TAGLINE_BENCH_SENDER_BASELINE_SAMPLE`` (2,000), ``TAGLINE_BENCH_SENDER_TIMEOUT_S`` (900).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psutil
import pytest
from aiokafka import AIOKafkaProducer
from pymongo.asynchronous.database import AsyncDatabase

from bench.common import (
    CACHE,
    BaselineRun,
    CpuMeter,
    EmulatorProcess,
    check,
    cpu_text,
    run_baseline,
    running_emulator,
    table,
    user_ids,
)
from tagline_contracts import topics
from tagline_contracts.envelope import new_event_id
from tagline_contracts.members import ChangeKind, FollowState, MemberChanged, MemberSnapshot
from tagline_contracts.segments import to_mongo_query
from tagline_contracts.sending import SegmentTarget, SendMessages, SendRequested, send_request_key
from tagline_sender.adapters.mongo import SenderStore, projection_doc, segment_filter
from tagline_sender.app import create_app
from tagline_sender.domain.ratelimit import DEFAULT_LIMITS
from tagline_sender.service import SenderService
from tagline_sender.settings import SenderSettings
from tagline_testing.envvars import env_int
from tagline_testing.processes import listener_pid
from tagline_testing.waiting import eventually

pytestmark = pytest.mark.bench


MEMBERS = env_int("TAGLINE_BENCH_SENDER_MEMBERS", 1_000_000)
BASELINE_SAMPLE = env_int("TAGLINE_BENCH_SENDER_BASELINE_SAMPLE", 2_000)
TIMEOUT_S = float(env_int("TAGLINE_BENCH_SENDER_TIMEOUT_S", 900))
STALL_S = 20.0  # no new delivery for this long: check whether the sender has given up on the rest
BLOCKED = 300  # tagged "bench" too, but blocked: must not be reached
UNTAGGED = 1_000  # followed, without the tag: must not be reached
SEED_BATCH = 5_000
SEED_IN_FLIGHT = 2  # bulk writes in flight while seeding
SHAPE_CHECK = 200  # members seeded through apply_member_changes itself
CONCURRENCY = 32

CHANNEL = "2006000001"
BASELINE_CHANNEL = "2006000002"
WARM_UP_CHANNEL = "2006000003"
TAG = "bench"
TEXT = "雙十一限時優惠：全館 8 折，今晚 12 點截止！"
MULTICAST_LIMIT = DEFAULT_LIMITS["multicast"].limit  # LINE's 200 requests per second
MONTHLY_LIMIT_MESSAGE = "You have reached your monthly limit."


# --- seeding the sender's member projection ---------------------------------------------------------------


def _change(user_id: str, state: FollowState, tags: list[str]) -> MemberChanged:
    kind = ChangeKind.FOLLOWED if state is FollowState.FOLLOWED else ChangeKind.BLOCKED
    snapshot = MemberSnapshot(user_id=user_id, follow_state=state, tags=tags, attributes={"region": "TPE"})
    return MemberChanged(user_id=user_id, version=1, changes=[kind], snapshot=snapshot)


def _projection_doc(change: MemberChanged) -> dict[str, Any]:
    """The ``members`` document ``SenderStore.apply_member_changes`` writes for ``change``."""
    return {"_id": f"{CHANNEL}:{change.user_id}", **projection_doc(CHANNEL, change)}


async def seed_members(
    store: SenderStore, members: list[str], blocked: list[str], untagged: list[str]
) -> tuple[int, float, int]:
    """Write every member into the sender's projection; returns (written, seconds, through apply_...).

    ``apply_member_changes`` upserts with the filter ``{_id, version: {$lt: v}}``, which FerretDB 1.24 on
    SQLite does not push down (only a filter that is exactly ``{_id: value}`` is): every change scans the
    whole collection, so seeding N members through it costs O(N²) (days for a million). So only the first
    ``SHAPE_CHECK`` members go through it, the documents it wrote are compared with ``_projection_doc``, and
    the rest are inserted with ``insert_many`` in that exact shape (``SEED_IN_FLIGHT`` batches at a time).
    """
    population = [(u, FollowState.FOLLOWED, [TAG]) for u in members]
    population += [(u, FollowState.BLOCKED, [TAG]) for u in blocked]
    population += [(u, FollowState.FOLLOWED, ["other"]) for u in untagged]
    random.Random(7).shuffle(population)
    started = time.perf_counter()

    first = [_change(u, state, tags) for u, state, tags in population[:SHAPE_CHECK]]
    applied = await store.apply_member_changes(CHANNEL, first)
    assert applied == len(first)
    for change in first[:20]:
        stored = await store.members.find_one({"_id": f"{CHANNEL}:{change.user_id}"})
        assert stored == _projection_doc(change), "the seeding shape no longer matches apply_member_changes"

    gate = asyncio.Semaphore(SEED_IN_FLIGHT)
    written = applied
    last_report = started

    async def one(batch: list[tuple[str, FollowState, list[str]]]) -> None:
        nonlocal written, last_report
        async with gate:
            docs = [_projection_doc(_change(u, state, tags)) for u, state, tags in batch]
            result = await store.members.insert_many(docs, ordered=False)
            written += len(result.inserted_ids)
        if time.perf_counter() - last_report > 15:
            last_report = time.perf_counter()
            rate = written / (last_report - started)
            print(f"  seeding: {written:,} / {len(population):,} members ({rate:,.0f}/s)", flush=True)

    rest = population[SHAPE_CHECK:]
    chunks = [rest[i : i + SEED_BATCH] for i in range(0, len(rest), SEED_BATCH)]
    await asyncio.gather(*(one(chunk) for chunk in chunks))  # each builds its batch once admitted
    return written, time.perf_counter() - started, applied


async def time_member_change(run: SenderRun, store: SenderStore, members: list[str]) -> None:
    """``apply_member_changes`` on the full projection: a few members' version 2, same content, timed."""
    changes = [_change(u, FollowState.FOLLOWED, [TAG]).model_copy(update={"version": 2}) for u in members[:3]]
    started = time.perf_counter()
    applied = await store.apply_member_changes(CHANNEL, changes)
    run.member_change_s = (time.perf_counter() - started) / len(changes)
    assert applied == len(changes)


# --- the sender run ---------------------------------------------------------------------------------------


@dataclass
class SenderRun:
    members: int
    blocked: int
    untagged: int
    seeded: int = 0
    seed_s: float = 0.0
    seeded_through_apply: int = 0
    member_change_s: float | None = None
    planning_s: float | None = None
    first_send_s: float | None = None
    last_send_s: float | None = None
    total_s: float | None = None
    requests: dict[str, int] = field(default_factory=dict)  # "endpoint status" -> count
    multicasts_accepted: int = 0
    pushes_accepted: int = 0
    rate_limited: int = 0
    monthly_limited: int = 0
    max_in_window: int = 0
    quota: int = 0
    usage: int = 0
    delivered: int = 0
    missing: int = 0
    unexpected: int = 0
    duplicates: int = 0
    blocked_reached: int = 0
    untagged_reached: int = 0
    delivery_states: dict[str, dict[str, int]] = field(default_factory=dict)
    cpu_s: dict[str, float | None] = field(default_factory=dict)
    segment_query_s: float | None = None
    segment_sort_s: float | None = None
    blocked_ids_s: float | None = None
    timed_out: bool = False
    stalled: bool = False  # the sender stopped with recipients left (all its deliveries sent/failed/deferred)
    ferretdb_busy_after_s: float | None = None

    @property
    def overshoot(self) -> int:
        return max(0, self.usage - self.quota)

    @property
    def recipients_per_s(self) -> float:
        return self.delivered / self.total_s if self.total_s else 0.0


def _settings(
    emulator: EmulatorProcess, kafka_bootstrap: str, mongodb_url: str, database: str, namespace: str
) -> SenderSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "mongodb_url": mongodb_url,
        # The limit is LINE's (the emulator's quota, read at start); no headroom kept back for
        # transactional sends, so the marketing send may use the whole quota and no more.
        "channels": {CHANNEL: {"access_token": CHANNEL, "marketing_headroom_ratio": 0}},
        "line_api_url": emulator.url,
        "database": database,
        "topic_namespace": namespace,
        "group_id": f"{namespace}sender",
        "concurrency": CONCURRENCY,
    }
    return SenderSettings(**values)


@contextlib.asynccontextmanager
async def running_sender(settings: SenderSettings) -> AsyncIterator[SenderService]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        service: SenderService = app.state.service
        await service.readiness.wait()  # the lifespan starts it in the background
        yield service


def _send_request(key: str) -> tuple[bytes, bytes]:
    payload = SendMessages.model_validate(
        {
            "idempotency_key": key,
            "category": "marketing",
            "messages": [{"type": "text", "text": TEXT}],
            "target": {"kind": "segment", "filter": {"op": "tags", "any": [TAG]}},
            "labels": {"campaign": "bench"},
        }
    )
    now = datetime.now(UTC)
    envelope = SendRequested(
        event_id=new_event_id(), channel_id=CHANNEL, occurred_at=now, produced_at=now, payload=payload
    )
    return envelope.model_dump_json(by_alias=True).encode(), send_request_key(
        CHANNEL, payload.target
    ).encode()


async def _publish(kafka_bootstrap: str, topic: str, value: bytes, key: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def measure_send(
    run: SenderRun,
    emulator: EmulatorProcess,
    settings: SenderSettings,
    cpu: CpuMeter,
    kafka_bootstrap: str,
) -> None:
    """Start the sender, publish the segment send, wait until the emulator counted N messages."""
    key = f"bench-{new_event_id().lower()}"
    send_id = f"{CHANNEL}:{key}"
    value, kafka_key = _send_request(key)
    async with running_sender(settings) as service:
        await eventually(lambda: bool(service.dispatcher.partitions), 60, "the sender's partition assignment")
        cpu.start()
        wall_start = time.time()
        started = time.perf_counter()
        await _publish(kafka_bootstrap, settings.topic(topics.SEND_REQUESTS), value, kafka_key)
        deadline = started + TIMEOUT_S
        last_report = last_change = last_stall_check = started
        usage = 0
        while True:
            now = time.perf_counter()
            if run.planning_s is None:
                send = await service.store.get_send(send_id)
                if send is not None and send["state"] == "planned":
                    run.planning_s = time.perf_counter() - started
                    print(f"  planned after {run.planning_s:.1f} s ({send['batches']:,} batches)", flush=True)
            seen = await emulator.usage(CHANNEL)
            if seen != usage:
                usage, last_change = seen, now
            if usage >= run.members:
                run.total_s = time.perf_counter() - started
                break
            if now > deadline:
                run.timed_out = True
                run.total_s = now - started
                break
            if run.planning_s is not None and min(now - last_change, now - last_stall_check) > STALL_S:
                # Nothing arrived for a while: has the sender anything left to try? (a full scan of the
                # deliveries on FerretDB, so only when stalled)
                last_stall_check = now
                states = await service.store.delivery_summary(send_id)
                if not {"pending", "sending"} & set(states):
                    run.stalled = True
                    run.total_s = now - started
                    print(f"  nothing left to send after {run.total_s:.1f} s: {states}", flush=True)
                    break
            if now - last_report > 15:
                last_report = now
                print(
                    f"  {now - started:6.1f} s: {usage:,} / {run.members:,} delivered "
                    f"({usage / (now - started):,.0f}/s), planned: {run.planning_s is not None}",
                    flush=True,
                )
            await asyncio.sleep(0.2)
        run.cpu_s = cpu.stop()
        # Let the sender record the last answers, then read its own view of the send.
        with contextlib.suppress(AssertionError):
            await eventually(lambda: _settled(service, send_id), 60, "the deliveries to settle")
        run.delivery_states = await service.store.delivery_summary(send_id)
        await _read_requests(run, emulator, wall_start)


async def _settled(service: SenderService, send_id: str) -> bool:
    summary = await service.store.delivery_summary(send_id)
    return bool(summary) and not {"pending", "sending"} & set(summary)


async def _read_requests(run: SenderRun, emulator: EmulatorProcess, wall_start: float) -> None:
    found = await emulator.get("/requests", channel=CHANNEL, limit=1_000_000)
    requests = found["requests"]
    counts = Counter(f"{r['endpoint']} {r['status']}" for r in requests)
    run.requests = dict(sorted(counts.items()))
    sends = [r for r in requests if r["endpoint"] in {"multicast", "push"}]
    accepted = [r for r in sends if r["accepted"]]
    run.multicasts_accepted = sum(r["endpoint"] == "multicast" for r in accepted)
    run.pushes_accepted = sum(r["endpoint"] == "push" for r in accepted)
    run.monthly_limited = sum(r["status"] == 429 and r["error"] == MONTHLY_LIMIT_MESSAGE for r in sends)
    run.rate_limited = sum(r["status"] == 429 and r["error"] != MONTHLY_LIMIT_MESSAGE for r in sends)
    if accepted:
        run.first_send_s = min(r["wallTime"] for r in accepted) - wall_start
        run.last_send_s = max(r["wallTime"] for r in accepted) - wall_start
    stats = await emulator.get("/stats", channel=CHANNEL, windowS=1.0)
    run.max_in_window = int(stats["maxInWindow"].get("multicast", 0))


async def check_deliveries(
    run: SenderRun, emulator: EmulatorProcess, members: list[str], blocked: list[str], untagged: list[str]
) -> None:
    run.quota = int((await emulator.get(f"/channels/{CHANNEL}"))["quota"]["value"])
    run.usage = await emulator.usage(CHANNEL)
    per_user: dict[str, int] = (await emulator.get(f"/channels/{CHANNEL}/deliveries"))["deliveries"]
    delivered = set(per_user)
    expected = set(members)
    run.delivered = len(delivered & expected)
    run.missing = len(expected - delivered)
    run.unexpected = len(delivered - expected)
    run.untagged_reached = len(delivered & set(untagged))
    run.duplicates = len((await emulator.get(f"/channels/{CHANNEL}/duplicates"))["duplicates"])
    attempts = (await emulator.get(f"/channels/{CHANNEL}/blocked-attempts"))["blockedAttempts"]
    run.blocked_reached = len((set(attempts) | delivered) & set(blocked))


async def time_segment_resolution(run: SenderRun, store: SenderStore) -> None:
    """The planner's queries, timed alone: the segment's member ids (then sorted), and the blocked ids."""
    target = SegmentTarget.model_validate({"filter": {"op": "tags", "any": [TAG]}})
    now = datetime.now(UTC)
    query = to_mongo_query(target.filter, now=now, today=now.astimezone(ZoneInfo("Asia/Taipei")).date())
    full = segment_filter(CHANNEL, query)  # what SenderStore.member_ids runs
    started = time.perf_counter()
    ids = [doc["user_id"] async for doc in store.members.find(full, {"user_id": 1, "_id": 0})]
    run.segment_query_s = time.perf_counter() - started
    started = time.perf_counter()
    ids.sort()
    run.segment_sort_s = time.perf_counter() - started
    assert len(ids) == run.members
    started = time.perf_counter()
    await store.blocked_ids(CHANNEL)
    run.blocked_ids_s = time.perf_counter() - started


async def _wait_until_idle(pid: int | None, timeout_s: float = 900.0) -> float | None:
    """Wait until ``pid`` uses under 20 % of a core for 3 s running; returns how long that took.

    FerretDB finishes the queries it was given even when their client has gone, so after a slow run it may
    keep working for minutes; the queries timed next must not share it with those.
    """
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        started = time.perf_counter()
        quiet = 0
        process.cpu_percent()
        while quiet < 3 and time.perf_counter() - started < timeout_s:
            await asyncio.sleep(1.0)
            quiet = quiet + 1 if process.cpu_percent() < 20 else 0
        return time.perf_counter() - started
    except psutil.Error:
        return None


# --- the report -------------------------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} s"


def report(run: SenderRun, baseline: BaselineRun | None) -> str:
    rows: list[tuple[str, str, str]] = [
        ("members (followed, tagged)", f"{run.members:,}", ""),
        ("  + blocked (tagged) / followed untagged", f"{run.blocked:,} / {run.untagged:,}", ""),
        (
            "seeding the projection (not through Kafka)",
            f"{run.seed_s:,.1f} s = {run.seeded / run.seed_s if run.seed_s else 0:,.0f} members/s "
            f"({run.seeded_through_apply:,} through apply_member_changes, the rest insert_many)",
            "",
        ),
        ("publish -> send planned", _s(run.planning_s), ""),
        ("publish -> first LINE call accepted", _s(run.first_send_s), ""),
        ("publish -> last LINE call accepted", _s(run.last_send_s), ""),
        (
            "publish -> all delivered (total)"
            + (" TIMED OUT" if run.timed_out else " STALLED: nothing left to send" if run.stalled else ""),
            _s(run.total_s),
            check(not run.timed_out and not run.stalled),
        ),
        ("recipients/s (total)", f"{run.recipients_per_s:,.0f}", ""),
        ("multicasts accepted (+ pushes)", f"{run.multicasts_accepted:,} (+ {run.pushes_accepted:,})", ""),
        ("requests by endpoint and status", ", ".join(f"{k}: {v:,}" for k, v in run.requests.items()), ""),
        ("429 rate limit / 429 monthly limit", f"{run.rate_limited:,} / {run.monthly_limited:,}", ""),
        (
            "repeats of an accepted call (409, retry key)",
            f"{sum(n for k, n in run.requests.items() if k.endswith(' 409')):,}",
            "",
        ),
        (
            "max multicasts in any 1 s window",
            f"{run.max_in_window} (limit {MULTICAST_LIMIT})",
            check(run.max_in_window <= MULTICAST_LIMIT),
        ),
        (
            "usage / quota (overshoot)",
            f"{run.usage:,} / {run.quota:,} ({run.overshoot:,})",
            check(not run.overshoot),
        ),
        (
            "delivered / missing / not in segment",
            f"{run.delivered:,} / {run.missing:,} / {run.unexpected:,}",
            check(run.delivered == run.members and not run.missing and not run.unexpected),
        ),
        ("duplicates", f"{run.duplicates:,}", check(not run.duplicates)),
        ("blocked members reached", f"{run.blocked_reached:,}", check(not run.blocked_reached)),
        ("untagged members reached", f"{run.untagged_reached:,}", check(not run.untagged_reached)),
        (
            "sender's deliveries by state",
            ", ".join(
                f"{k}: {v['deliveries']:,} ({v['recipients']:,} recipients)"
                for k, v in run.delivery_states.items()
            ),
            "",
        ),
        ("CPU over the send, % of one core", cpu_text(run.cpu_s, run.total_s or 0.0), ""),
        ("FerretDB still busy after the send for", _s(run.ferretdb_busy_after_s), ""),
        (
            "segment query alone (find + sort)",
            f"{_s(run.segment_query_s)} + {_s(run.segment_sort_s)}",
            "",
        ),
        ("blocked ids query alone (SenderStore.blocked_ids)", _s(run.blocked_ids_s), ""),
        (
            "apply_member_changes on the full projection, per change",
            _s(run.member_change_s),
            "",
        ),
        (
            f"  => seeding {run.members:,} through it would take about",
            _s(run.member_change_s * run.members / 2 if run.member_change_s else None),
            "",
        ),
    ]
    if baseline is not None:
        ratio = run.recipients_per_s / baseline.recipients_per_s if baseline.recipients_per_s else 0.0
        rows += [
            (
                f"baseline: {baseline.sample:,} sequential SDK pushes",
                f"{baseline.seconds:,.1f} s = {baseline.recipients_per_s:,.0f} recipients/s "
                f"({1000 * baseline.seconds / max(1, baseline.sample):.2f} ms each)",
                check(baseline.delivered == baseline.sample),
            ),
            ("ratio sender / baseline (recipients/s)", f"{ratio:,.1f}x", ""),
            (
                f"baseline extrapolated to {run.members:,}",
                _s(run.members / baseline.recipients_per_s if baseline.recipients_per_s else None),
                "",
            ),
        ]
    return (
        table(rows) + f"\nmachine: {os.cpu_count()} CPUs; the sender (this process), the emulator, FerretDB "
        "and Kafka share it"
    )


# --- the benchmark ----------------------------------------------------------------------------------------


async def test_segment_send_to_members_against_the_naive_baseline(
    kafka_bootstrap: str, mongodb_url: str, namespace: str, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    rng = random.Random(42)
    population = user_ids(MEMBERS + BLOCKED + UNTAGGED, rng)
    members = population[:MEMBERS]
    blocked = population[MEMBERS : MEMBERS + BLOCKED]
    untagged = population[MEMBERS + BLOCKED :]
    run = SenderRun(MEMBERS, BLOCKED, UNTAGGED)
    baseline: BaselineRun | None = None
    print(f"\nsender benchmark: {MEMBERS:,} members, baseline sample {BASELINE_SAMPLE:,}", flush=True)
    async with running_emulator(
        (CHANNEL, BASELINE_CHANNEL, WARM_UP_CHANNEL), "sender-bench-emulator.log"
    ) as emulator:
        try:
            await emulator.write("PUT", f"/channels/{CHANNEL}/quota", {"type": "limited", "value": MEMBERS})
            await emulator.write("POST", f"/channels/{CHANNEL}/block", {"userIds": blocked})
            store = SenderStore(mongo_db)
            await store.ensure_indexes()  # what a running sender has created before any member arrives
            run.seeded, run.seed_s, run.seeded_through_apply = await seed_members(
                store, members, blocked, untagged
            )
            print(f"  seeded {run.seeded:,} members in {run.seed_s:.1f} s", flush=True)

            cpu = CpuMeter(
                {
                    "sender": os.getpid(),
                    "emulator": emulator.process.pid,
                    "ferretdb": listener_pid(mongodb_url),
                    "kafka": listener_pid(kafka_bootstrap),
                }
            )
            settings = _settings(emulator, kafka_bootstrap, mongodb_url, mongo_db.name, namespace)
            await measure_send(run, emulator, settings, cpu, kafka_bootstrap)
            await check_deliveries(run, emulator, members, blocked, untagged)
            run.ferretdb_busy_after_s = await _wait_until_idle(cpu.pids["ferretdb"])
            await time_segment_resolution(run, store)
            await time_member_change(run, store, members)
            baseline = await run_baseline(
                emulator,
                members[:BASELINE_SAMPLE],
                channel=BASELINE_CHANNEL,
                warm_up_channel=WARM_UP_CHANNEL,
                text=TEXT,
            )
        finally:
            print("\n" + report(run, baseline), flush=True)
            CACHE.mkdir(parents=True, exist_ok=True)
            figures = {"sender": asdict(run), "baseline": asdict(baseline) if baseline else None}
            (CACHE / "sender-last-run.json").write_text(json.dumps(figures, indent=2))

    assert not run.timed_out, f"not every member was reached within {TIMEOUT_S:.0f} s"
    assert not run.stalled, f"the sender stopped with recipients left: {run.delivery_states}"
    assert run.max_in_window <= MULTICAST_LIMIT, "LINE's multicast rate limit was exceeded"
    assert run.overshoot == 0, "more messages than the monthly quota"
    assert run.monthly_limited == 0, "the sender tried to send beyond the monthly quota"
    assert run.duplicates == 0, "someone got the message twice"
    assert run.blocked_reached == 0, "a blocked member was sent to"
    assert run.untagged_reached == 0, "a member outside the segment was sent to"
    assert run.delivered == MEMBERS, "not every member of the segment got the message"
    assert run.unexpected == 0, "someone outside the segment got the message"
    assert baseline is not None
    assert baseline.delivered == BASELINE_SAMPLE, "the baseline did not deliver to its whole sample"
