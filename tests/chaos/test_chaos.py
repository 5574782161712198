"""The fault drill: a steady load through every service while faults hit one at a time, then the books.

Run it with ``make chaos`` (deploy/local/run-chaos): it starts its own Kafka + FerretDB so the servers it
restarts are nobody else's. Knobs: ``TAGLINE_CHAOS_PHASE_S`` (seconds each fault lasts, default 8) and
``TAGLINE_CHAOS_FAULTS`` (comma-separated fault names, default all).

The load, once a second (``TAGLINE_CHAOS_RATE`` per second), like the outside world would do it:
- a new friend follows and writes a keyword: a signed webhook into ingest, redelivered until it gets a 200
  (as LINE does); the ids of the events acknowledged with 200 are remembered;
- a marketing push to that friend: a send request on ``send.requests.v1`` with its own idempotency key,
  published again when the publish is not acknowledged;
- a viewer comments "+1" in a live session with less stock than demand (``live.comments.v1``);
- every second, the merchant's backend moves the session's orders along paid → shipped → delivered →
  archived on ``shop.order-status.v1`` (archival sometimes twice).

Afterwards, from the emulator's records, the services' APIs and the databases: every acknowledged webhook
event is in its member's history; every accepted push reached its friend once, or is still deferred; every
commenter was answered once; no unit oversold; POINTS at most once per order and for every archived order;
the monthly quota never exceeded. A table per fault: load items in flight, lost, duplicated, recovery time.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
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
from tagline_contracts.sending import SendMessages, SendRequested, send_request_key
from tagline_platform.mongo import create_mongo_client
from tagline_testing.stack import Client, Stack, StackConfig
from tagline_testing.webhook import WebhookBuilder

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parents[2]
PHASE_S = float(os.environ.get("TAGLINE_CHAOS_PHASE_S", "8"))
TICK_S = 1.0 / float(os.environ.get("TAGLINE_CHAOS_RATE", "1"))
SETTLED_LAG = 10  # records behind, summed over every consumer group: steady state under the load
STOCK = 60
QUOTA = 1_000_000
NEXT_STATUS = {"open": "paid", "paid": "shipped", "shipped": "delivered", "delivered": "archived"}
SERVICES_WITH_CONSUMERS = ("tagger", "sender", "liveshop")


@dataclass
class Item:
    phase: str
    kind: str  # webhook | push | comment | status
    key: str
    user: str
    body: Any
    accepted: bool = False
    attempts: int = 0


@dataclass
class Load:
    stack: Stack
    producer: AIOKafkaProducer
    session_id: str
    phase: str = "baseline"
    items: list[Item] = field(default_factory=list)
    pending: list[Item] = field(default_factory=list)
    archived: set[str] = field(default_factory=set)
    statuses: dict[str, str] = field(default_factory=dict)
    rearchived: set[str] = field(default_factory=set)
    ticks: int = 0

    @property
    def c(self) -> StackConfig:
        return self.stack.config

    # ---- generating -----------------------------------------------------------------------------------
    def _new(self, kind: str, key: str, user: str, body: Any) -> None:
        item = Item(self.phase, kind, key, user, body)
        self.items.append(item)
        self.pending.append(item)

    def tick(self) -> None:
        n = self.ticks
        self.ticks += 1
        user = f"U{n:032x}"
        builder = WebhookBuilder(self.c.channel_secret)
        self._new("webhook", f"w{n}", user, [builder.follow(user), builder.text(user, "我要優惠")])
        self._new("push", f"chaos-push-{n}", user, f"push {n}")
        self._new("comment", f"c{n}", f"V{n:032x}", "+1")

    async def _deliver(self, item: Item) -> bool:
        """One attempt to hand ``item`` to the system; True once it was acknowledged."""
        item.attempts += 1
        if item.kind == "webhook":
            events = item.body
            if item.attempts > 1:  # LINE marks a redelivery
                for event in events:
                    event["deliveryContext"] = {"isRedelivery": True}
            signed = WebhookBuilder(self.c.channel_secret).request(events)
            async with httpx.AsyncClient(timeout=5.0) as http:
                answer = await http.post(
                    f"{self.stack.url('ingest')}/line/webhook/{self.c.channel_id}",
                    content=signed.body,
                    headers=signed.headers,
                )
            return answer.status_code == 200
        topic, key, value = self._record(item)
        await asyncio.wait_for(self.producer.send_and_wait(topic, value, key=key), timeout=5.0)
        return True

    def _record(self, item: Item) -> tuple[str, bytes, bytes]:
        ns, channel, now = self.c.namespace, self.c.channel_id, datetime.now(UTC)
        if item.kind == "push":
            request = SendMessages.model_validate(
                {
                    "idempotency_key": item.key,
                    "category": "marketing",
                    "messages": [{"type": "text", "text": item.body}],
                    "target": {"kind": "users", "user_ids": [item.user]},
                }
            )
            push = SendRequested(
                event_id=new_event_id(), channel_id=channel, occurred_at=now, produced_at=now, payload=request
            )
            return (
                f"{ns}{topics.SEND_REQUESTS}",
                send_request_key(channel, request.target).encode(),
                push.model_dump_json(by_alias=True).encode(),
            )
        if item.kind == "comment":
            comment = LiveCommentRecord(
                event_id=new_event_id(),
                channel_id=channel,
                occurred_at=now,
                produced_at=now,
                payload=LiveComment(
                    session_id=self.session_id,
                    comment_id=item.key,
                    user_id=item.user,
                    text="+1",
                    commented_at=now,
                ),
            )
            return (
                f"{ns}{topics.LIVE_COMMENTS}",
                session_key(channel, self.session_id).encode(),
                comment.model_dump_json(by_alias=True).encode(),
            )
        change = OrderStatusRecord(
            event_id=new_event_id(),
            channel_id=channel,
            occurred_at=now,
            produced_at=now,
            payload=OrderStatusChanged.model_validate(item.body),
        )
        return (
            f"{ns}{topics.SHOP_ORDER_STATUS}",
            order_key(channel, item.key).encode(),
            change.model_dump_json(by_alias=True).encode(),
        )

    async def flush_pending(self) -> None:
        still: list[Item] = []
        for item in self.pending:
            if still and item.kind == "status":
                still.append(item)  # an order's changes go in order
                continue
            try:
                item.accepted = await self._deliver(item)
            except Exception:  # any failure (refused, timed out, 5xx): the item is tried again later
                item.accepted = False
            if not item.accepted:
                still.append(item)
            elif item.kind == "status" and item.body["status"] == "archived":
                self.archived.add(item.key)
        self.pending = still

    async def advance_orders(self, shop: Client) -> None:
        """The merchant's backend: each order one step further (archived ones sometimes archived again)."""
        if any(i.kind == "status" for i in self.pending):
            return
        try:
            orders = await shop.session_orders(self.session_id)
        except (httpx.HTTPError, AssertionError):
            return
        for order in orders:
            state = order["state"]
            if state == "archived" and order["_id"] in self.archived and order["_id"] not in self.rearchived:
                self.rearchived.add(order["_id"])  # the merchant's backend says it twice, for every order
                self._new(
                    "status", order["_id"], order["user_id"], {"order_id": order["_id"], "status": "archived"}
                )
            nxt = NEXT_STATUS.get(state)
            if nxt is None or self.statuses.get(order["_id"]) == nxt:
                continue
            body: dict[str, Any] = {"order_id": order["_id"], "status": nxt}
            if nxt == "paid":
                body["amount_paid"] = float(order["amount"])
            self.statuses[order["_id"]] = nxt
            self._new("status", order["_id"], order["user_id"], body)

    async def run(self, stop: asyncio.Event, shop: Client) -> None:
        last_orders = 0.0
        while not stop.is_set():
            started = time.monotonic()
            self.tick()
            if started - last_orders > 1.0:
                await self.advance_orders(shop)
                last_orders = started
            await self.flush_pending()
            await asyncio.sleep(max(0.0, TICK_S - (time.monotonic() - started)))


