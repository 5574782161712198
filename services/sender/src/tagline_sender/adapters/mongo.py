"""The sender's MongoDB (or FerretDB) collections.

* ``members``: the sender's projection of ``member.changes.v1`` (``_id`` = ``channel:userId``). A change is
  applied only if its ``version`` is newer than the stored one (conditional upsert), so redelivered and
  reordered changes are harmless.
* ``sends``: one document per request (``_id`` = ``channel:idempotencyKey``): inserting it is what makes
  the same key twice a no-op (the ``_id`` is unique).
* ``deliveries``: one document per LINE call (``_id`` = ``send:batch``) with its state, retry key, attempts
  and an outbox field ``pending_result`` (flagged ``outbox: true`` while it is set, so the poller finds it by
  equality); every transition is one conditional update on the state and the claim token, so two instances
  can never both act on one delivery. ``recipients`` holds each delivery's user ids apart, so the
  deliveries the poller reads stay small.
* ``reply_groups``: one document per reply token in use (``_id`` = ``channel:hash(token)``, see
  :mod:`tagline_sender.domain.replies`): its member deliveries in arrival order, when it is sent, whether it
  is sealed (no request joins any more) and, once its reply call is decided, which members it holds. Joining
  and sealing are each one conditional update of the group (``sealed: false`` in the filter), only ever by
  ``_id``; which worker makes the call is decided by the claim of the group's lead delivery (see the
  dispatcher).
* ``quota``: the monthly ledger, one document per (channel, month); see :mod:`tagline_sender.domain.quota`.
  Every change of a ledger is one conditional update of it (``remaining >= need`` for a reservation, the
  hold's presence for a settlement, ``rev`` for a correction), which the database applies atomically, so the
  limit holds with any number of instances. Holds are kept per delivery in ``holds.<id>``, which makes
  reserve / confirm / release idempotent.
* ``follow_feed``: the follow-state changes of ``member.changes.v1`` (blocked, followed, unblocked; ``_id`` =
  ``channel:userId:version``) under the hour the projection applied them, kept :data:`FEED_KEEP`. The
  dispatcher reads the hours since a delivery was planned (one equality query per hour, cached) to drop
  recipients who blocked the channel since: the cost is the recent changes, not the channel's blocked
  members (reading 10,000 blocked members of 1,000,000 takes about a second on FerretDB).
* ``counters``: per-channel figures kept by the writer of what they count (``$inc``), so the API never counts
  documents (a count reads every document on FerretDB).
* ``send_days``: ``channel:YYYY-MM-DD`` for every UTC day on which the channel had sends or deliveries
  created; ``GET /sends`` walks these days newest first instead of sorting a whole collection.

Hot paths (per event, per delivery, per poll, per API call on one record) select by ``_id`` or by top-level
equality on indexed fields only: that is what FerretDB pushes down to an index (DESIGN.md §4). Each shape is
declared in :data:`HOT_QUERIES`, which the storage conformance suite explains against the server. Ranges,
``$in``, ``$exists``, sorts and counts are not pushed down and would read whole collections, so due times,
leases and orderings are checked in Python on what an equality query returned.

Only operations FerretDB 1.x supports are used (DESIGN.md §4): no transactions, no ``$expr``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from tagline_contracts.members import ChangeKind, FollowState, MemberChanged
from tagline_platform.mongo import HotQuery
from tagline_platform.tasks import utc_now
from tagline_sender.domain.delivery import FINAL_STATES, DeliveryState

Doc = dict[str, Any]
DUPLICATE_KEY = 11000

BULK_BATCH = 1_000
"""Most statements per ``bulk_write``: one command per batch of member changes (the handler takes up to
2,000 records at once); the bound only keeps a command's size in memory reasonable."""

FEED_KEEP = timedelta(hours=48)
"""How long follow-state changes stay in ``follow_feed``; older deliveries check the channel's blocked set."""

FOLLOW_KINDS = frozenset({ChangeKind.FOLLOWED, ChangeKind.UNBLOCKED, ChangeKind.BLOCKED})

LOOKUP_CONCURRENCY = 16
"""Reads by ``_id`` in flight at once when the blocked recipients of a short list are looked up one by one."""

_EXAMPLE_TIME = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

