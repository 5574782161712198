"""Ingest's HTTP surface: the LINE webhook, health, readiness and metrics.

The webhook answers 200 only after Kafka has acknowledged every event of the request (at-least-once from
LINE's side: on 503 or a timeout LINE redelivers, and consumers drop what they already applied by
``webhookEventId``).

``POST /line/webhook/{channel_id}`` is the hot path, so a bare ASGI handler (:class:`WebhookEndpoint`) in
front of FastAPI serves it: FastAPI's routing and dependency solving cost more CPU than the whole webhook
job (bench/README.md). FastAPI serves everything else and documents the webhook in its OpenAPI.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import Counter

from tagline_contracts import signature
from tagline_ingest.domain.errors import BadWebhook, EventTooLarge
from tagline_ingest.domain.normalize import normalize, parse_body
from tagline_ingest.metrics import IngestMetrics
from tagline_ingest.ports import EventPublisher
from tagline_platform.readiness import Readiness, add_readyz

log = logging.getLogger(__name__)

WEBHOOK_PREFIX = "/line/webhook/"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", b"application/json")]


class BodyTooLarge(Exception):
    pass


def _declares_more_than(declared_length: str | None, limit: int) -> bool:
    """Whether a ``content-length`` of ASCII digits says more than ``limit`` (anything else: read and count).

    ``"²".isdigit()`` yet ``int("²")`` fails, and ``int()`` refuses more than 4,300 digits: both were 500s.
    """
    if declared_length is None or not (declared_length.isascii() and declared_length.isdigit()):
        return False
    digits = declared_length.lstrip("0")
    return len(digits) > len(str(limit)) or int(digits or "0") > limit


async def read_body(receive: Receive, declared_length: str | None, limit: int) -> bytes:
    """The request body, refusing to buffer more than ``limit`` bytes."""
    if _declares_more_than(declared_length, limit):
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away before sending the whole body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class WebhookEndpoint:
    """Verify, normalize, publish, answer: ``handle`` returns (status, JSON body)."""

    def __init__(
        self,
        *,
        secrets: dict[str, bytes],
        publisher: EventPublisher,
        metrics: IngestMetrics,
        publish_timeout_s: float,
        max_body_bytes: int,
        max_in_flight: int,
    ) -> None:
        self._secrets = secrets
        self._publisher = publisher
        self._metrics = metrics
        self._publish_timeout_s = publish_timeout_s
        self._max_body_bytes = max_body_bytes
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._by_status: dict[int, Counter] = {}
        self._by_type: dict[str, Counter] = {}

    def _count_status(self, status: int) -> None:
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = self._metrics.requests.labels(str(status))
        counter.inc()

    def _reject(self, status: int, reason: str, detail: str, channel_id: str) -> tuple[int, bytes]:
        self._count_status(status)
        self._metrics.rejects.labels(reason).inc()
        log.info("webhook rejected", extra={"status": status, "reason": reason, "channel_id": channel_id})
        return status, orjson.dumps({"error": reason, "detail": detail})

    async def handle(
        self, channel_id: str, signature_header: str | None, content_length: str | None, receive: Receive
    ) -> tuple[int, bytes]:
        secret = self._secrets.get(channel_id)
        if secret is None:
            return self._reject(
                404, "unknown_channel", f"no channel {channel_id!r} is configured", channel_id
            )
        if self._in_flight >= self._max_in_flight:
            # Shedding load early keeps latency bounded for what is accepted; LINE redelivers the rest.
            return self._reject(503, "overloaded", "too many requests in flight; retry later", channel_id)
        self._in_flight += 1
        try:
            return await self._handle(channel_id, secret, signature_header, content_length, receive)
        finally:
            self._in_flight -= 1

    async def _handle(  # noqa: PLR0911 - one return per answer
        self,
        channel_id: str,
        secret: bytes,
        signature_header: str | None,
        content_length: str | None,
        receive: Receive,
    ) -> tuple[int, bytes]:
        try:
            body = await read_body(receive, content_length, self._max_body_bytes)
        except BodyTooLarge:
            return self._reject(413, "body_too_large", f"body over {self._max_body_bytes} bytes", channel_id)
        except ConnectionError as exc:
            return self._reject(400, "incomplete_body", str(exc), channel_id)
        if not signature.verify(secret, body, signature_header):
            return self._reject(401, "bad_signature", "x-line-signature missing or wrong", channel_id)
        try:
            records = normalize(channel_id, parse_body(body), datetime.now(UTC))
        except BadWebhook as exc:
            return self._reject(400, "bad_request", exc.reason, channel_id)
        if records:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self._publish_timeout_s):
                    await self._publisher.publish(records)
            except EventTooLarge as exc:
                return self._reject(413, "event_too_large", exc.reason, channel_id)
            except Exception as exc:  # timeout, broker gone, not connected: never a false 200
                log.error(  # noqa: TRY400 - the reason is enough, a traceback adds nothing
                    "kafka did not acknowledge; answering 503 so LINE redelivers",
                    extra={
                        "channel_id": channel_id,
                        "events": len(records),
                        "first_event_id": records[0].event_id,
                        "error": repr(exc),
                    },
                )
                return self._reject(503, "kafka_unavailable", "events not durable; retry later", channel_id)
            self._metrics.publish_seconds.observe(time.perf_counter() - started)
            for record in records:
                counter = self._by_type.get(record.event_type)
                if counter is None:
                    counter = self._by_type[record.event_type] = self._metrics.events.labels(
                        record.event_type
                    )
                counter.inc()
        self._count_status(200)
        return 200, b"{}"


class IngestApp:
    """The ASGI app: the webhook's fast path, FastAPI for the rest (including lifespan)."""

    def __init__(self, webhook: WebhookEndpoint, api: FastAPI) -> None:
        self.webhook = webhook
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and scope["method"] == "POST" and path.startswith(WEBHOOK_PREFIX):
            channel_id = path[len(WEBHOOK_PREFIX) :]
            if channel_id and "/" not in channel_id:
                headers = dict(scope["headers"])
                status, body = await self.webhook.handle(
                    channel_id,
                    _decode(headers.get(b"x-line-signature")),
                    _decode(headers.get(b"content-length")),
                    receive,
                )
                await send({"type": "http.response.start", "status": status, "headers": _JSON_HEADERS})
                await send({"type": "http.response.body", "body": body})
                return
        await self.api(scope, receive, send)


