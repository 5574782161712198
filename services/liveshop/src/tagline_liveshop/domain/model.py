"""The data of a live session: its configuration and stock (the header), orders and waitlist entries.

Plain dataclasses with ``to_doc`` / ``from_doc``: the same shapes are journaled (see ``adapters.store``) and
served by the API. Amounts are NT$ as floats (prices like 199 or 1,280.5); stock and quantities are ints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from tagline_liveshop.domain.catalog import Catalog, CatalogProduct, CatalogVariant


def sku_of(code: str, variant: str | None) -> str:
    """The stock-keeping unit of a product variant: ``A01`` or ``A01|紅 L``."""
    return code if variant is None else f"{code}|{variant}"


class SessionStatus(StrEnum):
    DRAFT = "draft"
    LIVE = "live"
    PAUSED = "paused"
    ENDED = "ended"


SESSION_TRANSITIONS: Final[dict[SessionStatus, frozenset[SessionStatus]]] = {
    SessionStatus.DRAFT: frozenset({SessionStatus.LIVE, SessionStatus.ENDED}),
    SessionStatus.LIVE: frozenset({SessionStatus.PAUSED, SessionStatus.ENDED}),
    SessionStatus.PAUSED: frozenset({SessionStatus.LIVE, SessionStatus.ENDED}),
    SessionStatus.ENDED: frozenset(),
}


class OrderState(StrEnum):
    OPEN = "open"
    CHECKED_OUT = "checked_out"
    PAID = "paid"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    ARCHIVED = "archived"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    RETURNED = "returned"


ORDER_TRANSITIONS: Final[dict[OrderState, frozenset[OrderState]]] = {
    OrderState.OPEN: frozenset(
        {OrderState.CHECKED_OUT, OrderState.PAID, OrderState.CANCELLED, OrderState.EXPIRED}
    ),
    OrderState.CHECKED_OUT: frozenset({OrderState.PAID, OrderState.CANCELLED, OrderState.EXPIRED}),
    OrderState.PAID: frozenset({OrderState.SHIPPED, OrderState.CANCELLED}),
    OrderState.SHIPPED: frozenset({OrderState.DELIVERED, OrderState.RETURNED}),
    OrderState.DELIVERED: frozenset({OrderState.ARCHIVED, OrderState.RETURNED}),
    OrderState.ARCHIVED: frozenset(),
    OrderState.CANCELLED: frozenset(),
    OrderState.EXPIRED: frozenset(),
    OrderState.RETURNED: frozenset(),
}
UNPAID: Final = frozenset({OrderState.OPEN, OrderState.CHECKED_OUT})
"""States whose orders expire after the reservation time."""
RELEASED: Final = frozenset({OrderState.CANCELLED, OrderState.EXPIRED})
"""States whose units went back to stock (a returned order's units do not: the live sale is over)."""


@dataclass(slots=True)
class Product:
    code: str
    name: str
    price: float
    aliases: tuple[str, ...] = ()
    variants: tuple[tuple[str, ...], ...] = ()
    """Each variant by its words, e.g. ``("紅", "L")``; empty for a product without variants."""
    per_buyer_limit: int | None = None
    """Most units of this product (all variants together) one buyer may hold in the session."""

    def variant_names(self) -> list[str]:
        return [" ".join(words) for words in self.variants]

    def skus(self) -> list[str]:
        if not self.variants:
            return [self.code]
        return [sku_of(self.code, name) for name in self.variant_names()]

    def to_doc(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "price": self.price,
            "aliases": list(self.aliases),
            "variants": [" ".join(v) for v in self.variants],  # FerretDB stores no nested arrays
            "per_buyer_limit": self.per_buyer_limit,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Product:
        return cls(
            code=doc["code"],
            name=doc["name"],
            price=float(doc["price"]),
            aliases=tuple(doc.get("aliases", ())),
            variants=tuple(tuple(v.split()) for v in doc.get("variants", ())),
            per_buyer_limit=doc.get("per_buyer_limit"),
        )


DEFAULT_CONFIRMATION: Final = "{notes}訂單 {order_id}\n{lines}\n合計 NT${total}\n結帳：{checkout_url}"
DEFAULT_CHECKOUT_URL: Final = "https://shop.example.com/checkout/{order_id}"


@dataclass(slots=True)
class Header:
    """A session's configuration, status and stock: journaled whole whenever any of it changes."""

    session_id: str
    channel_id: str
    title: str
    status: SessionStatus
    products: dict[str, Product]
    stock: dict[str, int]
    """Units left per SKU."""
    featured: str | None = None
    reservation_s: int = 1_800
    points_rate: float = 0.01
    points_cap: int | None = None
    checkout_url_template: str = DEFAULT_CHECKOUT_URL
    confirmation_template: str = DEFAULT_CONFIRMATION
    order_seq: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    _catalog: Catalog | None = field(default=None, repr=False, compare=False)

    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(
                products=tuple(
                    CatalogProduct(
                        code=p.code,
                        aliases=p.aliases,
                        variants=tuple(CatalogVariant(words) for words in p.variants),
                    )
                    for p in self.products.values()
                ),
                featured=self.featured,
            )
        return self._catalog

    def invalidate_catalog(self) -> None:
        self._catalog = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "channel_id": self.channel_id,
            "title": self.title,
            "status": self.status.value,
            "products": [p.to_doc() for p in self.products.values()],
            # a list, not a map: SKUs may contain "." or "$"
            "stock": [{"sku": sku, "units": units} for sku, units in self.stock.items()],
            "featured": self.featured,
            "reservation_s": self.reservation_s,
            "points_rate": self.points_rate,
            "points_cap": self.points_cap,
            "checkout_url_template": self.checkout_url_template,
            "confirmation_template": self.confirmation_template,
            "order_seq": self.order_seq,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Header:
        products = [Product.from_doc(p) for p in doc["products"]]
        return cls(
            session_id=doc["session_id"],
            channel_id=doc["channel_id"],
            title=doc["title"],
            status=SessionStatus(doc["status"]),
            products={p.code: p for p in products},
            stock={item["sku"]: int(item["units"]) for item in doc["stock"]},
            featured=doc.get("featured"),
            reservation_s=int(doc["reservation_s"]),
            points_rate=float(doc["points_rate"]),
            points_cap=doc.get("points_cap"),
            checkout_url_template=doc["checkout_url_template"],
            confirmation_template=doc["confirmation_template"],
            order_seq=int(doc["order_seq"]),
            created_at=doc.get("created_at"),
            started_at=doc.get("started_at"),
            ended_at=doc.get("ended_at"),
        )


@dataclass(slots=True)
class Line:
    code: str
    variant: str | None
    quantity: int
    unit_price: float

    @property
    def sku(self) -> str:
        return sku_of(self.code, self.variant)


@dataclass(slots=True)
class Order:
    order_id: str
    session_id: str
    channel_id: str
    user_id: str
    state: OrderState
    lines: list[Line]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    amount_paid: float | None = None
    discount: float = 0.0
    shipping_fee: float = 0.0
    points: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def amount(self) -> float:
        return sum(line.quantity * line.unit_price for line in self.lines)

    @property
    def units(self) -> int:
        return sum(line.quantity for line in self.lines)

    def line(self, sku: str) -> Line | None:
        for line in self.lines:
            if line.sku == sku:
                return line
        return None

    def to_doc(self) -> dict[str, Any]:
        return {
            "_id": self.order_id,
            "session_id": self.session_id,
            "channel_id": self.channel_id,
            "user_id": self.user_id,
            "state": self.state.value,
            "lines": [
                {"code": x.code, "variant": x.variant, "quantity": x.quantity, "unit_price": x.unit_price}
                for x in self.lines
            ],
            "amount": self.amount,
            "units": self.units,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "amount_paid": self.amount_paid,
            "discount": self.discount,
            "shipping_fee": self.shipping_fee,
            "points": self.points,
            "history": list(self.history),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Order:
        return cls(
            order_id=doc["_id"],
            session_id=doc["session_id"],
            channel_id=doc["channel_id"],
            user_id=doc["user_id"],
            state=OrderState(doc["state"]),
            lines=[
                Line(x["code"], x.get("variant"), int(x["quantity"]), float(x["unit_price"]))
                for x in doc["lines"]
            ],
            created_at=doc["created_at"],
            updated_at=doc["updated_at"],
            expires_at=doc["expires_at"],
            amount_paid=doc.get("amount_paid"),
            discount=float(doc.get("discount", 0.0)),
            shipping_fee=float(doc.get("shipping_fee", 0.0)),
            points=doc.get("points"),
            history=list(doc.get("history", [])),
        )


@dataclass(slots=True)
class WaitEntry:
    """Demand that found no stock: filled first come, first served when units come back."""

    entry_id: str
    user_id: str
    code: str
    variant: str | None
    quantity: int
    at: datetime

    @property
    def sku(self) -> str:
        return sku_of(self.code, self.variant)

    def to_doc(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "user_id": self.user_id,
            "code": self.code,
            "variant": self.variant,
            "quantity": self.quantity,
            "at": self.at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> WaitEntry:
        return cls(
            doc["entry_id"], doc["user_id"], doc["code"], doc.get("variant"), int(doc["quantity"]), doc["at"]
        )
