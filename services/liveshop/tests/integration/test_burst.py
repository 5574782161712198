"""Bursts against real Kafka + FerretDB: two instances never oversell, and a SIGKILL mid-burst loses no order.

The comments of a session share a partition (key ``channel:sessionId``), but orders typed in the LINE chat
are keyed by user and spread over every partition, so both instances apply orders to the same session at the
same time; the session lock and the journal's unique entry ids keep the stock exact.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from typing import Any

import httpx

from tagline_contracts import topics
from tagline_testing.processes import free_port
from tagline_testing.waiting import eventually

CHANNEL = "1234567890"
STOCK = 100


async def _applied(shop: Any, sid: str) -> int:
    return int((await shop.call("GET", f"/sessions/{sid}/dashboard"))["inputs_applied"])


async def test_burst_over_two_instances_sells_exactly_the_stock(
    start_liveshop: Any, inputs: Any, liveshop_topics: None
) -> None:
    buyers, comments = 5_000, 10_000
    async with start_liveshop() as a, start_liveshop() as b:
        session = await a.create_session(
            products=[{"code": "A01", "name": "限量包", "price": 1_280, "stock": STOCK}], featured="A01"
        )
        sid = session["session_id"]
        await a.call("POST", f"/sessions/{sid}/start")
        await eventually(
            lambda: a.service.live.get(CHANNEL) == sid and b.service.live.get(CHANNEL) == sid,
            what="both instances know the live session",
        )
        feed: list[tuple[str, str, str]] = []
        chat: list[dict[str, Any]] = []
        for n in range(comments):
            user = f"U{n % buyers:05d}"
            if n % 2:
                chat.append(inputs.line.text(user, "+1"))
            else:
                feed.append((f"c{n}", user, "+1"))
        await asyncio.gather(
            inputs.comments(sid, *feed),
            *(inputs.chat(*chat[i : i + 500]) for i in range(0, len(chat), 500)),
        )
        await eventually(
            lambda: _applied_is(a, sid, comments), what=f"{comments} comments applied", timeout_s=240
        )
        board = await b.call("GET", f"/sessions/{sid}/dashboard")
        assert board["stock"] == {"A01": 0}
        assert board["units"] == STOCK  # sold exactly the stock
        assert board["waitlist_units"] == comments - STOCK
        orders = (await a.call("GET", f"/sessions/{sid}/orders?limit=1000"))["orders"]
        assert sum(o["units"] for o in orders) == STOCK
        assert all(o["state"] == "open" for o in orders)
        assert a.service.writer.commits > 0 and b.service.writer.commits > 0, "both instances applied orders"

        requests = await inputs.read(topics.SEND_REQUESTS, comments, timeout_s=60)
        keys = Counter(r["payload"]["idempotency_key"] for r in requests)
        assert len(keys) == comments  # one confirmation (or waitlist notice) per comment
        waitlisted = sum(1 for r in requests if "候補" in r["payload"]["messages"][0]["text"])
        assert waitlisted == comments - STOCK


async def _applied_is(shop: Any, sid: str, count: int) -> bool:
    return await _applied(shop, sid) == count


def _start_process(liveshop_settings: Any, port: int) -> subprocess.Popen[bytes]:
    settings = liveshop_settings(port=port)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MONGODB_URL": settings.mongodb_url,
        "TAGLINE_TOPIC_NAMESPACE": settings.topic_namespace,
        "TAGLINE_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "TAGLINE_LIVESHOP_DATABASE": settings.database,
        "TAGLINE_LIVESHOP_GROUP_ID": settings.group_id,
        "TAGLINE_LIVESHOP_MAX_BATCH": "200",
        "TAGLINE_LIVESHOP_PORT": str(port),
        "TAGLINE_LIVESHOP_POINTS_URL": settings.points_url,
        "TAGLINE_LIVESHOP_LOCK_STALE_AFTER_S": "2",
    }
    return subprocess.Popen([sys.executable, "-m", "tagline_liveshop"], env=env)


async def _process_applied(port: int, sid: str) -> int:
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            answer = await client.get(f"http://127.0.0.1:{port}/sessions/{sid}/dashboard")
    except httpx.HTTPError:
        return -1
    return int(answer.json()["inputs_applied"]) if answer.status_code == 200 else -1


async def test_killed_mid_burst_loses_no_accepted_order(
    start_liveshop: Any, liveshop_settings: Any, inputs: Any, liveshop_topics: None
) -> None:
    comments = 6_000
    async with start_liveshop(jobs=False) as admin:  # creates the session; stopped before the burst
        session = await admin.create_session(
            products=[{"code": "A01", "name": "限量包", "price": 990, "stock": STOCK, "per_buyer_limit": 3}],
            featured="A01",
        )
        sid = session["session_id"]
        await admin.call("POST", f"/sessions/{sid}/start")
    feed = [(f"k{n}", f"K{n % 1_500:04d}", "+1" if n % 10 else "+2") for n in range(comments)]
    await inputs.comments(sid, *feed)

    port = free_port()
    process = _start_process(liveshop_settings, port)
    try:
        while True:
            applied = await _process_applied(port, sid)
            if applied >= comments // 4:
                process.send_signal(signal.SIGKILL)  # mid-burst: uncommitted offsets, maybe a half-done entry
                break
            assert process.poll() is None, "liveshop exited on its own"
            await asyncio.sleep(0.01)
        process.wait(10)
        assert applied < comments, "the kill came after everything was applied: nothing was tested"
        process = _start_process(liveshop_settings, port)
        await eventually(
            lambda: _process_applied_is(port, sid, comments), what="every comment applied", timeout_s=180
        )
        await asyncio.sleep(1.0)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)

    async with start_liveshop(jobs=False) as shop:
        board = await shop.call("GET", f"/sessions/{sid}/dashboard")
        orders = (await shop.call("GET", f"/sessions/{sid}/orders?limit=1000"))["orders"]
    assert board["stock"] == {"A01": 0} and board["units"] == STOCK
    assert sum(o["units"] for o in orders) == STOCK
    assert all(o["units"] <= 3 for o in orders)  # the per-buyer limit held across the crash
    demand = sum(2 if n % 10 == 0 else 1 for n in range(comments))
    assert board["waitlist_units"] + STOCK <= demand

    # every comment was answered, and every order a confirmation named still exists with its units
    requests = await inputs.read(topics.SEND_REQUESTS, comments, timeout_s=60)
    keys = {r["payload"]["idempotency_key"] for r in requests}
    assert keys == {f"liveshop:{sid}:c:k{n}" for n in range(comments)}
    by_id = {o["_id"]: o for o in orders}
    confirmed = {r["payload"]["labels"].get("order_id") for r in requests} - {None}
    assert confirmed <= set(by_id), "a confirmed order is missing"


async def _process_applied_is(port: int, sid: str, count: int) -> bool:
    return await _process_applied(port, sid) == count