def _decode(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def build_app(
    webhook: WebhookEndpoint, publisher: EventPublisher, metrics: IngestMetrics, **kwargs: Any
) -> IngestApp:
    api = FastAPI(title="Tagline ingest", version="0.1.0", **kwargs)

    @api.post(
        WEBHOOK_PREFIX + "{channel_id}",
        summary="Receive a LINE webhook for one channel",
        responses={
            200: {"description": "Every event is durably on Kafka"},
            400: {"description": "Not JSON, or not a LINE webhook (the reason is in `detail`)"},
            401: {"description": "Missing or wrong x-line-signature"},
            404: {"description": "Unknown channel"},
            413: {"description": "Body over the size limit, or an event too large for one Kafka record"},
            503: {"description": "Kafka did not acknowledge in time, or overloaded; LINE will redeliver"},
        },
    )
    async def webhook_docs(channel_id: str, request: Request) -> Response:
        """Documents the endpoint; requests are normally answered by the fast path with the same logic."""
        status, body = await webhook.handle(
            channel_id,
            request.headers.get("x-line-signature"),
            request.headers.get("content-length"),
            request.receive,
        )
        return Response(body, status_code=status, media_type="application/json")

    @api.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # Ingest has no consumers, no database and nothing that starts in the background: its producer connects
    # by itself (KafkaEventPublisher), so it is ready whenever Kafka answers it.
    readiness = Readiness()
    readiness.probe("Kafka", publisher.ready)
    readiness.started()
    add_readyz(api, readiness, summary="Readiness: Kafka answers the producer")

    api.add_route("/metrics", metrics.base.endpoint, include_in_schema=False)
    return IngestApp(webhook, api)
