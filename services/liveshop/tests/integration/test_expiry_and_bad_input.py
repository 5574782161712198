"""Unpaid orders expire and their units go to the waitlist; bad input is dead-lettered with the reason."""

from __future__ import annotations

from typing import Any

from tagline_contracts import topics
from tagline_testing.waiting import eventually


async def test_unpaid_order_expires_and_the_waitlist_gets_the_unit(
    start_liveshop: Any, inputs: Any, liveshop_topics: None
) -> None:
    async with start_liveshop() as shop:
        session = await shop.create_session(
            products=[{"code": "A01", "name": "杯", "price": 300, "stock": 1}],
            featured="A01",
            reservation_minutes=0.03,  # 1.8 s
        )
        sid = session["session_id"]
        await shop.call("POST", f"/sessions/{sid}/start")
        await inputs.comments(sid, ("e1", "U1", "+1"), ("e2", "U2", "+1"))

        async def states() -> dict[str, str]:
            orders = (await shop.call("GET", f"/sessions/{sid}/orders"))["orders"]
            return {o["user_id"]: o["state"] for o in orders}

        async def u2_filled() -> bool:
            return await states() == {"U1": "expired", "U2": "open"}

        await eventually(u2_filled, what="U1's order expired and U2 filled from the waitlist", timeout_s=30)
        board = await shop.call("GET", f"/sessions/{sid}/dashboard")
        assert board["stock"] == {"A01": 0} and board["waitlist_units"] == 0 and board["units"] == 1

        requests = await inputs.read(topics.SEND_REQUESTS, 4, settle_s=0.5)
        texts = {(r["payload"]["target"]["user_id"], r["payload"]["messages"][0]["text"]) for r in requests}
        assert any(user == "U1" and "保留時間已過" in text for user, text in texts)
        assert any(user == "U2" and "補到" in text for user, text in texts)
        events = await inputs.read(topics.SHOP_ORDERS, 3, settle_s=0.5)
        assert ("U1", "expired") in {(e["payload"]["user_id"], e["payload"]["kind"]) for e in events}


async def test_paused_session_ignores_comments_and_bad_input_is_dead_lettered(
    start_liveshop: Any, inputs: Any, liveshop_topics: None
) -> None:
    async with start_liveshop() as shop:
        session = await shop.create_session(
            products=[{"code": "A01", "name": "杯", "price": 300, "stock": 5}], featured="A01"
        )
        sid = session["session_id"]
        await shop.call("POST", f"/sessions/{sid}/start")
        await shop.call("POST", f"/sessions/{sid}/pause")
        await inputs.comments(sid, ("p1", "U1", "+1"))
        await inputs.comments("no-such-session", ("x1", "U1", "+1"))
        await inputs.raw(topics.LIVE_COMMENTS, b"{not json", b"k")
        await inputs.status("no-such-session-7", "paid")
        dead = await inputs.read(topics.dlq(topics.LIVE_COMMENTS), 2)
        assert any("no live session 'no-such-session'" in d["error"] for d in dead)
        assert any("json" in d["error"].lower() for d in dead)
        dead_status = await inputs.read(topics.dlq(topics.SHOP_ORDER_STATUS), 1)
        assert "no live session" in dead_status[0]["error"]

        async def applied() -> bool:
            board = await shop.call("GET", f"/sessions/{sid}/dashboard")
            return bool(board["inputs_applied"] == 1)

        await eventually(applied, what="the comment seen", timeout_s=30)
        board = await shop.call("GET", f"/sessions/{sid}/dashboard")
        assert board["orders"] == 0 and board["stock"] == {"A01": 5}  # paused: no order taken

        # the API refuses what the state does not allow, with the reason
        ended = await shop.call("POST", f"/sessions/{sid}/end")
        assert ended["status"] == "ended"
        again = await shop.client.post(f"/sessions/{sid}/start")
        assert again.status_code == 409 and "ended" in again.json()["detail"]
        bad = await shop.client.post(
            "/channels/1234567890/sessions",
            json={"title": "x", "products": [{"code": "A 1", "name": "n", "price": 1, "stock": 1}]},
        )
        assert bad.status_code == 422
        missing = await shop.client.get("/sessions/nope/dashboard")
        assert missing.status_code == 404
