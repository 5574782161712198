"""Pure rules: sliding windows, quota math, fault selection, the retry-key table, reply tokens, points."""

from __future__ import annotations

import random

import pytest

from tagline_line_emulator.endpoints import RateLimit
from tagline_line_emulator.faults import Fault, FaultBook
from tagline_line_emulator.limits import SlidingWindowLimiter
from tagline_line_emulator.points import GrantRequest, IdempotencyConflict, PointsLedger
from tagline_line_emulator.quota import Quota
from tagline_line_emulator.reply_tokens import ReplyTokenBook
from tagline_line_emulator.retry_keys import AcceptedKey, RetryKeyTable, is_valid_retry_key

# --- rate limits ------------------------------------------------------------------------------------------


def test_limit_per_window_then_refused() -> None:
    limiter = SlidingWindowLimiter({"push": RateLimit(3, 1.0)})
    assert [limiter.try_acquire("c", "push", 10.0 + i * 0.1) for i in range(4)] == [True, True, True, False]
    # the first admission (t=10.0) leaves the window at t=11.0
    assert limiter.try_acquire("c", "push", 10.99) is False
    assert limiter.try_acquire("c", "push", 11.0) is True


def test_window_slides_instead_of_resetting_at_boundaries() -> None:
    # a fixed window [10, 11) + [11, 12) would admit 2 at 10.9 and 2 more at 11.0: 4 within 0.1 s
    limiter = SlidingWindowLimiter({"push": RateLimit(2, 1.0)})
    assert limiter.try_acquire("c", "push", 10.9) is True
    assert limiter.try_acquire("c", "push", 10.9) is True
    assert limiter.try_acquire("c", "push", 11.0) is False
    assert limiter.try_acquire("c", "push", 11.5) is False
    assert limiter.try_acquire("c", "push", 11.9) is True


def test_refused_requests_do_not_use_up_the_window() -> None:
    limiter = SlidingWindowLimiter({"push": RateLimit(1, 1.0)})
    assert limiter.try_acquire("c", "push", 0.0) is True
    for i in range(100):
        assert limiter.try_acquire("c", "push", 0.5 + i * 0.001) is False
    assert limiter.try_acquire("c", "push", 1.0) is True


def test_limits_are_per_channel_and_endpoint() -> None:
    limiter = SlidingWindowLimiter({"push": RateLimit(1, 1.0), "multicast": RateLimit(1, 1.0)})
    assert limiter.try_acquire("a", "push", 0.0) is True
    assert limiter.try_acquire("b", "push", 0.0) is True
    assert limiter.try_acquire("a", "multicast", 0.0) is True
    assert limiter.try_acquire("a", "push", 0.0) is False
    assert limiter.try_acquire("a", "quota", 0.0) is True  # no rule, no limit


def test_rate_limit_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="invalid rate limit"):
        RateLimit(10, 0.0)


# --- quota -----------------------------------------------------------------------------------------------


def test_quota_allows_up_to_the_limit_exactly() -> None:
    quota = Quota(limit=10, usage=7)
    assert quota.allows(3)
    assert not quota.allows(4)
    quota.consume(3)
    assert quota.allows(0)
    assert not quota.allows(1)
    assert quota.to_json() == {"type": "limited", "value": 10}


def test_no_quota_means_no_limit() -> None:
    quota = Quota(usage=10**9)
    assert quota.allows(10**9)
    assert quota.to_json() == {"type": "none"}


# --- faults -----------------------------------------------------------------------------------------------


def test_fault_with_times_is_spent_after_n_matching_requests() -> None:
    book = FaultBook()
    book.inject(Fault(endpoint="push", kind="error", times=2), now=0.0)
    assert book.pick("multicast", 1.0) is None
    assert [
        f is not None for f in (book.pick("push", 1.0), book.pick("push", 1.0), book.pick("push", 1.0))
    ] == [
        True,
        True,
        False,
    ]
    assert book.active(1.0) == []


def test_fault_without_times_applies_until_cleared() -> None:
    book = FaultBook()
    book.inject(Fault(kind="latency", delay_s=0.1), now=0.0)
    assert all(book.pick(endpoint, 1.0) is not None for endpoint in ("push", "reply", "points"))
    book.clear()
    assert book.pick("push", 1.0) is None


def test_fault_duration_ends_the_rule() -> None:
    book = FaultBook()
    book.inject(Fault(endpoint="push", duration_s=5.0), now=100.0)
    assert book.pick("push", 104.9) is not None
    assert book.pick("push", 105.0) is None


def test_first_matching_rule_wins() -> None:
    book = FaultBook()
    book.inject(Fault(endpoint="push", kind="drop", times=1), now=0.0)
    book.inject(Fault(endpoint="*", kind="timeout"), now=0.0)
    first, second = book.pick("push", 0.0), book.pick("push", 0.0)
    assert first is not None and first.kind == "drop"
    assert second is not None and second.kind == "timeout"


