"""Background jobs of a service: run a coroutine every N seconds, stop the lot together; the clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("tagline.tasks")


def utc_now() -> datetime:
    """The real clock; services take a ``clock`` so tests can move time."""
    return datetime.now(UTC)


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
