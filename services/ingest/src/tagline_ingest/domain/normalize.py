"""Webhook body → the records to publish on ``line.events.v1``.

Pure: bytes in, records out. Each event is validated against its contract
(:mod:`tagline_contracts.webhook`) and wrapped in the :class:`~tagline_contracts.envelope.LineEventReceived`
envelope, keyed ``channel:sourceId`` so one user's events stay in order on one partition. Unknown event types
are kept as ``UnknownEvent`` (their raw JSON), never dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from pydantic import ValidationError

from tagline_contracts.base import strip_nul
from tagline_contracts.envelope import LINE_EVENT_SCHEMA, line_event_key
from tagline_contracts.webhook import CallbackRequest, UnknownEvent, WebhookEvent
from tagline_ingest.domain.errors import BadWebhook

MAX_REASON_ERRORS = 3


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """One Kafka record: key and value bytes plus what metrics and logs need."""

    key: bytes
    value: bytes
    event_type: str
    event_id: str


def parse_body(body: bytes) -> CallbackRequest:
    """Validate a webhook body; :class:`BadWebhook` says clearly what is wrong.

    NUL characters (the JSON escape ``\\u0000``) are removed from every string first: no Tagline store can
    hold one (:data:`tagline_contracts.base.NUL`), and LINE's events are facts to keep, not requests to deny.
    The signature was checked on the bytes as LINE sent them.
    """
    if b"\\u0000" in body:  # rare: a byte search on the hot path, the parse only when needed
        with contextlib.suppress(orjson.JSONDecodeError):  # the validation below says what is wrong then
            body = orjson.dumps(strip_nul(orjson.loads(body)))
    try:
        return CallbackRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise BadWebhook(f"body is not valid JSON: {errors[0]['msg']}") from None
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}"
            for e in errors[:MAX_REASON_ERRORS]
        )
        more = f" (and {len(errors) - MAX_REASON_ERRORS} more)" if len(errors) > MAX_REASON_ERRORS else ""
        raise BadWebhook(f"not a LINE webhook: {details}{more}") from None


def _event_id(channel_id: str, event: WebhookEvent, payload: bytes) -> str:
    if event.webhook_event_id:
        return event.webhook_event_id
    # Only an unknown type can lack webhookEventId; derive a stable id so redeliveries still dedupe.
    return "x" + hashlib.sha256(channel_id.encode() + b"\0" + payload).hexdigest()[:32]


MAX_TIMESTAMP_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the last time ``occurred_at`` (a datetime) can hold."""


def _iso_ms(timestamp_ms: int | None, default: datetime, index: int) -> str:
    if timestamp_ms is None:
        return default.isoformat(timespec="milliseconds")
    if not 0 <= timestamp_ms <= MAX_TIMESTAMP_MS:  # a datetime cannot hold it (would be a 500)
        raise BadWebhook(f"not a LINE webhook: events.{index}.timestamp: not a time in ms from 1970 to 9999")
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds")


def normalize(channel_id: str, request: CallbackRequest, produced_at: datetime) -> list[OutgoingRecord]:
    """The records for every event of ``request``, in the order LINE sent them.

    Raises :class:`BadWebhook` for an event whose ``timestamp`` is not a time (before 1970 or after 9999).

    The envelope is serialized straight to JSON bytes (this is the hot path); a unit test checks that the
    bytes validate as ``LineEventReceived`` and carry the same payload as the contract's own serialization.
    """
    produced = produced_at.isoformat(timespec="milliseconds")
    records: list[OutgoingRecord] = []
    for index, event in enumerate(request.events):
        payload = event.model_dump_json(by_alias=True, exclude_none=True).encode()
        event_id = _event_id(channel_id, event, payload)
        source_id = event.source_id
        delivery = event.delivery_context
        header = {
            "event_id": event_id,
            "channel_id": channel_id,
            "occurred_at": _iso_ms(event.timestamp, produced_at, index),
            "produced_at": produced,
            "schema": LINE_EVENT_SCHEMA,
            "destination": request.destination,
            "event_type": event.type,
            "source_id": source_id,
            "redelivery": bool(delivery and delivery.is_redelivery),
            "mode": event.mode or "active",
        }
        # Splice the already-serialized payload in rather than re-encoding it.
        value = orjson.dumps(header)[:-1] + b',"payload":' + payload + b"}"
        records.append(
            OutgoingRecord(
                key=line_event_key(channel_id, source_id).encode(),
                value=value,
                event_type=event.type if not isinstance(event, UnknownEvent) else f"unknown:{event.type}",
                event_id=event_id,
            )
        )
    return records
