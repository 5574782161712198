"""Helpers the benchmarks share: the LINE emulator as its own process, services started as deployed, CPU
time per process, the clock-scheduled open loop, latency percentiles and the line-bot-sdk push baseline.

One way to do each of these: a benchmark that needs one imports it from here (``from bench.common import …``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from linebot.v3.messaging import (
    AsyncApiClient,
    AsyncMessagingApi,
    Configuration,
    PushMessageRequest,
    TextMessage,
)
from pydantic_settings import BaseSettings

from tagline_ingest.settings import IngestSettings
from tagline_liveshop.settings import LiveshopSettings
from tagline_platform.mongo import create_mongo_client
from tagline_platform.settings import ServiceSettings
from tagline_sender.settings import SenderSettings
from tagline_tagger.settings import TaggerSettings
from tagline_testing.processes import cpu_seconds, free_port
from tagline_testing.stack import Stack, StackConfig

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".local" / "bench"
"""Where every benchmark writes its figures (``*-last-run.json``), traces and logs."""


def user_ids(count: int, rng: random.Random) -> list[str]:
    """``count`` distinct LINE-style user ids (``U`` + 32 hex digits), sorted."""
    ids: set[str] = set()
    while len(ids) < count:
        ids.add(f"U{rng.getrandbits(128):032x}")
    return sorted(ids)


# --- CPU of the processes that share the machine ----------------------------------------------------------


class CpuClock:
    """CPU seconds so far of the processes that share the machine (None when unknown)."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids

    def read(self) -> dict[str, float | None]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}


def cpu_used(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float | None]:
    """CPU seconds per process between two :meth:`CpuClock.read` (None when either is unknown)."""
    used: dict[str, float | None] = {}
    for name, end in after.items():
        start = before.get(name)
        used[name] = None if start is None or end is None else end - start
    return used


@dataclass
class CpuMeter:
    """CPU seconds per process between ``start()`` and ``stop()``."""

    pids: dict[str, int | None]
    before: dict[str, float | None] = field(default_factory=dict)
    used: dict[str, float | None] = field(default_factory=dict)

    def start(self) -> None:
        self.before = CpuClock(self.pids).read()

    def stop(self) -> dict[str, float | None]:
        self.used = cpu_used(self.before, CpuClock(self.pids).read())
        return self.used


def cpu_text(used: Mapping[str, float | None], seconds: float) -> str:
    """``name N %, …``: each process's CPU over ``seconds``, in % of one core."""
    return ", ".join(
        f"{name} {100 * value / seconds:,.0f} %" if value is not None and seconds > 0 else f"{name} -"
        for name, value in used.items()
    )


# --- latency ----------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values``: the value at rank ``int(q * n)`` of the sorted values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Latency:
    """p50 / p95 / p99 / max of a set of latencies, in ms."""

    count: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> Latency:
        return cls(
            len(values_ms),
            percentile(values_ms, 0.50),
            percentile(values_ms, 0.95),
            percentile(values_ms, 0.99),
            max(values_ms, default=None),
        )

    def minus(self, ms: float) -> Latency:
        """The same latencies less ``ms`` each (what is left beyond a fixed wait)."""

        def less(value: float | None) -> float | None:
            return None if value is None else value - ms

        return Latency(self.count, less(self.p50), less(self.p95), less(self.p99), less(self.max))

    def text(self) -> str:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:,.0f}"

        return (
            f"{ms(self.p50)} / {ms(self.p95)} / {ms(self.p99)} / {ms(self.max)} ms ({self.count:,} measured)"
        )


# --- the open loop ----------------------------------------------------------------------------------------


@dataclass
class Schedule:
    """``count`` actions at ``rate`` per second, each at its own time whatever the system under test does."""

    rate: float
    count: int
    started: float = 0.0  # time.perf_counter() of action 0
    wall: float = 0.0  # time.time() of action 0
    latest_start_ms: float = 0.0  # how late the loop started the latest action (its own lag, should be ~0)

    def offset(self, index: int) -> float:
        return index / self.rate

    def wall_at(self, index: int) -> float:
        """The intended time of action ``index``, in seconds since the epoch (the emulator's clock)."""
        return self.wall + self.offset(index)

    @property
    def last_wall(self) -> float:
        return self.wall_at(self.count - 1) if self.count else self.wall


