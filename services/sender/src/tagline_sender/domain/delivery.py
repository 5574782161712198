"""One LINE call's life (a *delivery*: one reply, one push or one multicast of ≤ 500), pure.

States::

    pending ──claim──▶ sending ──▶ sent
       ▲                  │  ├──▶ failed      (LINE refused for good, expired, all recipients blocked)
       │                  │  └──▶ deferred    (monthly quota: held back, resumes by itself)
       └── retry later ◀──┘                   (5xx, timeout, dropped connection, 429 rate limit)
    deferred ──resume──▶ pending

:func:`classify` turns LINE's answer into an :class:`Answer`; :func:`decide` turns the answer into a
:class:`Decision`: the next state, when to try again, what to do with the quota reservation, and what to
report on ``send.results.v1``. The retry key is created with the delivery, before its first attempt, and
reused on every retry, so LINE answers a repeat of an accepted push/multicast with 409 (= success).

A reply whose token cannot be used (stale before the attempt, or refused by LINE) follows the channel's
:class:`ReplyFallback` (:func:`unusable_reply`), except after an earlier reply attempt that got no answer:
LINE most likely used the single-use token then, so it is never followed by a push.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from tagline_contracts.sending import SendMethod, SendOutcome


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEFERRED = "deferred"


FINAL_STATES = frozenset({DeliveryState.SENT, DeliveryState.FAILED})


class ReplyFallback(StrEnum):
    """What a reply whose token went stale or was refused becomes (``reply_fallback`` of a channel)."""

    DROP = "drop"  # not sent: a failed result that says why (a reply stays free)
    PUSH = "push"  # sent as a push instead (billable, within the monthly quota)


class AnswerKind(StrEnum):
    OK = "ok"
    DUPLICATE = "duplicate"  # 409: an earlier attempt with this retry key was accepted
    RATE_LIMITED = "rate_limited"
    MONTHLY_LIMIT = "monthly_limit"
    INVALID_REPLY_TOKEN = "invalid_reply_token"  # noqa: S105 - a kind of answer, not a secret
    REJECTED = "rejected"  # any other 4xx: retrying cannot help
    UNAVAILABLE = "unavailable"  # 5xx, timeout, connection error: LINE may or may not have accepted it


@dataclass(frozen=True)
class Answer:
    kind: AnswerKind
    status: int | None = None
    body: dict[str, Any] | None = None
    request_id: str | None = None
    detail: str | None = None


def classify(status: int, body: dict[str, Any] | None, request_id: str | None = None) -> Answer:
    """What LINE's HTTP answer means for the delivery (the 429s differ only by their body)."""
    message = str((body or {}).get("message", ""))
    if 200 <= status < 300:
        kind = AnswerKind.OK
    elif status == 409:
        kind = AnswerKind.DUPLICATE
    elif status == 429:
        kind = AnswerKind.MONTHLY_LIMIT if "monthly limit" in message.lower() else AnswerKind.RATE_LIMITED
    elif status == 400 and message.lower().startswith("invalid reply token"):
        kind = AnswerKind.INVALID_REPLY_TOKEN
    elif 400 <= status < 500:
        kind = AnswerKind.REJECTED
    else:
        kind = AnswerKind.UNAVAILABLE
    return Answer(kind=kind, status=status, body=body, request_id=request_id)


