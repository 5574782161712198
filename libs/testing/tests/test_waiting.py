"""``eventually`` gives up at its deadline, and on a check that never returns soon after."""

from __future__ import annotations

import asyncio
import time

import pytest

from tagline_testing.waiting import eventually


async def test_a_check_that_never_returns_fails() -> None:
    async def never() -> bool:
        await asyncio.Event().wait()
        return True

    began = time.monotonic()
    checking = asyncio.create_task(eventually(never, timeout_s=0.5, what="a reply"))
    done, _ = await asyncio.wait({checking}, timeout=10)
    assert checking in done, "eventually() is still waiting for the check"
    with pytest.raises(AssertionError, match=r"waiting for a reply \(the check itself did not return"):
        checking.result()
    assert time.monotonic() - began < 5  # the deadline, and as long again for the check in progress


async def test_a_false_check_fails_at_the_deadline_and_a_true_one_passes() -> None:
    with pytest.raises(AssertionError, match="waiting for the condition"):
        await eventually(lambda: False, timeout_s=0.2)
    await eventually(lambda: True, timeout_s=0.2)
