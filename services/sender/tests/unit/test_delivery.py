import random
from datetime import UTC, datetime, timedelta

import pytest

from tagline_contracts.sending import SendMethod, SendOutcome
from tagline_sender.domain.delivery import (
    Answer,
    AnswerKind,
    Attempted,
    DeliveryState,
    QuotaAction,
    ReplyFallback,
    RetryPolicy,
    classify,
    decide,
    unusable_reply,
)

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
POLICY = RetryPolicy()


def attempt(
    method: SendMethod = SendMethod.PUSH,
    n: int = 1,
    *,
    ambiguous: bool = False,
    age_h: float = 0,
    fallback: ReplyFallback = ReplyFallback.PUSH,
) -> Attempted:
    return Attempted(method, n, NOW - timedelta(hours=age_h), ambiguous, fallback)


def test_the_two_429s_are_told_apart_by_their_body() -> None:
    assert classify(429, {"message": "You have reached your monthly limit."}).kind is AnswerKind.MONTHLY_LIMIT
    assert classify(429, {"message": "The API rate limit has been exceeded. Try again later."}).kind is (
        AnswerKind.RATE_LIMITED
    )


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, None, AnswerKind.OK),
        (202, None, AnswerKind.OK),
        (409, {"message": "The retry key is already accepted"}, AnswerKind.DUPLICATE),
        (400, {"message": "Invalid reply token"}, AnswerKind.INVALID_REPLY_TOKEN),
        (400, {"message": "The request body has 1 error(s)"}, AnswerKind.REJECTED),
        (403, {"message": "not allowed"}, AnswerKind.REJECTED),
        (500, None, AnswerKind.UNAVAILABLE),
        (503, None, AnswerKind.UNAVAILABLE),
    ],
)
def test_classify(status: int, body: dict[str, str] | None, kind: AnswerKind) -> None:
    assert classify(status, body).kind is kind


def test_accepted_and_409_confirm_the_reservation() -> None:
    for kind in (AnswerKind.OK, AnswerKind.DUPLICATE):
        d = decide(attempt(), Answer(kind), NOW, POLICY, random.Random(1))
        assert (d.state, d.quota, d.outcome) == (
            DeliveryState.SENT,
            QuotaAction.CONFIRM,
            SendOutcome.ACCEPTED,
        )


def test_a_reply_reserves_nothing() -> None:
    d = decide(attempt(SendMethod.REPLY), Answer(AnswerKind.OK), NOW, POLICY, random.Random(1))
    assert d.quota is QuotaAction.NONE


def test_server_errors_retry_with_growing_backoff_and_keep_the_reservation() -> None:
    rng = random.Random(7)
    delays = []
    for n in range(1, 8):
        d = decide(attempt(n=n), Answer(AnswerKind.UNAVAILABLE, 503), NOW, POLICY, rng)
        assert (d.state, d.quota, d.ambiguous) == (DeliveryState.PENDING, QuotaAction.KEEP, True)
        assert d.next_attempt_at is not None
        delays.append((d.next_attempt_at - NOW).total_seconds())
    assert delays[0] <= 1.0 and delays[-1] >= 32.0
    assert all(d <= POLICY.cap_s for d in delays)


def test_after_the_retry_window_it_fails_and_keeps_the_messages_counted() -> None:
    d = decide(
        attempt(n=40, age_h=24),
        Answer(AnswerKind.UNAVAILABLE, detail="timed out"),
        NOW,
        POLICY,
        random.Random(1),
    )
    assert (d.state, d.outcome) == (DeliveryState.FAILED, SendOutcome.FAILED)
    assert d.quota is QuotaAction.CONFIRM  # it may have been delivered: never give the quota back


def test_rate_limited_retries_later() -> None:
    d = decide(attempt(), Answer(AnswerKind.RATE_LIMITED, 429), NOW, POLICY, random.Random(1))
    assert d.state is DeliveryState.PENDING and d.next_attempt_at and d.next_attempt_at > NOW
    assert not d.ambiguous  # a 429 is definite: nothing was sent


def test_monthly_limit_defers_and_marks_the_ledger() -> None:
    d = decide(attempt(), Answer(AnswerKind.MONTHLY_LIMIT, 429), NOW, POLICY, random.Random(1))
    assert (d.state, d.quota, d.outcome) == (
        DeliveryState.DEFERRED,
        QuotaAction.EXHAUSTED,
        SendOutcome.DEFERRED,
    )


def test_other_client_errors_fail_and_release() -> None:
    body = {"message": "The request body has 1 error(s)"}
    d = decide(attempt(), Answer(AnswerKind.REJECTED, 400, body), NOW, POLICY, random.Random(1))
    assert (d.state, d.quota, d.outcome) == (DeliveryState.FAILED, QuotaAction.RELEASE, SendOutcome.FAILED)


def test_refused_reply_token_falls_back_to_push_where_the_channel_says_push() -> None:
    d = decide(
        attempt(SendMethod.REPLY), Answer(AnswerKind.INVALID_REPLY_TOKEN, 400), NOW, POLICY, random.Random(1)
    )
    assert (d.state, d.switch_to, d.next_attempt_at) == (DeliveryState.PENDING, SendMethod.PUSH, NOW)


def test_refused_reply_token_is_dropped_where_the_channel_says_drop() -> None:
    d = decide(
        attempt(SendMethod.REPLY, fallback=ReplyFallback.DROP),
        Answer(AnswerKind.INVALID_REPLY_TOKEN, 400),
        NOW,
        POLICY,
        random.Random(1),
    )
    assert (d.state, d.outcome, d.switch_to, d.quota) == (
        DeliveryState.FAILED,
        SendOutcome.FAILED,
        None,
        QuotaAction.NONE,
    )
    assert d.reason is not None and "reply_fallback is drop" in d.reason


@pytest.mark.parametrize("fallback", list(ReplyFallback))
def test_a_stale_token_after_an_unanswered_reply_is_never_pushed(fallback: ReplyFallback) -> None:
    d = unusable_reply(fallback, ambiguous_before=True, why="stale", now=NOW)
    assert (d.state, d.outcome, d.switch_to) == (DeliveryState.SENT, SendOutcome.ACCEPTED, None)


def test_reply_token_refused_after_an_unanswered_reply_is_not_pushed_again() -> None:
    d = decide(
        attempt(SendMethod.REPLY, n=2, ambiguous=True),
        Answer(AnswerKind.INVALID_REPLY_TOKEN, 400),
        NOW,
        POLICY,
        random.Random(1),
    )
    assert d.state is DeliveryState.SENT and d.switch_to is None