def test_probability_is_seeded_and_roughly_right() -> None:
    def run(seed: int) -> list[bool]:
        book = FaultBook(rng=random.Random(seed))
        book.inject(Fault(endpoint="push", probability=0.3), now=0.0)
        return [book.pick("push", 0.0) is not None for _ in range(2000)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert 500 < sum(run(7)) < 700


def test_probability_with_times_counts_only_applied_requests() -> None:
    book = FaultBook(rng=random.Random(1))
    book.inject(Fault(endpoint="push", probability=0.5, times=3), now=0.0)
    applied = sum(book.pick("push", 0.0) is not None for _ in range(200))
    assert applied == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"endpoint": "pushh"}, "unknown endpoint"),
        ({"kind": "explode"}, "unknown fault kind"),
        ({"times": 0}, "times"),
        ({"probability": 1.5}, "probability"),
        ({"status": 42}, "status"),
    ],
)
def test_fault_rules_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fault(**kwargs)  # type: ignore[arg-type]


def test_fault_delay_defaults_per_kind() -> None:
    assert Fault(kind="timeout").delay == 30.0
    assert Fault(kind="timeout", delay_s=2.0).delay == 2.0
    assert Fault(kind="error").delay == 0.0


# --- retry keys ---------------------------------------------------------------------------------------------


def test_retry_keys_must_be_uuids() -> None:
    assert is_valid_retry_key("123e4567-e89b-12d3-a456-426614174000")
    assert not is_valid_retry_key("123e4567e89b12d3a456426614174000")  # LINE wants the hyphenated form
    assert not is_valid_retry_key("order-42")
    assert not is_valid_retry_key("")


def test_accepted_keys_are_remembered_per_channel_for_the_ttl() -> None:
    table = RetryKeyTable(ttl_s=100.0)
    key = "123e4567-e89b-12d3-a456-426614174000"
    table.remember("a", key, AcceptedKey("req-1", 10.0, None))
    found = table.accepted("a", key, 50.0)
    assert found is not None and found.request_id == "req-1"
    assert table.accepted("b", key, 50.0) is None
    assert table.accepted("a", key, 110.0) is None
    assert len(table) == 0  # expired keys are forgotten


# --- reply tokens -------------------------------------------------------------------------------------------


def test_reply_token_is_bound_single_use_and_expires() -> None:
    book = ReplyTokenBook(ttl_s=30.0)
    token = book.issue("a", "U1", now=0.0)
    assert book.redeemable("b", token, 1.0) is None  # another channel's token
    assert book.redeemable("a", token, 30.0) == "U1"
    assert book.redeemable("a", token, 30.1) is None
    assert book.redeemable("a", "unknown", 1.0) is None
    book.redeem(token)
    assert book.redeemable("a", token, 1.0) is None


def test_reply_token_value_can_be_chosen_and_is_unique_otherwise() -> None:
    book = ReplyTokenBook(ttl_s=30.0)
    assert book.issue("a", "U1", now=0.0, token="fixed") == "fixed"
    assert book.issue("a", "U1", now=0.0) != book.issue("a", "U1", now=0.0)


# --- points -------------------------------------------------------------------------------------------------


def test_points_grant_is_applied_once_per_key() -> None:
    ledger = PointsLedger()
    grant = GrantRequest("c", "U1", 100, "order-1")
    first, replayed = ledger.grant("k1", grant, 0.0)
    again, replayed_again = ledger.grant("k1", grant, 1.0)
    assert (replayed, replayed_again) == (False, True)
    assert again == first
    assert ledger.balance("c", "U1") == 100
    ledger.grant("k2", GrantRequest("c", "U1", 50, "order-2"), 2.0)
    assert ledger.balance("c", "U1") == 150
    assert ledger.balance("other", "U1") == 0
    with pytest.raises(IdempotencyConflict):
        ledger.grant("k1", GrantRequest("c", "U1", 101, "order-1"), 3.0)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"channelId": "c", "userId": "U1", "reference": "r"}, ("must be specified", "amount")),
        (
            {"channelId": "c", "userId": "U1", "amount": 0, "reference": "r"},
            ("must be a positive integer", "amount"),
        ),
        (
            {"channelId": "c", "userId": "U1", "amount": True, "reference": "r"},
            ("must be a positive integer", "amount"),
        ),
        (
            {"channelId": "c", "userId": "", "amount": 5, "reference": "r"},
            ("must be a non-empty string", "userId"),
        ),
        ([], ("must be an object", "")),
    ],
)
def test_points_grant_body_is_checked(body: object, problem: tuple[str, str]) -> None:
    request, errors = GrantRequest.parse(body)
    assert request is None
    assert problem in errors
