"""A live session without servers: stock, orders, waitlist, limits, the order lifecycle, ledger, journal."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagline_liveshop.adapters.store import absorb, journal_doc
from tagline_liveshop.domain.model import (
    RELEASED,
    UNPAID,
    Header,
    Order,
    OrderState,
    Product,
    SessionStatus,
)
from tagline_liveshop.domain.session import (
    Changes,
    Comment,
    LedgerEntry,
    LiveSession,
    NoteKind,
    Notice,
    Rejected,
)
from tagline_liveshop.writer import outbox_of

T0 = datetime(2026, 5, 1, 20, 0, tzinfo=UTC)

DRESS = Product("A01", "洋裝", 590.0, aliases=("dress",), variants=(("紅", "L"), ("紅", "M"), ("藍", "L")))
SHIRT = Product("B02", "襯衫", 390.0)
CAP = Product("C03", "帽子", 199.0, per_buyer_limit=2)
PRODUCTS = (DRESS, SHIRT, CAP)

_keys = itertools.count(1)


def at(seconds: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds)


def live(
    stock: dict[str, int],
    *,
    products: tuple[Product, ...] = PRODUCTS,
    status: SessionStatus = SessionStatus.LIVE,
    featured: str | None = "B02",
    points_rate: float = 0.01,
    points_cap: int | None = None,
) -> LiveSession:
    header = Header(
        session_id="S1",
        channel_id="C1",
        title="t",
        status=status,
        products={p.code: p for p in products},
        stock=dict(stock),
        featured=featured,
        points_rate=points_rate,
        points_cap=points_cap,
    )
    return LiveSession(header)


def comment(user: str, text: str, *, key: str | None = None, seconds: float = 0) -> Comment:
    return Comment(key=key or f"c:{next(_keys)}", user_id=user, text=text, at=at(seconds))


def say(session: LiveSession, user: str, text: str, *, key: str | None = None, seconds: float = 0) -> Changes:
    """One comment in a batch of its own."""
    changes = Changes()
    session.comment(comment(user, text, key=key, seconds=seconds), changes)
    return changes


def move(
    session: LiveSession, order_id: str, *states: OrderState, seconds: float = 0, **kwargs: Any
) -> Changes:
    """Take ``order_id`` through ``states`` in one batch."""
    changes = Changes()
    for state in states:
        session.transition(f"t:{next(_keys)}", order_id, state, at(seconds), changes, **kwargs)
    return changes


def open_order(session: LiveSession, user: str) -> Order:
    return session.orders[session.open_order[user]]


def units(session: LiveSession, user: str) -> dict[str, int]:
    """SKU → units the buyer holds in orders that still hold units."""
    held: dict[str, int] = {}
    for order in session.orders.values():
        if order.user_id == user and order.state not in RELEASED:
            for line in order.lines:
                held[line.sku] = held.get(line.sku, 0) + line.quantity
    return held


def waiting(session: LiveSession, sku: str) -> list[tuple[str, int]]:
    return [(e.user_id, e.quantity) for e in session.waitlist.get(sku, [])]


def notes(notice: Notice) -> list[tuple[NoteKind, str, str | None, int]]:
    return [(n.kind, n.code, n.variant, n.quantity) for n in notice.notes]


def notice_for(changes: Changes, user: str) -> Notice:
    (notice,) = [n for n in changes.notices if n.user_id == user]
    return notice


def snapshot(session: LiveSession) -> dict[str, Any]:
    """Everything a command could change, comparable."""
    return {
        "header": session.header.to_doc(),
        "orders": {order_id: order.to_doc() for order_id, order in session.orders.items()},
        "open": dict(session.open_order),
        "waitlist": {sku: [(e.entry_id, e.quantity) for e in q] for sku, q in session.waitlist.items() if q},
        "entries_of": {u: [(e.entry_id, e.quantity) for e in q] for u, q in session.entries_of.items()},
        "seen": set(session.seen),
    }


# ----------------------------------------------------------------------------------------------------
# Comments take stock


def test_a_burst_for_n_units_sells_exactly_n_and_waitlists_the_rest_in_comment_order() -> None:
    session = live({"B02": 3})
    changes = Changes()
    buyers = [f"U{i}" for i in range(1, 9)]
    for i, user in enumerate(buyers):
        assert session.comment(comment(user, "+1", seconds=i), changes)

    assert session.header.stock["B02"] == 0
    assert sum(o.units for o in session.orders.values()) == 3
    assert [o.user_id for o in session.orders.values()] == ["U1", "U2", "U3"]
    assert waiting(session, "B02") == [(u, 1) for u in buyers[3:]]
    assert len(changes.notices) == 8
    assert notes(notice_for(changes, "U4")) == [(NoteKind.WAITLISTED, "B02", None, 1)]
    assert notes(notice_for(changes, "U1")) == []
    assert notice_for(changes, "U1").order_id == "S1-1"
    assert notice_for(changes, "U4").order_id is None


def test_a_comment_wanting_more_than_is_left_takes_what_is_left_and_waits_for_the_rest() -> None:
    session = live({"B02": 2})
    changes = say(session, "U1", "B02 +5")
    assert units(session, "U1") == {"B02": 2}
    assert waiting(session, "B02") == [("U1", 3)]
    assert session.header.stock["B02"] == 0
    assert notes(changes.notices[0]) == [(NoteKind.WAITLISTED, "B02", None, 3)]


def test_with_no_stock_everything_waits_and_no_order_is_opened() -> None:
    session = live({"B02": 0})
    say(session, "U1", "B02 +2")
    assert session.header.stock["B02"] == 0
    assert session.orders == {}
    assert waiting(session, "B02") == [("U1", 2)]


def test_per_buyer_limit_counts_orders_and_waitlist_and_notes_the_limit() -> None:
    session = live({"C03": 1})
    say(session, "U1", "C03 +1")  # ordered
    say(session, "U1", "C03 +1")  # waitlisted
    changes = say(session, "U1", "C03 +1")
    assert notes(changes.notices[0]) == [(NoteKind.LIMIT, "C03", None, 2)]
    assert units(session, "U1") == {"C03": 1}
    assert waiting(session, "C03") == [("U1", 1)]
    assert session.held_units("U1", "C03") == 2


def test_a_comment_over_the_limit_gets_what_the_limit_allows() -> None:
    session = live({"C03": 10})
    changes = say(session, "U1", "C03 +5")
    assert units(session, "U1") == {"C03": 2}
    assert session.header.stock["C03"] == 8
    assert notes(changes.notices[0]) == [(NoteKind.LIMIT, "C03", None, 2)]


def test_the_limit_is_per_product_across_its_variants() -> None:
    limited = Product("A01", "洋裝", 590.0, variants=(("紅",), ("藍",)), per_buyer_limit=2)
    session = live({"A01|紅": 5, "A01|藍": 5}, products=(limited,))
    say(session, "U1", "A01 紅 +1")
    changes = say(session, "U1", "A01 藍 +2")
    assert units(session, "U1") == {"A01|紅": 1, "A01|藍": 1}
    assert notes(changes.notices[0]) == [(NoteKind.LIMIT, "A01", "藍", 2)]


def test_units_of_a_cancelled_order_no_longer_count_against_the_limit() -> None:
    session = live({"C03": 5})
    say(session, "U1", "C03 +2")
    move(session, "S1-1", OrderState.CANCELLED)
    changes = say(session, "U1", "C03 +2")
    assert units(session, "U1") == {"C03": 2}
    assert notes(changes.notices[0]) == []


def test_one_open_order_per_buyer_with_lines_merged() -> None:
    session = live({"B02": 10, "C03": 10})
    say(session, "U1", "B02 +1")
    say(session, "U1", "B02 +2")
    say(session, "U1", "C03 +1")
    say(session, "U2", "+1")
    order = open_order(session, "U1")
    assert order.order_id == "S1-1"
    assert [(x.sku, x.quantity, x.unit_price) for x in order.lines] == [("B02", 3, 390.0), ("C03", 1, 199.0)]
    assert order.amount == 3 * 390 + 199
    assert open_order(session, "U2").order_id == "S1-2"
    assert len(session.orders) == 2


def test_the_same_comment_key_is_applied_once() -> None:
    session = live({"B02": 10})
    assert session.comment(comment("U1", "+1", key="c:42"), Changes())
    again = Changes()
    assert not session.comment(comment("U1", "+1", key="c:42"), again)
    assert again.empty()
    assert session.header.stock["B02"] == 9
    assert units(session, "U1") == {"B02": 1}


@pytest.mark.parametrize("status", [SessionStatus.DRAFT, SessionStatus.PAUSED, SessionStatus.ENDED])
def test_comments_are_ignored_unless_the_session_is_live(status: SessionStatus) -> None:
    session = live({"B02": 10}, status=status)
    changes = Changes()
    assert not session.comment(comment("U1", "+1", key="c:1"), changes)
    assert session.orders == {}
    assert session.waitlist == {}
    assert session.header.stock == {"B02": 10}
    assert changes.notices == []
    assert changes.order_changes == []
    assert not changes.header


def test_comments_count_again_once_the_session_is_back_live() -> None:
    session = live({"B02": 10}, status=SessionStatus.PAUSED)
    say(session, "U1", "+1")
    session.set_status(SessionStatus.LIVE, at(), Changes())
    say(session, "U1", "+1")
    assert units(session, "U1") == {"B02": 1}


def test_chat_that_is_not_an_order_changes_nothing() -> None:
    session = live({"B02": 10})
    changes = Changes()
    assert not session.comment(comment("U1", "好漂亮 想看背面"), changes)
    assert changes.notices == []
    assert session.orders == {}


# ----------------------------------------------------------------------------------------------------
# Variants


def test_a_variant_product_without_a_variant_asks_which_one() -> None:
    session = live({"A01|紅 L": 5})
    changes = say(session, "U1", "A01 +1")
    (note,) = changes.notices[0].notes
    assert note.kind is NoteKind.WHICH_VARIANT
    assert note.options == ("紅 L", "紅 M", "藍 L")
    assert session.orders == {}
    assert session.header.stock == {"A01|紅 L": 5}


def test_variant_words_matching_no_variant_are_an_unknown_variant() -> None:
    session = live({"A01|紅 L": 5})
    changes = say(session, "U1", "A01 藍 M +1")
    (note,) = changes.notices[0].notes
    assert note.kind is NoteKind.UNKNOWN_VARIANT
    assert note.options == ("紅 L", "紅 M", "藍 L")
    assert session.orders == {}


def test_a_variant_takes_the_stock_of_its_own_sku() -> None:
    session = live({"A01|紅 L": 1, "A01|藍 L": 1})
    say(session, "U1", "dress l 紅 +1")
    say(session, "U2", "A01 紅 L +1")
    assert units(session, "U1") == {"A01|紅 L": 1}
    assert open_order(session, "U1").lines[0].variant == "紅 L"
    assert waiting(session, "A01|紅 L") == [("U2", 1)]
    assert session.header.stock == {"A01|紅 L": 0, "A01|藍 L": 1}


# ----------------------------------------------------------------------------------------------------
# -1


def test_minus_shrinks_the_buyers_waitlist_before_the_order() -> None:
    session = live({"B02": 1})
    say(session, "U1", "B02 +3")
    changes = say(session, "U1", "B02 -1")
    assert notes(changes.notices[0]) == [(NoteKind.WAITLIST_REDUCED, "B02", None, 1)]
    assert units(session, "U1") == {"B02": 1}
    assert waiting(session, "B02") == [("U1", 1)]

    changes = say(session, "U1", "B02 -2")
    assert notes(changes.notices[0]) == [
        (NoteKind.WAITLIST_REDUCED, "B02", None, 1),
        (NoteKind.CANCELLED_UNITS, "B02", None, 1),
    ]
    assert waiting(session, "B02") == []
    assert session.orders["S1-1"].state is OrderState.CANCELLED
    assert session.header.stock["B02"] == 1
    assert "U1" not in session.open_order


def test_minus_releases_units_to_the_head_of_the_waitlist_first_come_first_served() -> None:
    session = live({"B02": 2})
    say(session, "U1", "B02 +2")
    say(session, "U2", "B02 +2")
    say(session, "U3", "B02 +1")
    assert waiting(session, "B02") == [("U2", 2), ("U3", 1)]

    changes = say(session, "U1", "B02 -1")  # partial fill of U2's entry
    assert units(session, "U1") == {"B02": 1}
    assert units(session, "U2") == {"B02": 1}
    assert waiting(session, "B02") == [("U2", 1), ("U3", 1)]
    assert notes(notice_for(changes, "U2")) == [(NoteKind.FILLED, "B02", None, 1)]
    assert notice_for(changes, "U2").order_id == session.open_order["U2"]

    say(session, "U1", "B02 -1")  # U1's every unit cancelled: the order is, and U2's entry is filled
    assert session.orders["S1-1"].state is OrderState.CANCELLED
    assert units(session, "U2") == {"B02": 2}
    assert len([o for o in session.orders.values() if o.user_id == "U2"]) == 1
    assert waiting(session, "B02") == [("U3", 1)]
    assert session.header.stock["B02"] == 0


def test_minus_with_nothing_to_cancel_says_so() -> None:
    session = live({"B02": 2})
    changes = say(session, "U1", "B02 -1")
    assert notes(changes.notices[0]) == [(NoteKind.NOTHING_TO_CANCEL, "B02", None, 1)]
    assert session.header.stock["B02"] == 2


def test_minus_more_than_held_cancels_what_is_held() -> None:
    session = live({"B02": 5, "C03": 5})
    say(session, "U1", "B02 +2, C03 +1")
    changes = say(session, "U1", "B02 -5")
    assert notes(changes.notices[0]) == [(NoteKind.CANCELLED_UNITS, "B02", None, 2)]
    assert units(session, "U1") == {"C03": 1}
    assert open_order(session, "U1").state is OrderState.OPEN
    assert session.header.stock == {"B02": 5, "C03": 4}


# ----------------------------------------------------------------------------------------------------
# Restock, featured product, session status


def test_a_restock_serves_the_waitlist_first_then_stock() -> None:
    session = live({"B02": 0})
    say(session, "U1", "B02 +2")
    say(session, "U2", "B02 +1")
    changes = Changes()
    session.restock("B02", 4, at(), changes)
    assert units(session, "U1") == {"B02": 2}
    assert units(session, "U2") == {"B02": 1}
    assert session.header.stock["B02"] == 1
    assert [notes(n) for n in changes.notices] == [
        [(NoteKind.FILLED, "B02", None, 2)],
        [(NoteKind.FILLED, "B02", None, 1)],
    ]


@pytest.mark.parametrize(("sku", "quantity"), [("Z99", 1), ("B02", 0), ("B02", -1)])
def test_a_bad_restock_is_rejected(sku: str, quantity: int) -> None:
    session = live({"B02": 1})
    with pytest.raises(Rejected):
        session.restock(sku, quantity, at(), Changes())
    assert session.header.stock == {"B02": 1}


def test_the_featured_product_is_what_a_bare_plus_one_buys() -> None:
    session = live({"B02": 5, "C03": 5}, featured=None)
    assert say(session, "U1", "+1").notices == []
    session.feature("C03", Changes())
    say(session, "U1", "+1")
    assert units(session, "U1") == {"C03": 1}
    with pytest.raises(Rejected):
        session.feature("Z99", Changes())
    assert session.header.featured == "C03"


def test_session_status_moves_forward_and_an_ended_session_stays_ended() -> None:
    session = live({"B02": 5}, status=SessionStatus.DRAFT)
    session.set_status(SessionStatus.LIVE, at(10), Changes())
    session.set_status(SessionStatus.PAUSED, at(20), Changes())
    session.set_status(SessionStatus.LIVE, at(30), Changes())
    assert session.header.started_at == at(10)
    session.set_status(SessionStatus.ENDED, at(40), Changes())
    assert session.header.ended_at == at(40)
    with pytest.raises(Rejected, match="session is ended"):
        session.set_status(SessionStatus.LIVE, at(50), Changes())
    assert session.header.status is SessionStatus.ENDED


# ----------------------------------------------------------------------------------------------------
# The order lifecycle

S = OrderState
PATH_TO: dict[OrderState, tuple[OrderState, ...]] = {
    S.OPEN: (),
    S.CHECKED_OUT: (S.CHECKED_OUT,),
    S.PAID: (S.CHECKED_OUT, S.PAID),
    S.SHIPPED: (S.CHECKED_OUT, S.PAID, S.SHIPPED),
    S.DELIVERED: (S.CHECKED_OUT, S.PAID, S.SHIPPED, S.DELIVERED),
    S.ARCHIVED: (S.CHECKED_OUT, S.PAID, S.SHIPPED, S.DELIVERED, S.ARCHIVED),
    S.CANCELLED: (S.CANCELLED,),
    S.EXPIRED: (S.EXPIRED,),
    S.RETURNED: (S.CHECKED_OUT, S.PAID, S.SHIPPED, S.RETURNED),
}
ALLOWED: dict[OrderState, set[OrderState]] = {
    S.OPEN: {S.CHECKED_OUT, S.PAID, S.CANCELLED, S.EXPIRED},
    S.CHECKED_OUT: {S.PAID, S.CANCELLED, S.EXPIRED},
    S.PAID: {S.SHIPPED, S.CANCELLED},
    S.SHIPPED: {S.DELIVERED, S.RETURNED},
    S.DELIVERED: {S.ARCHIVED, S.RETURNED},
    S.ARCHIVED: set(),
    S.CANCELLED: set(),
    S.EXPIRED: set(),
    S.RETURNED: set(),
}


def with_order_in(state: OrderState) -> LiveSession:
    session = live({"B02": 3})
    say(session, "U1", "B02 +2")
    move(session, "S1-1", *PATH_TO[state])
    assert session.orders["S1-1"].state is state
    return session


@pytest.mark.parametrize(
    ("current", "target"),
    [(a, b) for a in OrderState for b in OrderState if b is not a and b in ALLOWED[a]],
)
def test_allowed_transitions_move_the_order(current: OrderState, target: OrderState) -> None:
    session = with_order_in(current)
    changes = Changes()
    assert session.transition("k:1", "S1-1", target, at(60), changes)
    order = session.orders["S1-1"]
    assert order.state is target
    assert order.history[-1]["state"] == target.value
    assert order.updated_at == at(60)
    assert changes.orders == {"S1-1": order}
    assert "k:1" in session.seen


@pytest.mark.parametrize(
    ("current", "target"),
    [(a, b) for a in OrderState for b in OrderState if b is not a and b not in ALLOWED[a]],
)
def test_other_transitions_are_rejected_and_change_nothing(current: OrderState, target: OrderState) -> None:
    session = with_order_in(current)
    before = snapshot(session)
    changes = Changes()
    with pytest.raises(Rejected, match=f"is {current.value}: cannot become {target.value}"):
        session.transition("k:1", "S1-1", target, at(60), changes)
    assert snapshot(session) == before
    assert changes.empty()


@pytest.mark.parametrize("state", list(OrderState))
def test_repeating_the_current_state_is_a_no_op(state: OrderState) -> None:
    session = with_order_in(state)
    before = snapshot(session)
    changes = Changes()
    assert not session.transition("k:1", "S1-1", state, at(60), changes)
    after = snapshot(session)
    assert after.pop("seen") == before.pop("seen") | {"k:1"}
    assert after == before
    assert changes.orders == {}
    assert changes.notices == []
    assert changes.order_changes == []


def test_a_repeated_input_key_is_a_no_op() -> None:
    session = live({"B02": 3})
    say(session, "U1", "+1")
    assert session.transition("evt:1", "S1-1", OrderState.CHECKED_OUT, at(), Changes())
    before = snapshot(session)
    changes = Changes()
    assert not session.transition("evt:1", "S1-1", OrderState.PAID, at(), changes)
    assert changes.empty()
    assert snapshot(session) == before
    assert session.orders["S1-1"].state is OrderState.CHECKED_OUT


def test_an_unknown_order_is_rejected() -> None:
    session = live({"B02": 3})
    with pytest.raises(Rejected, match="S1-9"):
        session.transition("k:1", "S1-9", OrderState.PAID, at(), Changes())


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ((), OrderState.CANCELLED),
        ((), OrderState.EXPIRED),
        ((OrderState.CHECKED_OUT,), OrderState.CANCELLED),
        ((OrderState.CHECKED_OUT,), OrderState.EXPIRED),
        ((OrderState.CHECKED_OUT, OrderState.PAID), OrderState.CANCELLED),
    ],
)
def test_cancel_and_expire_release_units_to_the_waitlist_then_stock(
    path: tuple[OrderState, ...], target: OrderState
) -> None:
    session = live({"B02": 3})
    say(session, "U1", "B02 +3")
    say(session, "U2", "B02 +1")
    say(session, "U3", "B02 +1")
    move(session, "S1-1", *path)

    changes = move(session, "S1-1", target)
    assert session.orders["S1-1"].state is target
    assert units(session, "U1") == {}
    assert units(session, "U2") == {"B02": 1}
    assert units(session, "U3") == {"B02": 1}
    assert waiting(session, "B02") == []
    assert session.header.stock["B02"] == 1
    (state_note,) = notice_for(changes, "U1").notes
    assert state_note.kind is NoteKind.STATE
    assert state_note.options == (target.value,)
    assert notes(notice_for(changes, "U2")) == [(NoteKind.FILLED, "B02", None, 1)]


def test_a_returned_order_keeps_its_units_out_of_stock() -> None:
    session = with_order_in(OrderState.RETURNED)
    assert session.header.stock["B02"] == 1
    assert session.held_units("U1", "B02") == 2


def test_after_checkout_a_new_comment_opens_a_new_order() -> None:
    session = live({"B02": 5})
    say(session, "U1", "+1")
    move(session, "S1-1", OrderState.CHECKED_OUT)
    assert "U1" not in session.open_order
    say(session, "U1", "+2")
    assert open_order(session, "U1").order_id == "S1-2"
    assert session.orders["S1-1"].units == 1
    assert session.orders["S1-2"].units == 2
    assert session.orders["S1-1"].state is OrderState.CHECKED_OUT


def test_expire_only_expires_unpaid_orders_whose_reservation_ran_out() -> None:
    session = live({"B02": 10})
    say(session, "U1", "+1")  # S1-1: open
    say(session, "U2", "+1")  # S1-2: checked out
    say(session, "U3", "+1")  # S1-3: paid
    say(session, "U4", "+1", seconds=1_000)  # S1-4: later
    move(session, "S1-2", OrderState.CHECKED_OUT)
    move(session, "S1-3", OrderState.CHECKED_OUT, OrderState.PAID)
    assert session.orders["S1-1"].expires_at == at(1_800)
    assert session.next_expiry() == at(1_800)

    assert session.expire(at(1_799), Changes()) == []
    changes = Changes()
    assert sorted(session.expire(at(1_801), changes)) == ["S1-1", "S1-2"]
    assert [session.orders[f"S1-{i}"].state for i in range(1, 5)] == [
        OrderState.EXPIRED,
        OrderState.EXPIRED,
        OrderState.PAID,
        OrderState.OPEN,
    ]
    assert session.header.stock["B02"] == 8
    assert {n.user_id for n in changes.notices} == {"U1", "U2"}
    assert session.next_expiry() == at(2_800)
    assert session.expire(at(1_802), Changes()) == []
    assert session.expire(at(2_801), Changes()) == ["S1-4"]
    assert session.next_expiry() is None


# ----------------------------------------------------------------------------------------------------
# The ledger


def archive(session: LiveSession, order_id: str, **paid: Any) -> Changes:
    move(session, order_id, OrderState.CHECKED_OUT)
    move(session, order_id, OrderState.PAID, **paid)
    return move(session, order_id, OrderState.SHIPPED, OrderState.DELIVERED, OrderState.ARCHIVED)


@pytest.mark.parametrize(
    ("paid", "discount", "shipping", "rate", "cap", "points", "basis"),
    [
        (1_990.0, 0.0, 0.0, 0.01, None, 19, 1_990.0),
        (1_260.0, 80.0, 60.0, 0.01, None, 12, 1_200.0),  # the discount is already out of what was paid
        (2_000.0, 0.0, 0.0, 0.07, None, 140, 2_000.0),
        (100.0, 0.0, 0.0, 0.29, None, 29, 100.0),
        (99.0, 0.0, 0.0, 0.01, None, 0, 99.0),
        (50.0, 0.0, 80.0, 0.01, None, 0, 0.0),
        (50_000.0, 0.0, 0.0, 0.05, 300, 300, 50_000.0),
    ],
)
def test_archival_writes_one_ledger_entry_with_the_points(
    paid: float, discount: float, shipping: float, rate: float, cap: int | None, points: int, basis: float
) -> None:
    session = live({"B02": 3}, points_rate=rate, points_cap=cap)
    say(session, "U1", "+1")
    changes = archive(session, "S1-1", amount_paid=paid, discount=discount, shipping_fee=shipping)
    assert changes.ledger == [LedgerEntry("S1-1", "U1", points, basis)]
    assert session.orders["S1-1"].points == points
    again = move(session, "S1-1", OrderState.ARCHIVED)
    assert again.ledger == []


def test_paid_without_an_amount_pays_the_order_total() -> None:
    session = live({"B02": 3, "C03": 3})
    say(session, "U1", "B02 +2, C03 +1")
    changes = archive(session, "S1-1")
    assert session.orders["S1-1"].amount_paid == 979.0
    assert changes.ledger == [LedgerEntry("S1-1", "U1", 9, 979.0)]


@pytest.mark.parametrize(
    "path",
    [
        (S.CHECKED_OUT, S.PAID, S.SHIPPED, S.RETURNED),
        (S.CHECKED_OUT, S.PAID, S.SHIPPED, S.DELIVERED, S.RETURNED),
        (S.CHECKED_OUT, S.PAID, S.CANCELLED),
        (S.CANCELLED,),
        (S.EXPIRED,),
    ],
)
def test_orders_that_do_not_end_archived_get_no_ledger_entry(path: tuple[OrderState, ...]) -> None:
    session = live({"B02": 3})
    say(session, "U1", "+1")
    ledger: list[LedgerEntry] = []
    for state in path:
        ledger += move(session, "S1-1", state, amount_paid=10_000.0).ledger
    with pytest.raises(Rejected):
        move(session, "S1-1", OrderState.ARCHIVED)
    assert ledger == []
    assert session.orders["S1-1"].points is None


# ----------------------------------------------------------------------------------------------------
# The journal: folding it rebuilds the session


def rebuild(docs: list[dict[str, Any]]) -> LiveSession:
    rebuilt: LiveSession | None = None
    for doc in docs:
        rebuilt = absorb(rebuilt, doc)
    assert rebuilt is not None
    return rebuilt


def same_state(live_session: LiveSession, rebuilt: LiveSession) -> None:
    """Compared piece by piece, smallest first: a failure names the piece (and diffs fast while shrinking)."""
    assert rebuilt.version == live_session.version
    assert rebuilt.seen == live_session.seen
    assert rebuilt.header.stock == live_session.header.stock
    assert rebuilt.header.to_doc() == live_session.header.to_doc()
    assert sorted(rebuilt.orders) == sorted(live_session.orders)
    for order_id, order in live_session.orders.items():
        assert rebuilt.orders[order_id].to_doc() == order.to_doc(), order_id
    rebuilt_snapshot, live_snapshot = snapshot(rebuilt), snapshot(live_session)
    for piece in ("open", "waitlist", "entries_of"):
        assert rebuilt_snapshot[piece] == live_snapshot[piece], piece
    assert rebuilt.dashboard() == live_session.dashboard()
    assert rebuilt.next_expiry() == live_session.next_expiry()


class Journal:
    """Commits batches as the writer does: a journal entry per non-empty batch, version + 1."""

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.docs = [journal_doc(session, Changes(header=True), [], T0)]
        session.version = 1

    def commit(self, changes: Changes, now: datetime) -> None:
        if changes.empty():
            return
        outbox = outbox_of(self.session, changes, now, lambda name: name)
        self.docs.append(journal_doc(self.session, changes, outbox, now))
        self.session.version += 1


def test_folding_the_journal_rebuilds_the_session() -> None:
    session = live({"B02": 2, "C03": 2, "A01|紅 L": 1})
    journal = Journal(session)
    journal.commit(say(session, "U1", "B02 +2, C03 +1"), at())
    journal.commit(say(session, "U2", "B02 +2, A01 紅 L +2"), at(1))
    journal.commit(say(session, "U3", "B02 +1"), at(2))
    journal.commit(say(session, "U1", "B02 -1"), at(3))  # U2 gets 1 of its 2
    journal.commit(move(session, "S1-2", OrderState.CHECKED_OUT, seconds=4), at(4))
    journal.commit(say(session, "U2", "B02 -1"), at(5))  # U2's waitlist entry is gone
    journal.commit(move(session, "S1-1", OrderState.CANCELLED, seconds=6), at(6))
    batch = Changes()
    session.restock("A01|紅 L", 3, at(7), batch)
    session.expire(at(4_000), batch)
    journal.commit(batch, at(7))

    same_state(session, rebuild(journal.docs))
    assert waiting(session, "B02") == []


# ----------------------------------------------------------------------------------------------------
# Any sequence of commands keeps the invariants, and its journal folds into the same session

PROPERTY_PRODUCTS = (
    Product("A01", "杯子", 100.0, per_buyer_limit=2),
    Product("B02", "T恤", 250.0, variants=(("紅",), ("藍",)), per_buyer_limit=3),
    Product("C03", "襪子", 50.0),
)
PROPERTY_STOCK = {"A01": 3, "B02|紅": 2, "B02|藍": 1, "C03": 2}
BUYERS = ("U1", "U2", "U3")


@dataclass(frozen=True)
class Say:
    user: str
    text: str


@dataclass(frozen=True)
class Regret:
    """A buyer takes back units of something they hold or wait for."""

    pick: int
    quantity: int


@dataclass(frozen=True)
class Redeliver:
    pick: int


@dataclass(frozen=True)
class Move:
    pick: int
    state: OrderState


@dataclass(frozen=True)
class Wait:
    seconds: int


@dataclass(frozen=True)
class Restock:
    sku: str
    quantity: int


@dataclass(frozen=True)
class Status:
    status: SessionStatus


Command = Say | Regret | Redeliver | Move | Wait | Restock | Status

ITEM = st.tuples(
    st.sampled_from(["A01", "B02 紅", "B02 藍", "B02", "C03"]), st.sampled_from([-2, -1, 1, 1, 2, 3])
)
SAY = st.builds(
    Say,
    st.sampled_from(BUYERS),
    st.lists(ITEM, min_size=1, max_size=2).map(lambda xs: "，".join(f"{n} {q:+d}" for n, q in xs))
    | st.sampled_from(["+1", "-1", "+2"]),
)
COMMAND: st.SearchStrategy[Command] = st.one_of(
    SAY,
    SAY,
    SAY,
    st.builds(Regret, st.integers(0, 50), st.integers(1, 3)),
    st.builds(Redeliver, st.integers(0, 50)),
    st.builds(Move, st.integers(0, 50), st.sampled_from([S.CHECKED_OUT, S.PAID, S.CANCELLED]))
    | st.builds(Move, st.integers(0, 50), st.sampled_from(list(OrderState))),
    st.builds(Wait, st.sampled_from([0, 60, 600, 900, 1_900])),
    st.builds(Restock, st.sampled_from(sorted(PROPERTY_STOCK)), st.integers(1, 3)),
    st.builds(Status, st.sampled_from([SessionStatus.LIVE, SessionStatus.LIVE, SessionStatus.PAUSED])),
)


class Run:
    def __init__(self) -> None:
        self.session = live(PROPERTY_STOCK, products=PROPERTY_PRODUCTS, featured="C03")
        self.journal = Journal(self.session)
        self.now = T0
        self.comments: list[Comment] = []
        self.restocked: dict[str, int] = {}
        self.count = itertools.count(1)

    def batch(self, commands: list[Command]) -> None:
        changes = Changes()
        for command in commands:
            self.apply(command, changes)
            self.check()
        self.journal.commit(changes, self.now)

    def apply(self, command: Command, changes: Changes) -> None:
        session = self.session
        self.now += timedelta(seconds=1)
        match command:
            case Say(user, text):
                c = Comment(key=f"c:{next(self.count)}", user_id=user, text=text, at=self.now)
                self.comments.append(c)
                session.comment(c, changes)
            case Regret(pick, quantity):
                wanted = sorted(
                    {
                        (o.user_id, x.sku)
                        for o in session.orders.values()
                        if o.state is S.OPEN
                        for x in o.lines
                    }
                    | {(e.user_id, e.sku) for q in session.waitlist.values() for e in q}
                )
                if wanted:
                    user, sku = wanted[pick % len(wanted)]
                    self.apply(Say(user, f"{sku.replace('|', ' ')} -{quantity}"), changes)
            case Redeliver(pick) if self.comments:
                before = snapshot(session)
                assert not session.comment(self.comments[pick % len(self.comments)], changes)
                assert snapshot(session) == before
            case Move(pick, state) if session.orders:
                order_id = sorted(session.orders)[pick % len(session.orders)]
                before = snapshot(session)
                try:
                    session.transition(f"t:{next(self.count)}", order_id, state, self.now, changes)
                except Rejected:
                    assert snapshot(session) == before
            case Wait(seconds):
                self.now += timedelta(seconds=seconds)
                session.expire(self.now, changes)
                assert all(o.expires_at > self.now for o in session.orders.values() if o.state in UNPAID)
            case Restock(sku, quantity):
                session.restock(sku, quantity, self.now, changes)
                self.restocked[sku] = self.restocked.get(sku, 0) + quantity
            case Status(status):
                session.set_status(status, self.now, changes)
            case _:
                pass

    def check(self) -> None:
        session = self.session
        stock = session.header.stock
        assert all(units >= 0 for units in stock.values()), stock
        held: dict[str, int] = {}
        for order in session.orders.values():
            assert all(line.quantity > 0 for line in order.lines)
            if order.state not in RELEASED:
                for line in order.lines:
                    held[line.sku] = held.get(line.sku, 0) + line.quantity
        for sku, initial in PROPERTY_STOCK.items():
            assert stock[sku] + held.get(sku, 0) == initial + self.restocked.get(sku, 0), sku
        for sku, queue in session.waitlist.items():
            assert all(e.quantity > 0 for e in queue)
            assert not queue or stock.get(sku, 0) == 0, f"{sku} waits while stock is left"
        for user in BUYERS:
            for product in PROPERTY_PRODUCTS:
                if product.per_buyer_limit is not None:
                    assert session.held_units(user, product.code) <= product.per_buyer_limit
            opened = [o.order_id for o in session.orders.values() if o.user_id == user and o.state is S.OPEN]
            assert opened == ([session.open_order[user]] if user in session.open_order else [])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(COMMAND, min_size=1, max_size=6), min_size=2, max_size=15))
def test_any_sequence_keeps_the_invariants_and_its_journal_folds_into_the_same_session(
    batches: list[list[Command]],
) -> None:
    run = Run()
    for commands in batches:
        run.batch(commands)
    same_state(run.session, rebuild(run.journal.docs))
