"""A hung test fails within its timeout, with the stacks of every thread and asyncio task in the output, and
the run goes on (or, when no Python code can run any more, ends)."""

from __future__ import annotations

import time

import pytest

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
timeout = 2
"""

SHORT_GRACES = """
import tagline_testing.hangs

tagline_testing.hangs.CANCEL_GRACE_S = 1.0
tagline_testing.hangs.EXIT_GRACE_S = 1.0
"""


def _run(pytester: pytest.Pytester, tests: str) -> tuple[pytest.RunResult, float]:
    pytester.makeini(INI)
    pytester.makeconftest(SHORT_GRACES)
    pytester.makepyfile(test_tiny=tests)
    started = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=90)
    return result, time.monotonic() - started


def test_a_hanging_async_test_fails_with_its_await_chain_and_the_run_goes_on(
    pytester: pytest.Pytester,
) -> None:
    result, took = _run(
        pytester,
        """
import asyncio
import contextlib


async def wait_for_a_reply_that_never_comes():
    await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def service():
    yield
    await wait_for_a_reply_that_never_comes()  # a shutdown that hangs


async def test_hangs():
    async with service():
        pass


def test_runs_afterwards():
    pass
""",
    )
    out = result.stdout.str()
    result.assert_outcomes(failed=1, passed=1)
    assert "Timeout: test_tiny.py::test_hangs ran longer than 2 s" in out
    assert "Stacks of every thread:" in out and "--- thread MainThread" in out
    assert "Tasks of the running event loop:" in out
    assert "in wait_for_a_reply_that_never_comes" in out  # the hanging coroutine, through the async with
    assert "CancelledError: Timeout: the test ran longer than 2 s" in out
    assert took < 30


def test_a_test_that_swallows_its_cancellation_is_failed_anyway(pytester: pytest.Pytester) -> None:
    result, took = _run(
        pytester,
        """
import asyncio


async def test_stubborn():
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass


def test_runs_afterwards():
    pass
""",
    )
    out = result.stdout.str()
    assert result.ret == 1
    assert "FAILED test_tiny.py::test_stubborn - Failed: Timeout" in out
    assert "did not stop within 1 s of its cancellation" in out
    assert "in test_stubborn" in out
    # The task is left behind: closing the session's loop (in the last test's teardown) waits for it in vain
    # until that test's timeout too. The run ends either way.
    assert took < 30


def test_a_test_that_swallows_its_cancellation_and_then_passes_fails(pytester: pytest.Pytester) -> None:
    result, _ = _run(
        pytester,
        """
import asyncio


async def test_deaf_once():
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        pass  # and then it goes on and passes
""",
    )
    result.assert_outcomes(failed=1)
    assert "Timeout: the test ran longer than 2 s" in result.stdout.str()


def test_a_hanging_synchronous_test_fails_with_its_thread_stack(pytester: pytest.Pytester) -> None:
    result, took = _run(
        pytester,
        """
import time


def test_sleeps():
    time.sleep(3600)


def test_runs_afterwards():
    pass
""",
    )
    out = result.stdout.str()
    result.assert_outcomes(failed=1, passed=1)
    assert "--- thread MainThread" in out
    assert "in test_sleeps" in out and "time.sleep(3600)" in out
    assert "Failed: Timeout: the test ran longer than 2 s" in out
    assert took < 30


def test_pytest_ends_when_no_signal_handler_can_run(pytester: pytest.Pytester) -> None:
    result, took = _run(
        pytester,
        """
import signal
import time


def test_deaf():
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])  # like a thread stuck in C code
    time.sleep(3600)
""",
    )
    out = result.stdout.str()
    assert result.ret == 1
    assert "is still running 4 s after it started; ending pytest" in out
    assert "in test_deaf" in out
    assert took < 30
