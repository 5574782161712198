"""Runs commands on a live session: lock, catch up with the journal, apply, commit, publish, write the views.

:meth:`SessionWriter.run` is the only way anything changes a session (comments, status changes, the API,
expiry). The order of steps is what makes a crash harmless:

1. take the session's lock and catch up with its journal (roll forward an entry whose writer died before
   writing the views: write them, republish its outbox);
2. apply the commands to the in-memory session (pure domain code) and render the messages they cause;
3. insert the journal entry: the commit point (``adapters.store``). Nothing before it is visible anywhere;
4. publish the outbox (confirmation send requests, ``shop.orders.v1`` events) and wait for Kafka's acks,
   while the ``orders`` and ``ledger`` views are written;
5. write the ``sessions`` view with the entry's version: the mark of a finished entry.

A crash after 3 is finished by the next writer (step 1); a crash before 3 leaves no trace, and the Kafka
records that caused the commands are consumed again because their offsets were not committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from tagline_contracts import topics
from tagline_contracts.envelope import new_event_id
from tagline_contracts.orders import OrderEvent, OrderEventKind, OrderEventRecord, OrderLine
from tagline_contracts.sending import (
    ReplyContext,
    SendCategory,
    SendMessages,
    SendRequested,
    UserTarget,
    send_request_key,
)
from tagline_liveshop.adapters.store import Conflict, LiveshopStore, journal_doc
from tagline_liveshop.domain.messages import render
from tagline_liveshop.domain.model import Header, Order
from tagline_liveshop.domain.session import Changes, LiveSession, Notice
from tagline_platform.kafka import Outgoing

log = logging.getLogger("tagline.liveshop")

T = TypeVar("T")
PublishAll = Callable[[Sequence[Outgoing]], Awaitable[None]]


PUBLISHED_KINDS = frozenset(k.value for k in OrderEventKind)


class UnknownSession(LookupError):
    """No session with this id (never created)."""


def order_event(kind: str, order: Order) -> OrderEvent:
    return OrderEvent(
        kind=OrderEventKind(kind),
        order_id=order.order_id,
        user_id=order.user_id,
        session_id=order.session_id,
        lines=[
            OrderLine(product_code=x.code, variant=x.variant, quantity=x.quantity, unit_price=x.unit_price)
            for x in order.lines
        ],
        amount=order.amount,
        amount_paid=order.amount_paid,
        shipping_fee=order.shipping_fee,
        points=order.points,
        placed_at=order.created_at,
    )


def send_request(
    header: Header, notice: Notice, order: Order | None, now: datetime, topic_of: Callable[[str], str]
) -> Outgoing:
    target = UserTarget(user_id=notice.user_id)
    reply = (
        ReplyContext(token=notice.reply_token, received_at=notice.reply_received_at)
        if notice.reply_token and notice.reply_received_at
        else None
    )
    labels = {"source": "liveshop", "session_id": header.session_id}
    if notice.order_id:
        labels["order_id"] = notice.order_id
    request = SendMessages(
        idempotency_key=f"liveshop:{notice.key}"[:200],
        category=SendCategory.TRANSACTIONAL,
        messages=[{"type": "text", "text": render(header, notice, order)}],
        target=target,
        reply=reply,
        labels=labels,
    )
    envelope = SendRequested(
        event_id=new_event_id(),
        channel_id=header.channel_id,
        occurred_at=now,
        produced_at=now,
        payload=request,
    )
    return Outgoing.of(topic_of(topics.SEND_REQUESTS), send_request_key(header.channel_id, target), envelope)


def outbox_of(
    session: LiveSession, changes: Changes, now: datetime, topic_of: Callable[[str], str]
) -> list[Outgoing]:
    """The records ``changes`` cause: a send request per notice, an order event per (order, kind)."""
    header = session.header
    out = [
        send_request(header, n, session.orders.get(n.order_id) if n.order_id else None, now, topic_of)
        for n in changes.notices
    ]
    kinds: dict[str, list[str]] = {}
    for change in changes.order_changes:
        seen = kinds.setdefault(change.order_id, [])
        if change.kind == "changed" and ("placed" in seen or "changed" in seen):
            continue  # one "placed"/"changed" per order and batch, carrying its state at the end of it
        if change.kind not in seen:
            seen.append(change.kind)
    for order_id, order_kinds in kinds.items():
        order = session.orders[order_id]
        for kind in order_kinds:
            if kind not in PUBLISHED_KINDS:
                continue  # checked_out: the merchant's own backend said so; nothing for the tagger
            envelope = OrderEventRecord(
                event_id=new_event_id(),
                channel_id=header.channel_id,
                occurred_at=now,
                produced_at=now,
                payload=order_event(kind, order),
            )
            out.append(
                Outgoing.of(topic_of(topics.SHOP_ORDERS), f"{header.channel_id}:{order.user_id}", envelope)
            )
    return out


class SessionWriter:
    """Applies commands to sessions; keeps recently used sessions in memory (valid while their version is)."""

    def __init__(
        self,
        store: LiveshopStore,
        publish_all: PublishAll,
        *,
        topic_of: Callable[[str], str],
        clock: Callable[[], datetime],
        cache_size: int = 64,
    ) -> None:
        self._store = store
        self._publish_all = publish_all
        self._topic_of = topic_of
        self._clock = clock
        self._cache: OrderedDict[str, LiveSession] = OrderedDict()
        self._cache_size = cache_size
        self._local: dict[str, asyncio.Lock] = {}
        self.commits = 0
        self.conflicts = 0

    def forget(self, session_id: str) -> None:
        self._cache.pop(session_id, None)

    async def create(self, session: LiveSession) -> None:
        """Commit a new session (version 1); :class:`Conflict` if its id exists."""
        now = self._clock()
        changes = Changes(header=True)
        doc = journal_doc(session, changes, [], now)
        await self._store.commit(doc)
        session.version = 1
        await self._finish(session, doc, [])

    async def _finish(self, session: LiveSession, doc: dict[str, Any], outbox: Sequence[Outgoing]) -> None:
        """Steps 4 and 5: publish and write the views at the same time, then mark the entry finished."""
        outcomes = await asyncio.gather(
            self._publish_all(outbox), self._store.write_views(doc), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        await self._store.mark_finished(session)

    async def read(self, session_id: str) -> LiveSession:
        """The session as of its latest committed version (for the API; do not mutate it)."""
        async with self._local.setdefault(session_id, asyncio.Lock()):
            return await self._load(session_id, roll_forward=False)

    async def run(self, session_id: str, work: Callable[[LiveSession, Changes], T]) -> T:
        """Apply ``work`` to the session under its lock and commit what it changed (see the module doc).

        ``work`` must be pure apart from mutating the session and ``changes``; it may raise, in which case
        nothing is committed and the cached session is dropped."""
        while True:
            local = self._local.setdefault(session_id, asyncio.Lock())
            async with local, self._store.lock.hold(f"session:{session_id}"):
                try:
                    return await self._run_locked(session_id, work)
                except Conflict:
                    self.conflicts += 1
                    log.warning("journal conflict; reloading the session", extra={"session_id": session_id})
                except BaseException:
                    self.forget(session_id)
                    raise

    async def _load(self, session_id: str, *, roll_forward: bool = True) -> LiveSession:
        cached = self._cache.get(session_id)
        session, last = await self._store.load(session_id, cached)
        if session is None:
            raise UnknownSession(f"no live session {session_id!r}")
        if last is not None and await self._store.materialized_version(session_id) < int(last["seq"]):
            if not roll_forward:  # a reader: the writer may be at it; the next run() reloads and checks again
                self.forget(session_id)
                return session
            # its writer stopped between the commit and the views: finish its work (idempotent)
            await self._finish(session, last, [Outgoing.from_doc(m) for m in last["outbox"]])
        self._cache[session_id] = session
        self._cache.move_to_end(session_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return session

    async def _run_locked(self, session_id: str, work: Callable[[LiveSession, Changes], T]) -> T:
        session = await self._load(session_id)
        changes = Changes()
        try:
            result = work(session, changes)
        except BaseException:
            self.forget(session_id)
            raise
        if changes.empty():
            return result
        now = self._clock()
        outbox = outbox_of(session, changes, now, self._topic_of)
        doc = journal_doc(session, changes, outbox, now)
        try:
            await self._store.commit(doc)
        except BaseException:
            self.forget(session_id)  # the in-memory session holds uncommitted changes
            raise
        session.version += 1
        self.commits += 1
        await self._finish(session, doc, outbox)
        return result
