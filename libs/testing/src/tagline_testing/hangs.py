"""What a hung test leaves behind as evidence, and how it is stopped (the per-test timeout's watchdog).

pytest-timeout (pinned in the root ``pyproject.toml``, configured in its ``[tool.pytest.ini_options]``)
decides *when* a test has run too long; :mod:`tagline_testing.plugin` takes over *what happens then* through
pytest-timeout's ``pytest_timeout_set_timer`` / ``pytest_timeout_cancel_timer`` hooks, because pytest-timeout
alone cannot show where a hung *async* test waits: its stack dump lists threads, and an idle event loop's
thread shows only ``selector.select()``. The wait is in the await chains of the loop's tasks. So on expiry
(SIGALRM, in the main thread) :class:`Watchdog`

1. prints the stack of every thread and the await chain of every task of the running event loop;
2. cancels the task the loop is running for pytest (the test, or an async fixture), as Ctrl-C would: the test
   fails with ``CancelledError: Timeout …`` and unwinds its ``async with`` blocks and fixtures, so the run
   goes on cleanly;
3. if that task is still running :data:`CANCEL_GRACE_S` later (it swallowed the cancellation, or is stuck in
   synchronous code), fails the test from the signal handler as pytest-timeout does, leaving it behind;
4. if the test still has not ended :data:`EXIT_GRACE_S` after that (the main thread does not run Python code,
   so no signal handler gets to run), a thread prints the stacks again and ends pytest with exit status 1.

A synchronous test goes from 1 straight to 3.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterable
from types import FrameType
from typing import Any

import pytest
import pytest_timeout

from tagline_platform.tasks import await_chain

CANCEL_GRACE_S = 10.0
"""How long a timed-out test's task has to unwind after its cancellation before the test is failed anyway."""

EXIT_GRACE_S = 60.0
"""How long after that a test that still has not ended may take before pytest is ended (exit status 1)."""


