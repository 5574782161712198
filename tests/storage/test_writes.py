"""Writes the services rely on, under real concurrency: every race has one exact right answer.

Each race starts many operations at the same moment, spread over several clients (separate connection pools,
so separate server connections), and is repeated :data:`ROUNDS` times on fresh documents so that one lucky
interleaving cannot pass. The expected figures are what MongoDB guarantees for single-document writes
(each update of one document is atomic, its filter included). The bulk writes at the end must complete
within :data:`BULK_LIMIT_S` and apply every statement.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from pymongo import InsertOne, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

pytestmark = pytest.mark.integration

Doc = dict[str, Any]
T = TypeVar("T")

ROUNDS = 3
"""Each race runs this many times, on a fresh document each time."""

RACE_LIMIT_S = 20.0
"""Every operation of a race must complete within this (all take well under a second where it works)."""

BULK = 1_000
"""Statements in one ``bulk_write``."""

BULK_LIMIT_S = 20.0
"""A ``bulk_write`` of :data:`BULK` statements must complete within this (it takes 1-3 s where it works;
FerretDB 1.24 unpatched never completes one)."""

DUPLICATE_KEY = 11000


async def race(
    racers: list[AsyncDatabase[Doc]],
    collection: str,
    n: int,
    op: Callable[[AsyncCollection[Doc], int], Awaitable[T]],
) -> list[T]:
    """``op(collection, i)`` for ``i`` in ``range(n)``, all started at once over the racers' clients."""
    handles = [db[collection] for db in racers]
    # open the connections first, so that the operations start together instead of one per new connection
    await asyncio.gather(*(racers[i % len(racers)].command("ping") for i in range(n)))
    start = asyncio.Event()

    async def one(i: int) -> T:
        await start.wait()
        return await op(handles[i % len(handles)], i)

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    await asyncio.sleep(0)  # every task waits on the event
    start.set()
    try:
        async with asyncio.timeout(RACE_LIMIT_S):
            return await asyncio.gather(*tasks)
    except TimeoutError:
        done = sum(task.done() and not task.cancelled() for task in tasks)
        pytest.fail(f"{n} concurrent operations on {collection}: {done} completed within {RACE_LIMIT_S:g} s")


async def stored(db: AsyncDatabase[Doc], collection: str, key: str) -> Doc:
    doc = await db[collection].find_one({"_id": key})
    assert doc is not None, f"{collection} {key!r} is missing"
    return doc


async def test_concurrent_increments_of_one_document_all_count(racers: list[AsyncDatabase[Doc]]) -> None:
    """100 concurrent ``$inc`` by ``_id`` (stats, counters from several instances) add up to 100."""

    async def one_round(key: str) -> int:
        await racers[0].counters.insert_one({"_id": key, "n": 0})

        async def increment(coll: AsyncCollection[Doc], _: int) -> int:
            return (await coll.update_one({"_id": key}, {"$inc": {"n": 1}})).modified_count

        modified = await race(racers, "counters", 100, increment)
        assert modified == [1] * 100
        value: int = (await stored(racers[0], "counters", key))["n"]
        return value

    ends = [await one_round(f"counter-{r}") for r in range(ROUNDS)]
    assert ends == [100] * ROUNDS, f"100 concurrent $inc by _id ended at {ends} (lost updates)"


async def test_conditional_decrements_never_overdraw(racers: list[AsyncDatabase[Doc]]) -> None:
    """60 concurrent ``update_one({_id, remaining: {$gte: 5}}, {$inc: {remaining: -5}})`` on 50: exactly 10
    succeed and 0 remain (a quota or stock reservation)."""

    async def one_round(key: str) -> tuple[int, int]:
        await racers[0].quota.insert_one({"_id": key, "remaining": 50})

        async def reserve(coll: AsyncCollection[Doc], _: int) -> int:
            result = await coll.update_one(
                {"_id": key, "remaining": {"$gte": 5}}, {"$inc": {"remaining": -5}}
            )
            return result.modified_count

        succeeded = sum(await race(racers, "quota", 60, reserve))
        return succeeded, (await stored(racers[0], "quota", key))["remaining"]

    outcomes = [await one_round(f"quota-{r}") for r in range(ROUNDS)]
    assert outcomes == [(10, 0)] * ROUNDS, f"(succeeded, remaining) per round: {outcomes}"


