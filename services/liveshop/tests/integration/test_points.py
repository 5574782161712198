"""LINE POINTS are granted once per archived order: archival twice, a gateway that fails, timeouts, and two
instances granting at the same time all end with one grant."""

from __future__ import annotations

import asyncio
from typing import Any

from tagline_contracts import topics
from tagline_line_emulator.faults import Fault
from tagline_testing.waiting import eventually

CHANNEL = "1234567890"


async def _archived_order(shop: Any, inputs: Any, user: str, paid: float, **status: Any) -> str:
    session = await shop.create_session(
        products=[{"code": "A01", "name": "包", "price": paid, "stock": 5}], featured="A01", **status
    )
    sid = session["session_id"]
    await shop.call("POST", f"/sessions/{sid}/start")
    await inputs.comments(sid, (f"{user}-c", user, "+1"))

    async def placed() -> bool:
        return bool((await shop.call("GET", f"/sessions/{sid}/orders"))["orders"])

    await eventually(placed, what="the order placed", timeout_s=30)
    order_id = str((await shop.call("GET", f"/sessions/{sid}/orders"))["orders"][0]["_id"])
    for state, extra in (
        ("paid", {"amount_paid": paid, "discount": 100}),
        ("shipped", {}),
        ("delivered", {}),
    ):
        await shop.call("POST", f"/orders/{order_id}/status", {"status": state, **extra})
    return order_id


async def test_archive_twice_with_failing_gateway_grants_once(
    start_liveshop: Any, inputs: Any, line: Any, liveshop_topics: None
) -> None:
    # the first two grant calls fail (500, then a timeout): the granter retries with the same key
    line.emu.inject(Fault(endpoint="points", kind="error", status=500, times=1))
    line.emu.inject(Fault(endpoint="points", kind="timeout_after_accept", delay_s=3, times=1))
    async with start_liveshop(points_timeout_s=1.0) as shop:
        order_id = await _archived_order(shop, inputs, "U1", 2_100, points_rate=0.01)
        await shop.call("POST", f"/orders/{order_id}/status", {"status": "archived"})
        again = await shop.client.post(f"/orders/{order_id}/status", json={"status": "archived"})
        assert again.status_code == 200  # archived again: a no-op
        await inputs.status(order_id, "archived")  # and once more from the merchant's backend

        async def done() -> bool:
            entries = await shop.call("GET", f"/ledger?order_id={order_id}")
            return bool(entries and entries[0]["state"] == "done")

        await eventually(done, what="the grant done after retries", timeout_s=60)
        entry = (await shop.call("GET", f"/ledger?order_id={order_id}"))[0]
        assert entry["points"] == 21  # floor(2,100 × 1 %): the 100 discount is already out of the 2,100 paid
        assert entry["attempts"] >= 2
        grants = line.emu.points_grants(CHANNEL)
        assert len(grants) == 1 and grants[0]["amount"] == 21
        assert line.emu.points_balance(CHANNEL, "U1") == 21
        events = await inputs.read(topics.SHOP_ORDERS, 1, settle_s=1.5)
        granted = [e for e in events if e["payload"]["kind"] == "points_granted"]
        assert len({e["event_id"] for e in granted}) == 1 and granted[0]["payload"]["points"] == 21
        notices = [
            r
            for r in await inputs.read(topics.SEND_REQUESTS, 1, settle_s=0.5)
            if r["payload"]["idempotency_key"] == f"liveshop:points:{order_id}"
        ]
        assert notices and "21" in notices[0]["payload"]["messages"][0]["text"]


async def test_two_instances_grant_once_and_cap_applies(
    start_liveshop: Any, inputs: Any, line: Any, liveshop_topics: None
) -> None:
    async with start_liveshop() as first, start_liveshop() as second:
        order_id = await _archived_order(first, inputs, "U2", 50_000, points_rate=0.05, points_cap=300)
        await second.call("POST", f"/orders/{order_id}/status", {"status": "archived"})
        for shop in (first, second):  # both granters race for the same entry
            await shop.service.granter.run_once()

        async def done() -> bool:
            entries = await first.call("GET", f"/ledger?order_id={order_id}")
            return bool(entries and entries[0]["state"] == "done")

        await eventually(done, what="the grant done", timeout_s=30)
        assert [g["amount"] for g in line.emu.points_grants(CHANNEL)] == [300]


async def test_cancelled_and_returned_orders_earn_nothing(
    start_liveshop: Any, inputs: Any, line: Any, liveshop_topics: None
) -> None:
    async with start_liveshop() as shop:
        order_id = await _archived_order(shop, inputs, "U3", 1_000)
        await shop.call("POST", f"/orders/{order_id}/status", {"status": "returned"})
        refused = await shop.client.post(f"/orders/{order_id}/status", json={"status": "archived"})
        assert refused.status_code == 409 and "returned" in refused.json()["detail"]
        assert await shop.call("GET", f"/ledger?order_id={order_id}") == []
        assert line.emu.points_grants(CHANNEL) == []


async def test_two_granters_polling_at_once_call_the_gateway_and_announce_once_per_order(
    start_liveshop: Any, inputs: Any, line: Any, liveshop_topics: None
) -> None:
    """Each attempt starts with a claim of the entry (a compare-and-set): of two granters that read the same
    pending entries at the same moment, one calls the gateway for each order (the idempotency key is the
    safety net, not the mechanism) and one announces it."""
    buyers = [f"G{i}" for i in range(8)]
    async with start_liveshop(jobs=False) as first, start_liveshop(jobs=False) as second:
        session = await first.create_session(
            products=[{"code": "A01", "name": "包", "price": 1_000, "stock": len(buyers)}],
            featured="A01",
            points_rate=0.01,
        )
        sid = session["session_id"]
        await first.call("POST", f"/sessions/{sid}/start")
        await inputs.comments(sid, *((f"{user}-c", user, "+1") for user in buyers))

        async def placed() -> bool:
            orders = (await first.call("GET", f"/sessions/{sid}/orders"))["orders"]
            return len(orders) == len(buyers)

        await eventually(placed, what="every order placed", timeout_s=30)
        order_ids = [o["_id"] for o in (await first.call("GET", f"/sessions/{sid}/orders"))["orders"]]
        for order_id in order_ids:
            for state in ("paid", "shipped", "delivered", "archived"):
                await first.call("POST", f"/orders/{order_id}/status", {"status": state})
        entries = await first.call("GET", f"/ledger?session_id={sid}")
        assert [e["state"] for e in entries] == ["pending"] * len(buyers)

        await asyncio.gather(first.service.granter.run_once(), second.service.granter.run_once())

        entries = await first.call("GET", f"/ledger?session_id={sid}")
        assert [e["state"] for e in entries] == ["done"] * len(buyers)
        assert [e["attempts"] for e in entries] == [1] * len(buyers)
        assert line.emu.count("points", CHANNEL) == len(buyers)  # one call per order, none repeated
        events = await inputs.read(topics.SHOP_ORDERS, 1, settle_s=1.0)
        granted = [e["payload"]["order_id"] for e in events if e["payload"]["kind"] == "points_granted"]
        assert sorted(granted) == sorted(order_ids)  # announced once each
        notices = [
            r["payload"]["idempotency_key"]
            for r in await inputs.read(topics.SEND_REQUESTS, 1, settle_s=0.5)
            if r["payload"]["idempotency_key"].startswith("liveshop:points:")
        ]
        assert sorted(notices) == sorted(f"liveshop:points:{o}" for o in order_ids)
