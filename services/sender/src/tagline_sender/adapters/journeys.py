"""MongoDB (or FerretDB) persistence of journeys, enrollments and journey events.

- ``journeys``: one document per definition (``spec`` as JSON-able data, ``channel_id``, ``version``).
- ``enrollments``: one document per (journey, member), ``_id`` ``<journey>:<userId>``, holding the current
  round (re-entry starts round n + 1 in the same document, so a member is in a journey at most once at a
  time), its state, the next step and when it is due. Every change of one happens under a
  :class:`~tagline_platform.mongo.DocumentLock` (the enrollment consumer and the schedulers both write it;
  FerretDB applies conditional updates without isolation).
- ``journey_events``: facts with natural ids (``<journey>:<user>:<round>:<step>:<kind>``), inserted once; the
  stats are counts of them, so a replayed step or result is never counted twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tagline_platform.mongo import DocumentLock

Doc = dict[str, Any]


def enrollment_id(journey_id: str, user_id: str) -> str:
    return f"{journey_id}:{user_id}"


class JourneyStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.journeys = db["journeys"]
        self.enrollments = db["enrollments"]
        self.events = db["journey_events"]
        self.members = db["members"]  # the sender's member projection (adapters.mongo)
        self.welcomes = db["welcomes"]
        self._lock = DocumentLock(db["locks"])

    # ---- definitions -----------------------------------------------------------------------------------
    async def insert_journey(self, doc: Doc) -> None:
        await self.journeys.insert_one(doc)

    async def get_journey(self, journey_id: str) -> Doc | None:
        return await self.journeys.find_one({"_id": journey_id})

    async def replace_journey(self, doc: Doc) -> bool:
        result = await self.journeys.replace_one({"_id": doc["_id"]}, doc)
        return result.matched_count == 1

    async def delete_journey(self, journey_id: str) -> bool:
        result = await self.journeys.delete_one({"_id": journey_id})
        return result.deleted_count == 1

    async def list_journeys(self, channel_id: str | None = None) -> list[Doc]:
        query: Doc = {} if channel_id is None else {"channel_id": channel_id}
        return [doc async for doc in self.journeys.find(query).sort("_id", 1)]

    # ---- enrollments -----------------------------------------------------------------------------------
    @asynccontextmanager
    async def locked(self, enrollment: str) -> AsyncIterator[None]:
        async with self._lock.hold(f"enrollment:{enrollment}"):
            yield

    async def get_enrollment(self, enrollment: str) -> Doc | None:
        return await self.enrollments.find_one({"_id": enrollment})

    async def put_enrollment(self, doc: Doc) -> None:
        await self.enrollments.replace_one({"_id": doc["_id"]}, doc, upsert=True)

    async def due_enrollments(self, now: datetime, limit: int) -> list[Doc]:
        query = {"state": "active", "next_due_at": {"$lte": now}}
        return [doc async for doc in self.enrollments.find(query).sort("next_due_at", 1).limit(limit)]

    async def member(self, channel_id: str, user_id: str) -> Doc | None:
        return await self.members.find_one({"_id": f"{channel_id}:{user_id}"})

    # ---- welcome messages -------------------------------------------------------------------------------
    async def get_welcome(self, channel_id: str) -> Doc | None:
        return await self.welcomes.find_one({"_id": channel_id})

    async def put_welcome(self, channel_id: str, spec: Doc) -> None:
        await self.welcomes.replace_one({"_id": channel_id}, {"_id": channel_id, "spec": spec}, upsert=True)

    async def delete_welcome(self, channel_id: str) -> bool:
        return (await self.welcomes.delete_one({"_id": channel_id})).deleted_count == 1

    # ---- events and stats ------------------------------------------------------------------------------
    async def record(self, event: Doc) -> bool:
        """Insert a journey event once (by its natural ``_id``); ``False`` if it was recorded before."""
        try:
            await self.events.insert_one(event)
        except DuplicateKeyError:
            return False
        return True

    async def counts(self, journey_id: str) -> Sequence[Doc]:
        pipeline: list[Doc] = [
            {"$match": {"journey_id": journey_id}},
            {"$group": {"_id": {"step": "$step", "kind": "$kind"}, "count": {"$sum": 1}}},
        ]
        return [doc async for doc in await self.events.aggregate(pipeline)]
