"""Regression examples for what fuzzing the webhook found (../fuzz): each was a 500, a 503 or a bad record."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from tagline_contracts.envelope import LineEventReceived
from tagline_ingest.api import BodyTooLarge, read_body
from tagline_ingest.domain.errors import BadWebhook
from tagline_ingest.domain.normalize import MAX_TIMESTAMP_MS, normalize, parse_body
from tagline_testing.webhook import WebhookBuilder

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _records(body: bytes) -> list[Any]:
    return normalize("1234567890", parse_body(body), NOW)


@pytest.mark.parametrize(
    "timestamp", [-1, -62_135_596_801_000, MAX_TIMESTAMP_MS + 1, 10**18, 2**63, 9 * 10**40]
)
@pytest.mark.parametrize("event_type", ["follow", "someTypeLineAddsLater"])
def test_a_timestamp_no_datetime_can_hold_is_a_bad_webhook(timestamp: int, event_type: str) -> None:
    builder = WebhookBuilder("s")
    event = builder.follow("U1") if event_type == "follow" else builder.event(event_type, "U1")
    event["timestamp"] = timestamp
    body = json.dumps({"destination": "U", "events": [event]}).encode()  # orjson stops at 64 bits
    with pytest.raises(BadWebhook, match=r"events\.0\.timestamp"):  # was ValueError/OverflowError: a 500
        _records(body)


@pytest.mark.parametrize("timestamp", [0, 1_700_000_000_000, MAX_TIMESTAMP_MS])
def test_timestamps_at_the_ends_of_the_range_are_kept(timestamp: int) -> None:
    builder = WebhookBuilder("s")
    event = builder.follow("U1")
    event["timestamp"] = timestamp
    (record,) = _records(builder.body([event]))
    assert LineEventReceived.model_validate_json(record.value).occurred_at.year in {1970, 2023, 9999}


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_a_number_that_is_not_finite_is_a_bad_webhook(token: bytes) -> None:
    """Was accepted and published as ``"latitude": null``, a record no consumer could read (DLQ)."""
    builder = WebhookBuilder("s")
    event = builder.event(
        "message", "U1", message={"id": "1", "type": "location", "latitude": 0.5, "longitude": 121.5}
    )
    body = builder.body([event]).replace(b"0.5", token)
    assert math.isinf(float(token)) or math.isnan(float(token))
    with pytest.raises(BadWebhook, match="finite number"):
        _records(body)


async def _read(declared_length: str | None, body: bytes, limit: int) -> bytes:
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return await read_body(receive, declared_length, limit)


@pytest.mark.parametrize("declared", ["²", "¹²³", "9" * 5000, "0" * 5000 + "1", "-1", " 5", "1e3", ""])
async def test_a_content_length_that_is_not_plain_digits_or_is_enormous_is_no_crash(declared: str) -> None:
    """``"²".isdigit()`` but ``int("²")`` raises, and ``int()`` refuses > 4,300 digits: both were 500s."""
    body = orjson.dumps({"destination": "U", "events": []})
    try:
        assert await _read(declared, body, 1000) == body
    except BodyTooLarge:
        assert declared == "9" * 5000


@pytest.mark.parametrize(("declared", "too_large"), [("1000", False), ("0001000", False), ("1001", True)])
async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    declared: str, too_large: bool
) -> None:
    if too_large:
        with pytest.raises(BodyTooLarge):
            await _read(declared, b"{}", 1000)
    else:
        assert await _read(declared, b"{}", 1000) == b"{}"


def test_nul_characters_in_a_webhook_are_removed_not_published() -> None:
    """No store can hold NUL (PostgreSQL's jsonb); LINE's events are kept, the NUL dropped."""
    builder = WebhookBuilder("s")
    body = builder.body([builder.text("U1", "+1\x00 please")])
    assert b"\\u0000" in body
    (record,) = _records(body)
    assert b"\\u0000" not in record.value
    assert LineEventReceived.model_validate_json(record.value).payload.message.text == "+1 please"  # type: ignore[union-attr]