def thread_stacks(current: FrameType | None = None) -> str:
    """The stack of every thread; ``current`` is where the calling thread is (a signal handler's frame)."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    me = threading.get_ident()
    parts = []
    for ident, frame in sys._current_frames().items():
        shown = current if ident == me and current is not None else frame
        parts.append(f"--- thread {names.get(ident, '?')} ({ident}) ---\n")
        parts.append("".join(traceback.format_stack(shown)))
    return "".join(parts)


def task_stacks(loops: Iterable[asyncio.AbstractEventLoop]) -> str:
    """Every pending task of ``loops``: its repr (state, what it waits for) and its await chain."""
    parts = []
    for loop in loops:
        try:
            tasks = sorted(asyncio.all_tasks(loop), key=lambda task: task.get_name())
        except RuntimeError:  # the set changed under us (another thread's dump): one more time
            tasks = sorted(asyncio.all_tasks(loop), key=lambda task: task.get_name())
        parts.append(f"--- event loop {loop!r}: {len(tasks)} tasks ---\n")
        for task in tasks:
            parts.append(f"{task!r}\n  cancelling={task.cancelling()}\n")
            parts.extend(
                f"  {'' if line.startswith('awaiting') else 'at '}{line}\n" for line in await_chain(task)
            )
    return "".join(parts)


def open_loops() -> list[asyncio.AbstractEventLoop]:
    """Every event loop of this process that is not closed (found by the garbage collector: for a thread
    other than the loop's, there is no other way)."""
    return [
        obj for obj in gc.get_objects() if isinstance(obj, asyncio.AbstractEventLoop) and not obj.is_closed()
    ]


def _awaited_by_run_until_complete(frame: FrameType | None) -> asyncio.Future[Any] | None:
    """The future that ``loop.run_until_complete`` waits for, found on the calling thread's stack.

    pytest-asyncio runs each test and async fixture through ``asyncio.Runner.run`` →
    ``loop.run_until_complete(task)``; the signal handler interrupts somewhere below that frame."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "run_until_complete" and code.co_filename.endswith(
            os.path.join("asyncio", "base_events.py")
        ):
            future = frame.f_locals.get("future")
            return future if isinstance(future, asyncio.Future) else None
        frame = frame.f_back
    return None


class Watchdog:
    """One test's timeout (see the module's docstring). ``arm()`` before the test, ``disarm()`` after it."""

    def __init__(self, item: pytest.Item, timeout_s: float, *, detect_debugger: bool = True) -> None:
        self.item = item
        self.timeout_s = timeout_s
        self.detect_debugger = detect_debugger
        self.fired = False
        self.reported = False
        self._cancelled: asyncio.Future[Any] | None = None
        self._last_resort: threading.Timer | None = None

    def arm(self) -> None:
        signal.signal(signal.SIGALRM, self._on_alarm)
        signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
        self._last_resort = threading.Timer(self.timeout_s + CANCEL_GRACE_S + EXIT_GRACE_S, self._end_pytest)
        self._last_resort.name = f"tagline timeout watchdog {self.item.nodeid}"
        self._last_resort.daemon = True
        self._last_resort.start()

    def disarm(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        if self._last_resort is not None:
            self._last_resort.cancel()

    def _write(self, title: str, text: str) -> None:
        terminal = self.item.config.get_terminal_writer()
        terminal.line()
        terminal.sep("+", title)
        terminal.write(text)
        terminal.sep("+", title)
        terminal.flush()

    def _on_alarm(self, _signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        if self.detect_debugger and pytest_timeout.is_debugging():
            return  # as pytest-timeout does: a breakpoint is not a hang
        if not self.fired:  # the timeout: evidence, then cancel the test's task and give it time to unwind
            self.fired = True
            loop = asyncio._get_running_loop()
            self._write(
                f"Timeout: {self.item.nodeid} ran longer than {self.timeout_s:g} s",
                "Stacks of every thread:\n"
                + thread_stacks(frame)
                + ("\nTasks of the running event loop:\n" + task_stacks([loop]) if loop else ""),
            )
            target = _awaited_by_run_until_complete(frame) if loop is not None else None
            if loop is not None and target is not None and not target.done():
                self._cancelled = target
                target.cancel(msg=f"Timeout: the test ran longer than {self.timeout_s:g} s")
                loop.call_soon_threadsafe(lambda: None)  # wakes an idle loop up: select() would sleep on
                signal.setitimer(signal.ITIMER_REAL, CANCEL_GRACE_S)
                return
            pytest.fail(f"Timeout: the test ran longer than {self.timeout_s:g} s", pytrace=False)
        if self._cancelled is not None and self._cancelled.done():
            return  # the test's task stopped; its fixtures are torn down now (the last resort still watches)
        loop = asyncio._get_running_loop()
        self._write(
            f"Timeout: {self.item.nodeid} did not stop within {CANCEL_GRACE_S:g} s of its cancellation",
            "Stacks of every thread:\n"
            + thread_stacks(frame)
            + ("\nTasks of the running event loop:\n" + task_stacks([loop]) if loop else ""),
        )
        pytest.fail(
            f"Timeout: the test ran longer than {self.timeout_s:g} s and did not stop within"
            f" {CANCEL_GRACE_S:g} s of its cancellation (left behind)",
            pytrace=False,
        )

    def _end_pytest(self) -> None:
        """Runs in the watchdog's own thread: the main thread did not get to run a signal handler."""
        try:
            capture = self.item.config.pluginmanager.getplugin("capturemanager")
            if capture is not None:
                capture.suspend_global_capture(in_=True)
            text = "Stacks of every thread:\n" + thread_stacks()
            try:
                text += "\nTasks of every open event loop:\n" + task_stacks(open_loops())
            except Exception as exc:  # the loop runs in another thread: a dump is a best effort
                text += f"\n(tasks not listed: {exc!r})\n"
            self._write(
                f"Timeout: {self.item.nodeid} is still running"
                f" {self.timeout_s + CANCEL_GRACE_S + EXIT_GRACE_S:g} s after it started; ending pytest",
                text,
            )
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
