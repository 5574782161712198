"""Liveshop's HTTP API: sessions and products, featured product, start/pause/end, restock, dashboard figures,
orders by state and their transitions, the waitlist, the POINTS ledger, health and metrics.

Every change goes through :meth:`SessionWriter.run` like a comment does (one journal entry, under the
session's lock), so the API and the comment stream never race. A change the state does not allow answers 409
with the reason; an unknown session or order 404; a malformed body 422.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from ulid import ULID

from tagline_contracts.live import OrderStatus
from tagline_liveshop.domain.messages import check_templates
from tagline_liveshop.domain.model import (
    DEFAULT_CHECKOUT_URL,
    DEFAULT_CONFIRMATION,
    Header,
    Order,
    OrderState,
    Product,
    SessionStatus,
    sku_of,
)
from tagline_liveshop.domain.session import Changes, LiveSession, Rejected
from tagline_liveshop.pipeline import session_of_order
from tagline_liveshop.writer import UnknownSession
from tagline_platform.http_api import CONFLICT, NOT_FOUND
from tagline_platform.readiness import add_readyz

if TYPE_CHECKING:
    from tagline_liveshop.service import LiveshopService

MAX_PAGE = 1_000
# Bodies with numbers say allow_inf_nan=False, and every number has an upper bound: NaN, Infinity (1e999) and
# integers past 64 bits parse, but MongoDB cannot store them (a 500), nor sums that overflow.
MAX_MONEY = 1_000_000_000
MAX_UNITS = 1_000_000_000
Units = Annotated[int, Field(le=MAX_UNITS)]
CHANGE = {**NOT_FOUND, **CONFLICT}
"""A change to a session answers these besides success: unknown session or order, a state that forbids it."""
CODE = re.compile(r"^[A-Za-z0-9_]{1,20}$")
NOT_IN_WORDS = re.compile(r"[\s,，、;；+\-－−*×]")


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


class ProductSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    code: str = Field(description="what buyers type, e.g. A01 (letters, digits, _)")
    name: str = Field(min_length=1, max_length=100)
    price: float = Field(ge=0, le=MAX_MONEY)
    stock: Units | dict[str, Units] = Field(
        description="units; for a product with variants either per variant name or the same for each"
    )
    aliases: list[str] = Field(default_factory=list, max_length=20)
    variants: list[str] = Field(
        default_factory=list, max_length=50, description='variant names made of words, e.g. "紅 L"'
    )
    per_buyer_limit: int | None = Field(default=None, ge=1, le=MAX_UNITS)

    @field_validator("code")
    @classmethod
    def _code(cls, code: str) -> str:
        if not CODE.match(code):
            raise ValueError("a product code is 1-20 letters, digits or _ (buyers type it: A01+1)")
        if code.isdigit():
            raise ValueError("a product code needs a letter (a bare number reads as a quantity)")
        return code

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, aliases: list[str]) -> list[str]:
        for alias in aliases:
            if not alias or NOT_IN_WORDS.search(_fold(alias)) or _fold(alias).isdigit():
                raise ValueError(f"alias {alias!r} must be one word without separators, signs or only digits")
        return aliases

    @model_validator(mode="after")
    def _variants(self) -> ProductSpec:
        words_of = [tuple(v.split()) for v in self.variants]
        if any(not words for words in words_of):
            raise ValueError("a variant name needs at least one word")
        for words in words_of:
            for word in words:
                if NOT_IN_WORDS.search(_fold(word)) or _fold(word).isdigit():
                    raise ValueError(
                        f"variant word {word!r} must not be a number or contain separators/signs"
                    )
        if len({frozenset(_fold(w) for w in words) for words in words_of}) != len(words_of):
            raise ValueError("two variants have the same words")
        if isinstance(self.stock, dict):
            if not self.variants:
                raise ValueError("stock per variant needs variants")
            unknown = set(self.stock) - {" ".join(w) for w in words_of}
            if unknown:
                raise ValueError(f"stock names unknown variants: {sorted(unknown)}")
        if any(n < 0 for n in self.stock_by_sku().values()):
            raise ValueError("stock cannot be negative")
        return self

    def stock_by_sku(self) -> dict[str, int]:
        names = [" ".join(v.split()) for v in self.variants]
        if not names:
            return {self.code: int(self.stock) if isinstance(self.stock, int) else 0}
        if isinstance(self.stock, int):
            return {sku_of(self.code, n): self.stock for n in names}
        return {sku_of(self.code, n): int(self.stock.get(n, 0)) for n in names}

    def product(self) -> Product:
        return Product(
            code=self.code,
            name=self.name,
            price=self.price,
            aliases=tuple(self.aliases),
            variants=tuple(tuple(v.split()) for v in self.variants),
            per_buyer_limit=self.per_buyer_limit,
        )


class SessionTerms(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    reservation_minutes: float = Field(
        default=30, gt=0, le=7 * 24 * 60, description="unpaid orders expire after"
    )
    points_rate: float = Field(default=0.01, ge=0, le=1, description="LINE POINTS per NT$ paid (0.01 = 1 %)")
    points_cap: int | None = Field(default=None, ge=0, le=MAX_MONEY, description="most points per order")
    checkout_url_template: str = Field(default=DEFAULT_CHECKOUT_URL, max_length=500)
    confirmation_template: str = Field(default=DEFAULT_CONFIRMATION, max_length=2_000)


class SessionSpec(SessionTerms):
    title: str = Field(min_length=1, max_length=200)
    products: list[ProductSpec] = Field(default_factory=list, max_length=500)
    featured: str | None = None


class SessionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    title: str | None = Field(default=None, min_length=1, max_length=200)
    reservation_minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)
    points_rate: float | None = Field(default=None, ge=0, le=1)
    points_cap: int | None = Field(default=None, ge=0, le=MAX_MONEY)
    checkout_url_template: str | None = Field(default=None, max_length=500)
    confirmation_template: str | None = Field(default=None, max_length=2_000)


class FeaturedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str | None


class RestockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    variant: str | None = None
    quantity: int = Field(ge=1, le=1_000_000)


class StatusRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    status: OrderStatus
    amount_paid: float | None = Field(
        default=None,
        ge=0,
        le=MAX_MONEY,
        description="with status paid: what the buyer paid, discounts already off, shipping included "
        "(default: the order's amount)",
    )
    discount: float = Field(
        default=0,
        ge=0,
        le=MAX_MONEY,
        description="the discounts already taken off amount_paid (for the record)",
    )
    shipping_fee: float = Field(
        default=0, ge=0, le=MAX_MONEY, description="the shipping included in amount_paid (earns no points)"
    )
    reason: str | None = Field(default=None, max_length=500)


def check_catalog(products: list[Product], featured: str | None) -> None:
    """Codes and aliases must name one product each (case- and width-insensitive)."""
    names: dict[str, str] = {}
    for product in products:
        for name in (product.code, *product.aliases):
            folded = _fold(name)
            if folded in names and names[folded] != product.code:
                raise Rejected(f"{name!r} names both {names[folded]} and {product.code}")
            if folded in names and name != product.code:
                raise Rejected(f"{name!r} is given twice for {product.code}")
            names[folded] = product.code
    if featured is not None and featured not in {p.code for p in products}:
        raise Rejected(f"featured product {featured!r} is not in the session")


def session_view(session: LiveSession) -> dict[str, Any]:
    header = session.header.to_doc()
    header["stock"] = dict(session.header.stock)
    return {**header, "version": session.version, "figures": session.dashboard()}


def register_routes(api: FastAPI, service: LiveshopService) -> None:  # noqa: PLR0915 - one function, every route
    store = service.store
    writer = service.writer

    async def change(session_id: str, work: Any) -> dict[str, Any]:
        try:
            await service.run(session_id, work)
            return session_view(await writer.read(session_id))
        except UnknownSession as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        except Rejected as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc

    async def read(session_id: str) -> LiveSession:
        try:
            return await writer.read(session_id)
        except UnknownSession as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc

    # ---- sessions --------------------------------------------------------------------------------------
    @api.post("/channels/{channel_id}/sessions", status_code=201, tags=["sessions"])
    async def create_session(channel_id: str, spec: SessionSpec) -> dict[str, Any]:
        products = [p.product() for p in spec.products]
        try:
            check_catalog(products, spec.featured)
            check_templates(spec.confirmation_template, spec.checkout_url_template)
        except Rejected as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        stock: dict[str, int] = {}
        for p in spec.products:
            stock.update(p.stock_by_sku())
        header = Header(
            session_id=str(ULID()),
            channel_id=channel_id,
            title=spec.title,
            status=SessionStatus.DRAFT,
            products={p.code: p for p in products},
            stock=stock,
            featured=spec.featured,
            reservation_s=round(spec.reservation_minutes * 60),
            points_rate=spec.points_rate,
            points_cap=spec.points_cap,
            checkout_url_template=spec.checkout_url_template,
            confirmation_template=spec.confirmation_template,
            created_at=service.clock(),
        )
        session = LiveSession(header)
        await writer.create(session)
        return session_view(session)

    @api.get("/channels/{channel_id}/sessions", tags=["sessions"])
    async def list_sessions(channel_id: str, status: SessionStatus | None = None) -> list[dict[str, Any]]:
        docs = await store.session_ids(channel_id=channel_id, status=status.value if status else None)
        return [{k: v for k, v in doc.items() if k != "_id"} for doc in docs]

    @api.get("/sessions/{session_id}", tags=["sessions"], responses=NOT_FOUND)
    async def get_session(session_id: str) -> dict[str, Any]:
        return session_view(await read(session_id))

    @api.patch("/sessions/{session_id}", tags=["sessions"], responses=CHANGE)
    async def patch_session(session_id: str, patch: SessionPatch) -> dict[str, Any]:
        def work(session: LiveSession, changes: Changes) -> None:
            h = session.header
            confirmation = patch.confirmation_template or h.confirmation_template
            checkout = patch.checkout_url_template or h.checkout_url_template
            check_templates(confirmation, checkout)
            h.title = patch.title or h.title
            if patch.reservation_minutes is not None:
                h.reservation_s = round(patch.reservation_minutes * 60)
            if patch.points_rate is not None:
                h.points_rate = patch.points_rate
            if "points_cap" in patch.model_fields_set:
                h.points_cap = patch.points_cap
            h.confirmation_template, h.checkout_url_template = confirmation, checkout
            changes.header = True

        return await change(session_id, work)

    @api.post("/sessions/{session_id}/products", tags=["sessions"], responses=CHANGE)
    async def add_product(session_id: str, spec: ProductSpec) -> dict[str, Any]:
        def work(session: LiveSession, changes: Changes) -> None:
            h = session.header
            if spec.code in h.products:
                raise Rejected(f"product {spec.code} is already in the session (restock it instead)")
            product = spec.product()
            check_catalog([*h.products.values(), product], h.featured)
            h.products[product.code] = product
            h.stock.update(spec.stock_by_sku())
            h.invalidate_catalog()
            changes.header = True

        return await change(session_id, work)

    @api.post("/sessions/{session_id}/featured", tags=["sessions"], responses=CHANGE)
    async def feature(session_id: str, request: FeaturedRequest) -> dict[str, Any]:
        return await change(session_id, lambda s, c: s.feature(request.code, c))

    def to_status(status: SessionStatus) -> Callable[[str], Awaitable[dict[str, Any]]]:
        # A closure, not a default argument: FastAPI would make that a query parameter (?_status=ended).
        async def set_status(session_id: str) -> dict[str, Any]:
            now = service.clock()
            return await change(session_id, lambda s, c: s.set_status(status, now, c))

        return set_status

    for action, status in (
        ("start", SessionStatus.LIVE),
        ("pause", SessionStatus.PAUSED),
        ("end", SessionStatus.ENDED),
    ):
        api.add_api_route(
            f"/sessions/{{session_id}}/{action}",
            to_status(status),
            methods=["POST"],
            tags=["sessions"],
            name=action,
            responses=CHANGE,
        )

    @api.post("/sessions/{session_id}/restock", tags=["sessions"], responses=CHANGE)
    async def restock(session_id: str, request: RestockRequest) -> dict[str, Any]:
        now = service.clock()
        sku = sku_of(request.code, request.variant)
        return await change(session_id, lambda s, c: s.restock(sku, request.quantity, now, c))

    @api.get("/sessions/{session_id}/dashboard", tags=["sessions"], responses=NOT_FOUND)
    async def dashboard(session_id: str) -> dict[str, Any]:
        session = await read(session_id)
        return {"session_id": session_id, "status": session.header.status.value, **session.dashboard()}

    @api.get("/sessions/{session_id}/waitlist", tags=["sessions"], responses=NOT_FOUND)
    async def waitlist(session_id: str) -> dict[str, Any]:
        session = await read(session_id)
        return {
            sku: [e.to_doc() for e in entries if e.quantity > 0]
            for sku, entries in session.waitlist.items()
            if any(e.quantity > 0 for e in entries)
        }

    # ---- orders ----------------------------------------------------------------------------------------
    @api.get("/sessions/{session_id}/orders", tags=["orders"], responses=NOT_FOUND)
    async def list_orders(
        session_id: str,
        state: OrderState | None = None,
        after: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> dict[str, Any]:
        session = await read(session_id)
        orders = sorted(
            (o for o in session.orders.values() if state is None or o.state is state),
            key=lambda o: (len(o.order_id), o.order_id),
        )
        if after is not None:
            orders = [o for o in orders if (len(o.order_id), o.order_id) > (len(after), after)]
        page = orders[:limit]
        return {
            "orders": [o.to_doc() for o in page],
            "next_after": page[-1].order_id if len(orders) > limit else None,
        }

    async def order_of(order_id: str) -> Order:
        try:
            session = await read(session_of_order(order_id))
        except Rejected as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        order = session.orders.get(order_id)
        if order is None:
            raise HTTPException(status_code=404, detail=f"order {order_id} not found")
        return order

    @api.get("/orders/{order_id}", tags=["orders"], responses=NOT_FOUND)
    async def get_order(order_id: str) -> dict[str, Any]:
        return (await order_of(order_id)).to_doc()

    @api.post("/orders/{order_id}/status", tags=["orders"], responses=CHANGE)
    async def set_order_status(order_id: str, request: StatusRequest) -> dict[str, Any]:
        await order_of(order_id)
        now = service.clock()
        key = f"api:{ULID()}"

        def work(session: LiveSession, changes: Changes) -> None:
            session.transition(
                key,
                order_id,
                OrderState(request.status.value),
                now,
                changes,
                amount_paid=request.amount_paid,
                discount=request.discount,
                shipping_fee=request.shipping_fee,
                reason=request.reason,
            )

        await change(session_of_order(order_id), work)
        return (await order_of(order_id)).to_doc()

    @api.get("/ledger", tags=["points"])
    async def ledger(session_id: str | None = None, order_id: str | None = None) -> list[dict[str, Any]]:
        if session_id is None and order_id is None:
            raise HTTPException(status_code=422, detail="give session_id or order_id")
        return await store.ledger_entries(session_id=session_id, order_id=order_id)

    # ---- ops -------------------------------------------------------------------------------------------
    @api.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    add_readyz(
        api,
        service.readiness,
        lambda: {"commits": writer.commits, "conflicts": writer.conflicts},
        tags=["ops"],
    )

    api.add_route("/metrics", service.metrics.metrics.endpoint, methods=["GET"])
