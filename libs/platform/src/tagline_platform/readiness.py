"""What a service's ``/readyz`` answers, the same way in every service, and a start that lets it answer.

A service is **ready** when it would process a record: its start-up has finished (its topics exist with a
leader for each partition, Kafka names a coordinator for its consumer groups, its clients are connected),
every one of its consumers has joined its group and received its first partition assignment (recorded by
:meth:`tagline_platform.consumers.ConsumerGroup.listener`; an empty assignment counts, as when there are more
instances than partitions), and Kafka and its database answer now. Until then ``/readyz`` answers 503 with the
reasons, e.g. ``not ready: starting (joining consumer groups); no partition assignment yet for consumer group
tagline-tagger-results``; later, a server that stops answering makes it 503 again, naming the server.

For ``/readyz`` to answer while a service starts, the start runs in the background of the app's lifespan
(:func:`start_in_background`): the HTTP server listens at once, ``/healthz`` answers 200 and ``/readyz`` 503.
A start that fails is logged and ends the process with status 1, the way SIGTERM does (what had started is
stopped); a test running the app in-process gets the failure from :meth:`Readiness.wait`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI, HTTPException

from tagline_platform.consumers import ConsumerMetrics
from tagline_platform.http_api import ErrorBody
from tagline_platform.shutdown import stop_process

log = logging.getLogger("tagline.readiness")

Probe = Callable[[], Awaitable[object]]
"""Asks a server whether it answers: it answers when the call returns anything but ``False`` in time."""


NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorBody,
        "description": "Not ready: still starting, a consumer group without its first assignment, or a "
        "server that does not answer (the reasons are in `detail`)",
    }
}


class NotReady(RuntimeError):
    """The service did not become ready (its start failed, or :meth:`Readiness.wait` timed out)."""


class Readiness:
    """The readiness of one service instance: its start, its consumer groups and its servers."""

    def __init__(self, consumers: ConsumerMetrics | None = None, *, probe_timeout_s: float = 2.0) -> None:
        self._consumers = consumers
        self._probe_timeout_s = probe_timeout_s
        self._probes: dict[str, Probe] = {}
        self._step = "starting"
        self._started = asyncio.Event()
        self._failure: BaseException | None = None

    def probe(self, name: str, check: Probe) -> None:
        """Ask ``check`` on every ``/readyz`` once started (e.g. ``"Kafka"``, ``"MongoDB"``)."""
        self._probes[name] = check

    def starting(self, step: str) -> None:
        """Say what the start is doing now (shown by ``/readyz`` until it has finished)."""
        self._step = step

    def started(self) -> None:
        self._started.set()

    def failed(self, exc: BaseException) -> None:
        self._failure = exc
        self._started.set()

    async def problems(self) -> list[str]:
        """Why the service is not ready (empty when it is)."""
        if self._failure is not None:
            return [f"start failed: {self._failure!r}"]
        found = [] if self._started.is_set() else [f"starting ({self._step})"]
        waiting = self._consumers.unassigned() if self._consumers is not None else []
        if waiting:
            found.append(f"no partition assignment yet for consumer group {', '.join(waiting)}")
        if self._started.is_set() and self._probes:
            answers = await asyncio.gather(*(self._ask(name, check) for name, check in self._probes.items()))
            found += [answer for answer in answers if answer is not None]
        return found

    async def _ask(self, name: str, check: Probe) -> str | None:
        try:
            async with asyncio.timeout(self._probe_timeout_s):
                if await check() is False:
                    return f"{name} does not answer"
        except TimeoutError:
            return f"{name} does not answer within {self._probe_timeout_s:g}s"
        except Exception as exc:
            return f"{name} does not answer: {exc!r}"
        return None

    async def wait(self, timeout_s: float = 60.0) -> None:
        """Return once the start has finished; raise :class:`NotReady` if it failed or took too long.

        For tests and tools that run the app in-process (a process is asked over ``/readyz``)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._started.wait()
        except TimeoutError:
            raise NotReady(f"not started within {timeout_s:g}s: {await self.problems()}") from None
        if self._failure is not None:
            raise NotReady("the start failed") from self._failure


def add_readyz(
    api: FastAPI,
    readiness: Readiness,
    details: Callable[[], dict[str, Any]] | None = None,
    **route: Any,
) -> None:
    """Register ``GET /readyz``: 200 ``{"status": "ready", **details()}``, or 503 with the reasons."""

    @api.get("/readyz", responses=NOT_READY, **route)
    async def readyz() -> dict[str, Any]:
        """Ready to process records: started, each of its consumer groups assigned, its servers answer.

        Otherwise 503, with the reasons in ``detail``."""
        problems = await readiness.problems()
        if problems:
            raise HTTPException(status_code=503, detail="not ready: " + "; ".join(problems))
        return {"status": "ready", **(details() if details is not None else {})}


@asynccontextmanager
async def start_in_background(
    readiness: Readiness, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
) -> AsyncIterator[None]:
    """The body of a service app's lifespan: ``start`` runs in the background (so the HTTP server answers
    meanwhile) and marks ``readiness`` started; ``stop`` runs at shutdown, also after a start that failed or
    was cut short by the shutdown (it must cope with a partial start)."""

    async def run() -> None:
        try:
            await start()
        except Exception as exc:
            log.exception("the start failed; the service stops")
            readiness.failed(exc)
            stop_process(1)
            return
        readiness.started()
        log.info("started")

    task = asyncio.create_task(run(), name="service-start")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await stop()
