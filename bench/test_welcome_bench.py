"""Follow → welcome reply, end to end: ingest, tagger and sender as deployed, against the LINE emulator.

The services run each as its own process (:func:`bench.common.running_stack`: the end-to-end tests' stack
with every setting at its deployed default), the emulator as its own process. The channel has a welcome
message (``PUT /channels/{id}/welcome`` on the sender). Then signed follow webhooks, one event each from a
different new user, are posted to ingest at ``TAGLINE_BENCH_WELCOME_RATE`` (50) per second for
``TAGLINE_BENCH_WELCOME_SECONDS`` (30 s), each at its time by the clock whatever the services do. Each
follow's reply token was issued at the emulator beforehand, as LINE issues it with the event.

Latency runs from a webhook's intended send time to the arrival of its reply call at the emulator (the
request's ``wallTime``): p50/p95/p99/max, goal p99 < 1 s. Asserted (correctness only): every webhook
answered 200, and every follower got exactly one welcome, as a reply (free): no push, no other call.

No baseline runs here; the README says what a naive path would be. Figures:
``.local/bench/welcome-last-run.json``, every follow in ``.local/bench/welcome-trace.csv``.
"""

from __future__ import annotations

import csv
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field

import httpx
import pytest

from bench.common import (
    CACHE,
    Calls,
    CpuMeter,
    EmulatorProcess,
    Latency,
    Schedule,
    check,
    cpu_text,
    open_loop,
    running_emulator,
    running_stack,
    table,
    user_ids,
    wait_for_calls,
)
from tagline_testing.envvars import env_float
from tagline_testing.processes import listener_pid
from tagline_testing.stack import Client, Stack
from tagline_testing.webhook import SignedRequest, WebhookBuilder

pytestmark = pytest.mark.bench

RATE = env_float("TAGLINE_BENCH_WELCOME_RATE", 50.0)
SECONDS = env_float("TAGLINE_BENCH_WELCOME_SECONDS", 30.0)
TIMEOUT_S = env_float("TAGLINE_BENCH_WELCOME_TIMEOUT_S", 300.0)
STALL_S = 30.0  # no reply for this long: the rest will not come (the sender drops welcomes after 25 s)
WARM_UP = 10  # follows sent one after the other first, not measured (first-call costs)
GOAL_P99_MS = 1_000.0

CHANNEL = "2006000021"
WELCOME = "歡迎加入！回覆「優惠」領取新朋友 50 元折價券"


@dataclass(frozen=True)
class Follow:
    user: str
    token: str
    request: SignedRequest


def make_follows(users: list[str], builder: WebhookBuilder) -> list[Follow]:
    """One signed webhook per user, holding one follow event (built before the clock starts)."""
    follows: list[Follow] = []
    for user in users:
        event = builder.follow(user)
        follows.append(Follow(user, event["replyToken"], builder.request([event])))
    return follows


@dataclass
class Run:
    follows: int
    outcome: str = ""
    seconds: float = 0.0
    loop_lateness_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)  # webhook answers ("200", or the error's kind)
    webhook: Latency = field(default_factory=Latency)  # intended send -> ingest's answer
    welcome: Latency = field(default_factory=Latency)  # intended send -> reply call at the emulator
    welcomed: int = 0
    last_after_s: float | None = None  # last scheduled follow -> last reply call
    cpu_s: dict[str, float | None] = field(default_factory=dict)
    cpu_window_s: float = 0.0
    tagger_applied: float | None = None


@dataclass
class Checks:
    followers: int = 0
    missing: int = 0
    more_than_once: int = 0
    not_by_reply: int = 0
    unexpected: int = 0
    duplicates: int = 0
    usage: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)


