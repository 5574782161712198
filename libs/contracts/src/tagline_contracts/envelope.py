"""The envelope every Tagline Kafka message travels in (DESIGN.md §3).

``event_id`` is a ULID (for LINE events: the ``webhookEventId``, which is the consumers' dedupe key),
``occurred_at`` the time the fact happened at its source, ``produced_at`` the time it was put on Kafka,
``schema`` the name of the message type, ``payload`` the message itself.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import AwareDatetime, Field
from ulid import ULID

from tagline_contracts.base import Contract
from tagline_contracts.webhook import WebhookEvent

PayloadT = TypeVar("PayloadT")


def new_event_id() -> str:
    """A fresh ULID for a message Tagline itself originates."""
    return str(ULID())


class Envelope(Contract, Generic[PayloadT]):
    event_id: str = Field(min_length=1)
    channel_id: str = Field(min_length=1)
    occurred_at: AwareDatetime
    produced_at: AwareDatetime
    schema_name: str = Field(alias="schema", min_length=1)
    payload: PayloadT


LINE_EVENT_SCHEMA: Literal["LineEventReceived"] = "LineEventReceived"


class LineEventReceived(Envelope[WebhookEvent]):
    """One normalized webhook event on ``line.events.v1``, keyed ``channel:sourceId``.

    ``event_id`` is LINE's ``webhookEventId``; ``occurred_at`` is the event's own ``timestamp`` (the original
    time, also on redelivery, so redelivered events may arrive out of order); ``redelivery`` and ``mode`` are
    copied from the event so consumers can filter without looking into the payload (never send in
    ``standby``). ``destination`` is the bot user id the webhook was addressed to.
    """

    schema_name: Literal["LineEventReceived"] = Field(alias="schema", default=LINE_EVENT_SCHEMA)
    destination: str
    event_type: str
    source_id: str | None = None
    redelivery: bool = False
    mode: Literal["active", "standby"] | str = "active"


def line_event_key(channel_id: str, source_id: str | None) -> str:
    """The Kafka key of a LINE event: ``channel:sourceId`` (``channel:`` alone for source-less events)."""
    return f"{channel_id}:{source_id or ''}"
