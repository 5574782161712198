"""Liveshop's inputs: ``live.comments.v1`` and ``shop.order-status.v1`` (DESIGN.md §3).

``live.comments.v1`` (key ``channel:sessionId``) is the comment feed of a streaming platform: one
:class:`LiveComment` per viewer comment, ``comment_id`` being the platform's id (liveshop processes an id
once, however often it arrives). Keying by session keeps one session's comments in order on one partition.

``shop.order-status.v1`` (key ``channel:orderId``) is what the merchant's e-commerce backend says happened to
an order liveshop created: checked out, paid (with the amount paid, the discounts already taken off it and
the shipping fee included in it: see ``tagline_contracts.orders`` for what each figure is based on), shipped,
delivered, archived (the return period is over: LINE POINTS are granted), cancelled or returned. Consumers
dedupe by the envelope's ``event_id``; a transition the order's state does not allow is dead-lettered with
the reason.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from tagline_contracts.base import Contract
from tagline_contracts.envelope import Envelope
from tagline_contracts.sending import MAX_USER_ID_LENGTH

LIVE_COMMENT_SCHEMA: Literal["LiveComment"] = "LiveComment"
ORDER_STATUS_SCHEMA: Literal["OrderStatusChanged"] = "OrderStatusChanged"


class LiveComment(Contract):
    session_id: str = Field(min_length=1, max_length=100)
    comment_id: str = Field(min_length=1, max_length=200)
    user_id: str = Field(min_length=1, max_length=MAX_USER_ID_LENGTH, description="the viewer's LINE userId")
    text: str = Field(max_length=5_000)
    commented_at: AwareDatetime


class LiveCommentRecord(Envelope[LiveComment]):
    """One ``live.comments.v1`` record, keyed ``channel:sessionId``."""

    schema_name: Literal["LiveComment"] = Field(alias="schema", default=LIVE_COMMENT_SCHEMA)


class OrderStatus(StrEnum):
    CHECKED_OUT = "checked_out"
    PAID = "paid"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    ARCHIVED = "archived"
    CANCELLED = "cancelled"
    RETURNED = "returned"


class OrderStatusChanged(Contract):
    order_id: str = Field(min_length=1, max_length=200)
    status: OrderStatus
    amount_paid: float | None = Field(
        default=None,
        ge=0,
        description="with status paid: what the buyer paid, discounts already off and shipping included "
        "(default: the order's amount)",
    )
    discount: float = Field(
        default=0,
        ge=0,
        description="with status paid: the discounts already taken off amount_paid (for the record; "
        "never subtracted again)",
    )
    shipping_fee: float = Field(
        default=0, ge=0, description="with status paid: the shipping included in amount_paid (not spend)"
    )
    reason: str | None = Field(default=None, max_length=500)


class OrderStatusRecord(Envelope[OrderStatusChanged]):
    """One ``shop.order-status.v1`` record, keyed ``channel:orderId``."""

    schema_name: Literal["OrderStatusChanged"] = Field(alias="schema", default=ORDER_STATUS_SCHEMA)


def session_key(channel_id: str, session_id: str) -> str:
    return f"{channel_id}:{session_id}"


def order_key(channel_id: str, order_id: str) -> str:
    return f"{channel_id}:{order_id}"
