"""Reply tokens: issued for a (channel, user), valid for a while, usable once."""

from __future__ import annotations

import secrets
from dataclasses import dataclass


@dataclass(slots=True)
class _Token:
    channel: str
    user_id: str
    issued_at: float
    used: bool = False


class ReplyTokenBook:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._tokens: dict[str, _Token] = {}

    def issue(self, channel: str, user_id: str, now: float, token: str | None = None) -> str:
        """Register ``token`` (or a new random one) for ``user_id`` on ``channel``; returns the token."""
        value = token if token is not None else secrets.token_hex(16)
        if not value:
            raise ValueError("a reply token must not be empty")
        self._tokens[value] = _Token(channel, user_id, now)
        return value

    def redeemable(self, channel: str, token: str, now: float) -> str | None:
        """The user the token replies to, or None if it is unknown here, expired or used."""
        found = self._tokens.get(token)
        if found is None or found.used or found.channel != channel or now - found.issued_at > self.ttl_s:
            return None
        return found.user_id

    def redeem(self, token: str) -> None:
        self._tokens[token].used = True

    def clear(self) -> None:
        self._tokens.clear()