HOT_QUERIES: tuple[HotQuery, ...] = (
    # members
    HotQuery(
        "members",
        {"_id": "1234567890:U1", "version": {"$lt": 7}},
        "apply a member change: conditional upsert by _id (bulk_write per batch of member.changes.v1)",
    ),
    HotQuery(
        "members",
        {"_id": "1234567890:U1"},
        "planning a send to one user (has the recipient blocked?); a journey step's member; a welcome's "
        "source attribute; a short list's blocked recipients, one read each",
    ),
    HotQuery(
        "members",
        {"channel_id": "1234567890", "follow_state": "blocked"},
        "the channel's blocked friends: the dispatcher's blocked set (refreshed at most every few seconds "
        "per channel) and the planning of a long user list",
    ),
    HotQuery(
        "members",
        {
            "channel_id": "1234567890",
            "follow_state": "followed",
            "tags": "vip",
            "$and": [{"tags": {"$in": ["vip"]}}],
        },
        "segment resolution for a campaign (a batch read per send, not per event): the channel's followed "
        "members plus every equality the segment implies, pushed down; the rest of the segment is applied "
        "by the server to what that selects; no sort in the database (ids are sorted in Python)",
    ),
    # sends
    HotQuery(
        "follow_feed",
        {"channel_id": "1234567890", "hour": "2026-12-01T12"},
        "dispatcher: the channel's follow-state changes in one hour since a delivery was planned",
    ),
    HotQuery("follow_feed", {"hour": "2026-11-29T12"}, "drop an hour of follow-state changes past FEED_KEEP"),
    HotQuery("sends", {"_id": "1234567890:order-1"}, "create, read and update a send by its idempotency key"),
    HotQuery(
        "sends",
        {"created_day": "2026-12-01", "channel_id": "1234567890"},
        "GET /sends (admin listing): one UTC day of sends, newest days first, sorted in Python",
    ),
    HotQuery("send_days", {"channel_id": "1234567890"}, "GET /sends: the days a channel had sends on"),
    HotQuery("send_days", {"_id": "1234567890:2026-12-01"}, "planning: mark a day as having sends"),
    # deliveries
    HotQuery("deliveries", {"_id": "1234567890:order-1:000000"}, "insert / read one delivery"),
    HotQuery(
        "deliveries",
        {"_id": "1234567890:order-1:000000", "state": "pending", "next_attempt_at": {"$lte": _EXAMPLE_TIME}},
        "claim a delivery (find_one_and_update pending → sending): _id pushed down, the rest checked on "
        "its row",
    ),
    HotQuery(
        "deliveries",
        {"_id": "1234567890:order-1:000000", "state": "sending", "claim": "0f3c9a"},
        "record an attempt's outcome only while this claim owns the delivery; release an expired lease",
    ),
    HotQuery(
        "deliveries",
        {"_id": "1234567890:order-1:000000", "claim": "0f3c9a"},
        "store the quota hold and method of a claimed call",
    ),
    HotQuery(
        "deliveries",
        {"_id": "1234567890:order-1:000000", "state": "pending"},
        "a reply-group member that came due early waits for the group's time",
    ),
    HotQuery(
        "deliveries",
        {"_id": "1234567890:order-1:000000", "pending_result.event_id": "01JF0000000000000000000000"},
        "the result was published: clear the outbox",
    ),
    HotQuery(
        "deliveries",
        {"partition": 3, "state": "pending"},
        "poller: the pending deliveries of one owned partition (their due time is checked in Python)",
    ),
    HotQuery(
        "deliveries",
        {"partition": 3, "state": "sending"},
        "poller: the deliveries in flight on one owned partition (their lease is checked in Python)",
    ),
    HotQuery("deliveries", {"partition": 3, "outbox": True}, "poller: results not yet published"),
    HotQuery(
        "deliveries", {"send_id": "1234567890:order-1"}, "GET /sends/{channel}/{key}: a send's deliveries"
    ),
    HotQuery(
        "deliveries",
        {"channel_id": "1234567890", "state": "deferred"},
        "resume the channel's deferred deliveries when the quota has room (update_many, periodic)",
    ),
    HotQuery(
        "deliveries",
        {"created_day": "2026-12-01", "state": "deferred", "channel_id": "1234567890"},
        "GET /sends?state=<delivery state> (admin listing): one UTC day of deliveries in that state",
    ),
    HotQuery("recipients", {"_id": "1234567890:order-1:000000"}, "a delivery's user ids"),
    # reply groups
    HotQuery("reply_groups", {"_id": "1234567890:3f1c2b"}, "read a reply group; record its decided call"),
    HotQuery(
        "reply_groups",
        {"_id": "1234567890:3f1c2b", "sealed": False},
        "a reply request joins its open group (upsert)",
    ),
    HotQuery(
        "reply_groups",
        {"_id": "1234567890:3f1c2b", "sealed": False, "due_at": {"$lte": _EXAMPLE_TIME}},
        "the group's leader seals it once its gather window has passed",
    ),
    # quota
    HotQuery("quota", {"_id": "1234567890:2026-12"}, "create / read the month's ledger"),
    HotQuery(
        "quota",
        {"_id": "1234567890:2026-12", "remaining": {"$gte": 5}, "holds.3f1c2b": {"$exists": False}},
        "reserve quota: one conditional update (remaining >= need) that takes the messages and records "
        "the hold",
    ),
    HotQuery(
        "quota",
        {"_id": "1234567890:2026-12", "holds.3f1c2b": {"$exists": True}},
        "settle a hold (confirm or release) once",
    ),
    HotQuery("quota", {"_id": "1234567890:2026-12", "rev": 41}, "correct a ledger (compare and set on rev)"),
    HotQuery("counters", {"_id": "1234567890:deferred"}, "the channel's deferred deliveries ($inc, read)"),
)


