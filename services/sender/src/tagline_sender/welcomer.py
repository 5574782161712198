"""Sends the welcome message on follow events from ``line.events.v1``, as a free reply.

Each follow becomes one ``transactional`` send request with the event's reply token and the idempotency key
``welcome:<webhookEventId>``: a redelivered follow event (LINE redelivery, a replayed batch) is sent once.
The welcome is free only as a reply: the request expires with the reply token (``reply_ttl``), so the
sender drops it rather than paying for a push, and follows older than that (a backlog) are not welcomed. A
token LINE refuses before then follows the channel's ``reply_fallback``: with ``drop`` (the default) a
welcome is never paid for as a push.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from pydantic import ValidationError

from tagline_contracts import topics
from tagline_contracts.envelope import LineEventReceived, new_event_id
from tagline_contracts.sending import (
    ReplyContext,
    SendCategory,
    SendMessages,
    SendRequested,
    UserTarget,
    send_request_key,
)
from tagline_contracts.webhook import FollowEvent, UserSource
from tagline_platform.kafka import Outgoing
from tagline_sender.adapters.journeys import JourneyStore
from tagline_sender.domain.welcome import WelcomeSpec, welcome_for
from tagline_sender.journeys import Publish

log = logging.getLogger("tagline.sender.welcome")


class Welcomer:
    def __init__(
        self, store: JourneyStore, publish: Publish, *, topic_of: Callable[[str], str], reply_ttl: timedelta
    ) -> None:
        self._reply_ttl = reply_ttl
        self._store = store
        self._publish = publish
        self._topic_of = topic_of

    async def on_event(self, envelope: LineEventReceived, now: datetime) -> bool:
        """Request the welcome for a follow event; ``False`` if there is nothing to send."""
        event = envelope.payload
        if (
            not isinstance(event, FollowEvent)
            or not isinstance(event.source, UserSource)
            or not event.source.user_id
            or envelope.mode != "active"
            or not event.reply_token
            or now - envelope.produced_at >= self._reply_ttl
        ):
            return False
        doc = await self._store.get_welcome(envelope.channel_id)
        if doc is None:
            return False
        user_id = event.source.user_id
        member = await self._store.member(envelope.channel_id, user_id)
        source = (member or {}).get("attributes", {}).get("source")
        try:
            spec = WelcomeSpec.model_validate(doc["spec"])
        except ValidationError as exc:  # stored before a check it fails (LINE's limits): nothing to send
            log.error(  # noqa: TRY400 - the reason is the message; a traceback says nothing more
                "stored welcome is not valid; nothing is sent until it is replaced: %s",
                exc,
                extra={"channel_id": envelope.channel_id, "event_id": envelope.event_id},
            )
            return False
        messages = welcome_for(
            spec,
            unblocked=event.follow.is_unblocked,
            source=source if isinstance(source, str) else None,
        )
        if not messages:
            return False
        target = UserTarget(user_id=user_id)
        request = SendMessages(
            idempotency_key=f"welcome:{envelope.event_id}",
            category=SendCategory.TRANSACTIONAL,
            messages=messages,
            target=target,
            # sole: only this program answers a follow (keyword rules and chat orders answer messages), so the
            # reply need not wait the gather window for other answers
            reply=ReplyContext(token=event.reply_token, received_at=envelope.produced_at, sole=True),
            expires_at=envelope.produced_at + self._reply_ttl,
            labels={"source": "welcome", "unblocked": str(event.follow.is_unblocked).lower()},
        )
        record = SendRequested(
            event_id=new_event_id(),
            channel_id=envelope.channel_id,
            occurred_at=now,
            produced_at=now,
            payload=request,
        )
        await self._publish(
            Outgoing.of(
                self._topic_of(topics.SEND_REQUESTS), send_request_key(envelope.channel_id, target), record
            )
        )
        return True
