"""Every Tagline service as its own OS process, for end-to-end tests and the chaos harness.

A :class:`Stack` runs the LINE API emulator, ingest, tagger, sender and liveshop exactly as ``make run`` does
(``python -m <package>``), against the given Kafka and MongoDB servers, with topics and databases under one
namespace so several stacks (or tests) never see each other's data. Each service gets a free port, its own
log file (``<workdir>/<service>.log``, appended across restarts) and can be killed (SIGKILL), stopped
(SIGTERM) and started again. The sender's clock can be moved forward through a file
(``TAGLINE_SENDER_CLOCK_OFFSET_FILE``), so journey steps days apart run in seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tagline_testing.metrics import samples
from tagline_testing.processes import free_port, is_error

SERVICES = ("line-emu", "ingest", "tagger", "sender", "liveshop")
MODULES = {
    "line-emu": "tagline_line_emulator",
    "ingest": "tagline_ingest",
    "tagger": "tagline_tagger",
    "sender": "tagline_sender",
    "liveshop": "tagline_liveshop",
}

log = logging.getLogger("tagline.testing.stack")


@dataclass
class Proc:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running and self.process is not None else None


@dataclass
class StackConfig:
    kafka_bootstrap: str
    mongodb_url: str
    namespace: str
    """Topic prefix (``t<id>.``); database names are derived from it."""
    workdir: Path
    channel_id: str = "1234567890"
    channel_secret: str = "0123456789abcdef0123456789abcdef"  # noqa: S105 - a test channel
    access_token: str = "e2e-token-1234567890"  # noqa: S105 - the sender's token; the emulator maps it to the id
    partitions: int = 3
    overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Extra environment per service name (wins over the defaults here)."""


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        config.workdir.mkdir(parents=True, exist_ok=True)
        self.clock_file = config.workdir / "sender-clock-offset"
        self.clock_file.write_text("0", encoding="utf-8")
        self._offset_s = 0.0
        # one file tells the sender its channel's access token and the emulator which channel that token is
        self.channels_file = config.workdir / "sender-channels.json"
        self.channels_file.write_text(
            json.dumps({config.channel_id: {"access_token": config.access_token, "timezone": "Asia/Taipei"}}),
            encoding="utf-8",
        )
        self.procs = {name: self._describe(name) for name in SERVICES}

    # ---- configuration -----------------------------------------------------------------------------------
    def database(self, service: str) -> str:
        return f"{self.config.namespace.rstrip('.').replace('.', '_')}_{service}"

    def _describe(self, name: str) -> Proc:
        c = self.config
        port = free_port()
        common = {
            "KAFKA_BOOTSTRAP_SERVERS": c.kafka_bootstrap,
            "MONGODB_URL": c.mongodb_url,
            "TAGLINE_TOPIC_NAMESPACE": c.namespace,
            "TAGLINE_TOPIC_PARTITIONS": str(c.partitions),
            "TAGLINE_LOG_LEVEL": "INFO",
        }
        env: dict[str, str]
        if name == "line-emu":
            env = {
                "TAGLINE_EMULATOR_HOST": "127.0.0.1",
                "TAGLINE_EMULATOR_PORT": str(port),
                "TAGLINE_EMULATOR_CHANNELS_FILE": str(self.channels_file),
            }
        elif name == "ingest":
            secrets = c.workdir / "channel-secrets.json"
            secrets.write_text(json.dumps({c.channel_id: c.channel_secret}), encoding="utf-8")
            env = {
                **common,
                "TAGLINE_INGEST_PORT": str(port),
                "TAGLINE_INGEST_CHANNEL_SECRETS_FILE": str(secrets),
            }
        elif name == "tagger":
            env = {
                **common,
                "TAGLINE_TAGGER_PORT": str(port),
                "TAGLINE_TAGGER_DATABASE": self.database("tagger"),
                "TAGLINE_TAGGER_GROUP_ID": f"{c.namespace}tagger",
                "TAGLINE_TAGGER_CHANNELS": json.dumps([c.channel_id]),
                "TAGLINE_TAGGER_RULES_REFRESH_S": "0.5",
            }
        elif name == "sender":
            env = {
                **common,
                "TAGLINE_SENDER_PORT": str(port),
                "TAGLINE_SENDER_DATABASE": self.database("sender"),
                "TAGLINE_SENDER_GROUP_ID": f"{c.namespace}sender",
                "TAGLINE_SENDER_CHANNELS_FILE": str(self.channels_file),
                "TAGLINE_SENDER_CLOCK_OFFSET_FILE": str(self.clock_file),
                "TAGLINE_SENDER_POLL_INTERVAL_S": "0.2",
                "TAGLINE_SENDER_QUOTA_REFRESH_S": "1",
                "TAGLINE_SENDER_JOURNEY_POLL_S": "0.5",
                "TAGLINE_SENDER_JOURNEY_REFRESH_S": "0.5",
                "TAGLINE_SENDER_RETRY_BASE_S": "0.2",
                "TAGLINE_SENDER_RETRY_CAP_S": "2",
                "TAGLINE_SENDER_REQUEST_TIMEOUT_S": "3",
                "TAGLINE_SENDER_LEASE_S": "10",
                # replies to one event meet even when the machine is busy with other tests (default 1 s)
                "TAGLINE_SENDER_REPLY_GATHER_MS": "3000",
            }
        else:
            env = {
                **common,
                "TAGLINE_LIVESHOP_PORT": str(port),
                "TAGLINE_LIVESHOP_DATABASE": self.database("liveshop"),
                "TAGLINE_LIVESHOP_GROUP_ID": f"{c.namespace}liveshop",
                "TAGLINE_LIVESHOP_POINTS_TIMEOUT_S": "2",
                "TAGLINE_LIVESHOP_LOCK_STALE_AFTER_S": "3",
            }
        env.update(c.overrides.get(name, {}))
        return Proc(name, port, env, c.workdir / f"{name}.log")

    def _link(self) -> None:
        """Point the sender (LINE API) and liveshop (POINTS gateway) at the emulator's port."""
        emu = self.procs["line-emu"].url
        self.procs["sender"].env.setdefault("TAGLINE_SENDER_LINE_API_URL", emu)
        self.procs["liveshop"].env.setdefault("TAGLINE_LIVESHOP_POINTS_URL", emu)

    def url(self, name: str) -> str:
        return self.procs[name].url

    # ---- the clock ---------------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Move the sender's clock forward (it reads the offset file on every use)."""
        self._offset_s += seconds
        self.clock_file.write_text(repr(self._offset_s), encoding="utf-8")

    # ---- processes ---------------------------------------------------------------------------------------
    def spawn(self, name: str) -> None:
        proc = self.procs[name]
        if proc.running:
            raise RuntimeError(f"{name} is already running")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAGLINE_")}
        env.update(proc.env)
        with proc.log_path.open("ab") as log:
            log.write(f"\n===== start #{proc.starts + 1} of {name} at {time.time():.3f}\n".encode())
            log.flush()
            proc.process = subprocess.Popen(
                [sys.executable, "-m", MODULES[name]],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc.starts += 1

    async def ready(self, name: str, timeout_s: float = 60.0) -> float:
        """Wait until ``name`` answers its readiness probe; returns the seconds waited."""
        proc = self.procs[name]
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if proc.process is not None and proc.process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.process.returncode}:\n{self.log_tail(name)}"
                    )
                try:
                    if (await client.get(proc.url + "/readyz")).status_code == 200:
                        return time.monotonic() - started
                except httpx.HTTPError:
                    pass
                if time.monotonic() - started > timeout_s:
                    raise TimeoutError(f"{name} not ready after {timeout_s:.0f}s:\n{self.log_tail(name)}")
                await asyncio.sleep(0.2)

    async def start(self, *names: str) -> None:
        self._link()
        for name in names or SERVICES:
            self.spawn(name)
        await asyncio.gather(*(self.ready(name) for name in names or SERVICES))

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown code runs (a crash, an OOM kill, a pulled plug)."""
        proc = self.procs[name]
        if proc.process is not None and proc.running:
            os.killpg(proc.process.pid, signal.SIGKILL)
            proc.process.wait(timeout=10)

    def terminate(self, name: str, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait (a deploy); SIGKILL after ``timeout_s``. Returns the exit code."""
        proc = self.procs[name]
        if proc.process is None or not proc.running:
            return proc.process.returncode if proc.process is not None else None
        proc.process.send_signal(signal.SIGTERM)
        try:
            return proc.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning(
                "%s did not stop within %.0f s of SIGTERM; killed. Its log ends with:\n%s",
                name,
                timeout_s,
                self.log_tail(name),
            )
            os.killpg(proc.process.pid, signal.SIGKILL)
            proc.process.wait(timeout=10)
            return None

    async def restart(self, name: str, *, kill: bool = True) -> float:
        """Kill (or stop) ``name`` and start it again; returns the seconds until it was ready."""
        self.kill(name) if kill else self.terminate(name)
        started = time.monotonic()
        self.spawn(name)
        await self.ready(name)
        return time.monotonic() - started

    def stop_all(self) -> None:
        for name in reversed(SERVICES):
            self.terminate(name, timeout_s=20.0)

    async def metric(self, name: str, metric: str, **labels: str) -> float | None:
        """The value of ``metric`` (a full Prometheus sample name) on ``name``'s ``/metrics``, summed over
        the samples whose labels include ``labels``; None when there is no such sample."""
        async with httpx.AsyncClient(timeout=5.0) as client:
            text = (await client.get(self.procs[name].url + "/metrics")).text
        values = [
            value
            for found, value in samples(text, metric)
            if all(found.get(k) == v for k, v in labels.items())
        ]
        return sum(values) if values else None

    def log_tail(self, name: str, lines: int = 40) -> str:
        try:
            text = self.procs[name].log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def errors_in_logs(self, names: Sequence[str] = SERVICES) -> dict[str, list[str]]:
        """Log lines at ERROR or worse (or tracebacks) per service, for a test's failure message."""
        found: dict[str, list[str]] = {}
        for name in names:
            try:
                text = self.procs[name].log_path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            bad = [line for line in text.splitlines() if _is_error(line)]
            if bad:
                found[name] = bad
        return found