class QuotaAction(StrEnum):
    NONE = "none"  # nothing reserved (a reply) or nothing to change
    KEEP = "keep"  # keep the reservation for the next attempt
    CONFIRM = "confirm"  # LINE took it: reserved → used
    RELEASE = "release"  # LINE definitely did not take it: reserved → remaining
    EXHAUSTED = "exhausted"  # LINE says the month is used up: release and mark the ledger exhausted


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 1.0
    cap_s: float = 300.0
    window: timedelta = timedelta(hours=24)  # how long LINE honours a retry key

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with jitter (50–100 % of the step) after ``attempt`` failed attempts."""
        step = min(self.cap_s, self.base_s * 2 ** max(0, attempt - 1))
        return float(step * (0.5 + rng.random() / 2))


@dataclass(frozen=True)
class Attempted:
    """What the decision needs to know about the delivery that was just attempted."""

    method: SendMethod
    attempts: int  # including the one just made
    first_attempt_at: datetime
    ambiguous_before: bool  # an earlier attempt got no definite answer (it may have been accepted)
    reply_fallback: ReplyFallback  # the channel's rule for a refused reply token


@dataclass(frozen=True)
class Decision:
    state: DeliveryState
    quota: QuotaAction
    outcome: SendOutcome | None = None  # what to report on send.results.v1, if anything
    next_attempt_at: datetime | None = None
    switch_to: SendMethod | None = None  # reply → push fallback
    reason: str | None = None
    ambiguous: bool = False  # this attempt got no definite answer


def decide(  # noqa: PLR0911 - one return per kind of answer
    attempt: Attempted, answer: Answer, now: datetime, policy: RetryPolicy, rng: random.Random
) -> Decision:
    reserved = QuotaAction.NONE if attempt.method is SendMethod.REPLY else QuotaAction.KEEP
    match answer.kind:
        case AnswerKind.OK | AnswerKind.DUPLICATE:
            return Decision(
                DeliveryState.SENT,
                QuotaAction.CONFIRM if reserved is QuotaAction.KEEP else QuotaAction.NONE,
                SendOutcome.ACCEPTED,
                reason="accepted earlier (409, same retry key)"
                if answer.kind is AnswerKind.DUPLICATE
                else None,
            )
        case AnswerKind.RATE_LIMITED:
            delay = policy.backoff(attempt.attempts, rng)
            return Decision(DeliveryState.PENDING, reserved, next_attempt_at=now + timedelta(seconds=delay))
        case AnswerKind.MONTHLY_LIMIT:
            return Decision(
                DeliveryState.DEFERRED,
                QuotaAction.EXHAUSTED,
                SendOutcome.DEFERRED,
                reason="monthly limit reached",
            )
        case AnswerKind.INVALID_REPLY_TOKEN:
            return unusable_reply(
                attempt.reply_fallback,
                ambiguous_before=attempt.ambiguous_before,
                why="refused by LINE (invalid, expired or already used)",
                now=now,
            )
        case AnswerKind.REJECTED:
            return Decision(
                DeliveryState.FAILED,
                QuotaAction.RELEASE if reserved is QuotaAction.KEEP else QuotaAction.NONE,
                SendOutcome.FAILED,
                reason=f"LINE refused the request (HTTP {answer.status})",
            )
        case AnswerKind.UNAVAILABLE:
            if now - attempt.first_attempt_at >= policy.window:
                # LINE may have accepted one of the attempts: keep the messages counted (never overspend).
                return Decision(
                    DeliveryState.FAILED,
                    QuotaAction.CONFIRM if reserved is QuotaAction.KEEP else QuotaAction.NONE,
                    SendOutcome.FAILED,
                    reason=f"LINE unavailable for the whole retry window ({answer.detail or answer.status})",
                    ambiguous=True,
                )
            delay = policy.backoff(attempt.attempts, rng)
            return Decision(
                DeliveryState.PENDING,
                reserved,
                next_attempt_at=now + timedelta(seconds=delay),
                ambiguous=True,
                reason=answer.detail,
            )
    raise AssertionError(answer.kind)  # pragma: no cover - exhaustive match


def unusable_reply(fallback: ReplyFallback, *, ambiguous_before: bool, why: str, now: datetime) -> Decision:
    """A reply whose token cannot be used: ``why`` says how (stale before the attempt, or refused by LINE).

    * An earlier reply attempt with this single-use token got no answer: LINE most likely used it then, and a
      push could deliver the messages twice, so it counts as delivered (never followed by a push).
    * Otherwise the channel's ``reply_fallback`` decides: ``push`` tries a push now (billable), ``drop`` fails
      it with the reason (nothing is paid for).
    """
    if ambiguous_before:
        return Decision(
            DeliveryState.SENT,
            QuotaAction.NONE,
            SendOutcome.ACCEPTED,
            reason="reply token consumed by an earlier attempt that got no answer",
        )
    if fallback is ReplyFallback.PUSH:
        return Decision(
            DeliveryState.PENDING,
            QuotaAction.NONE,
            next_attempt_at=now,
            switch_to=SendMethod.PUSH,
            reason=f"reply token {why}; falling back to push (the channel's reply_fallback is push)",
        )
    return Decision(
        DeliveryState.FAILED,
        QuotaAction.NONE,
        SendOutcome.FAILED,
        reason=f"reply token {why}; not sent as a push (the channel's reply_fallback is drop)",
    )