async def test_one_claim_of_a_pending_document_wins(racers: list[AsyncDatabase[Doc]]) -> None:
    """20 concurrent ``find_one_and_update`` claims of one pending document (pending → claimed): exactly one
    gets it, and the document names that one."""

    async def one_round(key: str) -> tuple[int, bool]:
        await racers[0].jobs.insert_one({"_id": key, "state": "pending"})

        async def claim(coll: AsyncCollection[Doc], i: int) -> Doc | None:
            return await coll.find_one_and_update(
                {"_id": key, "state": "pending"},
                {"$set": {"state": "claimed", "by": i}},
                return_document=ReturnDocument.AFTER,
            )

        results = await race(racers, "jobs", 20, claim)
        winners = [i for i, doc in enumerate(results) if doc is not None]
        doc = await stored(racers[0], "jobs", key)
        return len(winners), winners == [doc.get("by")]

    outcomes = [await one_round(f"job-{r}") for r in range(ROUNDS)]
    assert outcomes == [(1, True)] * ROUNDS, (
        f"(winners, the stored claim is the winner's) per round: {outcomes}"
    )


async def test_concurrent_increment_upserts_of_one_new_document_all_count(
    racers: list[AsyncDatabase[Doc]],
) -> None:
    """20 concurrent ``update_one({_id: new}, {$inc: {n: 1}}, upsert=True)``: one inserts, the others update,
    ``n`` ends at 20, and none fails.

    No retry is allowed here: since 4.2 MongoDB itself retries an upsert whose insert hits a duplicate key
    when the filter is equality on the unique index's fields only (here ``_id``; "Upsert with Duplicate
    Values" in the manual of ``updateOne``), so a client never sees that ``DuplicateKeyError``. The counters
    of the services are written exactly like this.
    """

    async def one_round(key: str) -> tuple[int, int]:
        async def upsert(coll: AsyncCollection[Doc], _: int) -> str:
            try:
                await coll.update_one({"_id": key}, {"$inc": {"n": 1}}, upsert=True)
            except DuplicateKeyError:
                return "duplicate key"
            return "ok"

        results = await race(racers, "counters", 20, upsert)
        return (await stored(racers[0], "counters", key))["n"], results.count("duplicate key")

    outcomes = [await one_round(f"new-counter-{r}") for r in range(ROUNDS)]
    assert outcomes == [(20, 0)] * ROUNDS, f"(n, DuplicateKeyErrors) per round: {outcomes}"


async def test_increment_upserts_of_several_new_documents_race_independently(
    racers: list[AsyncDatabase[Doc]],
) -> None:
    """5 new keys, 10 concurrent ``$inc`` upserts each, all 50 interleaved: every key ends at 10, one
    document each, ``$setOnInsert`` applied once."""

    async def one_round(r: int) -> tuple[list[int], int]:
        keys = [f"key-{r}-{k}" for k in range(5)]

        async def upsert(coll: AsyncCollection[Doc], i: int) -> str:
            try:
                await coll.update_one(
                    {"_id": keys[i % len(keys)]},
                    {"$inc": {"n": 1}, "$setOnInsert": {"created_by": i}},
                    upsert=True,
                )
            except DuplicateKeyError:
                return "duplicate key"
            return "ok"

        results = await race(racers, "counters", 50, upsert)
        docs = [await stored(racers[0], "counters", key) for key in keys]
        assert all(doc["created_by"] % len(keys) == keys.index(doc["_id"]) for doc in docs)
        return [doc["n"] for doc in docs], results.count("duplicate key")

    outcomes = [await one_round(r) for r in range(ROUNDS)]
    assert outcomes == [([10] * 5, 0)] * ROUNDS, (
        f"([n of each key], DuplicateKeyErrors) per round: {outcomes}"
    )


VERSIONS = 40


async def test_version_guarded_upserts_keep_the_newest(racers: list[AsyncDatabase[Doc]]) -> None:
    """40 versions of one new member projected at once (the sender's ``apply_member_changes``:
    ``update_one({_id, version: {$lt: v}}, {$set: {version: v}}, upsert=True)``), in a shuffled order: the
    stored version ends at the newest.

    A stale one may fail with a duplicate key (its filter does not match the stored newer document, so its
    upsert tries to insert the ``_id``; MongoDB does not retry it, the filter not being equality only): that
    is how the projection recognises a stale change, so it counts as "not applied" here."""
    shuffle = random.Random(15).shuffle

    async def one_round(key: str) -> tuple[int, int]:
        versions = list(range(1, VERSIONS + 1))
        shuffle(versions)

        async def project(coll: AsyncCollection[Doc], i: int) -> bool:
            try:
                result = await coll.update_one(
                    {"_id": key, "version": {"$lt": versions[i]}},
                    {"$set": {"version": versions[i], "follow_state": f"state-{versions[i]}"}},
                    upsert=True,
                )
            except DuplicateKeyError:
                return False
            return result.upserted_id is not None or result.modified_count == 1

        applied = await race(racers, "members", VERSIONS, project)
        doc = await stored(racers[0], "members", key)
        assert doc["follow_state"] == f"state-{doc['version']}"
        assert sum(applied) >= 1
        return doc["version"], versions.index(VERSIONS)

    outcomes = [await one_round(f"C1:U{r}") for r in range(ROUNDS)]
    assert [version for version, _ in outcomes] == [VERSIONS] * ROUNDS, (
        f"(stored version, position of the newest in the race) per round: {outcomes}"
    )