def projection_doc(channel_id: str, change: MemberChanged) -> Doc:
    """The ``members`` document of a change (without ``_id``, which is ``channel:userId``)."""
    snap = change.snapshot
    return {
        "channel_id": channel_id,
        "user_id": change.user_id,
        "version": change.version,
        "follow_state": snap.follow_state.value,
        "tags": list(snap.tags),
        "attributes": dict(snap.attributes),
        "last_interaction_at": snap.last_interaction_at,
        "rfm_segment": snap.rfm_segment,
    }


def hold_id(delivery_id: str) -> str:
    """A field-name-safe id for a delivery's quota hold (idempotency keys may contain dots)."""
    return hashlib.sha1(delivery_id.encode(), usedforsecurity=False).hexdigest()[:24]


def hour_of(moment: datetime) -> str:
    """The UTC hour (``YYYY-MM-DDTHH``) a follow-state change is filed under."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H")


def day_of(moment: datetime) -> str:
    """The UTC day (``YYYY-MM-DD``) a send or delivery created at ``moment`` is listed under."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


_PUSHED_DOWN_TYPES = (str, bool, int, float, datetime)


def _implied_equalities(query: Doc) -> Doc:
    """Top-level ``field == value`` conditions that every document matching ``query`` satisfies.

    Taken from plain equalities, ``$eq``, a one-value ``$in`` and the first value of ``$all`` (an array field
    equal to a value contains it), through ``$and`` but not ``$or`` / ``$nor``. Dotted paths are left out:
    FerretDB does not push them down.
    """
    found: Doc = {}
    for key, value in query.items():
        if key == "$and":
            for child in value:
                for k, v in _implied_equalities(child).items():
                    found.setdefault(k, v)
            continue
        if key.startswith("$") or "." in key:
            continue
        implied: Any = None
        if isinstance(value, _PUSHED_DOWN_TYPES):
            implied = value
        elif isinstance(value, dict):
            if isinstance(value.get("$eq"), _PUSHED_DOWN_TYPES):
                implied = value["$eq"]
            elif isinstance(value.get("$in"), list) and len(value["$in"]) == 1:
                implied = value["$in"][0]
            elif isinstance(value.get("$all"), list) and value["$all"]:
                implied = value["$all"][0]
        if isinstance(implied, _PUSHED_DOWN_TYPES):
            found.setdefault(key, implied)
    return found


def segment_filter(channel_id: str, query: Doc) -> Doc:
    """The ``members`` filter of a segment: the channel's followed members and every equality the segment
    implies, as top-level fields (the server pushes them down to its indexes), and the segment itself under
    ``$and``, which the server applies to the documents those select. The same documents as
    ``{"$and": [{channel_id, follow_state: followed}, query]}``, without reading the whole collection."""
    full: Doc = {"channel_id": channel_id, "follow_state": FollowState.FOLLOWED.value}
    for key, value in _implied_equalities(query).items():
        full.setdefault(key, value)
    full["$and"] = [query]
    return full


