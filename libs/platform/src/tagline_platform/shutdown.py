"""Graceful shutdown of a service process: SIGTERM (or Ctrl-C) stops it cleanly, and it then exits 0.

uvicorn turns SIGTERM into a graceful shutdown (the app's lifespan stops the service: in-flight handlers
finish and commit, clients close) and afterwards raises the signal again with the handler that was installed
before it started. With the default handler the process would then die "killed by SIGTERM" (exit status 143)
although it stopped cleanly, which orchestrators report as a failure. :func:`exit_zero_on_sigterm` installs a
handler that ends the process with status 0 instead. Before uvicorn runs (while the app is being built) the
same handler ends the process at once, which is right then: nothing has started.

:func:`stop_process` is how a service ends itself when its start fails in the background
(:func:`tagline_platform.readiness.start_in_background`): the same graceful shutdown, then exit status 1.
"""

from __future__ import annotations

import signal
from types import FrameType

_exit_status = 0
_installed = False


def _exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(_exit_status)


def exit_zero_on_sigterm() -> None:
    """Call once in ``main()`` before ``uvicorn.run``."""
    global _installed  # noqa: PLW0603 - one process-wide signal disposition
    signal.signal(signal.SIGTERM, _exit)
    _installed = True


def stop_process(status: int) -> None:
    """Shut this service process down as SIGTERM does (uvicorn stops the app gracefully), then exit with
    ``status``. Does nothing where :func:`exit_zero_on_sigterm` was not called (an app run in-process)."""
    global _exit_status  # noqa: PLW0603 - read by the SIGTERM handler
    if not _installed:
        return
    _exit_status = status
    signal.raise_signal(signal.SIGTERM)
