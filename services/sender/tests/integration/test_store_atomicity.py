"""The sender's stores against the real server, raced from two clients (two instances): the guarantees that
now come from the database's atomic conditional updates, with no lock around them.

These need a server that applies a conditional update atomically (MongoDB; FerretDB with the project's
patches on PostgreSQL). Stock FerretDB reads, changes and writes back without isolation and loses them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from tagline_platform.mongo import create_mongo_client
from tagline_sender.adapters.journeys import JourneyStore
from tagline_sender.adapters.mongo import SenderStore

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
LEDGER = "C1:2026-12"


@pytest.fixture
async def two_dbs(
    mongo_db: AsyncDatabase[dict[str, Any]], mongodb_url: str
) -> AsyncIterator[tuple[AsyncDatabase[dict[str, Any]], AsyncDatabase[dict[str, Any]]]]:
    """The test's database through two clients of their own, as two sender instances see it."""
    clients = [create_mongo_client(mongodb_url, app_name=f"instance-{i}") for i in range(2)]
    try:
        yield clients[0][mongo_db.name], clients[1][mongo_db.name]
    finally:
        for client in clients:
            await client.close()


def _delivery(n: int) -> dict[str, Any]:
    return {
        "_id": f"C1:race:{n:06d}",
        "send_id": "C1:race",
        "channel_id": "C1",
        "partition": 0,
        "state": "pending",
        "next_attempt_at": NOW,
        "created_at": NOW,
    }


async def test_the_quota_is_never_oversold_by_reservations_from_two_instances(
    two_dbs: tuple[AsyncDatabase[dict[str, Any]], AsyncDatabase[dict[str, Any]]],
) -> None:
    stores = [SenderStore(db) for db in two_dbs]
    await stores[0].ensure_ledger(LEDGER, "C1", "2026-12", 50)
    # 60 reservations of 5 on a ledger of 50, half from each instance, all at once: exactly 10 fit
    taken = await asyncio.gather(*(stores[i % 2].reserve(LEDGER, f"hold{i}", 5, 5) for i in range(60)))
    ledger = await stores[0].get_ledger(LEDGER)
    assert ledger is not None
    assert sum(taken) == 10
    assert (ledger["remaining"], ledger["reserved"], len(ledger["holds"])) == (0, 50, 10)
    # settling each hold twice from both instances at once counts it once
    held = [f"hold{i}" for i, ok in enumerate(taken) if ok]
    settled = await asyncio.gather(
        *(store.settle(LEDGER, hold, 5, used=True) for hold in held for store in stores)
    )
    ledger = await stores[0].get_ledger(LEDGER)
    assert ledger is not None
    assert sum(found is not None for found in settled) == 10
    assert (ledger["used"], ledger["reserved"], ledger["remaining"], ledger["holds"]) == (50, 0, 0, {})
    # a reservation is idempotent per hold: taken once however often it is asked for
    assert await stores[0].compare_and_set_ledger(LEDGER, ledger["rev"], {"remaining": 10})
    again = await asyncio.gather(*(stores[i % 2].reserve(LEDGER, "same", 4, 4) for i in range(10)))
    ledger = await stores[0].get_ledger(LEDGER)
    assert ledger is not None
    assert all(again) and (ledger["remaining"], ledger["reserved"]) == (6, 4)


async def test_a_delivery_is_claimed_by_one_of_two_dispatchers(
    two_dbs: tuple[AsyncDatabase[dict[str, Any]], AsyncDatabase[dict[str, Any]]],
) -> None:
    stores = [SenderStore(db) for db in two_dbs]
    await stores[0].ensure_indexes()
    for n in range(20):
        await stores[0].add_delivery(_delivery(n), ["U1"])
    lease = NOW + timedelta(seconds=60)
    # every delivery raced by 4 claims, 2 from each instance
    claims = await asyncio.gather(
        *(
            stores[i % 2].claim(f"C1:race:{n:06d}", NOW, lease, f"token-{n}-{i}")
            for n in range(20)
            for i in range(4)
        )
    )
    won = [doc for doc in claims if doc is not None]
    assert sorted(doc["_id"] for doc in won) == [f"C1:race:{n:06d}" for n in range(20)]
    # only the winning claim can record the outcome
    doc = won[0]
    tokens = {f"token-{int(doc['_id'][-6:])}-{i}" for i in range(4)}
    assert doc["claim"] in tokens
    for token in tokens - {doc["claim"]}:
        assert not await stores[1].transition(doc["_id"], token, {"state": "sent"})
    assert await stores[1].transition(doc["_id"], doc["claim"], {"state": "sent"})
    # an expired lease is released once, however many pollers see it
    later = NOW + timedelta(seconds=120)
    released = await asyncio.gather(*(store.release_expired_leases([0], later) for store in stores))
    assert sum(released) == 19
    due = await stores[0].due([0], later, limit=100)
    assert len(due) == 19 and all(d["next_attempt_at"] == later for d in due)


