"""``shop.orders.v1`` (key ``channel:userId``): what happened to a buyer's order, for the tagger (tags, RFM).

Produced by liveshop (and any other shop integration). One :class:`OrderEvent` per change; ``kind`` says what
changed and the rest is the order as of that change. Consumers dedupe by the envelope's ``event_id``.
RFM counts an order once, when it is first seen ``paid`` (``amount_paid``), and takes it back when it is
``returned``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from tagline_contracts.base import Contract
from tagline_contracts.envelope import Envelope

ORDER_EVENT_SCHEMA: Literal["OrderEvent"] = "OrderEvent"


class OrderEventKind(StrEnum):
    PLACED = "placed"
    CHANGED = "changed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    PAID = "paid"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    ARCHIVED = "archived"
    RETURNED = "returned"
    POINTS_GRANTED = "points_granted"


class OrderLine(Contract):
    product_code: str = Field(min_length=1)
    variant: str | None = None
    quantity: int = Field(ge=0)
    unit_price: float = Field(ge=0)


class OrderEvent(Contract):
    kind: OrderEventKind
    order_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1, max_length=100)
    session_id: str | None = Field(default=None, description="the live session the order came from, if any")
    lines: list[OrderLine] = Field(default_factory=list)
    amount: float = Field(ge=0, description="order total (NT$)")
    amount_paid: float | None = Field(default=None, ge=0)
    points: int | None = Field(default=None, ge=0, description="LINE POINTS granted (kind points_granted)")
    placed_at: AwareDatetime


class OrderEventRecord(Envelope[OrderEvent]):
    """One ``shop.orders.v1`` record, keyed ``channel:userId``."""

    schema_name: Literal["OrderEvent"] = Field(alias="schema", default=ORDER_EVENT_SCHEMA)
