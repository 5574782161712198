"""LINE POINTS for archived orders: the gateway call and the granter that retries it until it succeeds.

Once-only comes from two keys. The ledger entry is keyed by order id and written in the same journal entry as
the archival (``adapters.store``), so an order has one entry however often it is archived. The grant call
carries ``Idempotency-Key: points:<order id>``, so calling again after a timeout, a crash, or from two
instances at once is answered with the first grant instead of a second one (the gateway's contract; the
emulator keeps it). Ledger states: ``pending`` → ``granted`` (the call succeeded) → ``done`` (the buyer was
notified and ``PointsGranted`` published); ``failed`` when the gateway refuses the grant for good (4xx), with
the reason, for an operator; ``nothing_to_grant`` for zero points.

Granters in several instances share the ledger: each attempt (a grant call, an announcement) starts with a
claim of the entry (``LiveshopStore.claim_grant``, a compare-and-set that moves its next attempt past the
call's time-out), so one granter makes it, and every state change is conditional on the state it leaves. A
granter that dies mid-attempt leaves the entry to be taken again once the claim runs out; the gateway's
idempotency key makes that second call harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import aiohttp

from tagline_contracts import topics
from tagline_contracts.orders import OrderEventKind, OrderEventRecord
from tagline_contracts.sending import SendCategory, SendMessages, SendRequested, UserTarget, send_request_key
from tagline_liveshop.adapters.store import LiveshopStore
from tagline_liveshop.domain.messages import points_text
from tagline_liveshop.domain.model import Order
from tagline_liveshop.writer import PublishAll, order_event
from tagline_platform.kafka import Outgoing

log = logging.getLogger("tagline.liveshop.points")

MAX_BACKOFF_S = 60.0
CLAIM_MARGIN_S = 30.0
"""A claim lasts the gateway's time-out and this much more (the ledger updates and the announcement)."""


class GrantOutcome(StrEnum):
    GRANTED = "granted"
    RETRY = "retry"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class GrantAnswer:
    outcome: GrantOutcome
    detail: str = ""
    grant_id: str | None = None


def classify(status: int, body: Any) -> GrantAnswer:
    """What an HTTP answer of the gateway means: 2xx granted; 408/409/429/5xx try again; other 4xx refused."""
    if 200 <= status < 300:
        grant_id = body.get("grantId") if isinstance(body, dict) else None
        return GrantAnswer(GrantOutcome.GRANTED, grant_id=grant_id)
    detail = f"HTTP {status}: {body.get('message') if isinstance(body, dict) else body!s:.200}"
    if status in (408, 409, 425, 429) or status >= 500:
        return GrantAnswer(GrantOutcome.RETRY, detail)
    return GrantAnswer(GrantOutcome.REFUSED, detail)


def backoff_s(attempts: int) -> float:
    """1, 2, 4 … 60 seconds between attempts."""
    return float(min(MAX_BACKOFF_S, 2 ** max(0, attempts - 1)))


class PointsGateway:
    """``POST {base_url}/v1/points/grants`` with ``Idempotency-Key``.

    The emulator locally, the partner's endpoint in production."""

    def __init__(self, base_url: str, *, token: str | None, timeout_s: float) -> None:
        self._url = base_url.rstrip("/") + "/v1/points/grants"
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def grant(
        self, *, channel_id: str, user_id: str, amount: int, reference: str, key: str
    ) -> GrantAnswer:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = {"channelId": channel_id, "userId": user_id, "amount": amount, "reference": reference}
        try:
            async with self._session.post(
                self._url, json=body, headers={**self._headers, "Idempotency-Key": key}
            ) as response:
                try:
                    answer: Any = await response.json(content_type=None)
                except ValueError:
                    answer = await response.text()
                return classify(response.status, answer)
        except (TimeoutError, aiohttp.ClientError) as exc:
            return GrantAnswer(GrantOutcome.RETRY, f"{type(exc).__name__}: {exc}")