class SenderStore:
    def __init__(self, db: AsyncDatabase[Doc], *, clock: Callable[[], datetime] = utc_now) -> None:
        self.db = db
        self._clock = clock
        self.members = db["members"]
        self.follow_feed = db["follow_feed"]
        self._feed_hours: dict[tuple[str, str], tuple[float, list[Doc]]] = {}
        self._feed_purged_through: str | None = None
        self.sends = db["sends"]
        self.send_days = db["send_days"]
        self.deliveries = db["deliveries"]
        self.recipients = db["recipients"]
        self.quota = db["quota"]
        self.counters = db["counters"]
        self.reply_groups = db["reply_groups"]
        self._days_marked: set[str] = set()

    async def ensure_indexes(self) -> None:
        """The indexes every hot query selects with (FerretDB on PostgreSQL makes each a GIN index, which
        serves any of its fields' equalities; MongoDB uses them as compound indexes, equalities first)."""
        await self.members.create_index([("channel_id", ASCENDING), ("follow_state", ASCENDING)])
        await self.members.create_index([("tags", ASCENDING)])
        await self.follow_feed.create_index([("hour", ASCENDING), ("channel_id", ASCENDING)])
        await self.sends.create_index([("created_day", ASCENDING), ("channel_id", ASCENDING)])
        await self.send_days.create_index([("channel_id", ASCENDING)])
        await self.deliveries.create_index(
            [("partition", ASCENDING), ("state", ASCENDING), ("outbox", ASCENDING)]
        )
        await self.deliveries.create_index([("send_id", ASCENDING), ("batch", ASCENDING)])
        await self.deliveries.create_index(
            [("state", ASCENDING), ("created_day", ASCENDING), ("channel_id", ASCENDING)]
        )

    # ---- members projection ------------------------------------------------------------------------
    async def apply_member_changes(self, channel_id: str, changes: Sequence[MemberChanged]) -> int:
        """Upsert each change unless a newer version is stored; returns how many were applied.

        The version predicate makes a stale change's upsert collide with the stored ``_id``: a duplicate key
        means the stored version is newer or equal, i.e. the change is already applied. Follow-state changes
        go into ``follow_feed`` first, so a change in the projection is never missing from the feed (a
        redelivered one is there already: same ``_id``).
        """
        await self._feed(channel_id, changes)
        statements = [
            (
                {"_id": f"{channel_id}:{change.user_id}", "version": {"$lt": change.version}},
                {"$set": projection_doc(channel_id, change)},
            )
            for change in changes
        ]
        applied = 0
        for start in range(0, len(statements), BULK_BATCH):
            batch = statements[start : start + BULK_BATCH]
            try:
                result = await self.members.bulk_write(
                    [UpdateOne(query, update, upsert=True) for query, update in batch], ordered=False
                )
            except KeyError:
                # FerretDB's reply omits nModified when every statement failed, which PyMongo cannot merge:
                # apply this batch one statement at a time (every change in it is probably stale).
                applied += await self._apply_one_by_one(batch)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                applied += len(batch) - len(errors)
            else:
                applied += result.upserted_count + result.modified_count
        return applied

    async def _feed(self, channel_id: str, changes: Sequence[MemberChanged]) -> None:
        now = self._clock()
        hour = hour_of(now)
        entries = [
            {
                "_id": f"{channel_id}:{change.user_id}:{change.version}",
                "channel_id": channel_id,
                "user_id": change.user_id,
                "version": change.version,
                "state": change.snapshot.follow_state.value,
                "hour": hour,
            }
            for change in changes
            if FOLLOW_KINDS.intersection(change.changes)
            or change.snapshot.follow_state is FollowState.BLOCKED
        ]
        for start in range(0, len(entries), BULK_BATCH):
            try:
                await self.follow_feed.insert_many(entries[start : start + BULK_BATCH], ordered=False)
            except BulkWriteError as exc:  # redelivered changes: their entries are there
                if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                    raise
        await self._purge_feed(now)

    async def _purge_feed(self, now: datetime) -> None:
        """Drop the hours of ``follow_feed`` past :data:`FEED_KEEP` (a few hours back, once an hour)."""
        through = hour_of(now - FEED_KEEP)
        if through == self._feed_purged_through:
            return
        for back in range(6):
            await self.follow_feed.delete_many({"hour": hour_of(now - FEED_KEEP - timedelta(hours=back))})
        self._feed_purged_through = through

    async def follow_states_since(
        self, channel_id: str, since: datetime, now: datetime, *, fresh_s: float
    ) -> dict[str, str] | None:
        """Each member's latest follow state changed since ``since`` (the hour it falls in and every hour to
        ``now``): one equality query per hour, an hour's answer reused for ``fresh_s`` (for ever once it is
        past). ``None`` if ``since`` is older than the feed keeps."""
        if now - since > FEED_KEEP - timedelta(hours=1):
            return None
        latest: dict[str, tuple[int, str]] = {}
        moment = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        closed = hour_of(now - timedelta(minutes=5))  # hours up to here get no more entries
        clock = asyncio.get_running_loop().time()
        while moment <= now:
            hour = hour_of(moment)
            cached = self._feed_hours.get((channel_id, hour))
            if cached is None or (hour >= closed and clock - cached[0] > fresh_s):
                query = {"channel_id": channel_id, "hour": hour}
                found = [
                    doc
                    async for doc in self.follow_feed.find(query, {"user_id": 1, "version": 1, "state": 1})
                ]
                cached = self._feed_hours[(channel_id, hour)] = (clock, found)
            for doc in cached[1]:
                if doc["user_id"] not in latest or latest[doc["user_id"]][0] < doc["version"]:
                    latest[doc["user_id"]] = (int(doc["version"]), str(doc["state"]))
            moment += timedelta(hours=1)
        oldest = hour_of(now - FEED_KEEP)
        for key in [key for key in self._feed_hours if key[1] < oldest]:
            del self._feed_hours[key]
        return {user_id: state for user_id, (_, state) in latest.items()}

    async def _apply_one_by_one(self, statements: Sequence[tuple[Doc, Doc]]) -> int:
        applied = 0
        for query, update in statements:
            try:
                await self.members.update_one(query, update, upsert=True)
            except DuplicateKeyError:
                continue
            applied += 1
        return applied

    async def member_ids(self, channel_id: str, query: Doc) -> list[str]:
        """Followed members of the channel matching ``query``, sorted (deterministic batches).

        A batch read once per campaign send, not per event: selected by the equalities
        :func:`segment_filter` pushes down; sorted here, never by the database (a sort is not pushed down).
        """
        cursor = self.members.find(segment_filter(channel_id, query), {"user_id": 1, "_id": 0})
        ids = [doc["user_id"] async for doc in cursor.batch_size(10_000)]
        ids.sort()
        return ids

    async def has_blocked(self, channel_id: str, user_id: str) -> bool:
        """Whether this member has blocked the channel (one read by ``_id``)."""
        doc = await self.members.find_one({"_id": f"{channel_id}:{user_id}"}, {"follow_state": 1})
        return doc is not None and doc.get("follow_state") == FollowState.BLOCKED.value

    async def blocked_among(self, channel_id: str, user_ids: Sequence[str]) -> set[str]:
        """Which of these members have blocked the channel: one read by ``_id`` each, a few at a time (for a
        short list; ``$in`` would read the whole collection on FerretDB)."""
        gate = asyncio.Semaphore(LOOKUP_CONCURRENCY)

        async def blocked(user_id: str) -> bool:
            async with gate:
                return await self.has_blocked(channel_id, user_id)

        found = await asyncio.gather(*(blocked(u) for u in user_ids))
        return {u for u, is_blocked in zip(user_ids, found, strict=True) if is_blocked}

    async def blocked_ids(self, channel_id: str) -> set[str]:
        """Every member of the channel who has blocked it: one equality query on the indexed
        ``(channel_id, follow_state)``, reading the blocked members only."""
        cursor = self.members.find(
            {"channel_id": channel_id, "follow_state": FollowState.BLOCKED.value}, {"user_id": 1, "_id": 0}
        )
        return {doc["user_id"] async for doc in cursor.batch_size(10_000)}

    # ---- sends ---------------------------------------------------------------------------------------
    async def create_send(self, doc: Doc) -> bool:
        """Insert a new send; ``False`` when its idempotency key was seen before."""
        doc = {**doc, "created_day": day_of(doc["created_at"])}
        await self._mark_day(doc["channel_id"], doc["created_day"])
        try:
            await self.sends.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def _mark_day(self, channel_id: str, day: str) -> None:
        """Record that the channel has sends on ``day`` (once per day and instance)."""
        marker = f"{channel_id}:{day}"
        if marker in self._days_marked:
            return
        with contextlib.suppress(DuplicateKeyError):  # another instance marked it at the same moment
            await self.send_days.update_one(
                {"_id": marker}, {"$setOnInsert": {"channel_id": channel_id, "day": day}}, upsert=True
            )
        self._days_marked.add(marker)

    async def _days(self, channel_id: str | None) -> list[str]:
        """The days with sends (of one channel), newest first. ``send_days`` holds one small document per
        channel and day: read whole when no channel is given (an admin listing, not a hot path)."""
        query: Doc = {} if channel_id is None else {"channel_id": channel_id}
        return sorted({doc["day"] async for doc in self.send_days.find(query, {"day": 1})}, reverse=True)

    async def get_send(self, send_id: str) -> Doc | None:
        return await self.sends.find_one({"_id": send_id})

    async def update_send(self, send_id: str, fields: Doc) -> None:
        await self.sends.update_one({"_id": send_id}, {"$set": fields})

    async def list_sends(self, channel_id: str | None, state: str | None, limit: int) -> list[Doc]:
        """The newest sends, optionally of one channel and in one state of their own (planning | planned).

        An admin listing (``GET /sends``), not a hot path. The database sorts nothing: the days with sends are
        walked newest first, each day's sends selected by equality (``created_day``, channel, state) with only
        ``_id`` and ``created_at`` read and sorted here, until ``limit`` are found; then those are read by
        ``_id``. The work is bounded by the newest days' sends, not by the collection.
        """
        found: list[tuple[datetime, str]] = []
        for day in await self._days(channel_id):
            query: Doc = {"created_day": day}
            if channel_id:
                query["channel_id"] = channel_id
            if state:
                query["state"] = state
            cursor = self.sends.find(query, {"created_at": 1})
            found += [(doc["created_at"], doc["_id"]) async for doc in cursor]
            if len(found) >= limit:
                break
        found.sort(reverse=True)
        return await self._sends_by_id([send_id for _, send_id in found[:limit]])

    async def sends_with_deliveries_in(
        self, channel_id: str | None, state: DeliveryState, limit: int
    ) -> list[Doc]:
        """The newest sends with at least one delivery in ``state`` now (what ``GET /sends/{ch}/{key}`` sums).

        An admin listing, not a hot path. Walks the days with sends newest first; each day's deliveries in
        ``state`` (of the channel) are selected by equality with only ``send_id`` and ``created_at`` read,
        until ``limit`` different sends are found. A delivery's ``created_at`` is its planning's start, never
        before its send's, so the newest sends come first. The work is bounded by the newest days' deliveries
        in that state, not by the collection (a campaign's thousands of multicasts are one day's bucket).
        """
        newest: dict[str, datetime] = {}
        for day in await self._days(channel_id):
            query: Doc = {"created_day": day, "state": state.value}
            if channel_id:
                query["channel_id"] = channel_id
            async for doc in self.deliveries.find(query, {"send_id": 1, "created_at": 1, "_id": 0}):
                seen = newest.get(doc["send_id"])
                if seen is None or doc["created_at"] > seen:
                    newest[doc["send_id"]] = doc["created_at"]
            if len(newest) >= limit:
                break
        ranked = sorted(newest, key=lambda send_id: newest[send_id], reverse=True)
        listed = await self._sends_by_id(ranked[:limit])
        listed.sort(key=lambda send: send["created_at"], reverse=True)
        return listed

    async def _sends_by_id(self, send_ids: Sequence[str]) -> list[Doc]:
        sends = [await self.sends.find_one({"_id": send_id}, {"request.messages": 0}) for send_id in send_ids]
        return [send for send in sends if send is not None]

    async def delivery_summary(self, send_id: str) -> dict[str, dict[str, int]]:
        """Per delivery state: how many deliveries and recipients.

        Summed here rather than with ``$group``: FerretDB 1.24 returns 0 for ``{"$sum": "$field"}`` after a
        ``$match`` stage.
        """
        summary: dict[str, dict[str, int]] = {}
        cursor = self.deliveries.find({"send_id": send_id}, {"state": 1, "recipient_count": 1})
        async for doc in cursor:
            entry = summary.setdefault(doc["state"], {"deliveries": 0, "recipients": 0})
            entry["deliveries"] += 1
            entry["recipients"] += int(doc.get("recipient_count", 0))
        return summary

    # ---- deliveries ------------------------------------------------------------------------------------
    async def add_delivery(self, delivery: Doc, recipients: list[str]) -> Doc | None:
        """Store a delivery and its recipients; returns the existing delivery if one has that id already."""
        delivery["created_day"] = day_of(delivery["created_at"])
        await self._mark_day(delivery["channel_id"], delivery["created_day"])
        with contextlib.suppress(DuplicateKeyError):  # written by an earlier, interrupted planning
            await self.recipients.insert_one({"_id": delivery["_id"], "user_ids": recipients})
        try:
            await self.deliveries.insert_one(delivery)
        except DuplicateKeyError:
            return await self.deliveries.find_one({"_id": delivery["_id"]})
        return None

    async def get_recipients(self, delivery_id: str) -> list[str]:
        doc = await self.recipients.find_one({"_id": delivery_id})
        return list(doc["user_ids"]) if doc else []

    async def set_recipients(self, delivery_id: str, user_ids: list[str]) -> None:
        await self.recipients.update_one({"_id": delivery_id}, {"$set": {"user_ids": user_ids}})

    async def get_delivery(self, delivery_id: str) -> Doc | None:
        return await self.deliveries.find_one({"_id": delivery_id})

    async def claim(
        self, delivery_id: str, now: datetime, lease_until: datetime, token: str, *, due: bool = True
    ) -> Doc | None:
        """pending (and due, unless ``due`` is false) → sending, owned by ``token`` until ``lease_until``;
        ``None`` if not claimable. One ``find_one_and_update`` selected by ``_id``: the database applies it
        atomically, so of any number of workers exactly one gets the delivery. (The members of a reply group
        are claimed with ``due=False`` by the worker that claimed the group's lead.)"""
        query: Doc = {"_id": delivery_id, "state": DeliveryState.PENDING.value}
        if due:
            query["next_attempt_at"] = {"$lte": now}
        return await self.deliveries.find_one_and_update(
            query,
            {"$set": {"state": DeliveryState.SENDING.value, "claim": token, "lease_until": lease_until}},
            return_document=ReturnDocument.AFTER,
        )

    async def keep_hold(self, delivery_id: str, token: str, hold: Doc, method: str) -> bool:
        """Record the quota hold and the method of a claimed call; ``False`` if the claim was lost."""
        kept = await self.deliveries.update_one(
            {"_id": delivery_id, "claim": token}, {"$set": {"hold": hold, "method": method}}
        )
        return kept.modified_count == 1

    async def wait_until(self, delivery_id: str, due: datetime) -> None:
        """A pending delivery is not due before ``due`` (a reply-group member due before its group)."""
        await self.deliveries.update_one(
            {"_id": delivery_id, "state": DeliveryState.PENDING.value}, {"$max": {"next_attempt_at": due}}
        )

    async def is_final(self, delivery_id: str) -> bool:
        doc = await self.deliveries.find_one({"_id": delivery_id}, {"state": 1})
        return doc is not None and DeliveryState(doc["state"]) in FINAL_STATES

    async def transition(self, delivery_id: str, token: str, set_: Doc, unset: Iterable[str] = ()) -> bool:
        """Apply the outcome of an attempt, only if this claim still owns the delivery.

        A result to publish (``pending_result``) raises the ``outbox`` flag with it, in the same update.
        """
        if "pending_result" in set_:
            set_ = {**set_, "outbox": True}
        update: Doc = {"$set": set_}
        unset_fields = dict.fromkeys(unset, "")
        if unset_fields:
            update["$unset"] = unset_fields
        result = await self.deliveries.update_one(
            {"_id": delivery_id, "state": DeliveryState.SENDING.value, "claim": token}, update
        )
        return result.modified_count == 1

    async def mark_result_published(self, delivery_id: str, event_id: str) -> None:
        await self.deliveries.update_one(
            {"_id": delivery_id, "pending_result.event_id": event_id},
            {"$unset": {"pending_result": "", "outbox": ""}},
        )

    async def due(self, partitions: Sequence[int], until: datetime, limit: int) -> list[Doc]:
        """Pending deliveries of these partitions due by ``until``, soonest first, at most ``limit``.

        One equality query per partition (``{partition, state: pending}``); the due time is compared here:
        a range on ``next_attempt_at`` would make the database read every delivery.
        """
        projection = {"_id": 1, "category": 1, "next_attempt_at": 1, "reply_group": 1}
        found: list[Doc] = []
        for partition in partitions:
            query = {"partition": partition, "state": DeliveryState.PENDING.value}
            found += [
                doc
                async for doc in self.deliveries.find(query, projection)
                if doc["next_attempt_at"] <= until
            ]
        found.sort(key=lambda doc: doc["next_attempt_at"])
        return found[:limit]

    async def release_expired_leases(self, partitions: Sequence[int], now: datetime) -> int:
        """Deliveries whose owner died mid-attempt go back to pending (the retry key makes that safe).

        The deliveries in flight on each partition are read by equality (a few per worker) and their lease
        compared here; each expired one is released with its claim token as predicate, so a worker that
        finishes at the same moment wins or loses cleanly.
        """
        released = 0
        for partition in partitions:
            query = {"partition": partition, "state": DeliveryState.SENDING.value}
            expired = [
                doc
                async for doc in self.deliveries.find(query, {"claim": 1, "lease_until": 1})
                if doc.get("lease_until") is None or doc["lease_until"] < now
            ]
            for doc in expired:
                result = await self.deliveries.update_one(
                    {"_id": doc["_id"], "state": DeliveryState.SENDING.value, "claim": doc.get("claim")},
                    {
                        "$set": {
                            "state": DeliveryState.PENDING.value,
                            "next_attempt_at": now,
                            "ambiguous": True,
                        }
                    },
                )
                released += result.modified_count
        return released

    async def unpublished(self, partitions: Sequence[int], limit: int) -> list[Doc]:
        """Deliveries of these partitions whose result is not published yet (``outbox`` raised)."""
        found: list[Doc] = []
        for partition in partitions:
            found += [doc async for doc in self.deliveries.find({"partition": partition, "outbox": True})]
            if len(found) >= limit:
                break
        return found[:limit]

    async def resume_deferred(self, channel_id: str, now: datetime) -> int:
        """Every deferred delivery of the channel is pending again (one update by indexed equality)."""
        result = await self.deliveries.update_many(
            {"channel_id": channel_id, "state": DeliveryState.DEFERRED.value},
            {"$set": {"state": DeliveryState.PENDING.value, "next_attempt_at": now}},
        )
        if result.modified_count:
            await self.count_deferred(channel_id, -result.modified_count)
        return result.modified_count

    async def count_deferred(self, channel_id: str, n: int) -> None:
        """Move the channel's count of deferred deliveries by ``n``: called by the writer of each change of
        a delivery into (a won transition) or out of (:meth:`resume_deferred`) ``deferred``. An ``$inc`` after
        the change, not with it (no transactions): a crash between the two leaves the figure one off."""
        await self.counters.update_one({"_id": f"{channel_id}:deferred"}, {"$inc": {"n": n}}, upsert=True)

    async def deferred_count(self, channel_id: str) -> int:
        """The channel's deferred deliveries, from its counter (one read by ``_id``)."""
        doc = await self.counters.find_one({"_id": f"{channel_id}:deferred"})
        return max(0, int(doc["n"])) if doc else 0

    async def count_deliveries(self, channel_id: str, state: DeliveryState) -> int:
        """Exactly how many of the channel's deliveries are in ``state``: reads their ids (an indexed
        equality query, no count). For checks and tools; the API shows :meth:`deferred_count`."""
        cursor = self.deliveries.find({"channel_id": channel_id, "state": state.value}, {"_id": 1})
        return len([doc async for doc in cursor])

    # ---- reply groups ----------------------------------------------------------------------------------
    async def add_reply_delivery(
        self, delivery: Doc, recipients: list[str], group_id: str, due: datetime
    ) -> Doc | None:
        """Store a reply delivery as a member of its reply group, like :meth:`add_delivery`.

        The delivery joins the group first, in one conditional upsert of the open group (created with it if
        this is its first request): it is added to the members and the group is sent no earlier than ``due``
        (the window starts when the request joins, after its planning); the delivery is then stored due when
        the group is. A delivery of a sealed group is stored due now (the dispatcher fails it as late).
        Joining is idempotent, so a planning resumed after a crash completes it.
        """
        delivery["reply_group"] = group_id
        group = await self._join_reply_group(group_id, delivery, due)
        if group is not None:
            delivery["next_attempt_at"] = max(delivery["next_attempt_at"], group["due_at"])
        return await self.add_delivery(delivery, recipients)

    async def _join_reply_group(self, group_id: str, delivery: Doc, due: datetime) -> Doc | None:
        """The group after the delivery joined it, or ``None`` if it is sealed."""
        for _ in range(3):
            try:
                return await self.reply_groups.find_one_and_update(
                    {"_id": group_id, "sealed": False},
                    {
                        "$setOnInsert": {
                            "channel_id": delivery["channel_id"],
                            "partition": delivery["partition"],
                            "created_at": delivery["created_at"],
                        },
                        "$addToSet": {"members": delivery["_id"]},
                        "$max": {"due_at": due},
                    },
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:  # the group exists and is sealed (or was created at the same moment)
                group = await self.reply_groups.find_one({"_id": group_id}, {"sealed": 1})
                if group is not None and group.get("sealed"):
                    return None
        raise RuntimeError(f"reply group {group_id} could neither be joined nor found sealed")

    async def get_reply_group(self, group_id: str) -> Doc | None:
        return await self.reply_groups.find_one({"_id": group_id})

    async def close_reply_group(self, group_id: str, now: datetime) -> Doc | None:
        """Seal the open group if its time has come (no request joins it any more); the group as sealed, with
        its final members, or ``None`` if it was not open or a request that joined moved its time on."""
        return await self.reply_groups.find_one_and_update(
            {"_id": group_id, "sealed": False, "due_at": {"$lte": now}},
            {"$set": {"sealed": True, "sealed_at": now}},
            return_document=ReturnDocument.AFTER,
        )

    async def seal_reply_group(
        self, group_id: str, included: list[str], left_out: list[str], at: datetime
    ) -> None:
        """The group's reply call is decided: these members are in it; no request joins it any more."""
        await self.reply_groups.update_one(
            {"_id": group_id},
            {"$set": {"sealed": True, "included": included, "left_out": left_out, "sealed_at": at}},
        )

    # ---- quota ledger ----------------------------------------------------------------------------------
    async def ensure_ledger(self, ledger_id: str, channel_id: str, month: str, limit: int) -> None:
        fresh = {
            "channel_id": channel_id,
            "month": month,
            "limit": limit,
            "remaining": limit,
            "used": 0,
            "reserved": 0,
            "external": 0,
            "rev": 0,
            "holds": {},
        }
        with contextlib.suppress(
            DuplicateKeyError
        ):  # MongoDB: another instance created it at the same moment
            await self.quota.update_one({"_id": ledger_id}, {"$setOnInsert": fresh}, upsert=True)

    async def get_ledger(self, ledger_id: str) -> Doc | None:
        return await self.quota.find_one({"_id": ledger_id})

    async def reserve(self, ledger_id: str, hold: str, n: int, need: int) -> bool:
        """Take ``n`` if ``remaining >= need``; idempotent for one hold (a second call finds it held).

        One conditional update (``remaining >= need`` and the hold not there yet) that takes the messages and
        records the hold: the database applies it atomically, so racing instances never take more than the
        ledger has.
        """
        result = await self.quota.update_one(
            {"_id": ledger_id, "remaining": {"$gte": need}, f"holds.{hold}": {"$exists": False}},
            {"$inc": {"remaining": -n, "reserved": n, "rev": 1}, "$set": {f"holds.{hold}": n}},
        )
        if result.modified_count == 1:
            return True
        held = await self.quota.find_one({"_id": ledger_id, f"holds.{hold}": {"$exists": True}}, {"_id": 1})
        return held is not None

    async def settle(self, ledger_id: str, hold: str, n: int, *, used: bool) -> int | None:
        """Drop a hold: into ``used`` (LINE took it) or back into ``remaining``; idempotent.

        Returns ``used`` as it was before (to price the messages), ``None`` if the hold was already settled.
        One conditional update on the hold's presence, so a hold is settled once however often it is tried.
        """
        inc = {"reserved": -n, "rev": 1, **({"used": n} if used else {"remaining": n})}
        before = await self.quota.find_one_and_update(
            {"_id": ledger_id, f"holds.{hold}": {"$exists": True}},
            {"$inc": inc, "$unset": {f"holds.{hold}": ""}},
            return_document=ReturnDocument.BEFORE,  # (FerretDB 1.24 takes no projection here)
        )
        return None if before is None else int(before["used"])

    async def compare_and_set_ledger(self, ledger_id: str, rev: int, fields: Doc) -> bool:
        """Set ``fields`` if the ledger is still at ``rev`` (one conditional update)."""
        result = await self.quota.update_one(
            {"_id": ledger_id, "rev": rev}, {"$set": fields, "$inc": {"rev": 1}}
        )
        return result.modified_count == 1