async def open_loop(schedule: Schedule, fire: Callable[[int], Coroutine[Any, Any, None]]) -> None:
    """Start ``fire(i)`` at its intended time (each as a task: a slow one never delays the next), then wait
    for all of them. Latencies measured from ``schedule.wall_at(i)`` include any wait of the system under
    test, so a stall shows as latency instead of a lower rate (no coordinated omission)."""
    tasks: set[asyncio.Task[None]] = set()
    done: list[asyncio.Task[None]] = []
    schedule.started, schedule.wall = time.perf_counter(), time.time()
    for index in range(schedule.count):
        at = schedule.started + schedule.offset(index)
        delay = at - time.perf_counter()
        if delay > 0.001:
            await asyncio.sleep(delay)
        schedule.latest_start_ms = max(schedule.latest_start_ms, 1000 * (time.perf_counter() - at))
        task = asyncio.create_task(fire(index))
        tasks.add(task)
        done.append(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*done)


# --- the LINE emulator, as its own process ----------------------------------------------------------------


@dataclass
class EmulatorProcess:
    process: asyncio.subprocess.Process
    url: str
    control: httpx.AsyncClient

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.control.get(f"/_emulator{path}", params=params)
        response.raise_for_status()
        return response.json()

    async def write(self, method: str, path: str, body: Any) -> Any:
        response = await self.control.request(method, f"/_emulator{path}", json=body)
        response.raise_for_status()
        return response.json()

    async def usage(self, channel: str) -> int:
        return int((await self.get(f"/channels/{channel}/usage"))["totalUsage"])

    async def accepted(self, channel: str, *endpoints: str) -> int:
        """Requests to ``endpoints`` (``push``, ``reply``…) on ``channel`` answered 200 so far."""
        total = 0
        for endpoint in endpoints:
            found = await self.get("/requests", channel=channel, endpoint=endpoint, status=200, limit=0)
            total += int(found["total"])
        return total

    async def requests(self, channel: str) -> list[dict[str, Any]]:
        """Every request on ``channel``, in arrival order, with ``wallTime`` and the ``recipients``."""
        found = await self.get("/requests", channel=channel, limit=10_000_000, recipients="true")
        return list(found["requests"])

    async def issue_reply_tokens(self, channel: str, tokens: Mapping[str, str], in_flight: int = 8) -> None:
        """Issue each ``{token: user}`` as LINE would with the webhook event (before the load starts)."""
        gate = asyncio.Semaphore(in_flight)

        async def one(token: str, user: str) -> None:
            async with gate:
                await self.write(
                    "POST", f"/channels/{channel}/reply-tokens", {"userId": user, "token": token}
                )

        await asyncio.gather(*(one(token, user) for token, user in tokens.items()))

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system


SEND_ENDPOINTS = ("reply", "push", "multicast")


@dataclass
class Calls:
    """What the emulator recorded for one channel: the count per ``endpoint status``, and per recipient its
    accepted sends and the first one's arrival (``wallTime``, seconds since the epoch) and endpoint."""

    statuses: dict[str, int] = field(default_factory=dict)
    accepted: Counter[str] = field(default_factory=Counter)
    first: dict[str, tuple[float, str]] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)  # error message -> count (4xx/5xx answers)

    @classmethod
    def of(cls, requests: Iterable[Mapping[str, Any]]) -> Calls:
        calls = cls()
        statuses: Counter[str] = Counter()
        refused: Counter[str] = Counter()
        for request in requests:
            statuses[f"{request['endpoint']} {request['status']}"] += 1
            if request["endpoint"] not in SEND_ENDPOINTS:
                continue
            if not request["accepted"]:
                refused[str(request["error"])] += 1
                continue
            for user in request.get("recipients", ()):
                calls.accepted[user] += 1
                calls.first.setdefault(user, (float(request["wallTime"]), str(request["endpoint"])))
        calls.statuses = dict(sorted(statuses.items()))
        calls.refused = dict(refused)
        return calls

    def count(self, suffix: str) -> int:
        """Requests whose ``endpoint status`` ends with ``suffix`` (`` 409``, ``reply 200``…)."""
        return sum(n for key, n in self.statuses.items() if key.endswith(suffix))


