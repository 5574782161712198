"""Ingest's Prometheus metrics."""

from __future__ import annotations

from tagline_platform.metrics import Metrics


class IngestMetrics:
    def __init__(self) -> None:
        self.base = Metrics("ingest")
        self.requests = self.base.counter("webhook_requests", "Webhook requests by HTTP status.", ("status",))
        self.events = self.base.counter("events_published", "Events published by LINE event type.", ("type",))
        self.rejects = self.base.counter(
            "webhook_rejects", "Rejected webhook requests by reason.", ("reason",)
        )
        self.publish_seconds = self.base.histogram(
            "publish_seconds", "Time from handing a request's events to Kafka until all were acknowledged."
        )
