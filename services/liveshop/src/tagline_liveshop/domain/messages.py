"""What buyers read: order confirmations, sold-out / limit / variant notes, points notifications (pure).

The session's ``confirmation_template`` lays out a confirmation with the placeholders ``{notes}``,
``{order_id}``, ``{lines}``, ``{total}`` and ``{checkout_url}``; ``checkout_url_template`` builds the link
from ``{order_id}``, ``{session_id}`` and ``{user_id}``. :func:`check_templates` rejects templates that use
any other placeholder, or a blank confirmation, so a typo fails when the session is configured, not during
the stream.

Every text :func:`render` returns fits a LINE text message (1–5,000 characters counted as LINE counts them,
in UTF-16 code units): a long one is cut, and a template that renders blank ("{notes}" without notes) falls
back to the default layout. The send request built from it is validated like every other
(:mod:`tagline_contracts.line_messages`), so a text LINE would refuse would stop the writer's batch.
"""

from __future__ import annotations

from string import Formatter

from tagline_contracts.line_limits import fit_text
from tagline_liveshop.domain.model import DEFAULT_CONFIRMATION, Header, Order, OrderState
from tagline_liveshop.domain.session import Note, NoteKind, Notice, Rejected

CONFIRMATION_FIELDS = {"notes": "", "order_id": "S-1", "lines": "", "total": "0", "checkout_url": ""}
CHECKOUT_FIELDS = {"order_id": "S-1", "session_id": "S", "user_id": "U"}
MAX_TEXT = 5_000  # LINE's limit for a text message, in UTF-16 code units


def check_templates(confirmation: str, checkout_url: str) -> None:
    """Reject a template that uses anything but its plain placeholders (no ``{x.attr}``, ``{x[0]}``), and
    a blank confirmation (LINE refuses an empty text)."""
    if not confirmation.strip():
        raise Rejected("confirmation_template: must not be blank (LINE refuses an empty text message)")
    for name, template, fields in (
        ("confirmation_template", confirmation, CONFIRMATION_FIELDS),
        ("checkout_url_template", checkout_url, CHECKOUT_FIELDS),
    ):
        allowed = ", ".join("{" + f + "}" for f in fields)
        try:
            parsed = [(field, spec) for _, field, spec, _ in Formatter().parse(template) if field is not None]
            unknown = [field for field, _ in parsed if field not in fields]
            # a placeholder nested in a spec ({x:{y}}) could pass with the samples, then fail on real values
            unknown += [f"{field}:{spec}" for field, spec in parsed if spec and "{" in spec]
            if not unknown:
                template.format(**fields)
        except ValueError as exc:  # unbalanced braces, a bad format spec
            raise Rejected(f"{name}: {exc} (placeholders: {allowed})") from exc
        if unknown:
            raise Rejected(f"{name}: {{{unknown[0]}}} is not a placeholder it can use (allowed: {allowed})")


def money(amount: float) -> str:
    return f"{amount:,.0f}" if float(amount).is_integer() else f"{amount:,.2f}"


def item_name(header: Header, code: str, variant: str | None) -> str:
    product = header.products.get(code)
    name = f"{code} {product.name}" if product else code
    return f"{name}（{variant}）" if variant else name


NOTE_TEXTS = {
    NoteKind.WAITLISTED: "{item} 已售完，已為您登記候補 {quantity} 件，補貨時依順序通知。",
    NoteKind.LIMIT: "{item} 每人限購 {quantity} 件，已達上限。",
    NoteKind.WHICH_VARIANT: "{item} 請指定款式：{options}（例如 {code} {first} +1）。",
    NoteKind.UNKNOWN_VARIANT: "{item} 沒有這個款式，可選：{options}。",
    NoteKind.NOTHING_TO_CANCEL: "{item} 沒有可取消的數量。",
    NoteKind.CANCELLED_UNITS: "已取消 {item} {quantity} 件。",
    NoteKind.WAITLIST_REDUCED: "{item} 候補減少 {quantity} 件。",
    NoteKind.FILLED: "好消息！候補的 {item} 補到 {quantity} 件，已加入您的訂單。",
    NoteKind.EXPIRED: "訂單保留時間已過，商品已釋出。",
}
STATE_TEXTS = {
    OrderState.EXPIRED.value: "訂單保留時間已過，未付款的商品已釋出。",
    OrderState.CANCELLED.value: "訂單已取消。",
}


def note_text(header: Header, note: Note) -> str:
    if note.kind is NoteKind.STATE:
        state = note.options[0] if note.options else ""
        return STATE_TEXTS.get(state, f"訂單狀態：{state}")
    return NOTE_TEXTS[note.kind].format(
        item=item_name(header, note.code, note.variant) if note.code else "",
        quantity=note.quantity,
        options="、".join(note.options),
        code=note.code,
        first=note.options[0] if note.options else "",
    )


def render(header: Header, notice: Notice, order: Order | None) -> str:
    """The text of ``notice``: its notes, then the summary of the buyer's order while it is unpaid; 1–5,000
    UTF-16 code units, as LINE takes a text message."""
    notes = "".join(note_text(header, n) + "\n" for n in notice.notes)
    if order is None or not order.lines or order.state not in (OrderState.OPEN, OrderState.CHECKED_OUT):
        text = notes.strip() or "目前沒有訂單。"
        if order is not None:
            text += f"\n（訂單 {order.order_id}）"
        return fit_text(text, MAX_TEXT)
    lines = "\n".join(
        f"{item_name(header, x.code, x.variant)} ×{x.quantity}  NT${money(x.quantity * x.unit_price)}"
        for x in order.lines
    )
    checkout = header.checkout_url_template.format(
        order_id=order.order_id, session_id=order.session_id, user_id=order.user_id
    )
    fields = {
        "notes": notes,
        "order_id": order.order_id,
        "lines": lines,
        "total": money(order.amount),
        "checkout_url": checkout,
    }
    text = header.confirmation_template.format(**fields)
    if not text.strip():  # "{notes}" without notes, say: the default layout rather than an empty message
        text = DEFAULT_CONFIRMATION.format(**fields)
    return fit_text(text, MAX_TEXT)


def points_text(points: int, order_id: str) -> str:
    return f"感謝您的購買！訂單 {order_id} 已完成，獲得 LINE POINTS {points} 點。"