async def wait_for_calls(
    emulator: EmulatorProcess,
    channel: str,
    endpoints: Sequence[str],
    target: int,
    *,
    deadline: float,
    stall_s: float,
    label: str,
) -> str:
    """Poll the emulator until ``target`` calls to ``endpoints`` on ``channel`` were accepted: ``"done"``,
    ``"timed out"`` (``deadline``, a ``time.perf_counter()``) or ``"stalled"`` (none for ``stall_s``)."""
    seen, last_change, last_report = -1, time.perf_counter(), time.perf_counter()
    while True:
        now = time.perf_counter()
        count = await emulator.accepted(channel, *endpoints)
        if count != seen:
            seen, last_change = count, now
        if count >= target:
            return "done"
        if now > deadline:
            return "timed out"
        if now - last_change > stall_s:
            return "stalled"
        if now - last_report > 15:
            last_report = now
            print(f"  {label}: {count:,} / {target:,} calls accepted", flush=True)
        await asyncio.sleep(0.25)


@contextlib.asynccontextmanager
async def running_emulator(
    channels: Iterable[str], log_name: str, *, reply_token_ttl_s: float | None = None
) -> AsyncIterator[EmulatorProcess]:
    """``python -m tagline_line_emulator`` on a free port; each channel's access token is its channel id; log
    in ``.local/bench/<log_name>``. ``reply_token_ttl_s``: how long an issued reply token stays usable
    (the emulator's default, 30 s, when None)."""
    port = free_port()
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / log_name
    ttl = [] if reply_token_ttl_s is None else ["--reply-token-ttl-s", str(reply_token_ttl_s)]
    with log.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tagline_line_emulator",
            "--port",
            str(port),
            "--channels",
            json.dumps({channel: channel for channel in channels}),
            "--log-level",
            "warning",
            *ttl,
            cwd=ROOT,
            stdout=log_file,
            stderr=log_file,
        )
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=300.0) as control:
        emulator = EmulatorProcess(process, url, control)
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.returncode is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-3000:]
                    pytest.fail(f"the LINE emulator did not start (exit code {process.returncode}):\n{tail}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await control.get("/_emulator/health")).status_code == 200:
                        break
                await asyncio.sleep(0.2)
            yield emulator
        finally:
            await stop_process(process)


async def stop_process(process: asyncio.subprocess.Process, timeout_s: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``; returns once it is reaped."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()


# --- services as deployed ---------------------------------------------------------------------------------

SERVICE_SETTINGS: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "tagger": TaggerSettings,
    "sender": SenderSettings,
    "liveshop": LiveshopSettings,
}
WIRING = frozenset(
    {"PORT", "DATABASE", "GROUP_ID", "CHANNELS", "CHANNELS_FILE", "CHANNEL_SECRETS_FILE", "LINE_API_URL"}
    | {"POINTS_URL"}
)
"""The ``TAGLINE_<SERVICE>_*`` settings :class:`~tagline_testing.stack.Stack` gives a service to connect it
(ports, databases, channels, the emulator); every other one it sets is a test tuning."""


def as_deployed(stack: Stack, services: Iterable[str], overrides: Mapping[str, Mapping[str, str]]) -> None:
    """Undo the end-to-end tests' tunings of ``services`` (short polls and leases, a 3 s reply gather window,
    the sender's clock file…): each goes back to its setting's default, as ``python -m`` runs it in
    production. Then ``TAGLINE_<SERVICE>_*`` variables of this process's environment, then ``overrides``."""
    for name in services:
        settings = SERVICE_SETTINGS.get(name)
        if settings is None:
            continue
        env = stack.procs[name].env
        prefix = f"TAGLINE_{name.upper()}_"
        for key in [k for k in env if k.startswith(prefix) and k.removeprefix(prefix) not in WIRING]:
            default = settings.model_fields[key.removeprefix(prefix).lower()].get_default(
                call_default_factory=True
            )
            if default is None:
                del env[key]
            elif isinstance(default, bool | int | float | str):
                env[key] = str(default)
            else:
                raise AssertionError(f"{key}: cannot put back its default {default!r} as a variable")
        env.update({k: v for k, v in os.environ.items() if k.startswith(prefix)})
        env.update(overrides.get(name, {}))


@contextlib.asynccontextmanager
async def running_stack(
    *,
    kafka_bootstrap: str,
    mongodb_url: str,
    namespace: str,
    label: str,
    services: Sequence[str],
    channel_id: str,
    emulator: EmulatorProcess,
    overrides: Mapping[str, Mapping[str, str]] | None = None,
    channel_settings: Mapping[str, Any] | None = None,
) -> AsyncIterator[Stack]:
    """``services`` each as its own process (:class:`~tagline_testing.stack.Stack`, as the end-to-end tests
    start them) but with their deployed settings (:func:`as_deployed`), ``TAGLINE_TOPIC_PARTITIONS`` at its
    default, the sender calling ``emulator`` with ``channel_id`` as access token. Logs in
    ``.local/bench/<label>/<service>.log``. ``channel_settings``: more of the sender's settings for the
    channel (``marketing_headroom_ratio``…). Stopped (SIGTERM) and their databases dropped afterwards."""
    workdir = CACHE / label
    shutil.rmtree(workdir, ignore_errors=True)
    partitions = ServiceSettings.model_fields["topic_partitions"].get_default()
    config = StackConfig(
        kafka_bootstrap=kafka_bootstrap,
        mongodb_url=mongodb_url,
        namespace=namespace,
        workdir=workdir,
        channel_id=channel_id,
        access_token=channel_id,
        partitions=int(partitions),
    )
    stack = Stack(config)
    if channel_settings:
        channels = json.loads(stack.channels_file.read_text(encoding="utf-8"))
        channels[channel_id].update(channel_settings)
        stack.channels_file.write_text(json.dumps(channels), encoding="utf-8")
    wiring = {"sender": {"TAGLINE_SENDER_LINE_API_URL": emulator.url}}
    merged = {name: {**wiring.get(name, {}), **(overrides or {}).get(name, {})} for name in services}
    as_deployed(stack, services, merged)
    try:
        await stack.start(*services)
        yield stack
    finally:
        for name in reversed(services):
            stack.terminate(name)
        client: Any = create_mongo_client(mongodb_url, app_name="tagline-bench")
        try:
            for name in services:
                if name in SERVICE_SETTINGS and name != "ingest":
                    await client.drop_database(stack.database(name))
        finally:
            await client.close()


# --- the baseline: line-bot-sdk's push loop ---------------------------------------------------------------


@dataclass
class BaselineRun:
    sample: int
    seconds: float = 0.0
    accepted: int = 0
    delivered: int = 0
    cpu_s: float | None = None

    @property
    def recipients_per_s(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0


async def run_baseline(
    emulator: EmulatorProcess, recipients: list[str], *, channel: str, warm_up_channel: str, text: str
) -> BaselineRun:
    """One ``push_message`` per recipient, one after the other, as in line-bot-sdk's examples, on
    ``channel`` (a channel nothing else uses); one push on ``warm_up_channel`` first, not measured."""
    run = BaselineRun(len(recipients))
    me = psutil.Process()
    warm_up = Configuration(host=emulator.url, access_token=warm_up_channel)
    async with AsyncApiClient(warm_up) as client:  # first-call costs (imports, connection) not measured
        await AsyncMessagingApi(client).push_message(
            PushMessageRequest(to=recipients[0], messages=[TextMessage(text=text)])
        )
    config = Configuration(host=emulator.url, access_token=channel)
    async with AsyncApiClient(config) as client:
        api = AsyncMessagingApi(client)
        cpu_before = me.cpu_times()
        started = time.perf_counter()
        for user_id in recipients:
            await api.push_message(PushMessageRequest(to=user_id, messages=[TextMessage(text=text)]))
            run.accepted += 1
        run.seconds = time.perf_counter() - started
        cpu_after = me.cpu_times()
    run.cpu_s = cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system
    deliveries = await emulator.get(f"/channels/{channel}/deliveries")
    run.delivered = int(deliveries["recipients"])
    return run


# --- the report -------------------------------------------------------------------------------------------


def check(ok: bool) -> str:
    return "ok" if ok else "FAILED"


def table(rows: Sequence[tuple[str, str, str]]) -> str:
    """``figure  value  check`` rows, aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = [
        f"{'figure'.ljust(widths[0])}  {'value'.ljust(widths[1])}  check",
        "-" * (widths[0] + widths[1] + 9),
    ]
    lines += [f"{a.ljust(widths[0])}  {b.ljust(widths[1])}  {c}".rstrip() for a, b, c in rows]
    return "\n".join(lines)