# ---- faults ----------------------------------------------------------------------------------------------
Fault = Callable[[Stack, Client], Awaitable[Callable[[], Awaitable[None]]]]
"""Starts a fault; returns the coroutine function that ends it."""


def kill(service: str) -> Fault:
    async def start(stack: Stack, _emu: Client) -> Callable[[], Awaitable[None]]:
        stack.kill(service)

        async def end() -> None:
            stack.spawn(service)

        return end

    return start


def server_down(server: str) -> Fault:
    async def start(stack: Stack, _emu: Client) -> Callable[[], Awaitable[None]]:
        state = os.environ["TAGLINE_CHAOS_INFRA_STATE"]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "deploy" / "local" / "infra.py"),
            "restart",
            server,
            "--kill",
            "--down-s",
            str(PHASE_S),
            "--state-dir",
            state,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )

        async def end() -> None:
            _, err = await process.communicate()
            assert process.returncode == 0, err.decode()

        return end

    return start


def line_fault(kind: str, **extra: Any) -> Fault:
    async def start(_stack: Stack, emu: Client) -> Callable[[], Awaitable[None]]:
        await emu.call("POST", "/_emulator/faults", json={"endpoint": "*", "kind": kind, **extra}, expect=201)

        async def end() -> None:
            await emu.call("DELETE", "/_emulator/faults")

        return end

    return start