class Granter:
    """Grants the points of pending ledger entries; any number of instances may run it at once."""

    def __init__(
        self,
        store: LiveshopStore,
        gateway: PointsGateway,
        publish_all: PublishAll,
        *,
        topic_of: Callable[[str], str],
        clock: Callable[[], datetime],
        batch: int = 100,
        concurrency: int = 16,
        claim_s: float = 60.0,
    ) -> None:
        self._store = store
        self._claim = timedelta(seconds=claim_s)
        self._concurrency = concurrency
        self._gateway = gateway
        self._publish_all = publish_all
        self._topic_of = topic_of
        self._clock = clock
        self._batch = batch
        self.granted = 0
        self.retries = 0

    async def run_once(self) -> int:
        """One pass over the entries that are due; returns how many moved on."""
        now = self._clock()
        slots = asyncio.Semaphore(self._concurrency)

        async def one(entry: dict[str, Any]) -> int:
            # entries are independent (one per order, idempotency key per order): several at a time
            async with slots:
                if not await self._store.claim_grant(entry, now + self._claim):
                    return 0  # another granter has it
                if entry["state"] == "pending":
                    return await self._grant(entry, now)
                return await self._announce(entry, now)

        entries = await self._store.due_grants(now, self._batch)
        results = await asyncio.gather(*(one(e) for e in entries), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result  # after every other entry of the pass has finished
        return sum(r for r in results if isinstance(r, int))

    async def _grant(self, entry: dict[str, Any], now: datetime) -> int:
        answer = await self._gateway.grant(
            channel_id=entry["channel_id"],
            user_id=entry["user_id"],
            amount=int(entry["points"]),
            reference=entry["_id"],
            key=f"points:{entry['_id']}",
        )
        attempts = int(entry.get("attempts", 0)) + 1
        if answer.outcome is GrantOutcome.GRANTED:
            moved = await self._store.mark_ledger(
                entry["_id"],
                {
                    "state": "granted",
                    "grant_id": answer.grant_id,
                    "granted_at": now,
                    "last_error": None,
                    "next_attempt_at": now + self._claim,  # still this granter's: it announces right away
                },
                state="pending",
                attempts=1,
            )
            if not moved:  # another granter took it after this claim ran out, and got there first
                return 0
            self.granted += 1
            entry = {**entry, "state": "granted", "granted_at": now}
            return 1 + await self._announce(entry, now)
        if answer.outcome is GrantOutcome.REFUSED:
            log.error("points grant refused", extra={"order_id": entry["_id"], "error": answer.detail})
            await self._store.mark_ledger(
                entry["_id"], {"state": "failed", "last_error": answer.detail}, state="pending", attempts=1
            )
            return 1
        self.retries += 1
        log.warning("points grant failed; retrying", extra={"order_id": entry["_id"], "error": answer.detail})
        await self._store.mark_ledger(
            entry["_id"],
            {"last_error": answer.detail, "next_attempt_at": now + timedelta(seconds=backoff_s(attempts))},
            state="pending",
            attempts=1,
        )
        return 0

    async def _announce(self, entry: dict[str, Any], now: datetime) -> int:
        """Tell the buyer and the tagger (idempotent: stable event id and idempotency key)."""
        doc = await self._store.order(entry["_id"])
        if doc is None:  # the view is written right after the journal; the next pass finds it
            return 0
        order = Order.from_doc(doc)
        order.points = int(entry["points"])
        record = OrderEventRecord(
            event_id=entry["event_id"],
            channel_id=entry["channel_id"],
            occurred_at=entry.get("granted_at") or now,
            produced_at=now,
            payload=order_event(OrderEventKind.POINTS_GRANTED.value, order),
        )
        target = UserTarget(user_id=order.user_id)
        notify = SendRequested(
            event_id=f"{entry['event_id']}-notice",
            channel_id=entry["channel_id"],
            occurred_at=now,
            produced_at=now,
            payload=SendMessages(
                idempotency_key=f"liveshop:points:{order.order_id}",
                category=SendCategory.TRANSACTIONAL,
                messages=[{"type": "text", "text": points_text(order.points, order.order_id)}],
                target=target,
                labels={"source": "liveshop", "session_id": order.session_id, "order_id": order.order_id},
            ),
        )
        await self._publish_all(
            [
                Outgoing.of(
                    self._topic_of(topics.SHOP_ORDERS), f"{order.channel_id}:{order.user_id}", record
                ),
                Outgoing.of(
                    self._topic_of(topics.SEND_REQUESTS), send_request_key(order.channel_id, target), notify
                ),
            ]
        )
        await self._store.mark_ledger(entry["_id"], {"state": "done", "announced_at": now}, state="granted")
        return 1

    async def run_forever(self, interval_s: float) -> None:
        while True:
            try:
                while await self.run_once():
                    pass
            except Exception:
                log.exception("points pass failed; it runs again")
            await asyncio.sleep(interval_s)