def _is_error(line: str) -> bool:
    """A JSON log line that :func:`tagline_testing.processes.is_error` counts, or a bare traceback."""
    if line.startswith("{"):
        try:
            entry = json.loads(line)
        except ValueError:
            return False
        return isinstance(entry, dict) and is_error(entry)
    return line.startswith("Traceback")


class Client:
    """A small JSON client for one service's HTTP API that raises on unexpected statuses."""

    def __init__(self, base_url: str) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=15.0)

    async def call(
        self, method: str, path: str, expect: int | tuple[int, ...] = (200, 201, 202), **kw: Any
    ) -> Any:
        answer = await self._http.request(method, path, **kw)
        wanted = (expect,) if isinstance(expect, int) else expect
        if answer.status_code not in wanted:
            raise AssertionError(f"{method} {path} -> {answer.status_code}: {answer.text[:500]}")
        return answer.json() if answer.content else None

    async def session_orders(self, session_id: str) -> list[dict[str, Any]]:
        """Every order of a live session (liveshop's paged ``GET /sessions/{id}/orders``)."""
        found: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500} | ({"after": after} if after else {})
            page = await self.call("GET", f"/sessions/{session_id}/orders", params=params)
            found.extend(page["orders"])
            after = page["next_after"]
            if after is None:
                return found

    async def close(self) -> None:
        await self._http.aclose()
