"""Turns a ``send.requests.v1`` message into stored deliveries, once per idempotency key.

The send document (``_id`` = ``channel:key``) is inserted first: a second request with the same key finds
it and stops there (if its planning finished) or resumes it (if the first planning was interrupted). The
recipients are sorted, so batch *n* holds the same users however often the request is planned; after each
stored batch the send records the last recipient planned, and a resumed planning continues after it.
Every delivery gets its retry key here, before any attempt.

A request with a fresh reply token joins the token's reply group (:mod:`tagline_sender.domain.replies`): the
other services' replies to the same event are keyed like it (``channel:userId``, :func:`send_request_key`), so
they arrive on the same partition, in order, at this planner, and the group is sent as one reply once no
request has joined it for the gather window. A reply request is always planned as a reply: whether its token
is still fresh when it is tried, and what a stale or refused one becomes (the channel's ``reply_fallback``),
is the dispatcher's call.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tagline_contracts.segments import to_mongo_query
from tagline_contracts.sending import SegmentTarget, SendMessages, SendMethod, UserTarget
from tagline_sender.adapters.mongo import Doc, SenderStore
from tagline_sender.domain.delivery import DeliveryState
from tagline_sender.domain.planning import InvalidRequest, batches, method_for_batch, reply_is_fresh
from tagline_sender.domain.replies import gather_until, reply_group_id
from tagline_sender.settings import ChannelConfig

log = logging.getLogger("tagline.sender.planner")

BLOCKED_LOOKUP_MAX = 500
"""Lists of at most this many recipients are checked for blocked members one read by ``_id`` each; longer
ones against the channel's blocked set (one query whose cost is the channel's blocked members)."""

Enqueue = Callable[[str, str, datetime, str | None], None]  # (delivery, category, due, reply group)


class SendState:
    PLANNING = "planning"
    PLANNED = "planned"


class Planner:
    def __init__(
        self,
        store: SenderStore,
        channels: dict[str, ChannelConfig],
        *,
        reply_ttl: timedelta,
        reply_gather: timedelta,
        max_recipients: int,
        enqueue: Enqueue,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._channels = channels
        self._reply_ttl = reply_ttl
        self._reply_gather = reply_gather
        self._max_recipients = max_recipients
        self._enqueue = enqueue
        self._clock = clock

    def check(self, channel_id: str, request: SendMessages) -> None:
        """Raise :class:`InvalidRequest` for a request that can never be sent (its messages are valid: the
        :class:`SendMessages` model checked them when the record was read)."""
        if channel_id not in self._channels:
            raise InvalidRequest(f"channel {channel_id!r} is not configured in the sender")

    async def recipients(self, channel_id: str, request: SendMessages, now: datetime) -> list[str]:
        """The request's recipients, sorted and unique, without members who blocked the channel."""
        target = request.target
        if isinstance(target, SegmentTarget):
            today = now.astimezone(ZoneInfo(self._channels[channel_id].timezone)).date()
            query = to_mongo_query(target.filter, now=now, today=today)
            return await self._store.member_ids(channel_id, query)
        if isinstance(target, UserTarget):  # one read by _id (replies are planned on the hot path)
            blocked_one = await self._store.has_blocked(channel_id, target.user_id)
            return [] if blocked_one else [target.user_id]
        ids = sorted(set(target.user_ids))
        if len(ids) <= BLOCKED_LOOKUP_MAX:  # a short list: one read by _id per recipient
            blocked = await self._store.blocked_among(channel_id, ids)
        else:  # a long one: the channel's blocked members, one indexed query
            blocked = await self._store.blocked_ids(channel_id)
        return [u for u in ids if u not in blocked]

    async def plan(self, channel_id: str, request: SendMessages, *, partition: int, event_id: str) -> str:
        """Store the request's deliveries (idempotent); returns the send's state."""
        self.check(channel_id, request)
        now = self._clock()
        send_id = f"{channel_id}:{request.idempotency_key}"
        created = await self._store.create_send(
            {
                "_id": send_id,
                "channel_id": channel_id,
                "key": request.idempotency_key,
                "event_id": event_id,
                "category": request.category.value,
                "target_kind": request.target.kind,
                "request": request.model_dump(mode="json"),
                "labels": request.labels,
                "partition": partition,
                "state": SendState.PLANNING,
                "planned_through": None,
                "batches": 0,
                "created_at": now,
            }
        )
        send = None if created else await self._store.get_send(send_id)
        if send is not None and send["state"] == SendState.PLANNED:
            log.info(
                "duplicate send request ignored",
                extra={"channel_id": channel_id, "event_id": event_id, "send_id": send_id},
            )
            return SendState.PLANNED
        if request.trigger_mode == "standby":
            await self._planned_nothing(
                send_id,
                channel_id,
                request,
                partition,
                now,
                "the channel was in standby mode for this event; nothing is sent",
            )
            return SendState.PLANNED
        recipients = await self.recipients(channel_id, request, now)
        if len(recipients) > self._max_recipients:
            raise InvalidRequest(f"{len(recipients)} recipients exceed the limit of {self._max_recipients}")
        if not recipients and not isinstance(request.target, SegmentTarget):
            await self._planned_nothing(
                send_id, channel_id, request, partition, now, "every recipient has blocked the account"
            )
            return SendState.PLANNED
        cursor: str | None = send["planned_through"] if send else None
        batch_no: int = send["batches"] if send else 0
        start = 0 if cursor is None else bisect.bisect_right(recipients, cursor)
        while start < len(recipients):
            batch = next(batches(itertools.islice(recipients, start, None)))
            method = SendMethod.REPLY if request.reply is not None else method_for_batch(batch)
            delivery = self._delivery(send_id, channel_id, request, partition, batch_no, batch, method, now)
            existing = await self._add(delivery, batch, request, now)
            if existing is None:
                self._enqueue(
                    delivery["_id"],
                    delivery["category"],
                    delivery["next_attempt_at"],
                    delivery.get("reply_group"),
                )
                cursor = batch[-1]
            else:
                cursor = existing["last_recipient"]  # an interrupted planning stored this batch already
            batch_no += 1
            await self._store.update_send(send_id, {"planned_through": cursor, "batches": batch_no})
            start = bisect.bisect_right(recipients, cursor, lo=start)
        await self._store.update_send(
            send_id, {"state": SendState.PLANNED, "batches": batch_no, "planned_at": self._clock()}
        )
        log.info(
            "send planned",
            extra={
                "channel_id": channel_id,
                "event_id": event_id,
                "send_id": send_id,
                "batches": batch_no,
                "recipients": len(recipients),
            },
        )
        return SendState.PLANNED

    async def _add(self, delivery: Doc, batch: list[str], request: SendMessages, now: datetime) -> Doc | None:
        """Store the delivery; one with a fresh reply token joins its reply group (sent when the group is, no
        earlier than the gather window after this request joined)."""
        reply = request.reply
        grouped = (
            reply is not None
            and reply_is_fresh(request, now, self._reply_ttl)
            and (request.not_before is None or request.not_before <= now)  # not meant to answer at once
        )
        if not grouped or reply is None:
            return await self._store.add_delivery(delivery, batch)
        return await self._store.add_reply_delivery(
            delivery,
            batch,
            reply_group_id(delivery["channel_id"], reply.token),
            gather_until(
                self._clock(),
                reply.received_at,
                timedelta(0) if reply.sole else self._reply_gather,
                self._reply_ttl,
            ),
        )

    async def _planned_nothing(  # noqa: PLR0917 - private
        self, send_id: str, channel_id: str, request: SendMessages, partition: int, now: datetime, reason: str
    ) -> None:
        """Record a request that results in no LINE call, with a failed result that says why."""
        delivery = self._delivery(send_id, channel_id, request, partition, 0, [], SendMethod.PUSH, now)
        delivery.update(state=DeliveryState.PENDING.value, reason=reason, unsendable=reason)
        if await self._store.add_delivery(delivery, []) is None:
            self._enqueue(delivery["_id"], delivery["category"], now, None)
        await self._store.update_send(send_id, {"state": SendState.PLANNED, "batches": 1, "planned_at": now})

    def _delivery(  # noqa: PLR0917 - private; called from two places with the same shape
        self,
        send_id: str,
        channel_id: str,
        request: SendMessages,
        partition: int,
        batch_no: int,
        batch: list[str],
        method: SendMethod,
        now: datetime,
    ) -> Doc:
        doc: dict[str, Any] = {
            "_id": f"{send_id}:{batch_no:06d}",
            "send_id": send_id,
            "channel_id": channel_id,
            "key": request.idempotency_key,
            "batch": batch_no,
            "partition": partition,
            "category": request.category.value,
            "method": method.value,
            "recipient_count": len(batch),
            "last_recipient": batch[-1] if batch else None,
            "retry_key": str(uuid.uuid4()),  # stored before the first attempt, reused by every retry
            "state": DeliveryState.PENDING.value,
            "attempts": 0,
            "next_attempt_at": max(now, request.not_before) if request.not_before else now,
            "expires_at": request.expires_at,
            "labels": request.labels,
            "created_at": now,
        }
        if request.reply is not None:
            doc["reply_token"] = request.reply.token
            doc["reply_received_at"] = request.reply.received_at
        return doc
