"""``shop.orders.v1`` (key ``channel:userId``): what happened to a buyer's order, for the tagger (tags, RFM).

Produced by liveshop (and any other shop integration). One :class:`OrderEvent` per change; ``kind`` says what
changed and the rest is the order as of that change. Consumers dedupe by the envelope's ``event_id``.
RFM counts an order once, when it is first seen ``paid``, and takes it back when it is ``returned``.

**Amounts.** ``amount`` is the goods at their list prices (the sum of the lines). ``amount_paid`` is what the
buyer actually paid: discounts already taken off, shipping included. ``shipping_fee`` is the part of
``amount_paid`` that paid for shipping. What the buyer spent on the goods, :func:`spend_basis`
(``amount_paid - shipping_fee``), is the one basis of both LINE POINTS (liveshop: floor(basis x rate)) and
RFM's monetary value and the ``total_spend`` rules (tagger): shipping is a pass-through cost, not spend on
the brand, and a discount is money the buyer never paid, so it is in neither figure (and, being already out
of ``amount_paid``, never subtracted again).
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
    amount: float = Field(ge=0, description="the goods at list prices, the sum of the lines (NT$)")
    amount_paid: float | None = Field(
        default=None,
        ge=0,
        description="what the buyer paid (from kind paid on): after discounts, shipping included",
    )
    shipping_fee: float = Field(default=0, ge=0, description="the shipping included in amount_paid")
    points: int | None = Field(default=None, ge=0, description="LINE POINTS granted (kind points_granted)")
    placed_at: AwareDatetime

    @property
    def spend(self) -> float:
        """What the buyer spent on the goods (:func:`spend_basis`); ``amount`` if no amount was paid."""
        if self.amount_paid is None:
            return self.amount
        return spend_basis(self.amount_paid, self.shipping_fee)


def spend_basis(amount_paid: float, shipping_fee: float) -> float:
    """What an order's buyer spent on the goods: ``amount_paid`` (discounts already off, shipping included)
    less the shipping fee, never below 0. The basis of LINE POINTS and of RFM monetary (module docstring)."""
    return max(0.0, amount_paid - shipping_fee)


class OrderEventRecord(Envelope[OrderEvent]):
    """One ``shop.orders.v1`` record, keyed ``channel:userId``."""

    schema_name: Literal["OrderEvent"] = Field(alias="schema", default=ORDER_EVENT_SCHEMA)