FAULTS: dict[str, Fault] = {
    "kill -9 ingest": kill("ingest"),
    "kill -9 tagger": kill("tagger"),
    "kill -9 sender": kill("sender"),
    "kill -9 liveshop": kill("liveshop"),
    "Kafka down": server_down("kafka"),
    "FerretDB down": server_down("mongo"),
    "LINE 5xx": line_fault("error", status=500, probability=0.7),
    "LINE timeout after accept": line_fault("timeout_after_accept", delay_s=4.0, probability=0.5),
    "LINE drops connections": line_fault("drop_after_accept", probability=0.5),
}


async def _settled(stack: Stack, load: Load) -> bool:
    """Every service ready, nothing waiting to be redelivered, every consumer group caught up."""
    async with httpx.AsyncClient(timeout=2.0) as http:
        for name in ("ingest", *SERVICES_WITH_CONSUMERS):
            try:
                if (await http.get(stack.url(name) + "/readyz")).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
    if any(item.attempts > 1 for item in load.pending):
        return False  # still redelivering what the fault refused
    total = 0.0
    for name in SERVICES_WITH_CONSUMERS:
        try:
            lag = await stack.metric(name, f"tagline_{name}_consumer_lag")
        except httpx.HTTPError:
            return False
        if lag is None:
            return False
        total += lag
    return total <= SETTLED_LAG


async def _recovery(stack: Stack, load: Load, timeout_s: float = 180.0) -> float:
    started = time.monotonic()
    while not await _settled(stack, load):
        if time.monotonic() - started > timeout_s:
            return float("inf")
        await asyncio.sleep(0.5)
    return time.monotonic() - started


@pytest.fixture
async def chaos_stack(kafka_bootstrap: str, mongodb_url: str, namespace: str) -> Any:
    if not os.environ.get("TAGLINE_CHAOS_INFRA_STATE"):
        pytest.fail(
            "run the drill with `make chaos`: it restarts Kafka and FerretDB, so it needs its own servers"
        )
    workdir = ROOT / ".local" / "chaos" / "stack"
    lag_every = {"TAGLINE_TAGGER_CONSUMER_LAG_INTERVAL_S": "1"}
    stack = Stack(
        StackConfig(
            kafka_bootstrap=kafka_bootstrap,
            mongodb_url=mongodb_url,
            namespace=namespace,
            workdir=workdir,
            overrides={
                "tagger": lag_every,
                "sender": {"TAGLINE_SENDER_CONSUMER_LAG_INTERVAL_S": "1"},
                "liveshop": {"TAGLINE_LIVESHOP_CONSUMER_LAG_INTERVAL_S": "1"},
            },
        )
    )
    await stack.start()
    try:
        yield stack
    finally:
        stack.stop_all()
        client: Any = create_mongo_client(mongodb_url, app_name="tagline-chaos")
        try:
            for service in ("tagger", "sender", "liveshop"):
                await client.drop_database(stack.database(service))
        finally:
            await client.close()