async def bulk(coll: AsyncCollection[Doc], ops: list[Any], *, ordered: bool = True) -> Any:
    """``coll.bulk_write(ops)``, failing the test if it does not complete within :data:`BULK_LIMIT_S`."""
    try:
        async with asyncio.timeout(BULK_LIMIT_S):
            return await coll.bulk_write(ops, ordered=ordered)
    except TimeoutError:
        pytest.fail(f"a bulk_write of {len(ops)} statements did not complete in {BULK_LIMIT_S:g} s")
    except KeyError as exc:  # PyMongo merging a reply that lacks a field every server reply has
        pytest.fail(f"the server's reply to a bulk_write of {len(ops)} statements has no {exc}")


async def test_a_bulk_write_of_1000_updates_completes_and_applies_all(mongo_db: AsyncDatabase[Doc]) -> None:
    await mongo_db.members.insert_many([{"_id": f"C1:U{i:04d}", "n": 0} for i in range(BULK)])
    result = await bulk(
        mongo_db.members, [UpdateOne({"_id": f"C1:U{i:04d}"}, {"$inc": {"n": 1}}) for i in range(BULK)]
    )
    assert (result.matched_count, result.modified_count) == (BULK, BULK)
    assert await mongo_db.members.count_documents({"n": 1}) == BULK


async def test_a_bulk_write_of_1000_upserts_completes_and_inserts_all(mongo_db: AsyncDatabase[Doc]) -> None:
    ops = [UpdateOne({"_id": f"C1:U{i:04d}"}, {"$set": {"version": 1}}, upsert=True) for i in range(BULK)]
    result = await bulk(mongo_db.members, ops)
    assert result.upserted_count == BULK
    assert await mongo_db.members.count_documents({"version": 1}) == BULK


async def test_an_unordered_bulk_insert_with_one_duplicate_reports_exactly_that_one(
    mongo_db: AsyncDatabase[Doc],
) -> None:
    await mongo_db.events.insert_one({"_id": "e0500", "seen": "before"})
    ops = [InsertOne({"_id": f"e{i:04d}", "seen": "bulk"}) for i in range(BULK)]
    with pytest.raises(BulkWriteError) as caught:
        await bulk(mongo_db.events, ops, ordered=False)
    details = caught.value.details
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(500, DUPLICATE_KEY)]
    assert details["nInserted"] == BULK - 1
    assert await mongo_db.events.count_documents({"seen": "bulk"}) == BULK - 1


async def test_unordered_version_guarded_upserts_report_exactly_the_stale_one(
    mongo_db: AsyncDatabase[Doc], is_ferretdb: bool, request: pytest.FixtureRequest
) -> None:
    """The projection's bulk form: 1,000 ``{_id, version: {$lt: 2}}`` upserts, one of them for a member
    stored at version 5, which is the only error (a duplicate key) and stays at 5; the other 999 apply.

    (FerretDB 1.24 ignores ``ordered`` in ``update``: it stops at the first failing statement and answers
    one write error at index 0 with no ``n``/``nModified``; the statements after the stale one are lost.
    Not patched yet; strict, so it fails the day the server is fixed. The services do not depend on it: the
    sender's projection falls back to one statement at a time when a bulk reply is incomplete.)
    """
    if is_ferretdb:
        request.applymarker(
            pytest.mark.xfail(
                strict=True, reason="FerretDB 1.24 ignores ordered=False in update (issue 2612)"
            )
        )
    await mongo_db.members.insert_one({"_id": "C1:U0500", "version": 5})
    ops = [
        UpdateOne({"_id": f"C1:U{i:04d}", "version": {"$lt": 2}}, {"$set": {"version": 2}}, upsert=True)
        for i in range(BULK)
    ]
    with pytest.raises(BulkWriteError) as caught:
        await bulk(mongo_db.members, ops, ordered=False)
    details = caught.value.details
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(500, DUPLICATE_KEY)]
    assert details["nUpserted"] == BULK - 1
    assert await mongo_db.members.count_documents({"version": 2}) == BULK - 1
    assert (await stored(mongo_db, "members", "C1:U0500"))["version"] == 5