async def post_follows(
    run: Run, follows: list[Follow], url: str, intended: dict[str, float], answered: dict[str, float]
) -> None:
    """Post each follow at its time (``RATE``/s); ``intended``/``answered``: epoch seconds per user."""
    schedule = Schedule(RATE, len(follows))
    statuses: dict[str, int] = {}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:

        async def post(index: int) -> None:
            follow = follows[index]
            intended[follow.user] = schedule.wall_at(index)
            try:
                answer = await http.post(url, content=follow.request.body, headers=follow.request.headers)
                status = str(answer.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            answered[follow.user] = time.time()
            statuses[status] = statuses.get(status, 0) + 1

        await open_loop(schedule, post)
    run.seconds = time.perf_counter() - schedule.started
    run.loop_lateness_ms = schedule.latest_start_ms
    run.statuses = dict(sorted(statuses.items()))


async def warm_up(follows: list[Follow], url: str, emulator: EmulatorProcess) -> None:
    async with httpx.AsyncClient(timeout=30.0) as http:
        for follow in follows:
            answer = await http.post(url, content=follow.request.body, headers=follow.request.headers)
            assert answer.status_code == 200, answer.text
    outcome = await wait_for_calls(
        emulator,
        CHANNEL,
        ("reply",),
        len(follows),
        deadline=time.perf_counter() + 120,
        stall_s=60,
        label="warm-up",
    )
    assert outcome == "done", f"the warm-up follows were not welcomed: {outcome}"


async def measure(
    run: Run, stack: Stack, emulator: EmulatorProcess, follows: list[Follow], mongodb_url: str
) -> tuple[dict[str, float], dict[str, float]]:
    """The open loop and the wait for its welcomes; returns (intended, answered) per user."""
    url = f"{stack.url('ingest')}/line/webhook/{CHANNEL}"
    cpu = CpuMeter(
        {
            "ingest": stack.procs["ingest"].pid,
            "tagger": stack.procs["tagger"].pid,
            "sender": stack.procs["sender"].pid,
            "emulator": emulator.pid,
            "mongo": listener_pid(mongodb_url),
            "kafka": listener_pid(stack.config.kafka_bootstrap),
            "bench": os.getpid(),
        }
    )
    intended: dict[str, float] = {}
    answered: dict[str, float] = {}
    already = await emulator.accepted(CHANNEL, "reply")
    cpu.start()
    started = time.perf_counter()
    await post_follows(run, follows, url, intended, answered)
    run.outcome = await wait_for_calls(
        emulator,
        CHANNEL,
        ("reply",),
        already + len(follows),
        deadline=time.perf_counter() + TIMEOUT_S,
        stall_s=STALL_S,
        label=f"{RATE:,.0f} follows/s",
    )
    run.cpu_s, run.cpu_window_s = cpu.stop(), time.perf_counter() - started
    run.tagger_applied = await stack.metric("tagger", "tagline_tagger_inputs_applied_total")
    return intended, answered


def figures(run: Run, calls: Calls, intended: dict[str, float], answered: dict[str, float]) -> None:
    welcome_ms: list[float] = []
    arrivals: list[float] = []
    for user, at in intended.items():
        found = calls.first.get(user)
        if found is not None:
            arrivals.append(found[0])
            welcome_ms.append(1000 * (found[0] - at))
    run.welcomed = len(arrivals)
    run.welcome = Latency.of(welcome_ms)
    run.webhook = Latency.of([1000 * (answered[u] - at) for u, at in intended.items() if u in answered])
    if arrivals and intended:
        run.last_after_s = max(arrivals) - max(intended.values())


async def check_welcomes(checks: Checks, emulator: EmulatorProcess, users: list[str], calls: Calls) -> None:
    expected = set(users)
    checks.followers = len(expected)
    checks.missing = len(expected - set(calls.first))
    checks.more_than_once = sum(n > 1 for n in calls.accepted.values())
    checks.not_by_reply = sum(endpoint != "reply" for _, endpoint in calls.first.values())
    checks.unexpected = len(set(calls.accepted) - expected)
    checks.duplicates = len((await emulator.get(f"/channels/{CHANNEL}/duplicates"))["duplicates"])
    checks.usage = await emulator.usage(CHANNEL)
    checks.calls, checks.refused = calls.statuses, calls.refused


# --- the report -------------------------------------------------------------------------------------------


def report(run: Run, checks: Checks, gather_ms: str) -> str:
    non_200 = sum(n for status, n in run.statuses.items() if status != "200")
    rows: list[tuple[str, str, str]] = [
        (
            f"follows: {RATE:,.0f}/s for {SECONDS:,.0f} s (after {WARM_UP} warm-up follows)",
            f"{run.follows:,} in {run.seconds:,.1f} s; the bench's own lateness "
            f"{run.loop_lateness_ms:,.1f} ms at most",
            "",
        ),
        (
            "webhook answers",
            ", ".join(f"{k}: {v:,}" for k, v in run.statuses.items()),
            check(non_200 == 0),
        ),
        ("webhook: intended send -> answer, p50 / p95 / p99 / max", run.webhook.text(), ""),
        (
            f"welcome: intended send -> reply call (gathered {gather_ms} ms first)",
            run.welcome.text(),
            "",
        ),
        (
            "  of which beyond the gather window",
            run.welcome.minus(float(gather_ms)).text() if gather_ms.isdigit() else "-",
            "",
        ),
        (
            "last follow -> last reply call",
            f"{run.last_after_s or 0:,.2f} s ({run.outcome}, {run.welcomed:,} welcomed)",
            check(run.outcome == "done"),
        ),
        ("CPU, % of one core", cpu_text(run.cpu_s, run.cpu_window_s), ""),
        (
            "tagger: inputs applied by the end (not on the welcome's path)",
            "-" if run.tagger_applied is None else f"{run.tagger_applied:,.0f}",
            "",
        ),
        ("calls by endpoint and status", ", ".join(f"{k}: {v:,}" for k, v in checks.calls.items()), ""),
        (
            "refused calls by reason",
            ", ".join(f"{k}: {v:,}" for k, v in checks.refused.items()) or "none",
            "",
        ),
        (
            "followers welcomed / missing / more than once",
            f"{checks.followers - checks.missing:,} / {checks.missing:,} / {checks.more_than_once:,}",
            check(not checks.missing and not checks.more_than_once),
        ),
        (
            "not by reply / someone else / duplicates / billed messages",
            f"{checks.not_by_reply:,} / {checks.unexpected:,} / {checks.duplicates:,} / {checks.usage:,}",
            check(not (checks.not_by_reply or checks.unexpected or checks.duplicates or checks.usage)),
        ),
    ]
    p99 = run.welcome.p99
    return "\n".join(
        [
            table(rows),
            f"goal p99 < {GOAL_P99_MS:,.0f} ms at {RATE:,.0f} follows/s: "
            + ("met" if p99 is not None and p99 < GOAL_P99_MS else "NOT met"),
            f"machine: {os.cpu_count()} CPUs; ingest, tagger, sender, the emulator, the MongoDB-wire server, "
            "Kafka and this process share it",
        ]
    )


def write_figures(
    run: Run, checks: Checks, follows: list[Follow], intended: dict[str, float], calls: Calls
) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "welcome-last-run.json").write_text(
        json.dumps({"run": asdict(run), "checks": asdict(checks)}, indent=2)
    )
    start = min(intended.values(), default=0.0)
    with (CACHE / "welcome-trace.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["offset_s", "latency_ms"])
        for follow in follows:
            at = intended.get(follow.user)
            if at is None:
                continue
            found = calls.first.get(follow.user)
            writer.writerow([f"{at - start:.3f}", "" if found is None else f"{1000 * (found[0] - at):.1f}"])


# --- the benchmark ----------------------------------------------------------------------------------------


async def test_follow_to_welcome_reply_end_to_end(
    kafka_bootstrap: str, mongodb_url: str, namespace: str
) -> None:
    count = round(RATE * SECONDS)
    users = user_ids(WARM_UP + count, random.Random(21))
    random.Random(22).shuffle(users)
    run = Run(count)
    checks = Checks()
    calls = Calls()
    intended: dict[str, float] = {}
    follows: list[Follow] = []
    gather_ms = "?"
    print(f"\nfollow -> welcome: {RATE:,.0f} follows/s for {SECONDS:,.0f} s", flush=True)
    # Tokens are issued before the load, so the emulator keeps them for the whole run; the sender still drops
    # a welcome whose event is older than its own reply_token_ttl_s (25 s by default), as deployed.
    token_ttl_s = SECONDS + TIMEOUT_S + 300
    async with running_emulator(
        (CHANNEL,), "welcome-emulator.log", reply_token_ttl_s=token_ttl_s
    ) as emulator:
        try:
            async with running_stack(
                kafka_bootstrap=kafka_bootstrap,
                mongodb_url=mongodb_url,
                namespace=namespace,
                label="welcome-stack",
                services=("ingest", "tagger", "sender"),
                channel_id=CHANNEL,
                emulator=emulator,
            ) as stack:
                gather_ms = stack.procs["sender"].env.get("TAGLINE_SENDER_REPLY_GATHER_MS", "?")
                builder = WebhookBuilder(stack.config.channel_secret)
                follows = make_follows(users, builder)
                await emulator.issue_reply_tokens(CHANNEL, {f.token: f.user for f in follows})
                sender = Client(stack.url("sender"))
                try:
                    welcome = {"messages": [{"type": "text", "text": WELCOME}]}
                    await sender.call("PUT", f"/channels/{CHANNEL}/welcome", json=welcome)
                finally:
                    await sender.close()
                await warm_up(follows[:WARM_UP], f"{stack.url('ingest')}/line/webhook/{CHANNEL}", emulator)
                intended, answered = await measure(run, stack, emulator, follows[WARM_UP:], mongodb_url)
            calls = Calls.of(await emulator.requests(CHANNEL))
            figures(run, calls, intended, answered)
            await check_welcomes(checks, emulator, users, calls)
        finally:
            if run.outcome:
                print("\n" + report(run, checks, gather_ms), flush=True)
            write_figures(run, checks, follows, intended, calls)

    assert sum(n for status, n in run.statuses.items() if status != "200") == 0, f"webhooks: {run.statuses}"
    assert run.outcome == "done", f"{run.outcome}: {run.welcomed:,} of {count:,} welcomed"
    assert checks.missing == 0, "a follower got no welcome"
    assert checks.more_than_once == 0, "a follower got more than one welcome"
    assert checks.not_by_reply == 0, "a welcome went out other than as a reply"
    assert checks.unexpected == 0, "someone else was sent to"
    assert checks.duplicates == 0, "someone got the same message twice"
    assert checks.usage == 0, "a welcome was billed"
