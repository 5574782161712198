"""LINE POINTS without servers: how many points an order earns, what a gateway answer means, the backoff."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagline_contracts.orders import spend_basis
from tagline_liveshop.domain.session import points_for
from tagline_liveshop.points import MAX_BACKOFF_S, GrantAnswer, GrantOutcome, backoff_s, classify

# ----------------------------------------------------------------------------------------------------
# points_for: floor((paid − shipping) × rate), at least 0, at most the cap; paid is after discounts


@pytest.mark.parametrize(
    ("paid", "shipping", "rate", "cap", "points"),
    [
        (1_990.0, 0.0, 0.01, None, 19),  # 1990 × 0.01 is 19.900000000000002
        (100.0, 0.0, 0.29, None, 29),  # 100 × 0.29 is 28.999999999999996
        (700.0, 0.0, 0.07, None, 49),  # 700 × 0.07 is 49.00000000000001
        (1_000.0, 0.0, 0.01, None, 10),
        (1_260.0, 60.0, 0.01, None, 12),
        (99.0, 0.0, 0.01, None, 0),
        (0.0, 0.0, 0.01, None, 0),
        (100.0, 120.0, 0.01, None, 0),  # shipping above the amount: nothing, never negative
        (50_000.0, 0.0, 0.05, 300, 300),
        (50_000.0, 0.0, 0.05, 3_000, 2_500),
        (50_000.0, 0.0, 0.0, None, 0),
    ],
)
def test_points_for(paid: float, shipping: float, rate: float, cap: int | None, points: int) -> None:
    assert points_for(paid, shipping, rate, cap) == points


def test_a_discount_already_taken_off_the_amount_paid_is_not_taken_off_again() -> None:
    """Goods NT$1,000, a NT$100 coupon, NT$60 shipping: the buyer pays 960 and spent 900 on the goods, which
    earn 9 points at 1 % (the discount subtracted again gave 8)."""
    assert points_for(960.0, 60.0, 0.01, None) == 9
    assert spend_basis(960.0, 60.0) == 900.0


@given(
    paid_cents=st.integers(0, 100_000_000),
    shipping=st.integers(0, 300),
    permille=st.integers(0, 200),
    cap=st.none() | st.integers(0, 10_000),
)
def test_points_for_is_the_exact_floor_for_prices_in_cents(
    paid_cents: int, shipping: int, permille: int, cap: int | None
) -> None:
    exact_basis = max(Fraction(0), Fraction(paid_cents, 100) - shipping)
    exact = math.floor(exact_basis * Fraction(permille, 1_000))
    expected = exact if cap is None else min(exact, cap)
    assert points_for(paid_cents / 100, float(shipping), permille / 1_000, cap) == expected


# ----------------------------------------------------------------------------------------------------
# classify: what an HTTP answer of the gateway means


@pytest.mark.parametrize(
    ("status", "body", "grant_id"),
    [
        (200, {"grantId": "g-1", "amount": 19}, "g-1"),
        (201, {"grantId": "g-2"}, "g-2"),
        (204, None, None),
        (200, "ok", None),
        (200, {}, None),
    ],
)
def test_2xx_is_granted_with_the_grant_id(status: int, body: Any, grant_id: str | None) -> None:
    assert classify(status, body) == GrantAnswer(GrantOutcome.GRANTED, grant_id=grant_id)


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504])
def test_timeouts_conflicts_throttling_and_5xx_are_retried(status: int) -> None:
    answer = classify(status, {"message": "busy"})
    assert answer.outcome is GrantOutcome.RETRY
    assert answer.detail == f"HTTP {status}: busy"
    assert answer.grant_id is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_are_refused_for_good(status: int) -> None:
    answer = classify(status, {"message": "user not found"})
    assert answer.outcome is GrantOutcome.REFUSED
    assert answer.detail == f"HTTP {status}: user not found"


def test_a_non_json_body_is_kept_short_in_the_detail() -> None:
    answer = classify(502, "<html>" + "x" * 1_000)
    assert answer.outcome is GrantOutcome.RETRY
    assert answer.detail == "HTTP 502: <html>" + "x" * 194


# ----------------------------------------------------------------------------------------------------
# backoff_s


@pytest.mark.parametrize(
    ("attempts", "seconds"),
    [(0, 1.0), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 32.0), (7, 60.0), (50, 60.0)],
)
def test_backoff_doubles_up_to_a_minute(attempts: int, seconds: float) -> None:
    assert backoff_s(attempts) == seconds


def test_backoff_never_shrinks_and_is_capped() -> None:
    waits = [backoff_s(n) for n in range(2_000)]
    assert waits == sorted(waits)
    assert max(waits) == MAX_BACKOFF_S == 60.0
