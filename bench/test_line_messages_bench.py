"""The message validator (``tagline_contracts.line_messages``): what it costs per message, per request.

liveshop builds a ``SendMessages`` for every order comment and the tagger one for every auto-reply, on their
hot paths, and the model now validates its messages with line-bot-sdk's models and LINE's limits table.
This times, in this process, on one core:

* the import of line-bot-sdk the validator needs (done once; services do it at start, ``warm_up``);
* per message object, the validation before this change (a string ``type`` + ``check_storable``), the full
  validation of a message not seen before, and of one seen before (remembered by a hash of its JSON), for a
  liveshop confirmation text, a buttons template and a flex carousel of twelve bubbles;
* a whole ``SendMessages`` with one unique text, as liveshop builds it.

No assertion on the figures (they depend on the machine); only that every message is valid.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from itertools import count
from typing import Any

import pytest

from tagline_contracts import line_messages
from tagline_contracts.base import check_storable
from tagline_contracts.line_messages import message_errors
from tagline_contracts.sending import SendMessages

pytestmark = pytest.mark.bench

CONFIRMATION = "訂單 S1-{n}\nA01 洋裝（紅 L） ×1  NT$590\nB02 襯衫 ×2  NT$780\n合計 NT$1,370\n結帳：https://shop.example.com/checkout/S1-{n}"
BUTTONS = {
    "type": "template",
    "altText": "本週優惠 {n}",
    "template": {
        "type": "buttons",
        "thumbnailImageUrl": "https://example.com/a.jpg",
        "title": "本週優惠",
        "text": "選一個 {n}",
        "actions": [{"type": "postback", "label": f"選項{i}", "data": f"pick={i}"} for i in range(4)],
    },
}


def bubble(i: int) -> dict[str, Any]:
    return {
        "type": "bubble",
        "hero": {"type": "image", "url": f"https://example.com/{i}.jpg", "size": "full"},
        "body": {
            "type": "box",
            "layout": "vertical",
            "contents": [
                {"type": "text", "text": f"商品 {i}", "weight": "bold"},
                {"type": "text", "text": "NT$590", "size": "sm"},
            ],
        },
        "footer": {
            "type": "box",
            "layout": "vertical",
            "contents": [
                {"type": "button", "action": {"type": "uri", "label": "買", "uri": "https://e.com"}}
            ],
        },
    }


FLEX = {
    "type": "flex",
    "altText": "新品 {n}",
    "contents": {"type": "carousel", "contents": [bubble(i) for i in range(12)]},
}


def fresh(template: dict[str, Any] | str, n: int) -> dict[str, Any]:
    """A message not validated before (its text differs), so nothing is remembered."""
    if isinstance(template, str):
        return {"type": "text", "text": template.format(n=n)}
    if template["type"] == "flex":
        return {**template, "altText": template["altText"].format(n=n)}
    return {**template, "altText": template["altText"].format(n=n)}


def old_check(message: dict[str, Any]) -> None:
    """What ``check_message_types`` did before: a string ``type``, storable."""
    assert isinstance(message.get("type"), str)
    check_storable(message, "messages[0]")


def per_call_us(call: Callable[[int], object], seconds: float = 1.0) -> float:
    numbers = count()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(20):
            call(next(numbers))
        calls += 20
    return elapsed / calls * 1e6


def test_cost_of_validating_line_messages() -> None:
    code = (
        "import time; t = time.perf_counter(); import tagline_contracts.line_messages as m; "
        "a = time.perf_counter(); m.warm_up(); print(a - t, time.perf_counter() - a)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    contracts, sdk = (float(x) * 1e3 for x in run.stdout.split())
    print(
        f"\nimport tagline_contracts.line_messages: {contracts:.0f} ms; line-bot-sdk (warm_up): {sdk:.0f} ms"
    )
    line_messages.warm_up()
    rows = []
    for name, template in (
        ("text (liveshop confirmation)", CONFIRMATION),
        ("buttons template", BUTTONS),
        ("flex carousel, 12 bubbles", FLEX),
    ):
        seen = fresh(template, 0)
        assert message_errors([seen]) == []
        before = per_call_us(lambda n, t=template: old_check(fresh(t, n)))  # type: ignore[misc]
        new = per_call_us(lambda n, t=template: message_errors([fresh(t, n)]), 2.0)  # type: ignore[misc]
        again = per_call_us(lambda n, m=seen: message_errors([m]))  # type: ignore[misc]
        rows.append((name, before, new, again))
    values = {
        "idempotency_key": "k",
        "category": "transactional",
        "target": {"kind": "user", "user_id": "U1"},
    }
    request = per_call_us(
        lambda n: SendMessages.model_validate({**values, "messages": [fresh(CONFIRMATION, n)]}), 2.0
    )
    print(f"{'message':<30} {'before µs':>10} {'new µs':>10} {'seen µs':>10}")
    for name, before, new, again in rows:
        print(f"{name:<30} {before:>10.1f} {new:>10.1f} {again:>10.1f}")
    print(f"SendMessages with one new text: {request:.1f} µs")
