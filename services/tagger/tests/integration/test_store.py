"""The member store against FerretDB: big batches of existing members are written (FerretDB used to hang)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from tagline_tagger.adapters.mongo import TaggerStore
from tagline_tagger.domain.member import Member


async def test_a_batch_of_hundreds_of_existing_members_is_written(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    store = TaggerStore(mongo_db)
    now = datetime.now(UTC)
    members = [Member("C1", f"U{i:04d}", created_at=now) for i in range(300)]
    async with asyncio.timeout(60):
        await store.save_members(members, now)  # inserts
        for member in members:
            member.version = 2
        await store.save_members(members, now)  # 300 replacements of existing documents in one call
        loaded = await store.load_members(m.key for m in members)
    assert len(loaded) == 300
    assert {m.version for m in loaded.values()} == {2}
