"""Background jobs of a service: run a coroutine every N seconds, stop the lot together; the clock."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, cast

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


STOP_TIMEOUT_S = 10.0
"""How long one step of a shutdown may take by default (:func:`cancel_all`, :func:`finish`)."""

RECANCEL_S = 1.0
""":func:`cancel_all` cancels a task again when it is still running this long after the last cancellation."""


async def every(interval_s: float, job: Callable[[], Awaitable[Any]]) -> None:
    """Run ``job`` now and then every ``interval_s`` seconds; a failure is logged and the job runs again.

    Stops when its task is cancelled, also when the cancellation arrived while ``job`` ran and ``job``
    swallowed it (see :func:`cancel_all`): ``Task.cancelling()`` still counts the request then, and the
    loop raises the ``CancelledError`` itself instead of going on for ever.
    """
    me = asyncio.current_task()
    while True:
        try:
            await job()
        except Exception:
            log.exception("background job failed; it runs again next time", extra={"job": job.__name__})
        if me is not None and me.cancelling():
            log.info("a background job swallowed its cancellation; stopping", extra={"job": job.__name__})
            raise asyncio.CancelledError
        await asyncio.sleep(interval_s)


async def cancel_all(
    tasks: Sequence[asyncio.Task[Any]], *, timeout_s: float = STOP_TIMEOUT_S
) -> list[asyncio.Task[Any]]:
    """Cancel ``tasks``, wait until each has stopped (at most ``timeout_s``); returns those still running.

    One ``CancelledError`` can get lost inside a task: on Python 3.11 ``asyncio.wait_for`` returns normally
    when the cancellation arrives in the same loop iteration as the result it waits for (CPython gh-86296,
    fixed in 3.12 by the rewrite of ``wait_for``), and PyMongo 4.20 awaits ``wait_for`` whenever it opens a
    connection (``pool_shared._async_create_connection``) or sends (``network_layer.async_sendall``). A task
    that swallowed its cancellation runs on, and awaiting it would wait for ever. So a task still running
    :data:`RECANCEL_S` after the last cancellation is cancelled again, and one still running at the deadline
    is left behind with a warning that names it and where it waits. A task that failed is logged.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    while pending and (left := deadline - loop.time()) > 0:
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_S, left))
        for task in pending:
            task.cancel()
    for task in tasks:
        if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background task failed", exc_info=exc, extra={"task": task.get_name()})
    late = [task for task in tasks if not task.done()]
    for task in late:
        log.warning(
            "background task did not stop when cancelled; left behind",
            extra={"task": task.get_name(), "timeout_s": timeout_s, "waiting_in": await_chain(task)},
        )
    return late


async def finish(
    what: str, step: Awaitable[Any], *, timeout_s: float | None = None, failure_level: int = logging.ERROR
) -> bool:
    """Await one step of a shutdown (a client's close, a broker's stop) for at most ``timeout_s`` (by default
    :data:`STOP_TIMEOUT_S`).

    Returns whether it completed. A step that takes longer is logged as a warning that names ``what`` and
    where it waits, then cancelled and left behind; a step that raises is logged with its traceback (at
    ``failure_level``: closing a client of a server known to be away is no error). Either
    way the caller goes on with its next step: one stuck client must not keep the others open, the process
    alive after SIGTERM, or a test waiting for ever. The step runs as a task of its own and is waited for with
    ``asyncio.wait``, so the bound holds even if the step swallows cancellations (``asyncio.timeout`` around
    it would wait for the step to give in).
    """
    timeout_s = STOP_TIMEOUT_S if timeout_s is None else timeout_s
    task = asyncio.ensure_future(step)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        log.warning(
            "step did not finish in time; going on without it",
            extra={"step": what, "timeout_s": timeout_s, "waiting_in": await_chain(task)},
        )
        task.cancel()
        return False
    if task.cancelled():
        log.warning("step was cancelled", extra={"step": what})
        return False
    if (exc := task.exception()) is not None:
        log.log(failure_level, "step failed; going on", exc_info=exc, extra={"step": what})
        return False
    return True


def log_stopped(logger: logging.Logger, finished: Iterable[bool]) -> None:
    """End a service's shutdown: ``stopped cleanly`` when every step finished, else a warning (each step that
    did not was named in its own log line, by :func:`finish` or :func:`cancel_all`)."""
    if all(finished):
        logger.info("stopped cleanly")
    else:
        logger.warning("stopped, but not every step finished (see the warnings above)")


def await_chain(task: asyncio.Future[Any]) -> list[str]:
    """Where a pending ``task`` waits: ``file:line in function`` per coroutine it awaits, outermost first.

    ``Task.get_stack()`` shows only the outermost coroutine of a suspended task; following ``cr_await`` down
    to the innermost coroutine shows the line that actually waits. An ``async with`` on an
    ``@asynccontextmanager`` awaits the generator's ``asend`` (which does not point back to the generator):
    the generator is found among the awaiting frame's locals. The last line is what the innermost coroutine
    awaits, when that is not a coroutine (a future, a task).
    """
    if not isinstance(task, asyncio.Task):
        return [repr(task)]
    lines: list[str] = []
    awaitable: Any = task.get_coro()
    for _ in range(200):
        frame = _frame_of(awaitable)
        if frame is None:
            lines.append(f"awaiting {awaitable!r}"[:300])
            break
        lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        inner = _awaited_by(awaitable)
        if inner is None:
            break
        if type(inner).__name__ in ("async_generator_asend", "async_generator_athrow"):
            inner = _suspended_async_generator(frame) or inner
        awaitable = inner
    return lines


def _frame_of(awaitable: Any) -> FrameType | None:
    for name in ("cr_frame", "ag_frame", "gi_frame"):
        frame = getattr(awaitable, name, None)
        if frame is not None:
            return cast(FrameType, frame)
    return None


def _awaited_by(awaitable: Any) -> Any:
    for name in ("cr_await", "ag_await", "gi_yieldfrom"):
        inner = getattr(awaitable, name, None)
        if inner is not None:
            return inner
    return None


def _suspended_async_generator(frame: FrameType) -> Any:
    """The async generator that ``frame`` drives (an ``asend`` in progress), found in its locals."""
    candidates = list(frame.f_locals.values())
    owner = frame.f_locals.get("self")
    if owner is not None and hasattr(owner, "__dict__"):
        candidates += list(vars(owner).values())
    for value in candidates:
        if inspect.isasyncgen(value) and value.ag_running and value.ag_await is not None:
            return value
    return None
