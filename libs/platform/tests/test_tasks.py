"""Background jobs stop when asked, even when a job swallowed the cancellation; shutdown steps are bounded.

The hang these guard against: a sender's shutdown waited for ever on its ``quota-gauge`` job, whose task had
been cancelled once (``cancelling() == 1``) and yet went on looping, because the ``CancelledError`` got lost
inside PyMongo's ``asyncio.wait_for`` (Python 3.11, CPython gh-86296) and the job returned normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tagline_platform.mongo import create_mongo_client
from tagline_platform.tasks import await_chain, cancel_all, every, finish


async def _stopped(task: asyncio.Task[Any], within_s: float = 3.0) -> bool:
    """Whether ``task`` is done within ``within_s`` (never waits longer, whatever the task does)."""
    done, _ = await asyncio.wait({task}, timeout=within_s)
    return task in done


async def _run_until_waiting(job_started: asyncio.Event) -> None:
    await asyncio.wait_for(job_started.wait(), timeout=3)
    await asyncio.sleep(0)


async def test_every_stops_when_a_wait_for_in_its_job_swallowed_the_cancellation() -> None:
    """The real cause, without a database: the cancellation lands in the loop iteration in which the
    future that ``asyncio.wait_for`` waits for gets its result; 3.11's ``wait_for`` then returns it."""
    inner: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    started = asyncio.Event()
    outcomes: list[str] = []

    async def job() -> None:
        started.set()
        try:
            await asyncio.wait_for(inner, timeout=60)
        except asyncio.CancelledError:
            outcomes.append("cancelled")
            raise
        outcomes.append("returned")

    task = asyncio.create_task(every(3600, job), name="gauge")
    await _run_until_waiting(started)
    inner.set_result(None)  # the answer arrives ...
    task.cancel()  # ... and the shutdown asks the job to stop, before the task ran again
    try:
        assert await _stopped(task), f"every() went on after its task was cancelled: {await_chain(task)}"
        assert task.cancelled()
        if sys.version_info < (3, 12):
            assert outcomes == ["returned"]  # the job itself never saw the CancelledError
    finally:
        task.cancel()


async def test_every_stops_when_its_job_swallowed_the_cancellation() -> None:
    started = asyncio.Event()
    runs = 0

    async def job() -> None:
        nonlocal runs
        runs += 1
        started.set()
        if runs > 1:
            await asyncio.sleep(60)
        with contextlib.suppress(asyncio.CancelledError):  # what a careless library might do, once
            await asyncio.sleep(60)

    task = asyncio.create_task(every(0.01, job), name="gauge")
    await _run_until_waiting(started)
    task.cancel()
    try:
        assert await _stopped(task), f"every() went on after its task was cancelled: {await_chain(task)}"
        assert task.cancelled()
        assert runs == 1
    finally:
        task.cancel()


async def test_cancel_all_cancels_again_a_task_that_swallowed_the_first_cancellation() -> None:
    started = asyncio.Event()

    async def swallows_once() -> None:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(60)
        while True:  # a loop of its own, like every() before it learnt to check  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    task = asyncio.create_task(swallows_once(), name="stubborn")
    await _run_until_waiting(started)
    stopper = asyncio.create_task(cancel_all([task]))
    try:
        assert await _stopped(stopper, within_s=5), f"cancel_all still waiting on: {await_chain(task)}"
        assert task.cancelled()
        assert stopper.result() == []
    finally:
        stopper.cancel()
        task.cancel()


async def test_cancel_all_gives_up_on_a_task_that_never_stops_and_names_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()
    release = False

    async def never_stops() -> None:
        started.set()
        while not release:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)

    task = asyncio.create_task(never_stops(), name="immortal")
    try:
        await _run_until_waiting(started)
        began = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="tagline.tasks"):
            stopper = asyncio.create_task(cancel_all([task], timeout_s=0.5))
            assert await _stopped(stopper, within_s=5)
        assert stopper.result() == [task]
        assert time.monotonic() - began < 3
        warning = next(r for r in caplog.records if "did not stop" in r.getMessage())
        assert warning.__dict__["task"] == "immortal"
        assert any("never_stops" in line for line in warning.__dict__["waiting_in"])
    finally:
        release = True
        await _stopped(task)


async def test_finish_bounds_a_shutdown_step_and_names_it(caplog: pytest.LogCaptureFixture) -> None:
    release = False

    async def hangs() -> None:
        while not release:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)

    async def fails() -> None:
        raise RuntimeError("broker gone")

    async def closes() -> None:
        await asyncio.sleep(0)

    with caplog.at_level(logging.WARNING, logger="tagline.tasks"):
        began = time.monotonic()
        assert await finish("kafka consumer stop", hangs(), timeout_s=0.3) is False
        assert time.monotonic() - began < 2
        assert await finish("mongo close", fails()) is False
        assert await finish("line close", closes()) is True
    late = next(r for r in caplog.records if "did not finish" in r.getMessage())
    assert late.__dict__["step"] == "kafka consumer stop"
    assert any("in hangs" in line for line in late.__dict__["waiting_in"])
    failed = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert failed.__dict__["step"] == "mongo close" and "broker gone" in str(failed.exc_info)
    release = True  # the abandoned step may end now


async def test_await_chain_follows_an_async_with_down_to_the_line_that_waits() -> None:
    gate = asyncio.Event()

    @contextlib.asynccontextmanager
    async def service() -> AsyncIterator[None]:
        yield
        await gate.wait()  # a shutdown that waits

    async def a_test() -> None:
        async with service():
            pass

    task = asyncio.create_task(a_test())
    await asyncio.sleep(0.01)
    chain = await_chain(task)
    gate.set()
    await task
    assert [line.rsplit(" in ", 1)[1] for line in chain[:4]] == ["a_test", "__aexit__", "service", "wait"]
    assert chain[-1].startswith("awaiting ")


async def test_every_stops_when_pymongo_swallows_the_cancellation_of_a_new_connection(
    mongodb_url: str,
) -> None:
    """The hang as it happened, against the real server: a job's query that opens a new connection,
    cancelled at each loop iteration of its way (PyMongo connects inside ``asyncio.wait_for``; on 3.11 some of
    these offsets lose the ``CancelledError`` and the query returns normally)."""
    client = create_mongo_client(
        mongodb_url, app_name="tagline-tests", maxIdleTimeMS=1
    )  # a new one each time
    quota = client["tagline_tasks_test"]["quota"]
    await quota.find_one({"_id": "none"})  # the server is known: what follows is the connection and the query
    loop = asyncio.get_running_loop()
    swallowed = 0
    try:
        for offset in range(60):
            returned: list[bool] = []

            async def job(returned: list[bool] = returned) -> None:
                await quota.find_one({"_id": "none"})
                me = asyncio.current_task()
                returned.append(me is not None and me.cancelling() > 0)  # cancelled, yet here

            await asyncio.sleep(0.002)  # the pooled connection is idle for longer than maxIdleTimeMS
            task = asyncio.create_task(every(3600, job), name=f"gauge-{offset}")

            def cancel_later(n: int, task: asyncio.Task[None] = task) -> None:
                if n:
                    loop.call_soon(cancel_later, n - 1)
                else:
                    task.cancel()

            cancel_later(offset)
            try:
                assert await _stopped(task), f"offset {offset}: every() went on: {await_chain(task)}"
                swallowed += any(returned)
            finally:
                task.cancel()
    finally:
        await client.close()
    print(f"the query returned normally although cancelled at {swallowed} of 60 offsets")
