"""The emulated LINE POINTS partner API: grants with an ``Idempotency-Key``. Pure bookkeeping."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any


class IdempotencyConflict(Exception):
    """The key was used before with a different body."""


@dataclass(frozen=True, slots=True)
class GrantRequest:
    channel_id: str
    user_id: str
    amount: int
    reference: str

    @classmethod
    def parse(cls, body: Any) -> tuple[GrantRequest | None, list[tuple[str, str]]]:
        """The request, or the (message, property) errors of ``body``."""
        if not isinstance(body, dict):
            return None, [("must be an object", "")]
        errors: list[tuple[str, str]] = []
        for name in ("channelId", "userId", "reference"):
            value = body.get(name)
            if value is None:
                errors.append(("must be specified", name))
            elif not isinstance(value, str) or not value:
                errors.append(("must be a non-empty string", name))
        amount = body.get("amount")
        if amount is None:
            errors.append(("must be specified", "amount"))
        elif not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            errors.append(("must be a positive integer", "amount"))
        if errors or not isinstance(amount, int):
            return None, errors
        return cls(body["channelId"], body["userId"], amount, body["reference"]), []


@dataclass(frozen=True, slots=True)
class Grant:
    grant_id: str
    idempotency_key: str
    request: GrantRequest
    balance: int  # after this grant
    wall_time: float

    def to_json(self) -> dict[str, Any]:
        return {
            "grantId": self.grant_id,
            "userId": self.request.user_id,
            "amount": self.request.amount,
            "balance": self.balance,
        }


class PointsLedger:
    def __init__(self) -> None:
        self._balances: dict[tuple[str, str], int] = {}
        self._by_key: dict[str, Grant] = {}
        self._grants: dict[str, list[Grant]] = {}

    def grant(self, key: str, request: GrantRequest, wall_time: float) -> tuple[Grant, bool]:
        """Apply the grant once per key: (the grant, whether it is a replay of an earlier one)."""
        earlier = self._by_key.get(key)
        if earlier is not None:
            if earlier.request != request:
                raise IdempotencyConflict(f"Idempotency-Key {key} was already used with a different request")
            return earlier, True
        account = (request.channel_id, request.user_id)
        balance = self._balances.get(account, 0) + request.amount
        self._balances[account] = balance
        grant = Grant(str(uuid.uuid4()), key, request, balance, wall_time)
        self._by_key[key] = grant
        self._grants.setdefault(request.channel_id, []).append(grant)
        return grant, False

    def balance(self, channel: str, user_id: str) -> int:
        return self._balances.get((channel, user_id), 0)

    def grants(self, channel: str) -> list[Grant]:
        return list(self._grants.get(channel, []))

    def clear(self) -> None:
        self._balances.clear()
        self._by_key.clear()
        self._grants.clear()