async def test_nothing_lost_nothing_twice_under_faults(chaos_stack: Stack, kafka_bootstrap: str) -> None:
    stack = chaos_stack
    shop, tagger, sender, emu = (Client(stack.url(n)) for n in ("liveshop", "tagger", "sender", "line-emu"))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    rows: list[tuple[str, int, float]] = []
    runner: asyncio.Task[None] | None = None
    try:
        sid = await _set_up(stack, shop, tagger, emu)

        load = Load(stack, producer, sid)
        stop = asyncio.Event()
        runner = asyncio.create_task(load.run(stop, shop))
        wanted = [f.strip() for f in os.environ.get("TAGLINE_CHAOS_FAULTS", "").split(",") if f.strip()]
        load.phase = "baseline"
        await asyncio.sleep(PHASE_S)
        rows.append(("baseline", 0, await _recovery(stack, load)))
        for name, fault in FAULTS.items():
            if wanted and name not in wanted:
                continue
            load.phase = name
            print(f"chaos: {name}", flush=True)
            end = await fault(stack, emu)
            await asyncio.sleep(PHASE_S)
            await end()
            recovery = await _recovery(stack, load)
            rows.append((name, 0, recovery))
            print(f"chaos: {name}: recovered in {recovery:.1f} s", flush=True)
        load.phase = "after"
        stop.set()
        await runner
        while load.pending:
            await load.flush_pending()
            await asyncio.sleep(0.5)
        # let the last orders reach archival, then everything drain
        for _ in range(40):
            await load.advance_orders(shop)
            await load.flush_pending()
            if (
                not any(i.kind == "status" for i in load.pending)
                and all(s == "archived" for s in load.statuses.values())
                and len(load.statuses) >= len(await shop.session_orders(sid))
            ):
                break
            await asyncio.sleep(1.0)
        await _recovery(stack, load)
        await asyncio.sleep(5.0)

        report = await _books(stack, load, shop, tagger, sender, emu)
        _print_table(rows, load, report)
        problems = {k: v for k, v in report["totals"].items() if v}
        assert not problems, problems
    finally:
        if runner is not None and not runner.done():
            runner.cancel()
        await producer.stop()
        for client in (shop, tagger, sender, emu):
            await client.close()


async def _set_up(stack: Stack, shop: Client, tagger: Client, emu: Client) -> str:
    """The quota, a keyword rule (loaded), and a live session with less stock than the load will ask for."""
    c = stack.config
    await emu.call(
        "PUT", f"/_emulator/channels/{c.channel_id}/quota", json={"type": "limited", "value": QUOTA}
    )
    await tagger.call(
        "POST",
        f"/channels/{c.channel_id}/rules",
        json={
            "name": "優惠",
            "tag": "wants_coupon",
            "condition": {"kind": "keyword", "match": "contains", "patterns": ["優惠"]},
        },
    )
    session = await shop.call(
        "POST",
        f"/channels/{c.channel_id}/sessions",
        json={
            "title": "chaos",
            "products": [{"code": "A01", "name": "杯", "price": 500.0, "stock": STOCK, "per_buyer_limit": 1}],
            "featured": "A01",
            "points_rate": 0.02,
        },
        expect=201,
    )
    sid = session["session_id"]
    await shop.call("POST", f"/sessions/{sid}/start")
    started = time.monotonic()
    while (await stack.metric("tagger", "tagline_tagger_rules_loaded") or 0) < 1:
        assert time.monotonic() - started < 30, "the tagger did not load the rule"
        await asyncio.sleep(0.2)
    return str(sid)


