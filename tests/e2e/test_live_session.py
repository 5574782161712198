"""A live session through every service as its own process.

1,000 buyers comment "+1" (some comments delivered twice) → liveshop orders without overselling → payments and
archival arrive from the merchant's backend on ``shop.order-status.v1`` (archival twice for some) → LINE
POINTS granted once per order through the emulator's gateway → the tagger tags the buyers and their RFM is
computed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tagline_contracts import topics
from tagline_contracts.envelope import new_event_id
from tagline_contracts.live import (
    LiveComment,
    LiveCommentRecord,
    OrderStatusChanged,
    OrderStatusRecord,
    order_key,
    session_key,
)
from tagline_testing.stack import Client, Stack
from tagline_testing.waiting import eventually

BUYERS = 1_000
STOCK = 900  # the last 100 buyers are waitlisted
PRICE = 1_250.0
RATE = 0.01  # 1 % of the amount paid: 12 points an order


async def _comments(
    producer: AIOKafkaProducer, stack: Stack, sid: str, comments: list[tuple[str, str]]
) -> None:
    c = stack.config
    now = datetime.now(UTC)
    for comment_id, user in comments:
        record = LiveCommentRecord(
            event_id=new_event_id(),
            channel_id=c.channel_id,
            occurred_at=now,
            produced_at=now,
            payload=LiveComment(
                session_id=sid, comment_id=comment_id, user_id=user, text="+1", commented_at=now
            ),
        )
        await producer.send(
            f"{c.namespace}{topics.LIVE_COMMENTS}",
            record.model_dump_json(by_alias=True).encode(),
            key=session_key(c.channel_id, sid).encode(),
        )
    await producer.flush()


async def _statuses(producer: AIOKafkaProducer, stack: Stack, changes: list[dict[str, Any]]) -> None:
    c = stack.config
    now = datetime.now(UTC)
    for change in changes:
        record = OrderStatusRecord(
            event_id=new_event_id(),
            channel_id=c.channel_id,
            occurred_at=now,
            produced_at=now,
            payload=OrderStatusChanged.model_validate(change),
        )
        await producer.send(
            f"{c.namespace}{topics.SHOP_ORDER_STATUS}",
            record.model_dump_json(by_alias=True).encode(),
            key=order_key(c.channel_id, change["order_id"]).encode(),
        )
    await producer.flush()


@pytest.mark.timeout(600)  # every service as its own process: about 70 s on a quiet machine
async def test_a_live_session_from_comments_to_points(  # noqa: PLR0915 - one story, told in order
    stack: Stack, kafka_producer: AIOKafkaProducer
) -> None:
    c = stack.config
    shop, tagger, emu = (
        Client(stack.url("liveshop")),
        Client(stack.url("tagger")),
        Client(stack.url("line-emu")),
    )
    try:
        await tagger.call(
            "POST",
            f"/channels/{c.channel_id}/rules",
            json={"name": "直播買家", "tag": "live_buyer", "condition": {"kind": "live_buyer"}},
        )
        await _rules_loaded(stack, 1)
        session = await shop.call(
            "POST",
            f"/channels/{c.channel_id}/sessions",
            json={
                "title": "週五直播",
                "products": [
                    {"code": "A01", "name": "保溫瓶", "price": PRICE, "stock": STOCK, "per_buyer_limit": 1}
                ],
                "featured": "A01",
                "points_rate": RATE,
            },
            expect=201,
        )
        sid = session["session_id"]
        started = time.monotonic()

        def phase(what: str) -> None:
            print(f"e2e live session, {BUYERS} buyers: {what} after {time.monotonic() - started:.1f} s")

        await shop.call("POST", f"/sessions/{sid}/start")

        buyers = [f"U{n:032x}" for n in range(BUYERS)]
        comments = [(f"c{n}", user) for n, user in enumerate(buyers)]
        await _comments(kafka_producer, stack, sid, comments + comments[::10])  # every tenth one twice

        async def all_answered() -> bool:
            board = await shop.call("GET", f"/sessions/{sid}/dashboard")
            return int(board["inputs_applied"]) >= BUYERS

        await eventually(all_answered, timeout_s=120, what="every comment applied")
        phase("comments applied")
        orders = await shop.session_orders(sid)
        assert len(orders) == STOCK, "exactly the stock was sold"
        assert sum(sum(line["quantity"] for line in o["lines"]) for o in orders) == STOCK
        assert len({o["user_id"] for o in orders}) == STOCK
        waitlist = await shop.call("GET", f"/sessions/{sid}/waitlist")
        assert sum(e["quantity"] for e in waitlist["A01"]) == BUYERS - STOCK

        # the merchant's backend: paid, shipped, delivered, then archived after the return period (twice
        # for some); keyed by order, so each order's changes arrive in this order
        paid = [{"order_id": o["_id"], "status": "paid", "amount_paid": PRICE} for o in orders]
        shipped = [{"order_id": o["_id"], "status": "shipped"} for o in orders]
        delivered = [{"order_id": o["_id"], "status": "delivered"} for o in orders]
        archived = [{"order_id": o["_id"], "status": "archived"} for o in orders]
        await _statuses(kafka_producer, stack, paid + shipped + delivered + archived + archived[::7])

        async def granted() -> bool:
            grants = (await emu.call("GET", f"/_emulator/channels/{c.channel_id}/points"))["grants"]
            return len(grants) >= STOCK

        await eventually(granted, timeout_s=180, what="POINTS for every archived order")
        phase("POINTS granted")
        grants = (await emu.call("GET", f"/_emulator/channels/{c.channel_id}/points"))["grants"]
        by_user: dict[str, list[int]] = {}
        for grant in grants:
            by_user.setdefault(grant["userId"], []).append(int(grant["amount"]))
        assert len(grants) == STOCK and all(amounts == [12] for amounts in by_user.values()), "once each"
        assert set(by_user) == {o["user_id"] for o in orders}

        # the tagger saw the orders: every buyer tagged, their paid spend in RFM
        async def all_tagged() -> bool:
            found = await tagger.call(
                "POST", f"/channels/{c.channel_id}/segments/count", json={"op": "tags", "any": ["live_buyer"]}
            )
            return int(found["count"]) == STOCK

        await eventually(all_tagged, timeout_s=120, what="every buyer tagged live_buyer")
        sample = sorted(by_user)[:: max(1, STOCK // 50)]

        async def spend_kept() -> bool:
            for user in sample:
                member = await tagger.call("GET", f"/channels/{c.channel_id}/members/{user}")
                if float(member["rfm"]["monetary"]) < PRICE:
                    return False
            return True

        await eventually(spend_kept, timeout_s=120, what="paid spend in the buyers' RFM")
        await tagger.call("POST", f"/channels/{c.channel_id}/rfm/recompute")

        async def scored() -> bool:
            member = await tagger.call("GET", f"/channels/{c.channel_id}/members/{orders[0]['user_id']}")
            return member["rfm_segment"] is not None and member["rfm"]["orders"] == 1

        await eventually(scored, timeout_s=60, what="RFM scores from the recompute")
        phase("tagged and scored")
        assert stack.errors_in_logs() == {}
    finally:
        for client in (shop, tagger, emu):
            await client.close()


async def _rules_loaded(stack: Stack, count: int) -> None:
    """A new rule applies from when the tagger has loaded it (every TAGLINE_TAGGER_RULES_REFRESH_S)."""

    async def loaded() -> bool:
        return (await stack.metric("tagger", "tagline_tagger_rules_loaded") or 0) >= count

    await eventually(loaded, timeout_s=30, what=f"the tagger loaded {count} rule(s)")
