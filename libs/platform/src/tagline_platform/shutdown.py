"""Graceful shutdown of a service process: SIGTERM (or Ctrl-C) stops it cleanly, and it then exits 0.

uvicorn turns SIGTERM into a graceful shutdown (the app's lifespan stops the service: in-flight handlers
finish and commit, clients close) and afterwards raises the signal again with the handler that was installed
before it started. With the default handler the process would then die "killed by SIGTERM" (exit status 143)
although it stopped cleanly, which orchestrators report as a failure. :func:`exit_zero_on_sigterm` installs a
handler that ends the process with status 0 instead. Before uvicorn runs (while the app is being built) the
same handler ends the process at once, which is right then: nothing has started.
"""

from __future__ import annotations

import signal
from types import FrameType


def _exit_zero(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def exit_zero_on_sigterm() -> None:
    """Call once in ``main()`` before ``uvicorn.run``."""
    signal.signal(signal.SIGTERM, _exit_zero)
