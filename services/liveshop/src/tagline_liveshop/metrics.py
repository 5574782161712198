"""Liveshop's Prometheus metrics."""

from __future__ import annotations

from tagline_platform.metrics import Metrics


class LiveshopMetrics:
    def __init__(self) -> None:
        self.metrics = Metrics("liveshop")
        self.records = self.metrics.counter("records_total", "Records consumed (comments, chat, statuses).")
        self.batch_seconds = self.metrics.histogram("batch_seconds", "Time to apply one batch of records.")
