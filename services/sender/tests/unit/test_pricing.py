from decimal import Decimal

import pytest
from pydantic import ValidationError

from tagline_sender.domain.pricing import DEFAULT_PLANS, Plan, PlanName, Tier, charge

HIGH = DEFAULT_PLANS[PlanName.HIGH]
LIGHT = DEFAULT_PLANS[PlanName.LIGHT]
MEDIUM = DEFAULT_PLANS[PlanName.MEDIUM]


def test_free_messages_cost_nothing() -> None:
    c = charge(HIGH, used_before=0, n=6_000)
    assert (c.free, c.extra, c.cost_ntd, c.beyond_plan) == (6_000, 0, Decimal(0), 0)


def test_high_plan_charges_extras_at_the_first_tier() -> None:
    c = charge(HIGH, used_before=5_990, n=20)
    assert (c.free, c.extra) == (10, 10)
    assert c.cost_ntd == Decimal("2.0")  # 10 x NT$0.2


def test_extras_spanning_two_tiers_are_priced_per_tier() -> None:
    # 6,000 free + 25,000 extras at 0.2; the next 10 fall into the 0.17 tier.
    c = charge(HIGH, used_before=6_000 + 24_995, n=10)
    assert c.cost_ntd == Decimal("0.2") * 5 + Decimal("0.17") * 5


def test_light_and_medium_cannot_send_beyond_their_free_messages() -> None:
    assert charge(LIGHT, used_before=150, n=100).beyond_plan == 50
    assert charge(MEDIUM, used_before=3_000, n=1).beyond_plan == 1
    assert charge(MEDIUM, used_before=3_000, n=1).cost_ntd == 0


def test_cost_is_additive_across_sends() -> None:
    whole = charge(HIGH, 0, 200_000).cost_ntd
    parts = charge(HIGH, 0, 70_000).cost_ntd + charge(HIGH, 70_000, 130_000).cost_ntd
    assert whole == parts


def test_tiers_must_be_ordered_and_end_open() -> None:
    with pytest.raises(ValidationError, match="open-ended"):
        Plan(
            name=PlanName.HIGH,
            monthly_fee_ntd=Decimal(1),
            free_messages=1,
            extra_tiers=(Tier(up_to=5, price_ntd=Decimal(1)),),
        )
    with pytest.raises(ValidationError, match="increasing"):
        Plan(
            name=PlanName.HIGH,
            monthly_fee_ntd=Decimal(1),
            free_messages=1,
            extra_tiers=(
                Tier(up_to=10, price_ntd=Decimal(1)),
                Tier(up_to=5, price_ntd=Decimal(1)),
                Tier(price_ntd=Decimal(1)),
            ),
        )


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        charge(HIGH, 0, -1)
