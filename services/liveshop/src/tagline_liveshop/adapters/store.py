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
  they do not waste work on conflicts. The lock guards no invariant (the journal's unique ``_id`` does), so
  the database's atomic conditional updates do not replace it, and it stays: a session has writers in every
  instance (its comments come on one ``live.comments.v1`` partition, but orders typed in the LINE chat on
  the buyers' ``line.events.v1`` partitions, status changes on ``shop.order-status.v1``'s, and the API and
  the expiry job anywhere), and without the lock each of them would apply its batch, lose the insert race,
  reload and apply it again. Neither does the journal become a conditional ``$inc`` on stock
  (``{remaining: {$gte: q}}``, exact now): that is one write per comment, and a server applies a few
  hundred updates a second to one collection, while a session takes thousands of comments a second as one
  journal entry per batch.

Every query on a hot path goes by ``_id`` or an equality on indexed top-level fields (:data:`HOT_QUERIES`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from tagline_contracts.envelope import new_event_id
from tagline_liveshop.domain.model import Header, Order, WaitEntry
from tagline_liveshop.domain.session import Changes, LiveSession
from tagline_platform.errors import TaglineError
from tagline_platform.kafka import Outgoing
from tagline_platform.mongo import DocumentLock, HotQuery

READ_AHEAD = 16
"""Journal entries read concurrently while catching up."""

BULK_BATCH = 1_000
"""Most statements per ``bulk_write`` command (bounds one command's size)."""

EXPIRY_PENDING = "pending"
"""``sessions.expiry`` of a session with an unpaid order whose reservation runs out (absent otherwise)."""

_SESSION = "01JF3Z8M6Q4W2N7B5V9C1X0K8T"
_ORDER = f"{_SESSION}-17"
_CHANNEL = "1234567890"

HOT_QUERIES: tuple[HotQuery, ...] = (
    HotQuery("journal", {"_id": f"{_SESSION}:42"}, "a session's journal entry (catching up, per batch)"),
    HotQuery(
        "sessions",
        {"_id": _SESSION},
        "a session's view: the version its views are written up to (per batch), its replace_one",
    ),
    HotQuery("sessions", {"status": "live"}, "the live sessions, reloaded every second (chat orders)"),
    HotQuery(
        "sessions",
        {"expiry": EXPIRY_PENDING},
        "sessions with an unpaid order's reservation to expire (the expiry job, every few seconds)",
    ),
    HotQuery("sessions", {"channel_id": _CHANNEL, "status": "live"}, "the API's sessions of a channel"),
    HotQuery("sessions", {"channel_id": _CHANNEL}, "the API's sessions of a channel, any status"),
    HotQuery("orders", {"_id": _ORDER}, "an order's view: written per batch, read to announce points"),
    HotQuery("ledger", {"state": "pending"}, "POINTS entries to grant (the granter's poll, every second)"),
    HotQuery("ledger", {"state": "granted"}, "POINTS entries granted, to announce (the granter's poll)"),
    HotQuery(
        "ledger",
        {"_id": _ORDER, "state": "pending", "next_attempt_at": datetime(2026, 12, 1, 10, 5, tzinfo=UTC)},
        "claiming a POINTS entry for one attempt (compare-and-set), and settling it by state",
    ),
    HotQuery("ledger", {"_id": _ORDER}, "the API's ledger entry of an order"),
    HotQuery("ledger", {"session_id": _SESSION}, "the API's ledger entries of a session"),
    HotQuery("locks", {"_id": f"session:{_SESSION}"}, "a session's writer lock (per batch)"),
)
"""Every query shape this store runs on a hot path (checked by ``tests/storage``)."""


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
        """The indexes :data:`HOT_QUERIES` use besides ``_id``'s (the polls and the API's lists)."""
        await self.sessions.create_index([("status", ASCENDING)])
        await self.sessions.create_index([("channel_id", ASCENDING), ("status", ASCENDING)])
        await self.sessions.create_index([("expiry", ASCENDING)])
        await self.ledger.create_index([("state", ASCENDING)])
        await self.ledger.create_index([("session_id", ASCENDING)])

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
        for start in range(0, len(orders), BULK_BATCH):
            await self.orders.bulk_write(orders[start : start + BULK_BATCH], ordered=False)
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
        next_expiry = session.next_expiry()
        view = {
            "_id": session.header.session_id,
            **header,
            "version": session.version,
            "next_expiry_at": next_expiry,
            "figures": session.dashboard(),
        }
        if next_expiry is not None:
            view["expiry"] = EXPIRY_PENDING  # what the expiry job finds the session by (an equality)
        await self.sessions.replace_one({"_id": session.header.session_id}, view, upsert=True)

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
        """Sessions with an unpaid order whose reservation has run out.

        Read by equality (``expiry``: only sessions with an unpaid order have it), due ones picked here: a
        range on ``next_expiry_at`` would read every session ever held."""
        cursor = self.sessions.find({"expiry": EXPIRY_PENDING}, {"_id": 1, "next_expiry_at": 1})
        return [
            doc["_id"]
            async for doc in cursor
            if doc.get("next_expiry_at") is not None and doc["next_expiry_at"] <= now
        ]

    async def order(self, order_id: str) -> dict[str, Any] | None:
        return await self.orders.find_one({"_id": order_id})

    # ---- the POINTS ledger ---------------------------------------------------------------------------
    async def due_grants(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Ledger entries to grant (``pending``) or announce (``granted``) whose next attempt is due.

        One equality read per state (entries done, failed or with nothing to grant, nearly all of them, are
        never read); entries waiting for a retry or held by another granter's claim are read and skipped."""
        due: list[dict[str, Any]] = []
        for state in ("pending", "granted"):
            async for doc in self.ledger.find({"state": state}):
                at = doc.get("next_attempt_at")
                if at is None or at <= now:
                    due.append(doc)
                    if len(due) >= limit:
                        return due
        return due

    async def claim_grant(self, entry: dict[str, Any], until: datetime) -> bool:
        """Take ``entry`` (as read) for one attempt until ``until``; ``False`` if another granter has it.

        A compare-and-set on its state and ``next_attempt_at`` (atomic on MongoDB and the project's
        FerretDB build): of granters that read the entry due, one moves its next attempt to ``until``."""
        result = await self.ledger.update_one(
            {"_id": entry["_id"], "state": entry["state"], "next_attempt_at": entry.get("next_attempt_at")},
            {"$set": {"next_attempt_at": until}},
        )
        return result.modified_count == 1

    async def ledger_entries(
        self, *, session_id: str | None = None, order_id: str | None = None
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {}
        if session_id is not None:
            query["session_id"] = session_id
        if order_id is not None:
            query["_id"] = order_id
        docs = [doc async for doc in self.ledger.find(query)]
        return sorted(docs, key=lambda doc: str(doc["_id"]))  # sorted here: a sort is a scan on FerretDB

    async def mark_ledger(
        self, order_id: str, fields: dict[str, Any], *, state: str, attempts: int = 0
    ) -> bool:
        """Set ``fields`` on the entry if it is still in ``state``; ``False`` if it has moved on."""
        update: dict[str, Any] = {"$set": fields}
        if attempts:
            update["$inc"] = {"attempts": attempts}
        result = await self.ledger.update_one({"_id": order_id, "state": state}, update)
        return result.matched_count == 1
