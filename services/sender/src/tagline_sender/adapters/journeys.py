"""MongoDB (or FerretDB) persistence of journeys, enrollments and journey events.

- ``journeys``: one document per definition (``spec`` as JSON-able data, ``channel_id``, ``version``).
- ``enrollments``: one document per (journey, member), ``_id`` ``<journey>:<userId>``, holding the current
  round (re-entry starts round n + 1 in the same document, so a member is in a journey at most once at a
  time), its state, the next step and when it is due. No lock: every write is one conditional update that
  the database applies atomically. A new round replaces the document only if it still holds the round and
  state it was decided on; a scheduler *claims* a due step (``claim_until``, on the round and step it read)
  before it sends it and moves the enrollment on only if it is still at that step; leaving (blocked) is one
  update on ``state: active``; the segment flag is a ``$set`` of its own.
- Due steps are found by equality, not by a range on ``next_due_at`` (which the database would answer by
  reading every enrollment): an active enrollment carries ``due_slot``, the UTC minute it is due in
  (``YYYY-MM-DDTHH:MM``; never before the minute it was written in, so a late step is found at once). The
  schedulers walk the minutes from a shared cursor (in ``journey_due``: the last minute known empty) to now,
  one query per minute, skipping every hour that has no marker there (writers mark an hour before they put
  an enrollment in it), and move the cursor past the minutes they find empty.
- ``journey_events``: facts with natural ids (``<journey>:<user>:<round>:<step>:<kind>``), inserted once;
  ``journey_stats`` holds their counts per journey (``$inc`` by whoever recorded the fact first), so the
  stats are one read, not a count of events.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tagline_platform.mongo import HotQuery, utc_minute

Doc = dict[str, Any]

SLOT_FORMAT = "%Y-%m-%dT%H:%M"
HOUR_FORMAT = "%Y-%m-%dT%H"
MINUTE = timedelta(minutes=1)
CLOCK_SKEW = timedelta(minutes=2)
"""The cursor stays this far behind the scheduler's clock, so an instance whose clock is a little behind
cannot put an enrollment in a minute the cursor has passed."""
ACTIVE = "active"
CURSOR = "cursor"
BULK_BATCH = 1_000

HOT_QUERIES: tuple[HotQuery, ...] = (
    HotQuery("journeys", {"_id": "01JF0000000000000000000000"}, "read / replace / delete a journey"),
    HotQuery("enrollments", {"_id": "01JF0000000000000000000000:U1"}, "read or create an enrollment"),
    HotQuery(
        "enrollments",
        {"_id": "01JF0000000000000000000000:U1", "round": 1, "state": "completed"},
        "a member change starts a new round, if the enrollment is still as it was read",
    ),
    HotQuery(
        "enrollments",
        {"_id": "01JF0000000000000000000000:U1", "state": "active"},
        "a member who blocked the channel leaves the journey",
    ),
    HotQuery(
        "enrollments",
        {
            "_id": "01JF0000000000000000000000:U1",
            "state": "active",
            "round": 1,
            "step": 0,
            "claim_until": None,
        },
        "a scheduler claims a due step (a claim that ran out is matched by its value)",
    ),
    HotQuery(
        "enrollments",
        {"_id": "01JF0000000000000000000000:U1", "state": "active", "round": 1, "step": 0},
        "the step is done: the enrollment moves on",
    ),
    HotQuery("enrollments", {"due_slot": "2026-12-01T02:00"}, "scheduler: the enrollments due in one minute"),
    HotQuery(
        "enrollments",
        {"journey_id": "01JF0000000000000000000000", "waiting": True},
        "a journey is enabled (API): its members whose steps came due meanwhile are looked for again",
    ),
    HotQuery("journey_due", {"_id": "2026-12-01T02"}, "scheduler: does an hour hold due enrollments"),
    HotQuery("journey_due", {"_id": CURSOR}, "scheduler: the shared cursor"),
    HotQuery("members", {"_id": "1234567890:U1"}, "the member a step is chosen for; a welcome's source"),
    HotQuery("welcomes", {"_id": "1234567890"}, "the channel's welcome message"),
    HotQuery(
        "journey_events",
        {"_id": "01JF0000000000000000000000:U1:1:0:sent", "counted": False},
        "record a journey fact once, and count it once",
    ),
    HotQuery("journey_stats", {"_id": "01JF0000000000000000000000"}, "a journey's counts ($inc, GET stats)"),
)


def enrollment_id(journey_id: str, user_id: str) -> str:
    return f"{journey_id}:{user_id}"


def due_slot(next_due_at: datetime, now: datetime) -> str:
    """The minute an enrollment due at ``next_due_at`` is looked for in (never one before ``now``'s)."""
    return max(utc_minute(next_due_at), utc_minute(now)).strftime(SLOT_FORMAT)


def _parse_slot(slot: str) -> datetime:
    return datetime.strptime(slot, SLOT_FORMAT).replace(tzinfo=UTC)


def _is_due(doc: Doc, now: datetime) -> bool:
    claimed = doc.get("claim_until")
    return (
        doc.get("state") == ACTIVE
        and doc.get("next_due_at") is not None
        and doc["next_due_at"] <= now
        and (claimed is None or claimed < now)
    )


class JourneyStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.journeys = db["journeys"]
        self.enrollments = db["enrollments"]
        self.due = db["journey_due"]
        self.events = db["journey_events"]
        self.stats = db["journey_stats"]
        self.members = db["members"]  # the sender's member projection (adapters.mongo)
        self.welcomes = db["welcomes"]
        self._hours_marked: set[str] = set()

    async def ensure_indexes(self) -> None:
        await self.enrollments.create_index([("due_slot", ASCENDING)])
        await self.enrollments.create_index([("journey_id", ASCENDING), ("waiting", ASCENDING)])

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
        """Every definition (of a channel), by id. Not a hot path: the definitions are few, read by each
        instance's cache every few seconds and by the API's listing; sorted here, not by the database."""
        query: Doc = {} if channel_id is None else {"channel_id": channel_id}
        return sorted([doc async for doc in self.journeys.find(query)], key=lambda doc: str(doc["_id"]))

    # ---- enrollments -----------------------------------------------------------------------------------
    async def get_enrollment(self, enrollment: str) -> Doc | None:
        return await self.enrollments.find_one({"_id": enrollment})

    async def _slotted(self, fields: Doc, now: datetime) -> tuple[Doc, list[str]]:
        """``fields`` with the ``due_slot`` of their ``next_due_at`` (its hour marked first), or the fields to
        unset when nothing is due."""
        if fields.get("next_due_at") is None or fields.get("state", ACTIVE) != ACTIVE:
            return {k: v for k, v in fields.items() if k != "due_slot"}, ["due_slot"]
        slot = due_slot(fields["next_due_at"], now)
        await self._mark_hour(slot[: len("YYYY-MM-DDTHH")])
        return {**fields, "due_slot": slot}, []

    async def _mark_hour(self, hour: str) -> None:
        if hour in self._hours_marked:
            return
        with contextlib.suppress(DuplicateKeyError):  # MongoDB: marked by another instance at the same moment
            await self.due.update_one({"_id": hour}, {"$setOnInsert": {"hour": hour}}, upsert=True)
        self._hours_marked.add(hour)

    async def write_enrollment(self, doc: Doc, expected: Doc | None, now: datetime) -> bool:
        """Store a whole enrollment (a new round) if the stored one is still ``expected`` (its round and
        state; ``None``: there is none yet). ``False`` if it changed meanwhile: read it again, decide anew."""
        slotted, _ = await self._slotted(doc, now)
        if expected is None:
            try:
                await self.enrollments.insert_one(slotted)
            except DuplicateKeyError:
                return False
            return True
        result = await self.enrollments.replace_one(
            {"_id": doc["_id"], "round": expected["round"], "state": expected["state"]}, slotted
        )
        return result.matched_count == 1

    async def set_in_segment(self, base: Doc, exists: bool, in_segment: bool) -> bool:
        """Record whether the member is in the trigger segment now (creating the enrollment document, without
        a round, if there is none). ``False`` if one was created meanwhile: read it again."""
        if exists:
            await self.enrollments.update_one({"_id": base["_id"]}, {"$set": {"in_segment": in_segment}})
            return True
        try:
            await self.enrollments.insert_one({**base, "in_segment": in_segment})
        except DuplicateKeyError:
            return False
        return True

    async def exit_enrollment(self, enrollment: str, now: datetime) -> Doc | None:
        """active → exited (blocked); the enrollment as it was, or ``None`` if it was not active."""
        return await self.enrollments.find_one_and_update(
            {"_id": enrollment, "state": ACTIVE},
            {
                "$set": {"state": "exited", "exited_at": now, "next_due_at": None},
                "$unset": {"due_slot": "", "claim_until": ""},
            },
            return_document=ReturnDocument.BEFORE,
        )

    async def claim_step(self, doc: Doc, until: datetime) -> bool:
        """Take the due step of ``doc`` for this scheduler until ``until``, if the enrollment is still at it
        and nobody else holds it (its claim as read: none, or one that ran out)."""
        result = await self.enrollments.update_one(
            {
                "_id": doc["_id"],
                "state": ACTIVE,
                "round": doc["round"],
                "step": doc["step"],
                "claim_until": doc.get("claim_until"),
            },
            {"$set": {"claim_until": until}},
        )
        return result.modified_count == 1

    async def finish_step(self, doc: Doc, fields: Doc, now: datetime) -> bool:
        """The claimed step of ``doc`` is done: set ``fields`` (the next step and when it is due, or the end)
        and drop the claim, if the enrollment is still active at that step (a block may have ended it)."""
        slotted, unset = await self._slotted(fields, now)
        result = await self.enrollments.update_one(
            {"_id": doc["_id"], "state": ACTIVE, "round": doc["round"], "step": doc["step"]},
            {"$set": slotted, "$unset": dict.fromkeys(["claim_until", *unset], "")},
        )
        return result.modified_count == 1

    async def wait_for_journey(self, doc: Doc, until: datetime, now: datetime) -> None:
        """A due step whose journey is disabled (or not known here yet) waits: looked at again at ``until``,
        or as soon as the journey is enabled (:meth:`requeue`)."""
        slot = due_slot(until, now)
        await self._mark_hour(slot[: len("YYYY-MM-DDTHH")])
        await self.enrollments.update_one(
            {
                "_id": doc["_id"],
                "state": ACTIVE,
                "round": doc["round"],
                "step": doc["step"],
                "claim_until": doc.get("claim_until"),
            },
            {"$set": {"due_slot": slot, "waiting": True}},
        )

    async def park(self, doc: Doc) -> None:
        """A due step whose journey was deleted: its member waits where they are, never looked for again."""
        await self.enrollments.update_one(
            {"_id": doc["_id"], "state": ACTIVE, "round": doc["round"], "step": doc["step"]},
            {"$unset": {"due_slot": ""}},
        )

    async def requeue(self, journey_id: str, at: datetime, now: datetime) -> int:
        """The journey was enabled: its waiting members are looked for at ``at`` (by then every instance has
        reloaded the definition). An admin action: the waiting members are selected by equality."""
        slot = due_slot(at, now)
        await self._mark_hour(slot[: len("YYYY-MM-DDTHH")])
        result = await self.enrollments.update_many(
            {"journey_id": journey_id, "waiting": True},
            {"$set": {"due_slot": slot}, "$unset": {"waiting": ""}},
        )
        return result.modified_count

    async def due_enrollments(self, now: datetime, limit: int) -> list[Doc]:
        """Active enrollments due by ``now`` and not claimed, oldest minute first, at most ``limit``.

        Walks the minutes after the shared cursor up to now: an hour without a marker is skipped with one
        read; a marked hour's minutes are read one equality query each (at most ``limit`` documents). The
        cursor moves past the minutes found empty (never closer than :data:`CLOCK_SKEW` to now), so the
        next walk starts after them; a minute that still holds an enrollment (claimed by another scheduler,
        or beyond ``limit``) stops it moving until a later walk finds it empty.
        """
        start = await self._cursor(now)
        end, safe = utc_minute(now), utc_minute(now - CLOCK_SKEW)
        found: list[Doc] = []
        advance_to: datetime | None = None
        empty_so_far = True
        moment = start + MINUTE
        while moment <= end and len(found) < limit:
            hour = moment.replace(minute=0)
            if not await self._hour_marked(hour.strftime(HOUR_FORMAT)):
                last = min(hour + timedelta(minutes=59), end)
                if empty_so_far and moment <= safe:
                    advance_to = min(last, safe)
                moment = last + MINUTE
                continue
            query = {"due_slot": moment.strftime(SLOT_FORMAT)}
            docs = [doc async for doc in self.enrollments.find(query).limit(limit - len(found))]
            if docs:
                empty_so_far = False
            elif empty_so_far and moment <= safe:
                advance_to = moment
            found += [doc for doc in docs if _is_due(doc, now)]
            moment += MINUTE
        if advance_to is not None and advance_to > start:
            await self.due.update_one(
                {"_id": CURSOR}, {"$max": {"through": advance_to.strftime(SLOT_FORMAT)}}
            )
        return found

    async def _hour_marked(self, hour: str) -> bool:
        if hour in self._hours_marked:
            return True
        return await self.due.find_one({"_id": hour}, {"_id": 1}) is not None

    async def _cursor(self, now: datetime) -> datetime:
        """The last minute known to hold no due enrollment. Created on the first walk of a database: the
        active enrollments written before due slots existed get theirs (one read of the active enrollments,
        once), and the cursor starts before the earliest."""
        doc = await self.due.find_one({"_id": CURSOR})
        if doc is None:
            earliest = utc_minute(now - CLOCK_SKEW)
            backfill: list[UpdateOne] = []
            async for found in self.enrollments.find({"state": ACTIVE}):
                if found.get("next_due_at") is None:
                    continue
                slot = found.get("due_slot") or due_slot(found["next_due_at"], now)
                if "due_slot" not in found:
                    await self._mark_hour(slot[: len("YYYY-MM-DDTHH")])
                    backfill.append(UpdateOne({"_id": found["_id"]}, {"$set": {"due_slot": slot}}))
                earliest = min(earliest, _parse_slot(slot))
            for first in range(0, len(backfill), BULK_BATCH):
                await self.enrollments.bulk_write(backfill[first : first + BULK_BATCH], ordered=False)
            with contextlib.suppress(DuplicateKeyError):  # another scheduler created it first
                await self.due.insert_one(
                    {"_id": CURSOR, "through": (earliest - MINUTE).strftime(SLOT_FORMAT)}
                )
            doc = await self.due.find_one({"_id": CURSOR})
            if doc is None:  # pragma: no cover - just inserted
                return earliest - MINUTE
        return _parse_slot(doc["through"])

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
        """Insert a journey event once (by its natural ``_id``) and count it once; ``False`` if it was
        recorded before.

        The count is an ``$inc`` of the journey's stats after the event is marked counted (no transactions):
        a fact whose recording was interrupted before it was marked is counted when it is recorded again
        (the consumers replay what they did not commit); one interrupted between the mark and the ``$inc``
        is missing from the count.
        """
        try:
            await self.events.insert_one({**event, "counted": False})
            fresh = True
        except DuplicateKeyError:
            fresh = False
        marked = await self.events.update_one(
            {"_id": event["_id"], "counted": False}, {"$set": {"counted": True}}
        )
        if marked.modified_count == 1:
            await self.stats.update_one(
                {"_id": event["journey_id"]},
                {"$inc": {f"counts.{event['step']}:{event['kind']}": 1}},
                upsert=True,
            )
        return fresh

    async def counts(self, journey_id: str) -> dict[tuple[int, str], int]:
        """The journey's facts counted by (step, kind): one read."""
        doc = await self.stats.find_one({"_id": journey_id})
        counts: dict[tuple[int, str], int] = {}
        for key, value in ((doc or {}).get("counts") or {}).items():
            step, kind = key.split(":", 1)
            counts[(int(step), kind)] = int(value)
        return counts
