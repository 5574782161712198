"""Process helpers for tests and benchmarks: services as processes, free ports, listeners, CPU time."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import psutil

from tagline_testing.waiting import eventually


class ServiceProcess:
    """A service run as ``python -m tagline_<service>`` on a free port, its JSON log lines kept in a file."""

    def __init__(self, service: str, env: Mapping[str, str], log_dir: Path) -> None:
        self.service = service
        self.port = free_port()
        self.log_path = log_dir / f"{service}-{self.port}.log"
        with self.log_path.open("wb") as out:  # a file, not a pipe: a full pipe would block the service
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"tagline_{service}"],
                env={**os.environ, **env, f"TAGLINE_{service.upper()}_PORT": str(self.port)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def get(self, path: str) -> httpx.Response | None:
        """``GET path`` on the service; ``None`` while it does not answer."""
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as client:
                return await client.get(path)
        except httpx.HTTPError:
            return None

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        async def ready() -> bool:
            assert self.process.poll() is None, f"{self.service} exited early:\n{self.output()}"
            response = await self.get("/readyz")
            return response is not None and response.status_code == 200

        await eventually(ready, timeout_s, f"{self.service} /readyz", interval_s=0.1)

    def terminate(self, timeout_s: float = 20.0) -> tuple[int, float]:
        """SIGTERM, then wait: the exit status and the seconds it took (AssertionError if it is too late)."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.service} still running {timeout_s:.0f} s after SIGTERM") from None
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)  # SIGKILL cannot be ignored: a process still there is worth an error

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines (any other output is returned as ``{"raw": line}``)."""
        entries: list[dict[str, Any]] = []
        for line in self.output().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            entries.append(entry if isinstance(entry, dict) else {"raw": line})
        return entries


def is_error(entry: dict[str, Any]) -> bool:
    """A JSON log entry at error level or worse: a test fails on every one, whatever logged it.

    aiokafka's error-level lines at a clean start had causes, now removed where they arose: a topic used
    before Kafka's metadata listed it or its leader served it (``tagline_platform.kafka.ensure_topics`` waits
    for both) and a consumer group joined before Kafka had a group coordinator (``wait_for_coordinators``,
    and ``deploy/local/infra.py``'s probe). What is left at error level is an error.
    """
    return entry.get("level") in ("error", "critical")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listener_pid(address: str) -> int | None:
    """The process listening on the port of ``host:port[,…]`` or ``mongodb://host:port/`` (or None)."""
    port = int(address.rstrip("/").split(",", maxsplit=1)[0].rpartition(":")[2])
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return conn.pid
    return None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process so far (None if unknown or gone)."""
    if pid is None:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system
