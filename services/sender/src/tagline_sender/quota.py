"""Keeps each channel's monthly ledger: reservations, settlements, LINE's limit and reconciliation.

The atomicity comes from :class:`~tagline_sender.adapters.mongo.SenderStore` (one conditional update per
reservation); this module decides *what* to reserve and when the ledger must be corrected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tagline_contracts.sending import SendCategory
from tagline_platform.errors import InfrastructureUnavailable
from tagline_sender.adapters.mongo import SenderStore, hold_id
from tagline_sender.domain.quota import UNLIMITED, external_usage, headroom_for, month_of, required_remaining
from tagline_sender.ports import LineGateway
from tagline_sender.settings import ChannelConfig

log = logging.getLogger("tagline.sender.quota")


@dataclass(frozen=True)
class Hold:
    ledger_id: str
    hold: str
    n: int


class QuotaKeeper:
    def __init__(
        self,
        store: SenderStore,
        line: LineGateway,
        channels: dict[str, ChannelConfig],
        default_headroom_ratio: float,
    ) -> None:
        self._store = store
        self._line = line
        self._channels = channels
        self._default_ratio = default_headroom_ratio
        self._limits: dict[str, int] = {}
        self._ensured: set[str] = set()  # ledgers known to exist (one upsert per month, not per call)

    def ledger_id(self, channel_id: str, now: datetime) -> str:
        return f"{channel_id}:{month_of(now, self._channels[channel_id].timezone)}"

    async def limit(self, channel_id: str) -> int:
        """The channel's monthly limit: configured, else LINE's (cached until the next refresh)."""
        config = self._channels[channel_id]
        if config.monthly_limit is not None:
            return config.monthly_limit
        if channel_id not in self._limits:
            limit = await self._line.quota_limit(config.access_token.get_secret_value())
            self._limits[channel_id] = UNLIMITED if limit is None else limit
        return self._limits[channel_id]

    def headroom(self, channel_id: str, limit: int) -> int:
        ratio = self._channels[channel_id].marketing_headroom_ratio
        return headroom_for(limit, self._default_ratio if ratio is None else ratio)

    async def ledger(self, channel_id: str, now: datetime) -> dict[str, Any]:
        ledger_id = self.ledger_id(channel_id, now)
        if ledger_id not in self._ensured:
            limit = await self.limit(channel_id)
            await self._store.ensure_ledger(ledger_id, channel_id, ledger_id.rsplit(":", 1)[1], limit)
            self._ensured.add(ledger_id)
        doc = await self._store.get_ledger(ledger_id)
        if doc is None:  # pragma: no cover - ensure_ledger just created it
            raise InfrastructureUnavailable(f"quota ledger {ledger_id} vanished")
        return doc

    async def reserve(
        self, channel_id: str, delivery_id: str, n: int, category: SendCategory, now: datetime
    ) -> Hold | None:
        """Hold ``n`` messages for this delivery, or ``None`` when they do not fit (→ deferred)."""
        doc = await self.ledger(channel_id, now)
        need = required_remaining(n, category, self.headroom(channel_id, doc["limit"]))
        hold = Hold(doc["_id"], hold_id(delivery_id), n)
        if await self._store.reserve(hold.ledger_id, hold.hold, n, need):
            return hold
        return None

    async def settle(self, hold: Hold, *, used: bool) -> int | None:
        """Confirm (``used``) or release a hold; returns the month's usage before it, if it was still held."""
        return await self._store.settle(hold.ledger_id, hold.hold, hold.n, used=used)

    async def mark_exhausted(self, ledger_id: str) -> None:
        """LINE says the month is used up: count whatever we thought was left as used elsewhere."""
        for _ in range(20):
            doc = await self._store.get_ledger(ledger_id)
            if doc is None or doc["remaining"] <= 0:
                return
            fields = {"external": doc["external"] + doc["remaining"], "remaining": 0}
            if await self._store.compare_and_set_ledger(ledger_id, doc["rev"], fields):
                log.warning("monthly limit reached", extra={"ledger": ledger_id})
                return

    async def refresh(self, channel_id: str, now: datetime) -> int:
        """Re-read LINE's limit and usage and correct this month's ledger; returns ``remaining`` after."""
        config = self._channels[channel_id]
        token = config.access_token.get_secret_value()
        if config.monthly_limit is None:
            limit = await self._line.quota_limit(token)
            self._limits[channel_id] = UNLIMITED if limit is None else limit
        usage: int | None
        try:
            usage = await self._line.quota_usage(token)
        except InfrastructureUnavailable:
            usage = None
        for _ in range(20):
            doc = await self.ledger(channel_id, now)
            limit = await self.limit(channel_id)
            external = (
                doc["external"] if usage is None else external_usage(usage, doc["used"], doc["reserved"])
            )
            remaining = limit - doc["used"] - doc["reserved"] - external
            if (limit, external, remaining) == (doc["limit"], doc["external"], doc["remaining"]):
                return int(remaining)
            fields = {"limit": limit, "external": external, "remaining": remaining}
            if await self._store.compare_and_set_ledger(doc["_id"], doc["rev"], fields):
                return int(remaining)
        raise InfrastructureUnavailable(f"quota ledger of {channel_id} kept changing during reconciliation")
