"""From Kafka records to session commands: comments, chat orders and order status changes, per session.

One batch subscriber consumes ``live.comments.v1``, ``line.events.v1`` and ``shop.order-status.v1``. A batch
is decoded, grouped by session (a comment names its session; a LINE text message goes to the channel's live
session; a status change's order id starts with its session id), and each session's inputs are applied in
arrival order in one :meth:`SessionWriter.run` (one journal entry, one lock round trip), sessions
concurrently. Offsets are committed after every session's entry is committed and published, so a crash
replays the batch and the journal's applied-input ids drop what was already applied.

Bad input (undecodable, unknown session, a transition the order's state does not allow) is dead-lettered with
the reason; infrastructure errors fail the batch, which is consumed again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from tagline_contracts import topics
from tagline_contracts.envelope import LineEventReceived
from tagline_contracts.live import LiveCommentRecord, OrderStatus, OrderStatusRecord
from tagline_contracts.webhook import MessageEvent, UserSource
from tagline_liveshop.domain.model import OrderState
from tagline_liveshop.domain.session import Changes, Comment, LiveSession, Rejected
from tagline_liveshop.writer import SessionWriter, UnknownSession
from tagline_platform.deadletters import reason

log = logging.getLogger("tagline.liveshop.pipeline")

CONSUMED = (topics.LIVE_COMMENTS, topics.LINE_EVENTS, topics.SHOP_ORDER_STATUS)

DeadLetter = Callable[[str, Any, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StatusInput:
    key: str
    order_id: str
    status: OrderStatus
    at: datetime
    amount_paid: float | None
    discount: float
    shipping_fee: float
    reason: str | None


@dataclass(frozen=True, slots=True)
class Input:
    topic: str
    record: Any
    channel_id: str
    session_id: str
    item: Comment | StatusInput


def session_of_order(order_id: str) -> str:
    """Order ids are ``<session id>-<n>`` (see ``LiveSession._add_to_order``)."""
    session_id, sep, number = order_id.rpartition("-")
    if not sep or not session_id or not number.isdigit():
        raise Rejected(f"order id {order_id!r} is not a liveshop order id (<session>-<n>)")
    return session_id


class LiveIndex:
    """Channel → its live session (the one started last), for orders typed in the LINE chat."""

    def __init__(self) -> None:
        self._live: dict[str, str] = {}

    def replace(self, sessions: Sequence[dict[str, Any]]) -> None:
        live: dict[str, tuple[Any, str]] = {}
        for doc in sessions:
            started = doc.get("started_at")
            key = (started.timestamp() if started else 0.0, doc["session_id"])
            if doc["channel_id"] not in live or key > live[doc["channel_id"]][0]:
                live[doc["channel_id"]] = (key, doc["session_id"])
        self._live = {channel: sid for channel, (_, sid) in live.items()}

    def set(self, channel_id: str, session_id: str, live: bool) -> None:
        if live:
            self._live[channel_id] = session_id
        elif self._live.get(channel_id) == session_id:
            del self._live[channel_id]

    def get(self, channel_id: str) -> str | None:
        return self._live.get(channel_id)


class Pipeline:
    def __init__(
        self,
        writer: SessionWriter,
        live: LiveIndex,
        *,
        dead_letter: DeadLetter,
        logical: Callable[[str], str],
    ) -> None:
        self._writer = writer
        self._live = live
        self._dead_letter = dead_letter
        self._logical = logical
        self.applied = 0
        self.ignored = 0
        self.dead = 0

    def decode(self, topic: str, record: Any) -> Input | None:
        """The input in ``record``; ``None`` if it is not for liveshop (other LINE events, no live session).

        Raises ``ValidationError`` / :class:`Rejected` for bad input."""
        if record.value is None:
            raise Rejected("empty record")
        if topic == topics.LIVE_COMMENTS:
            comment = LiveCommentRecord.model_validate_json(record.value)
            c = comment.payload
            return Input(
                topic,
                record,
                comment.channel_id,
                c.session_id,
                Comment(key=f"c:{c.comment_id}", user_id=c.user_id, text=c.text, at=c.commented_at),
            )
        if topic == topics.SHOP_ORDER_STATUS:
            status = OrderStatusRecord.model_validate_json(record.value)
            s = status.payload
            return Input(
                topic,
                record,
                status.channel_id,
                session_of_order(s.order_id),
                StatusInput(
                    key=f"s:{status.event_id}",
                    order_id=s.order_id,
                    status=s.status,
                    at=status.occurred_at,
                    amount_paid=s.amount_paid,
                    discount=s.discount,
                    shipping_fee=s.shipping_fee,
                    reason=s.reason,
                ),
            )
        if topic == topics.LINE_EVENTS:
            if b'"message"' not in record.value:  # cheap pre-filter: only message events can be orders
                return None
            event = LineEventReceived.model_validate_json(record.value)
            payload = event.payload
            if (
                not isinstance(payload, MessageEvent)
                or not isinstance(payload.source, UserSource)
                or not payload.source.user_id
                or event.mode != "active"
            ):
                return None
            text = getattr(payload.message, "text", None)
            session_id = self._live.get(event.channel_id)
            if not isinstance(text, str) or session_id is None:
                return None
            token = payload.reply_token
            return Input(
                topic,
                record,
                event.channel_id,
                session_id,
                Comment(
                    key=f"m:{event.event_id}",
                    user_id=payload.source.user_id,
                    text=text,
                    at=event.occurred_at,
                    reply_token=token,
                    reply_received_at=event.produced_at if token else None,
                ),
            )
        raise Rejected(f"liveshop does not consume {topic}")

    async def handle(self, records: Sequence[Any]) -> None:
        by_session: dict[str, list[Input]] = {}
        for record in records:
            topic = self._logical(record.topic)
            try:
                found = self.decode(topic, record)
            except (ValidationError, Rejected, ValueError) as exc:
                await self._reject(topic, record, reason(exc))
                continue
            if found is None:
                self.ignored += 1
                continue
            by_session.setdefault(found.session_id, []).append(found)
        await asyncio.gather(*(self._apply(sid, inputs) for sid, inputs in by_session.items()))

    async def _apply(self, session_id: str, inputs: list[Input]) -> None:
        rejected: list[tuple[Input, str]] = []

        def work(session: LiveSession, changes: Changes) -> None:
            rejected.clear()  # a retry after a journal conflict starts again
            for found in inputs:
                if found.channel_id != session.header.channel_id:
                    rejected.append((found, f"session {session_id} belongs to another channel"))
                    continue
                item = found.item
                if isinstance(item, Comment):
                    session.comment(item, changes)
                    continue
                try:
                    session.transition(
                        item.key,
                        item.order_id,
                        OrderState(item.status.value),
                        item.at,
                        changes,
                        amount_paid=item.amount_paid,
                        discount=item.discount,
                        shipping_fee=item.shipping_fee,
                        reason=item.reason,
                    )
                except Rejected as exc:  # checked before anything changed: the session is intact
                    rejected.append((found, str(exc)))

        try:
            await self._writer.run(session_id, work)
        except UnknownSession as exc:
            rejected = [(found, str(exc)) for found in inputs]
        self.applied += len(inputs) - len(rejected)
        for found, why in rejected:
            await self._reject(found.topic, found.record, why)

    async def _reject(self, topic: str, record: Any, why: str) -> None:
        self.dead += 1
        await self._dead_letter(topic, record, why)
