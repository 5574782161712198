from datetime import UTC, datetime, timedelta

import pytest

from tagline_contracts.sending import (
    ReplyContext,
    SendCategory,
    SendMessages,
    SendMethod,
    UsersTarget,
    UserTarget,
)
from tagline_sender.domain.planning import batches, method_for_batch, reply_is_fresh

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
TTL = timedelta(seconds=25)
TEXT = [{"type": "text", "text": "hi"}]


def request(**kw: object) -> SendMessages:
    values: dict[str, object] = {
        "idempotency_key": "k",
        "category": SendCategory.TRANSACTIONAL,
        "messages": TEXT,
        "target": UserTarget(user_id="U1"),
        **kw,
    }
    return SendMessages.model_validate(values)


def test_batches_hold_at_most_500_in_order() -> None:
    ids = [f"U{i:05d}" for i in range(1_201)]
    chunks = list(batches(ids))
    assert [len(c) for c in chunks] == [500, 500, 201]
    assert [u for c in chunks for u in c] == ids


def test_a_reply_token_is_fresh_for_its_ttl() -> None:
    fresh = request(reply=ReplyContext(token="t", received_at=NOW - timedelta(seconds=5)))
    stale = request(reply=ReplyContext(token="t", received_at=NOW - timedelta(seconds=40)))
    assert reply_is_fresh(fresh, NOW, TTL) and not reply_is_fresh(stale, NOW, TTL)
    assert not reply_is_fresh(request(), NOW, TTL)
    assert method_for_batch(["a"]) is SendMethod.PUSH and method_for_batch(["a", "b"]) is SendMethod.MULTICAST


def test_a_request_holds_only_messages_line_accepts() -> None:
    """The sender validates message objects where it reads the record (the ``SendMessages`` model), with
    line-bot-sdk's models and LINE's limits; the error names the message and the property."""
    request(
        messages=[{"type": "text", "text": "hi"}, {"type": "sticker", "packageId": "1", "stickerId": "2"}]
    )
    with pytest.raises(ValueError, match=r"messages\[0\]\.text: must be specified"):
        request(messages=[{"type": "text"}])
    with pytest.raises(ValueError, match=r"messages\[1\]\.type: must be one of"):
        request(messages=[{"type": "text", "text": "ok"}, {"type": "hologram"}])
    with pytest.raises(ValueError, match=r"messages\[0\]\.text: Length must be between 1 and 5000"):
        request(messages=[{"type": "text", "text": "x" * 5_001}])


def test_request_contract_rules() -> None:
    with pytest.raises(ValueError, match="single-user"):
        request(
            target=UsersTarget(user_ids=["a", "b"]),
            reply=ReplyContext(token="t", received_at=NOW),
        )
    with pytest.raises(ValueError, match="at most 5"):
        request(messages=TEXT * 6)
    with pytest.raises(ValueError, match="expires_at"):
        request(not_before=NOW, expires_at=NOW)
