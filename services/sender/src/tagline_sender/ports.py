"""What the sender needs from the outside world, as Protocols (adapters implement them)."""

from __future__ import annotations

from typing import Any, Protocol

from tagline_contracts.sending import SendMethod
from tagline_sender.domain.delivery import Answer


class LineGateway(Protocol):
    """LINE's Messaging API for one channel access token at a time (one shared connection pool)."""

    async def send(
        self, method: SendMethod, access_token: str, body: dict[str, Any], retry_key: str | None
    ) -> Answer:
        """Make one reply / push / multicast call; never raises for HTTP or network failures."""
        ...

    async def quota_limit(self, access_token: str) -> int | None:
        """The monthly limit (``None`` = LINE's type ``none``: no limit)."""
        ...

    async def quota_usage(self, access_token: str) -> int:
        """LINE's ``totalUsage`` of billable messages this month."""
        ...

    async def close(self) -> None: ...
