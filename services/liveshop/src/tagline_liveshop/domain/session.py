"""A live session as one state machine: comments take stock into orders, the rest waits; transitions, expiry.

Pure: no I/O, no clock (every command takes ``now``). One :class:`LiveSession` is the whole state of a session
(header with stock, orders, waitlist, the ids of the inputs already applied). Commands mutate it and record
what they changed in a :class:`Changes`, which the adapter journals as one document (the atomic commit point,
``adapters.store``) and turns into messages. Invariants kept here, checked by the tests:

- stock never goes below zero: a comment takes ``min(wanted, left)`` units, the rest goes to the waitlist;
- a buyer never holds more than a product's ``per_buyer_limit`` (orders that still hold units plus waitlist);
- one open order per buyer in a session: later comments merge into it until it is checked out;
- an input id (comment id, status event id) is applied once;
- units released by a cancellation or an expiry go to the waitlist first come, first served (partially if
  fewer units came back than the first entry wants), then back to stock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from tagline_contracts.orders import spend_basis
from tagline_liveshop.domain.model import (
    ORDER_TRANSITIONS,
    RELEASED,
    SESSION_TRANSITIONS,
    UNPAID,
    Header,
    Line,
    Order,
    OrderState,
    SessionStatus,
    WaitEntry,
    sku_of,
)
from tagline_liveshop.domain.parser import ParsedItem, parse_comment


class Rejected(ValueError):
    """A command the session's state does not allow; the message says why (shown to API callers, DLQ)."""


class NoteKind(StrEnum):
    WAITLISTED = "waitlisted"
    LIMIT = "limit"
    WHICH_VARIANT = "which_variant"
    UNKNOWN_VARIANT = "unknown_variant"
    NOTHING_TO_CANCEL = "nothing_to_cancel"
    CANCELLED_UNITS = "cancelled_units"
    WAITLIST_REDUCED = "waitlist_reduced"
    FILLED = "filled"
    EXPIRED = "expired"
    STATE = "state"


@dataclass(frozen=True, slots=True)
class Note:
    kind: NoteKind
    code: str
    variant: str | None = None
    quantity: int = 0
    options: tuple[str, ...] = ()


@dataclass(slots=True)
class Notice:
    """A message to a buyer about their order, rendered by ``domain.messages``."""

    key: str
    """Stable per cause (idempotency key of the send request)."""
    user_id: str
    order_id: str | None
    notes: list[Note] = field(default_factory=list)
    reply_token: str | None = None
    reply_received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OrderChange:
    """A fact for ``shop.orders.v1``: ``kind`` is an ``OrderEventKind`` value."""

    kind: str
    order_id: str


@dataclass(slots=True)
class LedgerEntry:
    order_id: str
    user_id: str
    points: int
    amount_basis: float


@dataclass(slots=True)
class Changes:
    """Everything one batch of commands changed in one session (journaled together)."""

    header: bool = False
    orders: dict[str, Order] = field(default_factory=dict)
    wait_added: list[WaitEntry] = field(default_factory=list)
    wait_changed: dict[str, int] = field(default_factory=dict)
    """entry id → quantity still waiting (0: removed)."""
    seen: list[str] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    order_changes: list[OrderChange] = field(default_factory=list)
    ledger: list[LedgerEntry] = field(default_factory=list)

    def empty(self) -> bool:
        return not (
            self.header
            or self.orders
            or self.wait_added
            or self.wait_changed
            or self.seen
            or self.notices
            or self.order_changes
            or self.ledger
        )


@dataclass(frozen=True, slots=True)
class Comment:
    key: str
    """``c:<comment id>`` (comment feed) or ``m:<webhookEventId>`` (a LINE chat message)."""
    user_id: str
    text: str
    at: datetime
    reply_token: str | None = None
    reply_received_at: datetime | None = None
    """When Tagline received the message with ``reply_token`` (the sender pushes instead once it is stale)."""


