"""Ingest's HTTP surface: the LINE webhook, health, readiness and metrics.

The webhook answers 200 only after Kafka has acknowledged every event of the request (at-least-once from
LINE's side: on 503 or a timeout LINE redelivers, and consumers drop what they already applied by
``webhookEventId``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tagline_contracts import signature
from tagline_ingest.domain.errors import BadWebhook
from tagline_ingest.domain.normalize import normalize, parse_body
from tagline_ingest.metrics import IngestMetrics
from tagline_ingest.ports import EventPublisher

log = logging.getLogger(__name__)

OK = Response(status_code=200)


class BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def build_router(
    *,
    secrets: dict[str, bytes],
    publisher: EventPublisher,
    metrics: IngestMetrics,
    publish_timeout_s: float,
    max_body_bytes: int,
) -> APIRouter:
    router = APIRouter()

    def reject(status: int, reason: str, detail: str, **context: Any) -> JSONResponse:
        metrics.requests.labels(str(status)).inc()
        metrics.rejects.labels(reason).inc()
        log.info("webhook rejected", extra={"status": status, "reason": reason, **context})
        return JSONResponse({"error": reason, "detail": detail}, status_code=status)

    @router.post(
        "/line/webhook/{channel_id}",
        summary="Receive a LINE webhook for one channel",
        responses={
            200: {"description": "Every event is durably on Kafka"},
            400: {"description": "Not JSON, or not a LINE webhook"},
            401: {"description": "Missing or wrong x-line-signature"},
            404: {"description": "Unknown channel"},
            413: {"description": "Body over the size limit"},
            503: {"description": "Kafka did not acknowledge in time; LINE will redeliver"},
        },
    )
    async def webhook(channel_id: str, request: Request) -> Response:
        secret = secrets.get(channel_id)
        if secret is None:
            return reject(
                404, "unknown_channel", f"no channel {channel_id!r} is configured", channel_id=channel_id
            )
        try:
            body = await _read_body(request, max_body_bytes)
        except BodyTooLarge:
            return reject(413, "body_too_large", f"body over {max_body_bytes} bytes", channel_id=channel_id)
        if not signature.verify(secret, body, request.headers.get("x-line-signature")):
            return reject(401, "bad_signature", "x-line-signature missing or wrong", channel_id=channel_id)
        try:
            records = normalize(channel_id, parse_body(body), datetime.now(UTC))
        except BadWebhook as exc:
            return reject(400, "bad_request", exc.reason, channel_id=channel_id)
        if records:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(publish_timeout_s):
                    await publisher.publish(records)
            except Exception as exc:  # timeout, broker gone, not connected: never a false 200
                log.error(  # noqa: TRY400 - the reason is enough, a traceback adds nothing
                    "kafka did not acknowledge; answering 503 so LINE redelivers",
                    extra={
                        "channel_id": channel_id,
                        "event_ids": [r.event_id for r in records],
                        "error": repr(exc),
                    },
                )
                return reject(
                    503, "kafka_unavailable", "events not durable; retry later", channel_id=channel_id
                )
            metrics.publish_seconds.observe(time.perf_counter() - started)
            for record in records:
                metrics.events.labels(record.event_type).inc()
        metrics.requests.labels("200").inc()
        return OK

    @router.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: Kafka reachable")
    async def readyz() -> JSONResponse:
        if await publisher.ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "kafka unavailable"}, status_code=503)

    return router


def build_api(router: APIRouter, metrics: IngestMetrics, **kwargs: Any) -> FastAPI:
    app = FastAPI(title="Tagline ingest", version="0.1.0", **kwargs)
    app.include_router(router)
    app.add_route("/metrics", metrics.base.endpoint, include_in_schema=False)
    return app
