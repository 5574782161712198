"""DocumentLock against the real FerretDB: read-check-write under the lock never overshoots."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from tagline_platform.mongo import DocumentLock, LockTimeout

pytestmark = pytest.mark.integration


async def test_racing_reservations_under_the_lock_never_exceed_the_counter(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    await mongo_db.counter.insert_one({"_id": "c", "remaining": 50})
    lock = DocumentLock(mongo_db.locks)

    async def reserve() -> bool:
        async with lock.hold("c"):
            doc = await mongo_db.counter.find_one({"_id": "c"})
            assert doc is not None
            if doc["remaining"] < 5:
                return False
            await mongo_db.counter.update_one({"_id": "c"}, {"$inc": {"remaining": -5}})
            return True

    results = await asyncio.gather(*(reserve() for _ in range(40)))
    assert sum(results) == 10
    assert (await mongo_db.counter.find_one({"_id": "c"}) or {})["remaining"] == 0
    assert await mongo_db.locks.count_documents({}) == 0  # every lock released


async def test_a_lock_left_by_a_crashed_holder_is_taken_over(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415

    await mongo_db.locks.insert_one(
        {"_id": "x", "token": "dead", "taken_at": datetime.now(UTC) - timedelta(minutes=1)}
    )
    async with DocumentLock(mongo_db.locks, stale_after_s=5).hold("x"):
        held = await mongo_db.locks.find_one({"_id": "x"})
        assert held is not None and held["token"] != "dead"


async def test_a_held_lock_times_out_with_a_clear_error(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    lock = DocumentLock(mongo_db.locks, timeout_s=0.2)
    async with lock.hold("y"):
        with pytest.raises(LockTimeout, match="'y' still held"):
            async with lock.hold("y"):
                pass
