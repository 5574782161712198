"""The sender's MongoDB (or FerretDB) collections.

* ``members``: the sender's projection of ``member.changes.v1`` (``_id`` = ``channel:userId``). A change is
  applied only if its ``version`` is newer than the stored one (conditional upsert), so redelivered and
  reordered changes are harmless.
* ``sends``: one document per request (``_id`` = ``channel:idempotencyKey``): inserting it is what makes
  the same key twice a no-op (the ``_id`` is unique).
* ``deliveries``: one document per LINE call (``_id`` = ``send:batch``) with its state, retry key, attempts
  and an outbox field ``pending_result``; every transition is one conditional update on the state and the
  claim token, so two instances can never both act on one delivery. ``recipients`` holds each delivery's
  user ids apart, so scans of ``deliveries`` stay small.
* ``reply_groups``: one document per reply token in use (``_id`` = ``channel:hash(token)``, see
  :mod:`tagline_sender.domain.replies`): its member deliveries in arrival order, when it is sent, and once
  sealed (its reply call decided) which members it holds. Every read-check-write of a group (a member
  joining, the dispatcher sealing it) runs under the group's :class:`DocumentLock`, and it is only ever read
  by ``_id``.
* ``quota``: the monthly ledger, one document per (channel, month); see :mod:`tagline_sender.domain.quota`.
  Every change of a ledger is a read-check-write under a per-ledger :class:`DocumentLock` (a unique
  insert), which is what keeps the limit with any number of instances: FerretDB, unlike MongoDB, does not
  apply a conditional update atomically. Holds are kept per delivery in ``holds.<id>``, which makes
  reserve / confirm / release idempotent.

Only operations FerretDB 1.x supports are used (DESIGN.md §4): no transactions, no ``$expr``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from tagline_contracts.members import FollowState, MemberChanged
from tagline_platform.mongo import DocumentLock, chunked
from tagline_sender.domain.delivery import DeliveryState

Doc = dict[str, Any]
DUPLICATE_KEY = 11000


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


class SenderStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.members = db["members"]
        self.sends = db["sends"]
        self.deliveries = db["deliveries"]
        self.recipients = db["recipients"]
        self.quota = db["quota"]
        self.reply_groups = db["reply_groups"]
        # Every ledger change happens under this lock: FerretDB does not apply conditional updates
        # atomically (see DocumentLock), and the quota must hold with any number of instances.
        # 30 s, not the default 10: every call of a channel reserves and settles under its ledger's lock
        self._lock = DocumentLock(db["locks"], timeout_s=30.0)

    async def ensure_indexes(self) -> None:
        await self.members.create_index([("channel_id", ASCENDING), ("follow_state", ASCENDING)])
        await self.sends.create_index([("channel_id", ASCENDING), ("created_at", ASCENDING)])
        await self.deliveries.create_index([("state", ASCENDING), ("next_attempt_at", ASCENDING)])
        await self.deliveries.create_index([("send_id", ASCENDING), ("batch", ASCENDING)])
        # GET /sends?state=<delivery state>, with and without a channel (newest first); the second one also
        # serves the per-channel counts of deferred deliveries and their resumption.
        await self.deliveries.create_index([("state", ASCENDING), ("created_at", DESCENDING)])
        await self.deliveries.create_index(
            [("channel_id", ASCENDING), ("state", ASCENDING), ("created_at", DESCENDING)]
        )

    # ---- members projection ------------------------------------------------------------------------
    async def apply_member_changes(self, channel_id: str, changes: Sequence[MemberChanged]) -> int:
        """Upsert each change unless a newer version is stored; returns how many were applied.

        The version predicate makes a stale change's upsert collide with the stored ``_id``: a duplicate key
        means the stored version is newer or equal, i.e. the change is already applied.
        """
        statements = [
            (
                {"_id": f"{channel_id}:{change.user_id}", "version": {"$lt": change.version}},
                {"$set": projection_doc(channel_id, change)},
            )
            for change in changes
        ]
        applied = 0
        for chunk in chunked(statements):  # FerretDB deadlocks on bigger bulk writes (tagline_platform.mongo)
            try:
                result = await self.members.bulk_write(
                    [UpdateOne(query, update, upsert=True) for query, update in chunk], ordered=False
                )
            except KeyError:
                # FerretDB's reply omits nModified when every statement failed, which PyMongo cannot merge:
                # apply this chunk one statement at a time (every change in it is probably stale).
                applied += await self._apply_one_by_one(chunk)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                applied += len(chunk) - len(errors)
            else:
                applied += result.upserted_count + result.modified_count
        return applied

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
        """Followed members of the channel matching ``query``, sorted (deterministic batches)."""
        full = {"$and": [{"channel_id": channel_id, "follow_state": FollowState.FOLLOWED.value}, query]}
        ids = [doc["user_id"] async for doc in self.members.find(full, {"user_id": 1, "_id": 0})]
        ids.sort()
        return ids

    async def count_members(self, channel_id: str, query: Doc) -> int:
        full = {"$and": [{"channel_id": channel_id, "follow_state": FollowState.FOLLOWED.value}, query]}
        return await self.members.count_documents(full)

    async def has_blocked(self, channel_id: str, user_id: str) -> bool:
        """Whether this member has blocked the channel (one read by ``_id``)."""
        doc = await self.members.find_one({"_id": f"{channel_id}:{user_id}"}, {"follow_state": 1})
        return doc is not None and doc.get("follow_state") == FollowState.BLOCKED.value

    async def blocked_ids(self, channel_id: str) -> set[str]:
        """Every member of the channel who has blocked it (usually few; one query per planning)."""
        cursor = self.members.find(
            {"channel_id": channel_id, "follow_state": FollowState.BLOCKED.value}, {"user_id": 1, "_id": 0}
        )
        return {doc["user_id"] async for doc in cursor}

    # ---- sends ---------------------------------------------------------------------------------------
    async def create_send(self, doc: Doc) -> bool:
        """Insert a new send; ``False`` when its idempotency key was seen before."""
        try:
            await self.sends.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def get_send(self, send_id: str) -> Doc | None:
        return await self.sends.find_one({"_id": send_id})

    async def update_send(self, send_id: str, fields: Doc) -> None:
        await self.sends.update_one({"_id": send_id}, {"$set": fields})

    async def list_sends(self, channel_id: str | None, state: str | None, limit: int) -> list[Doc]:
        """The newest sends, optionally of one channel and in one state of their own (planning | planned)."""
        query: Doc = {}
        if channel_id:
            query["channel_id"] = channel_id
        if state:
            query["state"] = state
        cursor = self.sends.find(query, {"request.messages": 0}).sort("created_at", -1).limit(limit)
        return [doc async for doc in cursor]

    async def sends_with_deliveries_in(
        self, channel_id: str | None, state: DeliveryState, limit: int
    ) -> list[Doc]:
        """The newest sends with at least one delivery in ``state`` now (what ``GET /sends/{ch}/{key}`` sums).

        Walks the deliveries in ``state`` newest first on the ``(channel_id,) state, created_at`` index, with
        only ``send_id`` read, until ``limit`` different sends are found; then reads those sends by ``_id``.
        A delivery's ``created_at`` is its planning's start, never before its send's, so the newest sends
        come first. (The walk passes every delivery of a send in that state: a campaign's thousands of
        ``sent`` multicasts are read as index entries, not as a scan of the collection.)
        """
        query: Doc = {"state": state.value}
        if channel_id:
            query["channel_id"] = channel_id
        found: list[str] = []
        seen: set[str] = set()
        cursor = (
            self.deliveries.find(query, {"send_id": 1, "_id": 0}).sort("created_at", -1).batch_size(1_000)
        )
        async for doc in cursor:
            if doc["send_id"] not in seen:
                seen.add(doc["send_id"])
                found.append(doc["send_id"])
                if len(found) == limit:
                    break
        await cursor.close()
        sends = [await self.sends.find_one({"_id": send_id}, {"request.messages": 0}) for send_id in found]
        listed = [send for send in sends if send is not None]
        listed.sort(key=lambda send: send["created_at"], reverse=True)
        return listed

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
        ``None`` if not claimable. (Members of a reply group are claimed with ``due=False`` by the member that
        came due, under the group's lock.)"""
        query: Doc = {"_id": delivery_id, "state": DeliveryState.PENDING.value}
        if due:
            query["next_attempt_at"] = {"$lte": now}
        return await self.deliveries.find_one_and_update(
            query,
            {"$set": {"state": DeliveryState.SENDING.value, "claim": token, "lease_until": lease_until}},
            return_document=ReturnDocument.AFTER,
        )

    # ---- reply groups ----------------------------------------------------------------------------------
    @asynccontextmanager
    async def reply_lock(self, group_id: str) -> AsyncIterator[None]:
        """The lock every read-check-write of one reply group runs under (FerretDB: see the module doc)."""
        async with self._lock.hold(f"reply:{group_id}"):
            yield

    async def add_reply_delivery(
        self, delivery: Doc, recipients: list[str], group_id: str, send_at: Callable[[], datetime]
    ) -> Doc | None:
        """Store a reply delivery as a member of its reply group, like :meth:`add_delivery`.

        Under the group's lock: the group is created if this is its first request; while it is not sealed,
        the delivery joins its members and the group is sent no earlier than ``send_at()`` (asked under the
        lock: the window starts when the request joins, after its planning), and the delivery is due then.
        A delivery of a sealed group is stored due now (the dispatcher fails it as late). The delivery is
        inserted before it joins, so a group never names a delivery that does not exist; joining is
        idempotent, so a planning resumed after a crash completes it.
        """
        async with self.reply_lock(group_id):
            group = await self.reply_groups.find_one({"_id": group_id})
            due = send_at()
            if group is None:
                group = {
                    "_id": group_id,
                    "channel_id": delivery["channel_id"],
                    "partition": delivery["partition"],
                    "members": [],
                    "due_at": due,
                    "sealed": False,
                    "created_at": delivery["created_at"],
                }
                await self.reply_groups.insert_one(group)
            delivery["reply_group"] = group_id
            if group["sealed"]:
                return await self.add_delivery(delivery, recipients)
            due = max(due, group["due_at"])
            delivery["next_attempt_at"] = max(delivery["next_attempt_at"], due)
            existing = await self.add_delivery(delivery, recipients)
            if delivery["_id"] not in group["members"] or due != group["due_at"]:
                await self.reply_groups.update_one(
                    {"_id": group_id}, {"$addToSet": {"members": delivery["_id"]}, "$set": {"due_at": due}}
                )
            return existing

    async def get_reply_group(self, group_id: str) -> Doc | None:
        return await self.reply_groups.find_one({"_id": group_id})

    async def seal_reply_group(
        self, group_id: str, included: list[str], left_out: list[str], at: datetime
    ) -> None:
        """The group's reply call is decided: these members are in it; no request joins it any more."""
        await self.reply_groups.update_one(
            {"_id": group_id},
            {"$set": {"sealed": True, "included": included, "left_out": left_out, "sealed_at": at}},
        )

    async def transition(self, delivery_id: str, token: str, set_: Doc, unset: Iterable[str] = ()) -> bool:
        """Apply the outcome of an attempt, only if this claim still owns the delivery."""
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
            {"_id": delivery_id, "pending_result.event_id": event_id}, {"$unset": {"pending_result": ""}}
        )

    async def due(self, partitions: Sequence[int], until: datetime, limit: int) -> list[Doc]:
        query = {
            "state": DeliveryState.PENDING.value,
            "partition": {"$in": list(partitions)},
            "next_attempt_at": {"$lte": until},
        }
        projection = {"_id": 1, "category": 1, "next_attempt_at": 1, "reply_group": 1}
        cursor = self.deliveries.find(query, projection).sort("next_attempt_at", 1).limit(limit)
        return [doc async for doc in cursor]

    async def release_expired_leases(self, partitions: Sequence[int], now: datetime) -> int:
        """Deliveries whose owner died mid-attempt go back to pending (the retry key makes that safe)."""
        result = await self.deliveries.update_many(
            {
                "state": DeliveryState.SENDING.value,
                "partition": {"$in": list(partitions)},
                "lease_until": {"$lt": now},
            },
            {"$set": {"state": DeliveryState.PENDING.value, "next_attempt_at": now, "ambiguous": True}},
        )
        return result.modified_count

    async def unpublished(self, partitions: Sequence[int], limit: int) -> list[Doc]:
        query = {"partition": {"$in": list(partitions)}, "pending_result": {"$exists": True}}
        return [doc async for doc in self.deliveries.find(query).limit(limit)]

    async def resume_deferred(self, channel_id: str, now: datetime) -> int:
        result = await self.deliveries.update_many(
            {"channel_id": channel_id, "state": DeliveryState.DEFERRED.value},
            {"$set": {"state": DeliveryState.PENDING.value, "next_attempt_at": now}},
        )
        return result.modified_count

    async def count_deliveries(self, channel_id: str, state: DeliveryState) -> int:
        return await self.deliveries.count_documents({"channel_id": channel_id, "state": state.value})

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
        with contextlib.suppress(DuplicateKeyError):  # another instance created it at the same moment
            await self.quota.update_one({"_id": ledger_id}, {"$setOnInsert": fresh}, upsert=True)

    async def get_ledger(self, ledger_id: str) -> Doc | None:
        return await self.quota.find_one({"_id": ledger_id})

    async def reserve(self, ledger_id: str, hold: str, n: int, need: int) -> bool:
        """Take ``n`` if ``remaining >= need``; idempotent for one hold (a second call finds it held)."""
        async with self._lock.hold(f"quota:{ledger_id}"):
            doc = await self.quota.find_one({"_id": ledger_id})
            if doc is None:
                return False
            if hold in doc.get("holds", {}):
                return True
            if doc["remaining"] < need:
                return False
            await self.quota.update_one(
                {"_id": ledger_id},
                {"$inc": {"remaining": -n, "reserved": n, "rev": 1}, "$set": {f"holds.{hold}": n}},
            )
            return True

    async def settle(self, ledger_id: str, hold: str, n: int, *, used: bool) -> int | None:
        """Drop a hold: into ``used`` (LINE took it) or back into ``remaining``; idempotent.

        Returns ``used`` as it was before (to price the messages), ``None`` if the hold was already settled.
        """
        async with self._lock.hold(f"quota:{ledger_id}"):
            doc = await self.quota.find_one({"_id": ledger_id})
            if doc is None or hold not in doc.get("holds", {}):
                return None
            inc = {"reserved": -n, "rev": 1, **({"used": n} if used else {"remaining": n})}
            await self.quota.update_one({"_id": ledger_id}, {"$inc": inc, "$unset": {f"holds.{hold}": ""}})
            return int(doc["used"])

    async def compare_and_set_ledger(self, ledger_id: str, rev: int, fields: Doc) -> bool:
        async with self._lock.hold(f"quota:{ledger_id}"):
            doc = await self.quota.find_one({"_id": ledger_id}, {"rev": 1})
            if doc is None or doc["rev"] != rev:
                return False
            await self.quota.update_one({"_id": ledger_id}, {"$set": fields, "$inc": {"rev": 1}})
            return True
