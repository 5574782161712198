"""The sender's member projection against FerretDB: big batches of changes to existing members are applied."""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from tagline_contracts.members import ChangeKind, FollowState, MemberChanged, MemberSnapshot
from tagline_sender.adapters.mongo import SenderStore


def change(user_id: str, version: int, state: FollowState) -> MemberChanged:
    return MemberChanged(
        user_id=user_id,
        version=version,
        changes=[ChangeKind.FOLLOWED if state is FollowState.FOLLOWED else ChangeKind.BLOCKED],
        snapshot=MemberSnapshot(user_id=user_id, follow_state=state),
    )


async def test_hundreds_of_changes_to_existing_members_apply_and_stale_ones_do_not(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    store = SenderStore(mongo_db)
    users = [f"U{i:04d}" for i in range(300)]
    async with asyncio.timeout(60):
        assert (
            await store.apply_member_changes("C1", [change(u, 1, FollowState.FOLLOWED) for u in users]) == 300
        )
        blocked = [change(u, 2, FollowState.BLOCKED) for u in users]
        assert await store.apply_member_changes("C1", blocked) == 300  # 300 existing documents in one call
        stale = [change(u, 1, FollowState.FOLLOWED) for u in users]
        assert await store.apply_member_changes("C1", stale) == 0
        assert len(await store.blocked_ids("C1")) == 300
