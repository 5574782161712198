"""A live session through its life against real Kafka + FerretDB + the emulator: comments and chat messages
become orders with confirmations, the merchant's statuses move them on, archival grants LINE POINTS once."""

from __future__ import annotations

from typing import Any

from tagline_contracts import topics
from tagline_testing.waiting import eventually

CHANNEL = "1234567890"

PRODUCTS = [
    {"code": "A01", "name": "洋裝", "price": 590, "stock": 3, "aliases": ["洋裝"], "per_buyer_limit": 2},
    {
        "code": "B02",
        "name": "T恤",
        "price": 290,
        "stock": {"紅 L": 1, "藍 M": 5},
        "variants": ["紅 L", "藍 M"],
    },
]


async def test_comments_chat_and_lifecycle(
    start_liveshop: Any, inputs: Any, line: Any, liveshop_topics: None
) -> None:
    async with start_liveshop() as shop:
        session = await shop.create_session(
            products=PRODUCTS, featured="A01", points_rate=0.05, points_cap=100
        )
        sid = session["session_id"]
        await shop.call("POST", f"/sessions/{sid}/start")

        await inputs.comments(
            sid,
            ("c1", "U1", "+1"),  # featured A01
            ("c2", "U1", "B02 紅 L +1"),  # merged into U1's order
            ("c3", "U2", "洋裝+2"),  # 2 left: takes them
            ("c4", "U3", "A01+1"),  # sold out: waitlisted
            ("c5", "U2", "好美喔"),  # not an order
            ("c1", "U1", "+1"),  # the same comment again
        )
        await eventually(
            lambda: _figure(shop, sid, "inputs_applied", 5),
            what="five distinct comments applied",
            timeout_s=30,
        )
        board = await shop.call("GET", f"/sessions/{sid}/dashboard")
        assert board["stock"] == {"A01": 0, "B02|紅 L": 0, "B02|藍 M": 5}
        assert board["orders"] == 2 and board["units"] == 4
        assert board["revenue"] == 590 + 290 + 2 * 590
        assert board["waitlist_units"] == 1

        requests = await inputs.read(topics.SEND_REQUESTS, 4)
        assert len(requests) == 4  # one per order comment; none for chatter or the repeat
        by_user = {r["payload"]["target"]["user_id"]: r["payload"] for r in requests}
        assert "候補" in by_user["U3"]["messages"][0]["text"]
        assert all(r["payload"]["category"] == "transactional" for r in requests)

        # an order typed in the LINE chat carries a reply token: the confirmation replies (free)
        chat = inputs.line.text("U4", "B02 藍 M x2")
        await inputs.chat(chat)
        requests = await inputs.read(topics.SEND_REQUESTS, 5)
        chat_reply = next(r["payload"] for r in requests if r["payload"]["target"]["user_id"] == "U4")
        assert chat_reply["reply"]["token"] == chat["replyToken"]
        assert "B02" in chat_reply["messages"][0]["text"]

        orders = (await shop.call("GET", f"/sessions/{sid}/orders"))["orders"]
        u2 = next(o for o in orders if o["user_id"] == "U2")
        # U2 cancels: the waitlisted U3 gets the first unit back (first come, first served)
        await inputs.status(u2["_id"], "cancelled", reason="changed mind")
        await eventually(
            lambda: _figure(shop, sid, "waitlist_units", 0), what="the waitlist filled", timeout_s=30
        )
        u3 = next(
            o for o in (await shop.call("GET", f"/sessions/{sid}/orders"))["orders"] if o["user_id"] == "U3"
        )
        assert u3["units"] == 1 and u3["state"] == "open"

        # U1 pays 880 with 80 shipping and is archived; archival twice grants once
        u1 = next(o for o in orders if o["user_id"] == "U1")
        for status, extra in (
            ("checked_out", {}),
            ("paid", {"amount_paid": 880, "shipping_fee": 80}),
            ("shipped", {}),
            ("delivered", {}),
            ("archived", {}),
            ("archived", {}),
        ):
            await inputs.status(u1["_id"], status, **extra)
        await eventually(
            lambda: line.emu.points_balance(CHANNEL, "U1") == 40, what="40 points for U1", timeout_s=30
        )
        ledger = await shop.call("GET", f"/ledger?order_id={u1['_id']}")
        assert [e["points"] for e in ledger] == [40]
        await eventually(lambda: _ledger_state(shop, u1["_id"], "done"), what="grant announced", timeout_s=30)
        events = await inputs.read(topics.SHOP_ORDERS, 1, settle_s=1.0)
        kinds = [(e["payload"]["user_id"], e["payload"]["kind"]) for e in events]
        assert ("U1", "points_granted") in kinds and kinds.count(("U1", "archived")) == 1
        # the tagger learns the shipping in what was paid (RFM monetary leaves it out, as POINTS do)
        paid = next(
            e["payload"] for e in events if e["payload"]["user_id"] == "U1" and e["payload"]["kind"] == "paid"
        )
        assert (paid["amount_paid"], paid["shipping_fee"]) == (880, 80)
        assert ("U1", "paid") in kinds and ("U2", "cancelled") in kinds
        assert len(line.emu.points_grants(CHANNEL)) == 1

        # a transition the state does not allow is rejected (409 from the API, DLQ from Kafka)
        answer = await shop.client.post(f"/orders/{u1['_id']}/status", json={"status": "paid"})
        assert answer.status_code == 409 and "archived" in answer.json()["detail"]
        await inputs.status(u1["_id"], "shipped")
        dead = await inputs.read(topics.dlq(topics.SHOP_ORDER_STATUS), 1)
        assert "cannot become shipped" in dead[0]["error"]


async def _figure(shop: Any, sid: str, name: str, value: int) -> bool:
    board = await shop.call("GET", f"/sessions/{sid}/dashboard")
    return bool(board[name] == value)


async def _ledger_state(shop: Any, order_id: str, state: str) -> bool:
    entries = await shop.call("GET", f"/ledger?order_id={order_id}")
    return bool(entries and entries[0]["state"] == state)
