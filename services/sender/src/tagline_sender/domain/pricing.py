"""What messages cost: LINE's Taiwan plans (since 2023-09) and the extra-message tiers (DESIGN.md §1).

Pure: given a plan and how many billable messages the channel has used this month, the NT$ charge of ``n``
more. Free messages come first; beyond them, the light and medium plans cannot send at all, the high plan
pays per extra message on a sliding scale. The tiers are configurable because LINE changes them and brands
negotiate their own.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PlanName(StrEnum):
    LIGHT = "light"
    MEDIUM = "medium"
    HIGH = "high"


class Tier(BaseModel):
    """Extra messages up to ``up_to`` (a running count of extras; ``None``: no end) cost ``price_ntd``."""

    model_config = ConfigDict(frozen=True)

    up_to: int | None = Field(default=None, gt=0)
    price_ntd: Decimal = Field(ge=0)


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: PlanName
    monthly_fee_ntd: Decimal = Field(ge=0)
    free_messages: int = Field(ge=0)
    extra_tiers: tuple[Tier, ...] = ()

    @model_validator(mode="after")
    def _ordered(self) -> Plan:
        bounds = [t.up_to for t in self.extra_tiers]
        if bounds and (bounds[-1] is not None or any(b is None for b in bounds[:-1])):
            raise ValueError(
                "the last extra-message tier, and only that one, must be open-ended (up_to null)"
            )
        finite = [b for b in bounds if b is not None]
        if finite != sorted(set(finite)):
            raise ValueError("extra-message tiers must have strictly increasing up_to")
        return self

    @property
    def allows_extra(self) -> bool:
        return bool(self.extra_tiers)


# The high plan's sliding scale of extra messages (NT$0.2 down to NT$0.011). Operators override it with
# TAGLINE_SENDER_PLANS when their contract says otherwise.
DEFAULT_HIGH_TIERS: tuple[Tier, ...] = (
    Tier(up_to=25_000, price_ntd=Decimal("0.2")),
    Tier(up_to=85_000, price_ntd=Decimal("0.17")),
    Tier(up_to=185_000, price_ntd=Decimal("0.14")),
    Tier(up_to=585_000, price_ntd=Decimal("0.11")),
    Tier(up_to=1_585_000, price_ntd=Decimal("0.09")),
    Tier(up_to=3_085_000, price_ntd=Decimal("0.07")),
    Tier(up_to=6_085_000, price_ntd=Decimal("0.05")),
    Tier(up_to=10_085_000, price_ntd=Decimal("0.03")),
    Tier(up_to=None, price_ntd=Decimal("0.011")),
)

DEFAULT_PLANS: dict[PlanName, Plan] = {
    PlanName.LIGHT: Plan(name=PlanName.LIGHT, monthly_fee_ntd=Decimal(0), free_messages=200),
    PlanName.MEDIUM: Plan(name=PlanName.MEDIUM, monthly_fee_ntd=Decimal(800), free_messages=3_000),
    PlanName.HIGH: Plan(
        name=PlanName.HIGH,
        monthly_fee_ntd=Decimal(1_200),
        free_messages=6_000,
        extra_tiers=DEFAULT_HIGH_TIERS,
    ),
}


class Charge(BaseModel):
    """The price of ``n`` more messages after ``used_before`` this month."""

    model_config = ConfigDict(frozen=True)

    messages: int
    free: int
    extra: int
    cost_ntd: Decimal
    beyond_plan: int = Field(description="messages the plan cannot send at all (no extras on light/medium)")


def charge(plan: Plan, used_before: int, n: int) -> Charge:
    """Price ``n`` more billable messages given ``used_before`` already used this month."""
    if n < 0 or used_before < 0:
        raise ValueError("message counts cannot be negative")
    free = max(0, min(n, plan.free_messages - used_before))
    over = n - free
    if not plan.allows_extra:
        return Charge(messages=n, free=free, extra=0, cost_ntd=Decimal(0), beyond_plan=over)
    start = max(0, used_before - plan.free_messages)  # extras already used before this send
    return Charge(
        messages=n,
        free=free,
        extra=over,
        cost_ntd=_extra_cost(plan.extra_tiers, start, start + over),
        beyond_plan=0,
    )


def _extra_cost(tiers: tuple[Tier, ...], start: int, end: int) -> Decimal:
    """Cost of extras numbered ``start`` (exclusive) to ``end`` (inclusive), tier by tier."""
    cost = Decimal(0)
    lower = 0
    for tier in tiers:
        upper = tier.up_to if tier.up_to is not None else end
        overlap = min(end, upper) - max(start, lower)
        if overlap > 0:
            cost += tier.price_ntd * overlap
        lower = upper
        if lower >= end:
            break
    return cost
