"""Background jobs of a service: run a coroutine every N seconds, stop the lot together; the clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger("tagline.tasks")


def utc_now() -> datetime:
    """The real clock; services take a ``clock`` so tests can move time."""
    return datetime.now(UTC)


def offset_clock(path: Path) -> Callable[[], datetime]:
    """The real clock moved by the number of seconds written in ``path`` (read on every call).

    For end-to-end tests and demos of time-driven features (journey steps days apart) with the service
    running as its own process: write ``86400`` to the file and it is tomorrow. A missing or empty file
    means no offset; anything else unreadable is an error (a clock must not silently be wrong).
    """

    def now() -> datetime:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            text = ""
        return utc_now() + timedelta(seconds=float(text)) if text else utc_now()

    return now


async def every(interval_s: float, job: Callable[[], Awaitable[Any]]) -> None:
    """Run ``job`` now and then every ``interval_s`` seconds; a failure is logged and the job runs again."""
    while True:
        try:
            await job()
        except Exception:
            log.exception("background job failed; it runs again next time", extra={"job": job.__name__})
        await asyncio.sleep(interval_s)


async def cancel_all(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has stopped."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
