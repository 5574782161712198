"""Sender: single-recipient sends (auto-replies, journey steps, order notices) against the LINE emulator.

Each ``SendRequested`` on ``send.requests.v1`` targets one user, a different one each: auto-replies carry a
reply token the emulator issued (a reply, free), journey steps are marketing pushes and order notices
transactional pushes. The sender runs as its own process with its deployed settings
(:func:`bench.common.running_stack`), the emulator as its own process (quota set to exactly the number of
pushes, so one message too many is a 429 "monthly limit").

1. **closed**: ``TAGLINE_BENCH_SINGLE_REQUESTS`` (20,000) requests published as fast as the producer takes
   them; requests/s from the first publish until the emulator accepted the last call (goal ≥ 300/s).
2. **open**: ``TAGLINE_BENCH_SINGLE_RATE`` (100) requests/s for ``TAGLINE_BENCH_SINGLE_OPEN_SECONDS`` (30 s),
   each published at its time by the clock; latency from that intended time to the arrival of its LINE call
   at the emulator (its ``wallTime``), p50/p95/p99/max (goal p99 < 1 s).
3. **baseline**, on a fresh emulator channel: line-bot-sdk v3's ``AsyncMessagingApi.push_message`` per
   request, one after the other (``TAGLINE_BENCH_SINGLE_BASELINE_SAMPLE``, 2,000).

Only correctness is asserted: every request delivered exactly once, by the right method (reply or push), no
one else reached, usage = pushes ≤ quota, no 429 "monthly limit". Figures: ``.local/bench/single-sends-last-
run.json``, the open loop's every request in ``.local/bench/single-sends-trace.csv``.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from bench.common import (
    CACHE,
    BaselineRun,
    Calls,
    CpuMeter,
    EmulatorProcess,
    Latency,
    Schedule,
    check,
    cpu_text,
    open_loop,
    run_baseline,
    running_emulator,
    running_stack,
    table,
    user_ids,
    wait_for_calls,
)
from tagline_contracts import topics
from tagline_contracts.envelope import new_event_id
from tagline_contracts.sending import (
    ReplyContext,
    SendCategory,
    SendMessages,
    SendRequested,
    UserTarget,
    send_request_key,
)
from tagline_platform.kafka import PRODUCER_CONFIG
from tagline_testing.envvars import env_float, env_int
from tagline_testing.processes import listener_pid

pytestmark = pytest.mark.bench

REQUESTS = env_int("TAGLINE_BENCH_SINGLE_REQUESTS", 20_000)
RATE = env_float("TAGLINE_BENCH_SINGLE_RATE", 100.0)
OPEN_SECONDS = env_float("TAGLINE_BENCH_SINGLE_OPEN_SECONDS", 30.0)
REPLY_SHARE = env_float("TAGLINE_BENCH_SINGLE_REPLY_SHARE", 0.3)
BASELINE_SAMPLE = env_int("TAGLINE_BENCH_SINGLE_BASELINE_SAMPLE", 2_000)
TIMEOUT_S = env_float("TAGLINE_BENCH_SINGLE_TIMEOUT_S", 900.0)
STALL_S = 30.0  # no call accepted for this long: the sender has stopped
TOKEN_TTL_S = 3_600.0
"""Reply tokens stay usable this long here (emulator and sender; by default 30 s and 25 s): the closed run's
backlog can take longer than that to send, and a stale token would be dropped (the channel's reply_fallback)
rather than delivered. Nothing else about a reply changes."""

GOAL_RATE = 300.0
GOAL_P99_MS = 1_000.0

CHANNEL = "2006000011"
BASELINE_CHANNEL = "2006000012"
WARM_UP_CHANNEL = "2006000013"

REPLY, JOURNEY, ORDER = "auto-reply", "journey step", "order notice"
KINDS: dict[str, tuple[SendCategory, str]] = {
    REPLY: (SendCategory.TRANSACTIONAL, "優惠券：輸入 COUPON50 現折 50 元"),
    JOURNEY: (SendCategory.MARKETING, "第二天好禮：50 元折價券，今天到期"),
    ORDER: (SendCategory.TRANSACTIONAL, "訂單 A1024 已出貨，預計明天送達"),
}


@dataclass(frozen=True)
class Request:
    user: str
    kind: str
    token: str | None  # the reply token of an auto-reply

    @property
    def method(self) -> str:
        return "reply" if self.token else "push"


def make_requests(users: list[str], rng: random.Random) -> list[Request]:
    """``REPLY_SHARE`` auto-replies, the rest half journey steps, half order notices, one per user."""
    requests: list[Request] = []
    for user in users:
        if rng.random() < REPLY_SHARE:
            requests.append(Request(user, REPLY, new_event_id()))
        else:
            requests.append(Request(user, JOURNEY if rng.random() < 0.5 else ORDER, None))
    return requests


def record(request: Request, at: datetime) -> tuple[bytes, bytes]:
    """The ``send.requests.v1`` record (value, key) of ``request``, as if published at ``at``."""
    category, text = KINDS[request.kind]
    target = UserTarget(user_id=request.user)
    payload = SendMessages(
        idempotency_key=f"bench:{request.user}",
        category=category,
        messages=[{"type": "text", "text": text}],
        target=target,
        reply=None if request.token is None else ReplyContext(token=request.token, received_at=at),
        labels={"source": "bench", "kind": request.kind},
    )
    envelope = SendRequested(
        event_id=new_event_id(), channel_id=CHANNEL, occurred_at=at, produced_at=at, payload=payload
    )
    return envelope.model_dump_json(by_alias=True).encode(), send_request_key(CHANNEL, target).encode()


@dataclass
class Phase:
    name: str
    requests: int
    replies: int
    intended: dict[str, float] = field(default_factory=dict)  # user -> intended publish time (epoch s)
    publish_s: float = 0.0
    wall: float = 0.0  # the first publish (epoch s)
    outcome: str = ""  # "done", "timed out", "stalled"
    loop_lateness_ms: float | None = None  # open loop: how late the bench itself started a request
    delivered: int = 0
    first_call_s: float | None = None
    last_call_s: float | None = (
        None  # first publish -> last call (closed); last scheduled -> last call (open)
    )
    cpu_s: dict[str, float | None] = field(default_factory=dict)
    cpu_window_s: float = 0.0
    latency: dict[str, Latency] = field(default_factory=dict)  # "all", "push", "reply"

    @property
    def per_s(self) -> float:
        """Closed: requests delivered per second, first publish -> last call accepted."""
        return self.delivered / self.last_call_s if self.last_call_s else 0.0


@dataclass
class Checks:
    expected: int = 0
    pushes: int = 0
    quota: int = 0
    usage: int = 0
    missing: int = 0
    more_than_once: int = 0
    wrong_method: int = 0
    unexpected: int = 0
    duplicates: int = 0
    monthly_limited: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (
            self.missing
            or self.more_than_once
            or self.wrong_method
            or self.unexpected
            or self.duplicates
            or self.monthly_limited
            or self.usage != self.pushes
            or self.usage > self.quota
        )


async def run_closed(
    phase: Phase, requests: list[Request], producer: AIOKafkaProducer, topic: str, emulator: EmulatorProcess
) -> None:
    """Publish every request as fast as the producer takes them; wait until every call was accepted."""
    at = datetime.now(UTC)
    records = [record(r, at) for r in requests]  # built before the clock starts
    phase.wall, started = time.time(), time.perf_counter()
    phase.intended = dict.fromkeys((r.user for r in requests), phase.wall)
    for value, key in records:
        await producer.send(topic, value, key=key)
    await producer.flush()
    phase.publish_s = time.perf_counter() - started
    print(f"  closed: {len(records):,} published in {phase.publish_s:.1f} s", flush=True)
    phase.outcome = await wait_for_calls(
        emulator,
        CHANNEL,
        ("push", "reply"),
        len(requests),
        deadline=started + TIMEOUT_S,
        stall_s=STALL_S,
        label="closed",
    )


async def run_open(
    phase: Phase,
    requests: list[Request],
    *,
    producer: AIOKafkaProducer,
    topic: str,
    emulator: EmulatorProcess,
    already: int,
) -> None:
    """Publish each request at its time (``RATE``/s) whatever the sender does; wait for the last call (a
    sender that falls behind shows in the latencies, and in how long after the last request it is done)."""
    schedule = Schedule(RATE, len(requests))
    acks: list[asyncio.Future[Any]] = []

    async def publish(index: int) -> None:
        request = requests[index]
        intended = schedule.wall_at(index)
        phase.intended[request.user] = intended
        value, key = record(request, datetime.fromtimestamp(intended, UTC))
        acks.append(await producer.send(topic, value, key=key))

    await open_loop(schedule, publish)
    await asyncio.gather(*acks)
    phase.wall, phase.publish_s = schedule.wall, time.perf_counter() - schedule.started
    phase.loop_lateness_ms = schedule.latest_start_ms
    phase.outcome = await wait_for_calls(
        emulator,
        CHANNEL,
        ("push", "reply"),
        already + len(requests),
        deadline=schedule.started + schedule.offset(len(requests)) + TIMEOUT_S,
        stall_s=STALL_S,
        label=f"open @ {RATE:,.0f}/s",
    )


def measure(phase: Phase, requests: list[Request], calls: Calls, *, open_loop_end: float | None) -> None:
    """The phase's figures from the emulator's records: per request its first accepted call."""
    kinds = {r.user: r.method for r in requests}
    latencies: dict[str, list[float]] = {"all": [], "push": [], "reply": []}
    arrivals: list[float] = []
    for user, intended in phase.intended.items():
        found = calls.first.get(user)
        if found is None:
            continue
        arrivals.append(found[0])
        latency_ms = 1000 * (found[0] - intended)
        latencies["all"].append(latency_ms)
        latencies[kinds[user]].append(latency_ms)
    phase.delivered = len(arrivals)
    phase.latency = {name: Latency.of(values) for name, values in latencies.items()}
    if arrivals:
        phase.first_call_s = min(arrivals) - phase.wall
        phase.last_call_s = max(arrivals) - (phase.wall if open_loop_end is None else open_loop_end)


async def check_calls(
    checks: Checks, emulator: EmulatorProcess, requests: list[Request], calls: Calls
) -> None:
    expected = {r.user: r.method for r in requests}
    checks.expected = len(expected)
    checks.pushes = sum(method == "push" for method in expected.values())
    checks.quota = int((await emulator.get(f"/channels/{CHANNEL}"))["quota"]["value"])
    checks.usage = await emulator.usage(CHANNEL)
    checks.missing = sum(user not in calls.first for user in expected)
    checks.unexpected = sum(user not in expected for user in calls.accepted)
    checks.more_than_once = sum(n > 1 for n in calls.accepted.values())
    checks.wrong_method = sum(
        found[1] != expected[user] for user, found in calls.first.items() if user in expected
    )
    checks.duplicates = len((await emulator.get(f"/channels/{CHANNEL}/duplicates"))["duplicates"])
    checks.monthly_limited = calls.refused.get("You have reached your monthly limit.", 0)
    checks.statuses, checks.refused = calls.statuses, calls.refused


# --- the report -------------------------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f} s"


def report(closed: Phase, opened: Phase, checks: Checks, baseline: BaselineRun | None, gather_ms: str) -> str:
    p99 = opened.latency["all"].p99 if opened.latency else None
    rows: list[tuple[str, str, str]] = [
        (
            "load: requests (auto-replies with a reply token)",
            f"closed {closed.requests:,} ({closed.replies:,}), open {opened.requests:,} ({opened.replies:,});"
            " journey steps and order notices are pushes",
            "",
        ),
        ("closed: published in", f"{_s(closed.publish_s)} ({closed.requests / closed.publish_s:,.0f}/s)", ""),
        (
            "closed: first publish -> first / last call",
            f"{_s(closed.first_call_s)} / {_s(closed.last_call_s)} ({closed.outcome})",
            check(closed.outcome == "done"),
        ),
        (
            "closed: requests/s planned and delivered",
            f"{closed.per_s:,.0f} ({closed.delivered:,} delivered)",
            "",
        ),
        ("closed: CPU, % of one core", cpu_text(closed.cpu_s, closed.cpu_window_s), ""),
        (
            f"open: {RATE:,.0f}/s for {OPEN_SECONDS:,.0f} s; the bench's own lateness",
            f"{opened.requests / opened.publish_s if opened.publish_s else 0:,.1f}/s scheduled; "
            f"{opened.loop_lateness_ms or 0:,.1f} ms at most",
            "",
        ),
        (
            "open: latency p50 / p95 / p99 / max, all",
            opened.latency["all"].text() if opened.latency else "-",
            "",
        ),
        ("  pushes", opened.latency["push"].text() if opened.latency else "-", ""),
        (
            f"  replies (gathered {gather_ms} ms first)",
            opened.latency["reply"].text() if opened.latency else "-",
            "",
        ),
        (
            "    of which beyond the gather window",
            opened.latency["reply"].minus(float(gather_ms)).text()
            if opened.latency and gather_ms.isdigit()
            else "-",
            "",
        ),
        (
            "open: last scheduled -> last call",
            f"{_s(opened.last_call_s)} ({opened.outcome})",
            check(opened.outcome == "done"),
        ),
        ("open: CPU, % of one core", cpu_text(opened.cpu_s, opened.cpu_window_s), ""),
        ("requests by endpoint and status", ", ".join(f"{k}: {v:,}" for k, v in checks.statuses.items()), ""),
        (
            "refused calls by reason",
            ", ".join(f"{k}: {v:,}" for k, v in checks.refused.items()) or "none",
            "",
        ),
        (
            "usage / pushes / quota",
            f"{checks.usage:,} / {checks.pushes:,} / {checks.quota:,}",
            check(checks.usage == checks.pushes <= checks.quota and not checks.monthly_limited),
        ),
        (
            "requests delivered / missing / more than once",
            f"{checks.expected - checks.missing:,} / {checks.missing:,} / {checks.more_than_once:,}",
            check(not checks.missing and not checks.more_than_once),
        ),
        (
            "by the wrong method / someone else reached / duplicates",
            f"{checks.wrong_method:,} / {checks.unexpected:,} / {checks.duplicates:,}",
            check(not checks.wrong_method and not checks.unexpected and not checks.duplicates),
        ),
    ]
    if baseline is not None:
        ratio = closed.per_s / baseline.recipients_per_s if baseline.recipients_per_s else 0.0
        rows += [
            (
                f"baseline: {baseline.sample:,} sequential SDK pushes",
                f"{baseline.seconds:,.1f} s = {baseline.recipients_per_s:,.0f} requests/s "
                f"({1000 * baseline.seconds / max(1, baseline.sample):.2f} ms each)",
                check(baseline.delivered == baseline.sample),
            ),
            ("ratio sender (closed) / baseline", f"{ratio:,.2f}x", ""),
        ]
    lines = [table(rows)]
    lines.append(
        f"goal >= {GOAL_RATE:,.0f} requests/s planned and delivered: "
        + ("met" if closed.per_s >= GOAL_RATE else "NOT met")
        + f"; goal p99 < {GOAL_P99_MS:,.0f} ms at {RATE:,.0f}/s: "
        + ("met" if p99 is not None and p99 < GOAL_P99_MS else "NOT met")
    )
    lines.append(
        f"machine: {os.cpu_count()} CPUs; the sender, the emulator, the MongoDB-wire server, Kafka and this "
        "process share it"
    )
    return "\n".join(lines)


def write_figures(closed: Phase, opened: Phase, checks: Checks, baseline: BaselineRun | None) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    figures = {
        "closed": {k: v for k, v in asdict(closed).items() if k != "intended"},
        "open": {k: v for k, v in asdict(opened).items() if k != "intended"},
        "checks": asdict(checks),
        "baseline": asdict(baseline) if baseline else None,
    }
    (CACHE / "single-sends-last-run.json").write_text(json.dumps(figures, indent=2))


def write_trace(opened: Phase, requests: list[Request], calls: Calls) -> None:
    """Every open-loop request: scheduled offset (s), kind, latency (ms; empty if never delivered)."""
    with (CACHE / "single-sends-trace.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["offset_s", "kind", "latency_ms"])
        for request in requests:
            intended = opened.intended.get(request.user)
            if intended is None:
                continue
            found = calls.first.get(request.user)
            latency = "" if found is None else f"{1000 * (found[0] - intended):.1f}"
            writer.writerow([f"{intended - opened.wall:.3f}", request.kind, latency])


async def run_sender(
    emulator: EmulatorProcess,
    *,
    kafka_bootstrap: str,
    mongodb_url: str,
    namespace: str,
    phases: tuple[Phase, Phase],
    requests: tuple[list[Request], list[Request]],
) -> str:
    """Start the sender as deployed, run the closed and then the open phase; returns its gather window."""
    closed, opened = phases
    closed_requests, open_requests = requests
    async with running_stack(
        kafka_bootstrap=kafka_bootstrap,
        mongodb_url=mongodb_url,
        namespace=namespace,
        label="single-sends-stack",
        services=("sender",),
        channel_id=CHANNEL,
        emulator=emulator,
        overrides={"sender": {"TAGLINE_SENDER_REPLY_TOKEN_TTL_S": str(TOKEN_TTL_S)}},
        # the whole quota is for these sends (as in the sender benchmark): with the default 5 % kept back for
        # transactional sends, the last journey steps would wait for next month with the quota exactly used
        channel_settings={"marketing_headroom_ratio": 0},
    ) as stack:
        gather_ms = stack.procs["sender"].env.get("TAGLINE_SENDER_REPLY_GATHER_MS", "?")
        cpu = CpuMeter(
            {
                "sender": stack.procs["sender"].pid,
                "emulator": emulator.pid,
                "mongo": listener_pid(mongodb_url),
                "kafka": listener_pid(kafka_bootstrap),
                "bench": os.getpid(),
            }
        )
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, **PRODUCER_CONFIG)
        await producer.start()
        topic = f"{namespace}{topics.SEND_REQUESTS}"
        try:
            cpu.start()
            started = time.perf_counter()
            await run_closed(closed, closed_requests, producer, topic, emulator)
            closed.cpu_s, closed.cpu_window_s = cpu.stop(), time.perf_counter() - started
            await asyncio.sleep(3.0)  # the sender records the last results
            cpu.start()
            started = time.perf_counter()
            await run_open(
                opened,
                open_requests,
                producer=producer,
                topic=topic,
                emulator=emulator,
                already=len(closed_requests),
            )
            opened.cpu_s, opened.cpu_window_s = cpu.stop(), time.perf_counter() - started
        finally:
            await producer.stop()
    return gather_ms


# --- the benchmark ----------------------------------------------------------------------------------------


async def test_single_recipient_sends_against_the_sdk_push_loop(
    kafka_bootstrap: str, mongodb_url: str, namespace: str
) -> None:
    rng = random.Random(11)
    open_count = round(RATE * OPEN_SECONDS)
    users = user_ids(REQUESTS + open_count + BASELINE_SAMPLE, rng)
    rng.shuffle(users)
    closed_requests = make_requests(users[:REQUESTS], rng)
    open_requests = make_requests(users[REQUESTS : REQUESTS + open_count], rng)
    baseline_users = users[REQUESTS + open_count :]
    requests = closed_requests + open_requests
    closed = Phase("closed", len(closed_requests), sum(r.token is not None for r in closed_requests))
    opened = Phase("open", len(open_requests), sum(r.token is not None for r in open_requests))
    checks = Checks()
    baseline: BaselineRun | None = None
    calls = Calls()
    print(
        f"\nsingle-recipient sends: {REQUESTS:,} closed, {RATE:,.0f}/s for {OPEN_SECONDS:,.0f} s open, "
        f"{REPLY_SHARE:.0%} replies, baseline {BASELINE_SAMPLE:,}",
        flush=True,
    )
    channels = (CHANNEL, BASELINE_CHANNEL, WARM_UP_CHANNEL)
    gather_ms = "?"
    async with running_emulator(
        channels, "single-sends-emulator.log", reply_token_ttl_s=TOKEN_TTL_S
    ) as emulator:
        try:
            pushes = sum(r.token is None for r in requests)
            await emulator.write("PUT", f"/channels/{CHANNEL}/quota", {"type": "limited", "value": pushes})
            await emulator.issue_reply_tokens(CHANNEL, {r.token: r.user for r in requests if r.token})
            gather_ms = await run_sender(
                emulator,
                kafka_bootstrap=kafka_bootstrap,
                mongodb_url=mongodb_url,
                namespace=namespace,
                phases=(closed, opened),
                requests=(closed_requests, open_requests),
            )
            calls = Calls.of(await emulator.requests(CHANNEL))
            measure(closed, closed_requests, calls, open_loop_end=None)
            measure(opened, open_requests, calls, open_loop_end=opened.wall + (open_count - 1) / RATE)
            await check_calls(checks, emulator, requests, calls)
            baseline = await run_baseline(
                emulator,
                baseline_users,
                channel=BASELINE_CHANNEL,
                warm_up_channel=WARM_UP_CHANNEL,
                text=KINDS[ORDER][1],
            )
        finally:
            if closed.outcome:
                print("\n" + report(closed, opened, checks, baseline, gather_ms), flush=True)
            write_figures(closed, opened, checks, baseline)
            write_trace(opened, open_requests, calls)

    assert closed.outcome == "done", f"closed run: {closed.outcome} ({closed.delivered:,} delivered)"
    assert opened.outcome == "done", f"open run: {opened.outcome} ({opened.delivered:,} delivered)"
    assert checks.missing == 0, "a request was never delivered"
    assert checks.more_than_once == 0, "a request was delivered more than once"
    assert checks.duplicates == 0, "someone got the same message twice"
    assert checks.wrong_method == 0, "a reply went out as a push or a push as a reply"
    assert checks.unexpected == 0, "someone else was sent to"
    assert checks.monthly_limited == 0, "the sender tried to send beyond the monthly quota"
    assert checks.usage == checks.pushes <= checks.quota, "usage is not the pushes, or above the quota"
    assert baseline is not None
    assert baseline.delivered == BASELINE_SAMPLE, "the baseline did not deliver to its whole sample"