def points_for(amount_paid: float, shipping_fee: float, rate: float, cap: int | None) -> int:
    """floor((paid − shipping) × rate), at least 0, at most ``cap``.

    ``amount_paid`` is what the buyer paid, discounts already taken off and shipping included, so the basis
    (:func:`tagline_contracts.orders.spend_basis`, shared with RFM) takes only the shipping off: subtracting
    the discount again would count it twice."""
    basis = spend_basis(amount_paid, shipping_fee)
    points = math.floor(basis * rate + 1e-9)  # 1e-9: 1_990 × 0.01 is 19.900000000000002 or 19.899999999999
    return points if cap is None else min(points, cap)


class LiveSession:
    def __init__(self, header: Header) -> None:
        self.header = header
        self.orders: dict[str, Order] = {}
        self.open_order: dict[str, str] = {}
        """buyer → their open order's id."""
        self.by_buyer: dict[str, list[str]] = {}
        self.waitlist: dict[str, list[WaitEntry]] = {}
        self.entries_of: dict[str, list[WaitEntry]] = {}
        """buyer → their waitlist entries (the same objects; emptied ones stay with quantity 0)."""
        self.seen: set[str] = set()
        self.version = 0

    # ---- loading -------------------------------------------------------------------------------------
    def put_order(self, order: Order) -> None:
        """Add or replace an order (loading and journal replay)."""
        known = self.orders.get(order.order_id)
        self.orders[order.order_id] = order
        if known is None:
            self.by_buyer.setdefault(order.user_id, []).append(order.order_id)
        if order.state is OrderState.OPEN:
            self.open_order[order.user_id] = order.order_id
        elif self.open_order.get(order.user_id) == order.order_id:
            del self.open_order[order.user_id]

    def add_waiting(self, entry: WaitEntry) -> None:
        self.waitlist.setdefault(entry.sku, []).append(entry)
        self.entries_of.setdefault(entry.user_id, []).append(entry)

    def set_waiting(self, changed: dict[str, int]) -> None:
        """Apply journaled waitlist quantities (0 removes the entry)."""
        if not changed:
            return
        for sku, entries in self.waitlist.items():
            if any(e.entry_id in changed for e in entries):
                kept: list[WaitEntry] = []
                for e in entries:
                    if e.entry_id in changed:
                        e.quantity = changed[e.entry_id]
                    if e.quantity > 0:
                        kept.append(e)
                self.waitlist[sku] = kept

    # ---- queries -------------------------------------------------------------------------------------
    def held_units(self, user_id: str, code: str) -> int:
        """Units of product ``code`` the buyer holds (orders not cancelled/expired) or waits for."""
        held = 0
        for order_id in self.by_buyer.get(user_id, ()):
            order = self.orders[order_id]
            if order.state not in RELEASED:
                held += sum(x.quantity for x in order.lines if x.code == code)
        held += sum(e.quantity for e in self.entries_of.get(user_id, ()) if e.code == code)
        return held

    def waiting_units(self) -> int:
        return sum(e.quantity for entries in self.waitlist.values() for e in entries)

    def next_expiry(self) -> datetime | None:
        due = [o.expires_at for o in self.orders.values() if o.state in UNPAID]
        return min(due) if due else None

    # ---- commands ------------------------------------------------------------------------------------
    def comment(self, comment: Comment, changes: Changes) -> bool:
        """Apply one comment; ``False`` if it was seen before (nothing changes) or is not an order (only its
        id is recorded, so a later copy is dropped too)."""
        if comment.key in self.seen:
            return False
        self.seen.add(comment.key)
        changes.seen.append(comment.key)
        if self.header.status is not SessionStatus.LIVE:
            return False
        items = parse_comment(comment.text, self.header.catalog())
        if not items:
            return False
        notice = Notice(
            key=f"{self.header.session_id}:{comment.key}",
            user_id=comment.user_id,
            order_id=None,
            reply_token=comment.reply_token,
            reply_received_at=(comment.reply_received_at or comment.at) if comment.reply_token else None,
        )
        for index, item in enumerate(items):
            self._item(comment, index, item, notice, changes)
        order_id = self.open_order.get(comment.user_id)
        notice.order_id = order_id
        changes.notices.append(notice)
        return True

    def _item(self, comment: Comment, index: int, item: ParsedItem, notice: Notice, changes: Changes) -> None:
        product = self.header.products[item.code]
        variant = item.variant
        if product.variants and variant is None:
            kind = NoteKind.UNKNOWN_VARIANT if item.variant_words else NoteKind.WHICH_VARIANT
            notice.notes.append(Note(kind, product.code, options=tuple(product.variant_names())))
            return
        if not product.variants:
            variant = None
        sku = sku_of(product.code, variant)
        if item.quantity < 0:
            self._cancel_units(
                comment=comment,
                code=product.code,
                variant=variant,
                quantity=-item.quantity,
                notice=notice,
                changes=changes,
            )
            return
        wanted = item.quantity
        if product.per_buyer_limit is not None:
            allowed = max(0, product.per_buyer_limit - self.held_units(comment.user_id, product.code))
            if allowed < wanted:
                notice.notes.append(Note(NoteKind.LIMIT, product.code, variant, product.per_buyer_limit))
                wanted = allowed
        if wanted <= 0:
            return
        taken = min(wanted, self.header.stock.get(sku, 0))
        if taken:
            self.header.stock[sku] -= taken
            changes.header = True
            self._add_to_order(comment.user_id, product.code, variant, taken, now=comment.at, changes=changes)
        rest = wanted - taken
        if rest:
            entry = WaitEntry(
                f"{comment.key}#{index}", comment.user_id, product.code, variant, rest, comment.at
            )
            self.add_waiting(entry)
            changes.wait_added.append(entry)
            notice.notes.append(Note(NoteKind.WAITLISTED, product.code, variant, rest))

    def _add_to_order(
        self, user_id: str, code: str, variant: str | None, quantity: int, *, now: datetime, changes: Changes
    ) -> Order:
        order_id = self.open_order.get(user_id)
        product = self.header.products[code]
        if order_id is None:
            self.header.order_seq += 1
            changes.header = True
            order = Order(
                order_id=f"{self.header.session_id}-{self.header.order_seq}",
                session_id=self.header.session_id,
                channel_id=self.header.channel_id,
                user_id=user_id,
                state=OrderState.OPEN,
                lines=[],
                created_at=now,
                updated_at=now,
                expires_at=now + timedelta(seconds=self.header.reservation_s),
                history=[{"state": OrderState.OPEN.value, "at": now}],
            )
            self.put_order(order)
            changes.order_changes.append(OrderChange("placed", order.order_id))
        else:
            order = self.orders[order_id]
            changes.order_changes.append(OrderChange("changed", order.order_id))
        line = order.line(sku_of(code, variant))
        if line is None:
            order.lines.append(Line(code, variant, quantity, product.price))
        else:
            line.quantity += quantity
        order.updated_at = now
        changes.orders[order.order_id] = order
        return order

    def _cancel_units(
        self,
        *,
        comment: Comment,
        code: str,
        variant: str | None,
        quantity: int,
        notice: Notice,
        changes: Changes,
    ) -> None:
        """``-n``: the buyer wants n fewer; their waitlist entries shrink (newest first), then the order."""
        sku = sku_of(code, variant)
        left = quantity
        for entry in reversed(self.entries_of.get(comment.user_id, [])):
            if left == 0:
                break
            if entry.sku != sku or entry.quantity == 0:
                continue
            cut = min(left, entry.quantity)
            entry.quantity -= cut
            left -= cut
            changes.wait_changed[entry.entry_id] = entry.quantity
        if left < quantity:
            self.waitlist[sku] = [e for e in self.waitlist.get(sku, []) if e.quantity > 0]
            notice.notes.append(Note(NoteKind.WAITLIST_REDUCED, code, variant, quantity - left))
        if left == 0:
            return
        order_id = self.open_order.get(comment.user_id)
        line = self.orders[order_id].line(sku) if order_id else None
        if order_id is None or line is None:
            notice.notes.append(Note(NoteKind.NOTHING_TO_CANCEL, code, variant, left))
            return
        order = self.orders[order_id]
        cut = min(left, line.quantity)
        line.quantity -= cut
        if line.quantity == 0:
            order.lines.remove(line)
        order.updated_at = comment.at
        changes.orders[order_id] = order
        changes.order_changes.append(OrderChange("changed", order_id))
        notice.notes.append(Note(NoteKind.CANCELLED_UNITS, code, variant, cut))
        self._release(sku, cut, comment.at, changes)
        if not order.lines:
            self._set_state(
                order, OrderState.CANCELLED, comment.at, "every unit cancelled by the buyer", changes
            )

    def _release(self, sku: str, quantity: int, now: datetime, changes: Changes) -> None:
        """Units back: to the waitlist first come, first served, the rest to stock."""
        self.header.stock[sku] = self.header.stock.get(sku, 0) + quantity
        changes.header = True
        queue = self.waitlist.get(sku, [])
        while queue and self.header.stock[sku] > 0:
            entry = queue[0]
            given = min(entry.quantity, self.header.stock[sku])
            self.header.stock[sku] -= given
            entry.quantity -= given
            changes.wait_changed[entry.entry_id] = entry.quantity
            if entry.quantity == 0:
                queue.pop(0)
            order = self._add_to_order(
                entry.user_id, entry.code, entry.variant, given, now=now, changes=changes
            )
            # the buyer just heard of the fill: they get a whole reservation time to pay for it
            order.expires_at = max(order.expires_at, now + timedelta(seconds=self.header.reservation_s))
            changes.notices.append(
                Notice(
                    key=f"{self.header.session_id}:fill:{entry.entry_id}:{entry.quantity}",
                    user_id=entry.user_id,
                    order_id=order.order_id,
                    notes=[Note(NoteKind.FILLED, entry.code, entry.variant, given)],
                )
            )

    def _set_state(
        self, order: Order, state: OrderState, now: datetime, reason: str | None, changes: Changes
    ) -> None:
        previous = order.state
        order.state = state
        order.updated_at = now
        entry: dict[str, object] = {"state": state.value, "at": now}
        if reason:
            entry["reason"] = reason
        order.history.append(entry)
        self.put_order(order)
        changes.orders[order.order_id] = order
        changes.order_changes.append(OrderChange(state.value, order.order_id))
        if state in RELEASED and previous not in RELEASED:
            for line in list(order.lines):
                self._release(line.sku, line.quantity, now, changes)

    def transition(
        self,
        key: str,
        order_id: str,
        state: OrderState,
        now: datetime,
        changes: Changes,
        *,
        amount_paid: float | None = None,
        discount: float = 0.0,
        shipping_fee: float = 0.0,
        reason: str | None = None,
    ) -> bool:
        """Move an order to ``state``; ``False`` for an input applied before or a repeat of the current state.

        Raises :class:`Rejected` for an unknown order or a transition its state does not allow."""
        if key in self.seen:
            return False
        order = self.orders.get(order_id)
        if order is None:
            raise Rejected(f"order {order_id!r} is not in session {self.header.session_id!r}")
        if state is order.state:
            self.seen.add(key)
            changes.seen.append(key)
            return False
        if state not in ORDER_TRANSITIONS[order.state]:
            allowed = ", ".join(sorted(s.value for s in ORDER_TRANSITIONS[order.state])) or "none"
            raise Rejected(
                f"order {order_id} is {order.state.value}: cannot become {state.value} (allowed: {allowed})"
            )
        self.seen.add(key)
        changes.seen.append(key)
        if state is OrderState.PAID:
            order.amount_paid = order.amount if amount_paid is None else amount_paid
            order.discount = discount
            order.shipping_fee = shipping_fee
        self._set_state(order, state, now, reason, changes)
        if state is OrderState.ARCHIVED:
            paid = order.amount_paid or 0.0
            points = points_for(paid, order.shipping_fee, self.header.points_rate, self.header.points_cap)
            order.points = points
            changes.ledger.append(
                LedgerEntry(order.order_id, order.user_id, points, spend_basis(paid, order.shipping_fee))
            )
        if state in (OrderState.CANCELLED, OrderState.EXPIRED):
            changes.notices.append(
                Notice(
                    key=f"{self.header.session_id}:{order_id}:{state.value}",
                    user_id=order.user_id,
                    order_id=order_id,
                    notes=[Note(NoteKind.STATE, "", quantity=0, options=(state.value,))],
                )
            )
        return True

    def expire(self, now: datetime, changes: Changes) -> list[str]:
        """Expire every unpaid order whose reservation ran out; their units go to the waitlist or stock."""
        due = [o for o in self.orders.values() if o.state in UNPAID and o.expires_at <= now]
        expired: list[str] = []
        for order in sorted(due, key=lambda o: (o.expires_at, o.order_id)):
            if order.state not in UNPAID or order.expires_at > now:
                continue  # a waitlist fill from an earlier expiry in this pass extended it
            expired.append(order.order_id)
            self.transition(
                f"x:{order.order_id}",
                order.order_id,
                OrderState.EXPIRED,
                now,
                changes,
                reason="reservation ran out",
            )
        return expired

    def set_status(self, status: SessionStatus, now: datetime, changes: Changes) -> None:
        current = self.header.status
        if status is current:
            return
        if status not in SESSION_TRANSITIONS[current]:
            raise Rejected(f"session is {current.value}: cannot become {status.value}")
        self.header.status = status
        if status is SessionStatus.LIVE and self.header.started_at is None:
            self.header.started_at = now
        if status is SessionStatus.ENDED:
            self.header.ended_at = now
        changes.header = True

    def feature(self, code: str | None, changes: Changes) -> None:
        if code is not None and code not in self.header.products:
            raise Rejected(f"no product {code!r} in this session")
        self.header.featured = code
        self.header.invalidate_catalog()
        changes.header = True

    def restock(self, sku: str, quantity: int, now: datetime, changes: Changes) -> None:
        """Add ``quantity`` units (the seller found more): the waitlist is served first."""
        if sku not in self.header.stock:
            raise Rejected(f"no SKU {sku!r} in this session")
        if quantity <= 0:
            raise Rejected("restock quantity must be positive")
        self._release(sku, quantity, now, changes)

    # ---- figures -------------------------------------------------------------------------------------
    def dashboard(self) -> dict[str, object]:
        live = [o for o in self.orders.values() if o.state not in RELEASED]
        by_state: dict[str, int] = {}
        for order in self.orders.values():
            by_state[order.state.value] = by_state.get(order.state.value, 0) + 1
        return {
            "orders": len(live),
            "buyers": len({o.user_id for o in live}),
            "units": sum(o.units for o in live),
            "revenue": sum(o.amount for o in live),
            "paid_revenue": sum(
                o.amount_paid or 0.0
                for o in live
                if o.state not in (OrderState.OPEN, OrderState.CHECKED_OUT, OrderState.RETURNED)
            ),
            "orders_by_state": by_state,
            "waitlist_entries": sum(len(v) for v in self.waitlist.values()),
            "waitlist_units": self.waiting_units(),
            "stock": dict(self.header.stock),
            "inputs_applied": len(self.seen),
        }


def apply_comments(session: LiveSession, comments: Iterable[Comment], changes: Changes) -> int:
    """Apply ``comments`` in order; returns how many were orders."""
    return sum(1 for c in comments if session.comment(c, changes))
