"""MongoDB (or FerretDB) persistence of live sessions: a journal per session, views, the POINTS ledger.

Where the guarantees come from:

- **The journal is the commit point.** Every change to a session is one document
  ``journal/{_id: "<session>:<seq>"}`` holding everything one batch changed (header with stock, changed
  orders, waitlist changes, applied input ids) and the messages it causes (``outbox``). Inserting a unique
  ``_id`` is atomic on FerretDB too, so two writers that both read version *n* cannot both commit *n + 1*:
  the second gets ``DuplicateKeyError`` (:class:`Conflict`), drops its in-memory state and retries from the
  journal. That is what makes stock exact with any number of instances, even if the session lock below were
  taken over from a live holder.
- **A session's state is the fold of its journal.** :meth:`LiveshopStore.load` replays it (or only the
  entries after the cached version), so comments already applied are known after any crash.
- **Views are rolled forward idempotently.** ``sessions`` (header, version, next expiry), ``orders`` (one
  document per order) and ``ledger`` (one per archived order, keyed by order id) are written from the
  journal entry after the commit, the ``sessions`` view last with the entry's version; a writer finding a
  newer entry than that version (its writer crashed) writes it again and republishes its outbox (consumers
  dedupe by event id / idempotency key).
- Writers of one session queue on a :class:`~tagline_platform.mongo.DocumentLock` (``session:<id>``) so
  they do not waste work on conflicts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from tagline_contracts.envelope import new_event_id
from tagline_liveshop.domain.model import Header, Order, WaitEntry
from tagline_liveshop.domain.session import Changes, LiveSession
from tagline_platform.errors import TaglineError
from tagline_platform.kafka import Outgoing
from tagline_platform.mongo import DocumentLock, chunked

READ_AHEAD = 16
"""Journal entries read concurrently while catching up."""


class Conflict(TaglineError):
    """Another writer committed this session's next version first; reload and try again."""


def journal_id(session_id: str, seq: int) -> str:
    return f"{session_id}:{seq}"


def journal_doc(
    session: LiveSession, changes: Changes, outbox: Sequence[Outgoing], now: datetime
) -> dict[str, Any]:
    """The journal entry of ``changes``, which brought ``session`` to version ``session.version + 1``."""
    seq = session.version + 1
    return {
        "_id": journal_id(session.header.session_id, seq),
        "session_id": session.header.session_id,
        "seq": seq,
        "at": now,
        "header": session.header.to_doc() if changes.header or session.version == 0 else None,
        "orders": [order.to_doc() for order in changes.orders.values()],
        "wait_added": [entry.to_doc() for entry in changes.wait_added],
        "wait_changed": [{"id": entry_id, "quantity": n} for entry_id, n in changes.wait_changed.items()],
        "seen": list(changes.seen),
        "ledger": [
            {
                "_id": entry.order_id,
                "channel_id": session.header.channel_id,
                "session_id": session.header.session_id,
                "user_id": entry.user_id,
                "points": entry.points,
                "basis": entry.amount_basis,
                "state": "pending" if entry.points > 0 else "nothing_to_grant",
                "created_at": now,
                "attempts": 0,
                "next_attempt_at": None,
                "event_id": new_event_id(),  # PointsGranted's: stable across retries
            }
            for entry in changes.ledger
        ],
        "outbox": [message.to_doc() for message in outbox],
    }


def absorb(session: LiveSession | None, doc: dict[str, Any]) -> LiveSession:
    """``session`` with journal entry ``doc`` applied (a new session for the first entry)."""
    if doc["header"] is not None:
        header = Header.from_doc(doc["header"])
        if session is None:
            session = LiveSession(header)
        else:
            session.header = header
    if session is None:
        raise ValueError(f"journal entry {doc['_id']} has no header and no session precedes it")
    for order in doc["orders"]:
        session.put_order(Order.from_doc(order))
    for entry in doc["wait_added"]:
        session.add_waiting(WaitEntry.from_doc(entry))
    session.set_waiting({item["id"]: int(item["quantity"]) for item in doc["wait_changed"]})
    session.seen.update(doc["seen"])
    session.version = int(doc["seq"])
    return session


class LiveshopStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], *, lock_stale_after_s: float = 10.0) -> None:
        self.db = db
        self.journal = db["journal"]
        self.sessions = db["sessions"]
        self.orders = db["orders"]
        self.ledger = db["ledger"]
        self.lock = DocumentLock(db["locks"], stale_after_s=lock_stale_after_s, timeout_s=30.0)

    async def ensure_indexes(self) -> None:
        """Only ``_id`` is needed: every hot read is by ``_id`` (FerretDB uses no other index)."""

    # ---- the journal ---------------------------------------------------------------------------------
    async def load(
        self, session_id: str, cached: LiveSession | None
    ) -> tuple[LiveSession | None, dict[str, Any] | None]:
        """The session caught up with its journal, and the last entry read (``None`` if none was newer).

        ``(None, None)`` for a session that does not exist."""
        session = cached
        seq = (cached.version if cached else 0) + 1
        # the common case: this instance wrote the latest entry, so one probe finds nothing newer
        last = await self.journal.find_one({"_id": journal_id(session_id, seq)})
        if last is None:
            return session, None
        session = absorb(session, last)
        seq += 1
        while True:
            docs = await asyncio.gather(
                *(
                    self.journal.find_one({"_id": journal_id(session_id, n)})
                    for n in range(seq, seq + READ_AHEAD)
                )
            )
            for doc in docs:
                if doc is None:
                    return session, last
                session = absorb(session, doc)
                last = doc
            seq += READ_AHEAD

    async def materialized_version(self, session_id: str) -> int:
        """The journal version the views are written up to (the ``sessions`` view is written last)."""
        doc = await self.sessions.find_one({"_id": session_id}, {"version": 1})
        return int(doc["version"]) if doc else 0

    async def commit(self, doc: dict[str, Any]) -> None:
        try:
            await self.journal.insert_one(doc)
        except DuplicateKeyError as exc:
            raise Conflict(f"journal entry {doc['_id']} was written by another instance") from exc

    async def write_views(self, doc: dict[str, Any]) -> None:
        """Write the ``orders`` and ``ledger`` views of journal entry ``doc`` (idempotent)."""
        seq = int(doc["seq"])
        orders = [ReplaceOne({"_id": o["_id"]}, {**o, "version": seq}, upsert=True) for o in doc["orders"]]
        for chunk in chunked(orders):
            await self.orders.bulk_write(list(chunk), ordered=False)
        if doc["ledger"]:
            try:
                await self.ledger.insert_many(doc["ledger"], ordered=False)
            except BulkWriteError as exc:  # an entry written before: the ledger is keyed by order id
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise

    async def mark_finished(self, session: LiveSession) -> None:
        """Write the ``sessions`` view at ``session.version``: the mark that its entry is finished.

        Called after the entry's messages are published and its other views written. Marking the journal entry
        itself would make FerretDB rewrite the whole (often hundreds of KB) document: the largest cost of a
        batch when it did (bench/README.md)."""
        header = session.header.to_doc()
        await self.sessions.replace_one(
            {"_id": session.header.session_id},
            {
                "_id": session.header.session_id,
                **header,
                "version": session.version,
                "next_expiry_at": session.next_expiry(),
                "figures": session.dashboard(),
            },
            upsert=True,
        )

    # ---- views ---------------------------------------------------------------------------------------
    async def session_ids(
        self, *, channel_id: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {}
        if channel_id is not None:
            query["channel_id"] = channel_id
        if status is not None:
            query["status"] = status
        projection = {
            "session_id": 1,
            "channel_id": 1,
            "status": 1,
            "title": 1,
            "started_at": 1,
            "next_expiry_at": 1,
        }
        return [doc async for doc in self.sessions.find(query, projection)]

    async def due_sessions(self, now: datetime) -> list[str]:
        """Sessions with an unpaid order whose reservation has run out."""
        return [doc["_id"] async for doc in self.sessions.find({"next_expiry_at": {"$lte": now}}, {"_id": 1})]

    async def find_orders(
        self, session_id: str, state: str | None, limit: int, after: str | None
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"session_id": session_id}
        if state is not None:
            query["state"] = state
        if after is not None:
            query["_id"] = {"$gt": after}
        return [doc async for doc in self.orders.find(query).sort("_id", 1).limit(limit)]

    async def order(self, order_id: str) -> dict[str, Any] | None:
        return await self.orders.find_one({"_id": order_id})

    # ---- the POINTS ledger ---------------------------------------------------------------------------
    async def pending_grants(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Ledger entries to grant or announce whose next attempt is due."""
        query = {
            "state": {"$in": ["pending", "granted"]},
            "$or": [{"next_attempt_at": None}, {"next_attempt_at": {"$lte": now}}],
        }
        return [doc async for doc in self.ledger.find(query).limit(limit)]

    async def ledger_entries(
        self, *, session_id: str | None = None, order_id: str | None = None
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {}
        if session_id is not None:
            query["session_id"] = session_id
        if order_id is not None:
            query["_id"] = order_id
        return [doc async for doc in self.ledger.find(query).sort("_id", 1)]

    async def mark_ledger(self, order_id: str, fields: dict[str, Any], *, attempts: int = 0) -> None:
        update: dict[str, Any] = {"$set": fields}
        if attempts:
            update["$inc"] = {"attempts": attempts}
        await self.ledger.update_one({"_id": order_id}, update)
