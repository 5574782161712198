"""Member counts (tag coverage) kept as counters: exact under concurrent writers, and across a batch that is
written but whose counting fails (the replay counts it once)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from tagline_platform.mongo import create_mongo_client
from tagline_tagger.adapters.mongo import TaggerStore

Eventually = Callable[..., Awaitable[None]]
CHANNEL = "1234567890"


async def test_counts_added_by_two_store_instances_at_once_are_exact(
    mongo_db: AsyncDatabase[dict[str, Any]], mongodb_url: str
) -> None:
    """Every pipeline instance adds to its channel's one counts document (``$inc``): nothing may be lost."""
    clients = [create_mongo_client(mongodb_url, app_name=f"tagline-tests-{n}") for n in range(2)]
    stores = [TaggerStore(client[mongo_db.name]) for client in clients]
    now = datetime.now(UTC)
    each = 60
    try:
        await asyncio.gather(
            *(
                store.add_counts(
                    CHANNEL,
                    {("members", "followed"): 1, ("tagged", ""): 1, ("by_tag", "v.i.p $"): 1},
                    {f"line_events_v1:{n}": i},
                    now,
                )
                for n, store in enumerate(stores)
                for i in range(each)
            )
        )
        counts = await stores[0].load_counts(CHANNEL)
    finally:
        for client in clients:
            await client.close()
    assert counts.members == {"followed": 2 * each}
    assert counts.tagged == 2 * each
    assert counts.by_tag == {"v.i.p $": 2 * each}  # a tag name with "." and "$" is a field name safely
    assert counts.through == {"line_events_v1:0": each - 1, "line_events_v1:1": each - 1}
    assert counts.since == now.replace(microsecond=now.microsecond // 1000 * 1000)


async def test_a_batch_written_but_not_counted_is_counted_once_when_it_is_replayed(
    start_tagger: Any, inputs: Any, eventually: Eventually
) -> None:
    async with start_tagger() as tagger:
        store: TaggerStore = tagger.service.store
        real = store.add_counts
        failures = 0

        async def fail_once(*args: Any, **kwargs: Any) -> None:
            nonlocal failures
            if failures == 0:
                failures += 1
                raise RuntimeError("the counts update failed after the members were written")
            await real(*args, **kwargs)

        store.add_counts = fail_once  # type: ignore[method-assign]
        users = [f"R{i}" for i in range(6)]
        await inputs.events(*(inputs.line.follow(user) for user in users))
        await inputs.update({"user_id": "R0", "tags_add": [{"name": "vip"}]})
        await inputs.update({"user_id": "R1", "tags_add": [{"name": "vip", "origin": "import"}]})

        async def counted() -> bool:
            counts = await store.load_counts(CHANNEL)
            return counts.members.get("followed") == len(users) and counts.tagged == 2

        await eventually(counted, 30, "every member counted")
        assert failures == 1
        await asyncio.sleep(1.0)  # a second counting of the replayed batch would land now
        coverage = (await tagger.client.get(f"/channels/{CHANNEL}/coverage")).json()
        assert (coverage["followed"], coverage["tagged"]) == (len(users), 2)
        assert coverage["by_tag"]["vip"]["members"] == 2
        assert coverage["by_origin"]["manual"]["members"] == 1
        assert coverage["by_origin"]["import"]["members"] == 1
