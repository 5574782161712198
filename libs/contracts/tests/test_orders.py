from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tagline_contracts.orders import OrderEvent, OrderEventKind, spend_basis

AT = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)


def paid(**amounts: float | None) -> OrderEvent:
    return OrderEvent(kind=OrderEventKind.PAID, order_id="S1-1", user_id="U1", placed_at=AT, **amounts)  # type: ignore[arg-type]


def test_spend_is_what_was_paid_for_the_goods() -> None:
    # goods 1,000, a 100 coupon (already off the amount paid), 60 shipping (in it)
    assert paid(amount=1_000, amount_paid=960, shipping_fee=60).spend == 900
    assert paid(amount=1_000, amount_paid=960).spend == 960  # no shipping said: all of it
    assert paid(amount=1_000).spend == 1_000  # nothing paid said: the goods at list price
    assert paid(amount=100, amount_paid=50, shipping_fee=80).spend == 0  # never negative


def test_spend_basis_takes_only_the_shipping_off() -> None:
    assert spend_basis(960.0, 60.0) == 900.0
    assert spend_basis(0.0, 0.0) == 0.0
    assert spend_basis(10.0, 20.0) == 0.0


def test_shipping_fee_cannot_be_negative() -> None:
    with pytest.raises(ValidationError, match="shipping_fee"):
        paid(amount=1_000, amount_paid=960, shipping_fee=-1)
