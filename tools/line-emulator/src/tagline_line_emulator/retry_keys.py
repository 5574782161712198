"""``X-Line-Retry-Key`` bookkeeping: which keys LINE has accepted, per channel, for 24 hours."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

RETRY_KEY_TTL_S = 24 * 3600.0


def is_valid_retry_key(value: str) -> bool:
    """LINE wants a UUID in hexadecimal notation (``123e4567-e89b-12d3-a456-426614174000``)."""
    if len(value) != 36:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class AcceptedKey:
    request_id: str
    accepted_at: float
    sent_messages: tuple[dict[str, Any], ...] | None  # push answers them again with the 409


class RetryKeyTable:
    """Keys of accepted requests; a key whose request failed (4xx, 5xx, 429) is never stored."""

    def __init__(self, ttl_s: float = RETRY_KEY_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._keys: dict[tuple[str, str], AcceptedKey] = {}

    def accepted(self, channel: str, key: str, now: float) -> AcceptedKey | None:
        found = self._keys.get((channel, key))
        if found is None:
            return None
        if now - found.accepted_at >= self.ttl_s:
            del self._keys[(channel, key)]
            return None
        return found

    def remember(self, channel: str, key: str, accepted: AcceptedKey) -> None:
        self._keys[(channel, key)] = accepted

    def __len__(self) -> int:
        return len(self._keys)

    def clear(self) -> None:
        self._keys.clear()
