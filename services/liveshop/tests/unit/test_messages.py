"""What buyers read (rendered notices, templates) and the records a batch causes (``writer.outbox_of``)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagline_contracts import topics
from tagline_contracts.line_limits import utf16_len
from tagline_contracts.orders import OrderEventKind, OrderEventRecord
from tagline_contracts.sending import SendCategory, SendRequested, UserTarget
from tagline_liveshop.domain.messages import (
    CONFIRMATION_FIELDS,
    MAX_TEXT,
    check_templates,
    money,
    note_text,
    points_text,
    render,
)
from tagline_liveshop.domain.model import (
    DEFAULT_CHECKOUT_URL,
    DEFAULT_CONFIRMATION,
    Header,
    OrderState,
    Product,
    SessionStatus,
)
from tagline_liveshop.domain.session import Changes, Comment, LiveSession, Note, NoteKind, Notice, Rejected
from tagline_liveshop.writer import outbox_of
from tagline_platform.kafka import Outgoing

T0 = datetime(2026, 5, 1, 20, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=1)

DRESS = Product("A01", "洋裝", 590.0, variants=(("紅", "L"), ("紅", "M"), ("藍", "L")))
SHIRT = Product("B02", "襯衫", 390.0)
CAP = Product("C03", "帽子", 199.0, per_buyer_limit=2)
COAT = Product("D04", "大衣", 1_280.5)

_keys = itertools.count(1)


def live(
    stock: dict[str, int], *, confirmation: str = DEFAULT_CONFIRMATION, checkout: str = DEFAULT_CHECKOUT_URL
) -> LiveSession:
    header = Header(
        session_id="S1",
        channel_id="C1",
        title="t",
        status=SessionStatus.LIVE,
        products={p.code: p for p in (DRESS, SHIRT, CAP, COAT)},
        stock=dict(stock),
        featured="B02",
        confirmation_template=confirmation,
        checkout_url_template=checkout,
    )
    return LiveSession(header)


def comment(
    session: LiveSession,
    changes: Changes,
    user: str,
    text: str,
    *,
    reply_token: str | None = None,
    received_at: datetime | None = None,
) -> Comment:
    c = Comment(
        key=f"c:{next(_keys)}",
        user_id=user,
        text=text,
        at=T0,
        reply_token=reply_token,
        reply_received_at=received_at,
    )
    session.comment(c, changes)
    return c


def say(session: LiveSession, user: str, text: str) -> Changes:
    changes = Changes()
    comment(session, changes, user, text)
    return changes


def move(session: LiveSession, order_id: str, state: OrderState, amount_paid: float | None = None) -> Changes:
    changes = Changes()
    session.transition(f"t:{next(_keys)}", order_id, state, NOW, changes, amount_paid=amount_paid)
    return changes


def text_of(session: LiveSession, notice: Notice) -> str:
    return render(session.header, notice, session.orders.get(notice.order_id or ""))


def topic_of(name: str) -> str:
    return f"dev.{name}"


def outbox(session: LiveSession, changes: Changes) -> list[Outgoing]:
    return outbox_of(session, changes, NOW, topic_of)


def send_requests(records: list[Outgoing]) -> list[SendRequested]:
    return [
        SendRequested.model_validate_json(r.value)
        for r in records
        if r.topic == topic_of(topics.SEND_REQUESTS)
    ]


def order_events(records: list[Outgoing]) -> list[tuple[str, str, str]]:
    """(kind, order id, record key) of each shop.orders record."""
    events = []
    for r in records:
        if r.topic == topic_of(topics.SHOP_ORDERS):
            payload = OrderEventRecord.model_validate_json(r.value).payload
            events.append((payload.kind.value, payload.order_id, r.key.decode()))
    return events


def note(kind: NoteKind, code: str, variant: str | None = None, quantity: int = 0) -> Note:
    options = tuple(DRESS.variant_names()) if code == "A01" else ()
    return Note(kind, code, variant, quantity, options)


# ----------------------------------------------------------------------------------------------------
# Confirmations


def test_a_confirmation_shows_the_lines_the_total_and_the_checkout_link() -> None:
    session = live({"B02": 5, "A01|紅 L": 5})
    changes = say(session, "U1", "B02 +2，A01 紅 L +1")
    assert text_of(session, changes.notices[0]) == (
        "訂單 S1-1\n"
        "B02 襯衫 ×2  NT$780\n"
        "A01 洋裝（紅 L） ×1  NT$590\n"
        "合計 NT$1,370\n"
        "結帳：https://shop.example.com/checkout/S1-1"
    )


def test_notes_come_before_the_order_summary() -> None:
    session = live({"B02": 1})
    changes = say(session, "U1", "B02 +3")
    assert text_of(session, changes.notices[0]) == (
        "B02 襯衫 已售完，已為您登記候補 2 件，補貨時依順序通知。\n"
        "訂單 S1-1\n"
        "B02 襯衫 ×1  NT$390\n"
        "合計 NT$390\n"
        "結帳：https://shop.example.com/checkout/S1-1"
    )


def test_the_sessions_templates_lay_out_the_confirmation() -> None:
    session = live(
        {"D04": 5},
        confirmation="{order_id}|{total}|{checkout_url}|{lines}",
        checkout="https://pay.example/{session_id}/{user_id}?o={order_id}",
    )
    changes = say(session, "U7", "D04 +2")
    assert text_of(session, changes.notices[0]) == (
        "S1-1|2,561|https://pay.example/S1/U7?o=S1-1|D04 大衣 ×2  NT$2,561"
    )


def test_a_checked_out_order_is_still_summarised() -> None:
    session = live({"B02": 5})
    say(session, "U1", "+1")
    move(session, "S1-1", OrderState.CHECKED_OUT)
    notice = Notice("k", "U1", "S1-1", [note(NoteKind.NOTHING_TO_CANCEL, "C03", quantity=1)])
    assert text_of(session, notice).startswith("C03 帽子 沒有可取消的數量。\n訂單 S1-1\nB02 襯衫 ×1")


@pytest.mark.parametrize(
    ("state", "text"),
    [(OrderState.CANCELLED, "訂單已取消。\n（訂單 S1-1）"), (OrderState.EXPIRED, "訂單保留時間已過")],
)
def test_a_released_order_gets_its_state_not_a_summary(state: OrderState, text: str) -> None:
    session = live({"B02": 5})
    say(session, "U1", "+1")
    (notice,) = move(session, "S1-1", state).notices
    rendered = text_of(session, notice)
    assert rendered.startswith(text)
    assert "結帳" not in rendered


def test_notes_without_an_order_are_all_the_text() -> None:
    session = live({"B02": 0})
    changes = say(session, "U1", "B02 +1")
    assert changes.notices[0].order_id is None
    assert text_of(session, changes.notices[0]) == "B02 襯衫 已售完，已為您登記候補 1 件，補貨時依順序通知。"
    assert render(session.header, Notice("k", "U1", None), None) == "目前沒有訂單。"


def test_a_long_text_is_cut_to_lines_limit() -> None:
    session = live({"B02": 5})
    notice = Notice("k", "U1", None, [note(NoteKind.LIMIT, "C03", quantity=2)] * 1_000)
    assert len(render(session.header, notice, None)) == MAX_TEXT


def test_the_limit_is_counted_as_line_counts_it_in_utf16_code_units() -> None:
    """An emoji is 2 characters for LINE: 3,000 of them are 6,000, cut to 2,500 (never half of one)."""
    session = live({"B02": 5}, confirmation="🎉" * 3_000 + "{lines}")
    changes = say(session, "U1", "B02 +1")
    text = text_of(session, changes.notices[0])
    assert text == "🎉" * 2_500 and utf16_len(text) == MAX_TEXT
    [request] = send_requests(outbox(session, changes))  # a send request LINE accepts: it can be built
    assert request.payload.messages == [{"type": "text", "text": text}]


def test_a_template_that_renders_blank_falls_back_to_the_default_layout() -> None:
    session = live({"B02": 5}, confirmation="{notes}")
    changes = say(session, "U1", "B02 +1")
    assert text_of(session, changes.notices[0]).startswith("訂單 S1-1\nB02 襯衫 ×1")
    with pytest.raises(Rejected, match="confirmation_template: must not be blank"):
        check_templates(" \n", DEFAULT_CHECKOUT_URL)


@pytest.mark.parametrize(
    ("the_note", "text"),
    [
        (
            note(NoteKind.WAITLISTED, "B02", None, 3),
            "B02 襯衫 已售完，已為您登記候補 3 件，補貨時依順序通知。",
        ),
        (note(NoteKind.LIMIT, "C03", None, 2), "C03 帽子 每人限購 2 件，已達上限。"),
        (note(NoteKind.LIMIT, "A01", "藍 L", 2), "A01 洋裝（藍 L） 每人限購 2 件，已達上限。"),
        (note(NoteKind.WHICH_VARIANT, "A01"), "A01 洋裝 請指定款式：紅 L、紅 M、藍 L（例如 A01 紅 L +1）。"),
        (note(NoteKind.UNKNOWN_VARIANT, "A01"), "A01 洋裝 沒有這個款式，可選：紅 L、紅 M、藍 L。"),
        (note(NoteKind.FILLED, "B02", None, 1), "好消息！候補的 B02 襯衫 補到 1 件，已加入您的訂單。"),
        (note(NoteKind.CANCELLED_UNITS, "B02", None, 2), "已取消 B02 襯衫 2 件。"),
        (Note(NoteKind.STATE, "", options=("shipped",)), "訂單狀態：shipped"),
    ],
    ids=["waitlisted", "limit", "limit-variant", "which", "unknown", "filled", "cancelled", "state"],
)
def test_note_texts(the_note: Note, text: str) -> None:
    assert note_text(live({}).header, the_note) == text


def test_the_notes_a_session_writes_render_as_texts() -> None:
    session = live({"C03": 1})
    say(session, "U1", "C03 +1")
    say(session, "U1", "C03 +1")
    texts = [
        text_of(session, say(session, "U1", text).notices[0]) for text in ("C03 +1", "A01 +1", "A01 藍 M +1")
    ]
    assert texts[0].startswith("C03 帽子 每人限購 2 件，已達上限。\n")
    assert texts[1].startswith("A01 洋裝 請指定款式：紅 L、紅 M、藍 L（例如 A01 紅 L +1）。\n")
    assert texts[2].startswith("A01 洋裝 沒有這個款式，可選：紅 L、紅 M、藍 L。\n")


@pytest.mark.parametrize(
    ("amount", "text"), [(0, "0"), (199, "199"), (1_990.0, "1,990"), (1_280.5, "1,280.50"), (0.1, "0.10")]
)
def test_money(amount: float, text: str) -> None:
    assert money(amount) == text


def test_points_text_names_the_points_and_the_order() -> None:
    text = points_text(19, "S1-3")
    assert "19" in text
    assert "S1-3" in text


# ----------------------------------------------------------------------------------------------------
# Templates


def test_the_default_templates_pass() -> None:
    check_templates(DEFAULT_CONFIRMATION, DEFAULT_CHECKOUT_URL)
    check_templates("{order_id}", "https://x/{session_id}/{user_id}/{order_id}")
    check_templates("no placeholders at all, {{braces}} escaped", "https://x/")


@pytest.mark.parametrize(
    ("confirmation", "checkout", "named"),
    [
        ("訂單 {order_id} 共 {price}", DEFAULT_CHECKOUT_URL, "confirmation_template"),
        ("{}", DEFAULT_CHECKOUT_URL, "confirmation_template"),
        ("{0}", DEFAULT_CHECKOUT_URL, "confirmation_template"),
        ("訂單 {order_id", DEFAULT_CHECKOUT_URL, "confirmation_template"),
        ("{total:d}", DEFAULT_CHECKOUT_URL, "confirmation_template"),
        (DEFAULT_CONFIRMATION, "https://x/{buyer}", "checkout_url_template"),
        (DEFAULT_CONFIRMATION, "https://x/{total}", "checkout_url_template"),
    ],
    ids=["unknown", "positional", "index", "unclosed", "format-spec", "checkout-unknown", "checkout-total"],
)
def test_a_template_with_a_placeholder_it_cannot_use_is_rejected(
    confirmation: str, checkout: str, named: str
) -> None:
    with pytest.raises(Rejected, match=named):
        check_templates(confirmation, checkout)


@pytest.mark.parametrize(
    ("confirmation", "checkout"),
    [
        ("合計 {total.amount}", DEFAULT_CHECKOUT_URL),  # AttributeError
        ("{order_id[x]}", DEFAULT_CHECKOUT_URL),  # TypeError
        (DEFAULT_CONFIRMATION, "https://x/{user_id.name}"),
    ],
    ids=["attribute", "key", "checkout-attribute"],
)
def test_a_template_using_a_field_attribute_or_key_it_lacks_is_rejected_not_an_error(
    confirmation: str, checkout: str
) -> None:
    """A configuration mistake is a ``Rejected`` (a 4xx with the reason), never another exception (a 500)."""
    with pytest.raises(Rejected, match="not a placeholder it can use"):
        check_templates(confirmation, checkout)


@pytest.mark.parametrize(
    ("confirmation", "checkout", "named"),
    [
        ("訂單 {order_id:>{width}}", DEFAULT_CHECKOUT_URL, "confirmation_template"),  # KeyError
        ("{total:{0}}", DEFAULT_CHECKOUT_URL, "confirmation_template"),  # IndexError
        ("{order_id:{notes.x}}", DEFAULT_CHECKOUT_URL, "confirmation_template"),  # AttributeError
        (
            "{order_id:{total}}",
            DEFAULT_CHECKOUT_URL,
            "confirmation_template",
        ),  # passes; "1,370" breaks render
        (DEFAULT_CONFIRMATION, "https://x/{order_id:{user_id}}", "checkout_url_template"),
    ],
    ids=["unknown", "positional", "attribute", "field", "checkout-field"],
)
def test_a_placeholder_nested_in_a_format_spec_is_rejected(
    confirmation: str, checkout: str, named: str
) -> None:
    """Neither a 500 when the session is configured nor a template that fails once real values fill it."""
    with pytest.raises(Rejected, match=named):
        check_templates(confirmation, checkout)


FIELD = st.sampled_from([*CONFIRMATION_FIELDS, "x", "order_id.x", "order_id[0]", "0", ""])
SPEC = st.sampled_from(["", "!r", ":>8", ":.3", ":,", ":d", ":{total}", ":{notes}", ":{x}", "!s:{lines}"])
PIECE = st.sampled_from(["訂單 ", "\n", "NT$", "{{", "}}", "}", "{"]) | st.builds(
    lambda field, spec: "{" + field + spec + "}", FIELD, SPEC
)


@given(st.lists(PIECE, max_size=5).map("".join))
def test_a_template_the_check_accepts_renders_every_confirmation(confirmation: str) -> None:
    try:
        check_templates(confirmation, DEFAULT_CHECKOUT_URL)
    except Rejected:
        return
    session = live({"B02": 0, "D04": 5}, confirmation=confirmation)
    changes = say(session, "U1", "D04 +1，B02 +1")  # a note, a line, NT$1,280.50
    assert changes.notices[0].notes
    assert 1 <= utf16_len(text_of(session, changes.notices[0]).strip()) <= MAX_TEXT
    assert len(send_requests(outbox(session, changes))) == 1  # a valid send request (the model checks it)


# ----------------------------------------------------------------------------------------------------
# The outbox of a batch


def test_one_transactional_send_request_per_notice() -> None:
    session = live({"B02": 1})
    changes = Changes()
    comment(session, changes, "U1", "+1", reply_token="rt-1")
    comment(session, changes, "U2", "+1", reply_token="rt-2", received_at=T0 + timedelta(seconds=2))
    comment(session, changes, "U3", "+1")
    comment(session, changes, "U4", "想看背面")  # chat: no notice
    records = outbox(session, changes)

    requests = send_requests(records)
    assert [r.payload.target for r in requests] == [UserTarget(user_id=u) for u in ("U1", "U2", "U3")]
    assert [r.key for r in records if r.topic == topic_of(topics.SEND_REQUESTS)] == [
        b"C1:U1",
        b"C1:U2",
        b"C1:U3",
    ]
    for request, notice in zip(requests, changes.notices, strict=True):
        payload = request.payload
        assert payload.category is SendCategory.TRANSACTIONAL
        assert payload.idempotency_key == f"liveshop:{notice.key}"
        assert payload.messages == [{"type": "text", "text": text_of(session, notice)}]
        assert request.channel_id == "C1"
        assert payload.labels["source"] == "liveshop"
        assert payload.labels["session_id"] == "S1"
    assert len({r.payload.idempotency_key for r in requests}) == 3
    assert requests[0].payload.labels["order_id"] == "S1-1"
    assert "order_id" not in requests[1].payload.labels

    replies = [r.payload.reply for r in requests]
    assert replies[0] is not None
    assert (replies[0].token, replies[0].received_at) == ("rt-1", T0)
    assert replies[1] is not None
    assert (replies[1].token, replies[1].received_at) == ("rt-2", T0 + timedelta(seconds=2))
    assert replies[2] is None


def test_the_same_notice_keeps_its_idempotency_key() -> None:
    first, second = live({"B02": 1}), live({"B02": 1})
    a, b = Changes(), Changes()
    first.comment(Comment("c:9", "U1", "+1", T0), a)
    second.comment(Comment("c:9", "U1", "+1", T0), b)
    assert [r.payload.idempotency_key for r in send_requests(outbox(first, a))] == ["liveshop:S1:c:9"]
    assert [r.payload.idempotency_key for r in send_requests(outbox(second, b))] == ["liveshop:S1:c:9"]


def test_order_events_dedupe_to_one_placed_per_order_and_batch() -> None:
    session = live({"B02": 10, "C03": 10})
    changes = Changes()
    comment(session, changes, "U1", "+1")
    comment(session, changes, "U1", "+2")
    comment(session, changes, "U2", "+1")
    comment(session, changes, "U1", "C03 +1")
    records = outbox(session, changes)
    assert order_events(records) == [("placed", "S1-1", "C1:U1"), ("placed", "S1-2", "C1:U2")]
    placed = OrderEventRecord.model_validate_json(records[-2].value).payload
    assert [(x.product_code, x.quantity) for x in placed.lines] == [("B02", 3), ("C03", 1)]
    assert placed.amount == 3 * 390 + 199

    changes = Changes()
    comment(session, changes, "U1", "+1")
    comment(session, changes, "U1", "B02 -2")
    assert order_events(outbox(session, changes)) == [("changed", "S1-1", "C1:U1")]


def test_checked_out_sends_nothing_and_paid_publishes_paid() -> None:
    session = live({"B02": 10})
    say(session, "U1", "+2")
    assert outbox(session, move(session, "S1-1", OrderState.CHECKED_OUT)) == []
    records = outbox(session, move(session, "S1-1", OrderState.PAID, amount_paid=700.0))
    assert order_events(records) == [("paid", "S1-1", "C1:U1")]
    (event,) = [OrderEventRecord.model_validate_json(r.value).payload for r in records]
    assert event.kind is OrderEventKind.PAID
    assert event.amount_paid == 700.0
    assert event.amount == 780.0
    assert event.placed_at == T0


def test_a_cancellation_notifies_both_buyers_and_publishes_both_orders() -> None:
    session = live({"B02": 1})
    say(session, "U1", "+1")
    say(session, "U2", "+1")
    records = outbox(session, move(session, "S1-1", OrderState.CANCELLED))
    assert order_events(records) == [("cancelled", "S1-1", "C1:U1"), ("placed", "S1-2", "C1:U2")]
    requests = send_requests(records)
    assert [r.payload.target for r in requests] == [UserTarget(user_id="U2"), UserTarget(user_id="U1")]
    assert all(r.payload.reply is None for r in requests)
    assert requests[0].payload.messages[0]["text"].startswith("好消息！候補的 B02 襯衫 補到 1 件")
    assert requests[1].payload.messages[0]["text"].startswith("訂單已取消。")


def test_cancelling_every_unit_publishes_the_change_and_the_cancellation() -> None:
    session = live({"B02": 5})
    say(session, "U1", "+1")
    records = outbox(session, say(session, "U1", "-1"))
    assert order_events(records) == [("changed", "S1-1", "C1:U1"), ("cancelled", "S1-1", "C1:U1")]
    (request,) = send_requests(records)
    assert request.payload.messages[0]["text"] == "已取消 B02 襯衫 1 件。"