async def test_concurrent_replies_to_one_event_all_join_one_group_and_a_late_one_does_not(
    two_dbs: tuple[AsyncDatabase[dict[str, Any]], AsyncDatabase[dict[str, Any]]],
) -> None:
    stores = [SenderStore(db) for db in two_dbs]
    deliveries = [{**_delivery(n), "_id": f"C1:r{n}:000000"} for n in range(12)]
    dues = [NOW + timedelta(milliseconds=100 * n) for n in range(12)]
    await asyncio.gather(
        *(stores[n % 2].add_reply_delivery(deliveries[n], ["U1"], "C1:group", dues[n]) for n in range(12))
    )
    group = await stores[0].get_reply_group("C1:group")
    assert group is not None
    assert sorted(group["members"]) == sorted(d["_id"] for d in deliveries)
    assert group["due_at"] == max(dues) and group["sealed"] is False
    # sealing is one conditional update: of two racing workers one seals it, and only once it is due
    assert await stores[0].close_reply_group("C1:group", NOW) is None
    closed = await asyncio.gather(*(store.close_reply_group("C1:group", max(dues)) for store in stores))
    assert sum(found is not None for found in closed) == 1
    late = {**_delivery(99), "_id": "C1:late:000000"}
    await stores[1].add_reply_delivery(late, ["U1"], "C1:group", NOW + timedelta(hours=1))
    group = await stores[0].get_reply_group("C1:group")
    assert group is not None and "C1:late:000000" not in group["members"]
    stored = await stores[0].get_delivery("C1:late:000000")
    assert stored is not None and stored["next_attempt_at"] == NOW  # due at once: failed as late


async def test_a_due_journey_step_is_claimed_by_one_of_two_schedulers_and_found_by_minute(
    two_dbs: tuple[AsyncDatabase[dict[str, Any]], AsyncDatabase[dict[str, Any]]],
) -> None:
    stores = [JourneyStore(db) for db in two_dbs]
    await stores[0].ensure_indexes()
    early = NOW - timedelta(days=1)

    def enrollment(user: str, due: datetime) -> dict[str, Any]:
        return {
            "_id": f"J1:{user}",
            "journey_id": "J1",
            "user_id": user,
            "round": 1,
            "state": "active",
            "step": 0,
            "next_due_at": due,
        }

    assert await stores[0].due_enrollments(early, 10) == []  # the first walk starts the cursor
    await stores[0].write_enrollment(enrollment("A", NOW), None, early)  # due in a day
    await stores[1].write_enrollment(enrollment("B", NOW + timedelta(hours=3)), None, early)
    await stores[0].write_enrollment(enrollment("L", early - timedelta(days=2)), None, early)  # late
    assert [d["_id"] for d in await stores[1].due_enrollments(early, 10)] == ["J1:L"]
    assert [d["_id"] for d in await stores[1].due_enrollments(NOW - timedelta(minutes=1), 10)] == ["J1:L"]
    found = await stores[0].due_enrollments(NOW, 10)
    assert sorted(d["_id"] for d in found) == ["J1:A", "J1:L"]
    # two schedulers race for each due step: one claim wins; the loser finds it claimed
    claimed = await asyncio.gather(
        *(store.claim_step(doc, NOW + timedelta(seconds=60)) for doc in found for store in stores)
    )
    assert sum(claimed) == 2
    assert await stores[1].due_enrollments(NOW, 10) == []
    for doc in found:
        fields = {"step": 1, "next_due_at": NOW + timedelta(days=1)}
        assert await stores[0].finish_step(doc, fields, NOW)
        assert not await stores[1].finish_step(doc, fields, NOW)  # the step moved on: no second time
    # hours later, only B is due (A's next step is tomorrow), and the cursor passed the empty minutes
    later = NOW + timedelta(hours=3)
    assert [d["_id"] for d in await stores[1].due_enrollments(later, 10)] == ["J1:B"]
    cursor = await stores[0].due.find_one({"_id": "cursor"})
    assert (
        cursor is not None and cursor["through"] < "2026-12-01T07:00" and cursor["through"] > "2026-12-01T04"
    )
    # a member who blocked leaves once, however many instances apply it
    left = await asyncio.gather(*(store.exit_enrollment("J1:B", later) for store in stores))
    assert sum(doc is not None for doc in left) == 1
    assert await stores[0].due_enrollments(later, 10) == []