async def _books(  # noqa: PLR0912, PLR0915 - one branch per kind of load item
    stack: Stack, load: Load, shop: Client, tagger: Client, sender: Client, emu: Client
) -> dict[str, Any]:
    """Lost and duplicated per phase, and the global invariants, from records the system keeps."""
    c = stack.config
    mongo: Any = create_mongo_client(c.mongodb_url, app_name="tagline-chaos-books")
    members = mongo[stack.database("tagger")]["members"]
    lost: Counter[str] = Counter()
    duplicated: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()  # "lost webhook", "duplicated push", …
    deferred = 0

    async def received(user: str) -> dict[str, int]:
        found = await emu.call("GET", f"/_emulator/channels/{c.channel_id}/received/{user}")
        return {x["messages"]: x["count"] for x in found["received"]}

    for item in load.items:
        if not item.accepted:
            continue  # never acknowledged: the sender of it knows and would retry
        if item.kind == "webhook":
            # the member's history: the ids of the inputs applied to it (the tagger's database), and what
            # they did (a follow, and the keyword's tag)
            member = await members.find_one({"_id": f"{c.channel_id}:{item.user}"})
            seen = set(member.get("seen", [])) if member else set()
            ids = {e["webhookEventId"] for e in item.body}
            if not ids <= seen or "wants_coupon" not in member.get("tags", []):
                lost[item.phase] += 1
                by_kind["lost webhook"] += 1
            if member and int(member.get("follow_count", 0)) > 1:
                duplicated[item.phase] += 1
                by_kind["duplicated webhook"] += 1
        elif item.kind == "push":
            n = (await received(item.user)).get(item.body, 0)
            if n == 0:
                state = await sender.call("GET", f"/sends/{c.channel_id}/{item.key}", expect=(200, 404))
                if state and state.get("deliveries", {}).get("deferred"):
                    deferred += 1
                else:
                    lost[item.phase] += 1
                    by_kind["lost push"] += 1
            elif n > 1:
                duplicated[item.phase] += 1
                by_kind["duplicated push"] += 1
        elif item.kind == "comment":
            # an answer (confirmation or sold out), then maybe order notices: each message once
            answers = await received(item.user)
            if not answers:
                lost[item.phase] += 1
                by_kind["lost comment"] += 1
            elif max(answers.values()) > 1:
                duplicated[item.phase] += 1
                by_kind["duplicated comment"] += 1
    await mongo.close()
    session = await shop.call("GET", f"/sessions/{load.session_id}")
    orders = await shop.session_orders(load.session_id)
    sold = sum(o["units"] for o in orders if o["state"] not in ("cancelled", "expired", "returned"))
    stock = session["stock"]  # {sku: units left}
    left = sum(stock.values()) if isinstance(stock, dict) else sum(s["units"] for s in stock)
    grants = (await emu.call("GET", f"/_emulator/channels/{c.channel_id}/points"))["grants"]
    per_order = Counter(g["reference"] for g in grants)
    archived = {o["_id"] for o in orders if o["state"] == "archived"}
    usage = (await emu.call("GET", f"/_emulator/channels/{c.channel_id}/usage"))["totalUsage"]
    over_quota = await emu.call("GET", "/_emulator/requests", params={"status": 429, "limit": 0})
    dups = (await emu.call("GET", f"/_emulator/channels/{c.channel_id}/duplicates"))["duplicates"]
    totals = {
        "lost": sum(lost.values()),
        "duplicated": sum(duplicated.values()),
        "duplicate deliveries (emulator)": len(dups),
        "oversold units": max(0, sold - STOCK),
        "negative stock": int(left < 0),
        "POINTS granted twice": sum(1 for n in per_order.values() if n > 1),
        "archived orders without POINTS": len(archived - set(per_order)),
        "quota exceeded": int(usage > QUOTA),
        "LINE 429 answers": int(over_quota["total"]),
    }
    return {
        "lost": lost,
        "duplicated": duplicated,
        "deferred": deferred,
        "by_kind": by_kind,
        "totals": totals,
        "sold": sold,
        "archived": len(archived),
        "grants": len(grants),
    }


def _print_table(rows: list[tuple[str, int, float]], load: Load, report: dict[str, Any]) -> None:
    in_flight: defaultdict[str, int] = defaultdict(int)
    for item in load.items:
        in_flight[item.phase] += 1
    print()
    print(f"{'fault':<28}{'in flight':>10}{'lost':>7}{'dup':>6}{'recovery s':>12}")
    for name, _, recovery in rows:
        shown = "—" if recovery == float("inf") else f"{recovery:.1f}"
        print(
            f"{name:<28}{in_flight[name]:>10}{report['lost'][name]:>7}{report['duplicated'][name]:>6}{shown:>12}"
        )
    print(
        f"load items: {len(load.items)} (webhooks, pushes, comments, order changes); "
        f"sold {report['sold']} of {STOCK}; archived {report['archived']}; POINTS grants {report['grants']}; "
        f"deferred {report['deferred']}"
    )
    for what, value in report["totals"].items():
        print(f"  {what}: {value}")
    for what, value in sorted(report["by_kind"].items()):
        print(f"  {what}: {value}")
