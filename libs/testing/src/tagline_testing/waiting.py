"""Waiting for asynchronous effects in tests and benchmarks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], Awaitable[bool] | bool],
    timeout_s: float = 20.0,
    what: str = "",
    interval_s: float = 0.05,
) -> None:
    """Poll ``check`` (sync or async) until it is true; fail with ``what`` after ``timeout_s``.

    An async ``check`` that does not return is given up on too (cancelled): one that started before the
    deadline may take ``timeout_s`` more (a slow answer under load still counts), not for ever."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if not isinstance(result, bool):
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0) + timeout_s):
                    result = await result
            except TimeoutError:
                raise AssertionError(
                    f"timed out after {timeout_s:.0f} s waiting for {what or 'the condition'}"
                    f" (the check itself did not return, not even {timeout_s:.0f} s later)"
                ) from None
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what or 'the condition'}")
        await asyncio.sleep(interval_s)
