"""Normalization of every webhook event type of webhook.yml into the line.events.v1 envelope."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from tagline_contracts.envelope import LineEventReceived
from tagline_contracts.webhook import UnknownEvent
from tagline_ingest.domain.errors import BadWebhook
from tagline_ingest.domain.normalize import normalize, parse_body
from tagline_testing.webhook_samples import DESTINATION, SAMPLES

CHANNEL = "1234567890"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _normalize(*events: dict[str, Any]) -> list[Any]:
    body = orjson.dumps({"destination": DESTINATION, "events": list(events)})
    return normalize(CHANNEL, parse_body(body), NOW)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_event_type_becomes_its_contract_in_the_envelope(name: str) -> None:
    sample, model = SAMPLES[name]
    [record] = _normalize(sample)
    message = LineEventReceived.model_validate_json(record.value)
    assert type(message.payload) is model
    assert message.event_id == sample["webhookEventId"] == record.event_id
    assert message.channel_id == CHANNEL
    assert message.destination == DESTINATION
    assert message.occurred_at == datetime.fromtimestamp(sample["timestamp"] / 1000, UTC)
    assert message.produced_at == NOW
    assert message.mode == sample["mode"]
    assert message.redelivery == sample["deliveryContext"]["isRedelivery"]
    assert message.event_type == sample["type"]
    assert orjson.loads(record.value)["payload"] == sample, "the payload is LINE's event, field for field"
    source = sample.get("source", {})
    source_id = source.get("groupId") or source.get("roomId") or source.get("userId")
    assert message.source_id == source_id
    assert record.key == f"{CHANNEL}:{source_id or ''}".encode()


def test_spliced_bytes_equal_the_contracts_own_serialization() -> None:
    """The hot path writes JSON by hand; it must be what the contract model itself would write."""
    for sample, _model in SAMPLES.values():
        [record] = _normalize(sample)
        parsed = LineEventReceived.model_validate_json(record.value)
        rebuilt = LineEventReceived.model_validate_json(
            parsed.model_dump_json(by_alias=True, exclude_none=True)
        )
        assert rebuilt == parsed
        assert isinstance(parsed, BaseModel)


def test_unknown_event_type_is_passed_on_with_its_raw_json() -> None:
    follow = SAMPLES["follow"][0]
    new_type = {**follow, "type": "messageEdited", "edited": {"text": "hi", "nested": [1, {"x": None}]}}
    del new_type["follow"]
    [record] = _normalize(new_type)
    message = LineEventReceived.model_validate_json(record.value)
    assert isinstance(message.payload, UnknownEvent)
    assert orjson.loads(record.value)["payload"] == new_type
    assert record.event_type == "unknown:messageEdited"


def test_unknown_type_without_webhook_event_id_gets_a_stable_id() -> None:
    odd = {"type": "somethingNew", "timestamp": 1, "payload": {"a": 1}}
    first, second = _normalize(odd)[0], _normalize(odd)[0]
    assert first.event_id == second.event_id, "a redelivery dedupes to the same id"
    other = _normalize({**odd, "payload": {"a": 2}})[0]
    assert other.event_id != first.event_id


def test_events_keep_the_request_order() -> None:
    names = ["follow", "message-text", "postback", "unfollow", "message-sticker"]
    records = _normalize(*(SAMPLES[n][0] for n in names))
    assert [r.event_id for r in records] == [SAMPLES[n][0]["webhookEventId"] for n in names]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b'"events"', "not a LINE webhook"),
        (b'{"destination": "U1", "events": [1]}', "events.0"),
        (b'{"destination": "U1", "events": [{"type": 5}]}', "events.0"),
    ],
)
def test_bad_bodies_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(BadWebhook, match=reason.replace(".", r"\.")):
        parse_body(body)
