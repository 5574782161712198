"""The tagger's Prometheus metrics."""

from __future__ import annotations

from tagline_platform.metrics import Metrics


class TaggerMetrics:
    def __init__(self) -> None:
        self.metrics = Metrics("tagger")
        self.inputs = self.metrics.counter(
            "inputs_total",
            "Records consumed that were not applied, by topic and reason.",
            ("topic", "result"),
        )
        self.applied = self.metrics.counter("inputs_applied_total", "Member inputs applied (once each).")
        self.duplicates = self.metrics.counter(
            "inputs_duplicate_total", "Member inputs skipped because they were already applied."
        )
        self.writes = self.metrics.counter("member_writes_total", "Member documents written.")
        self.batch_seconds = self.metrics.histogram("batch_seconds", "Time to apply one batch of records.")
        self.coverage = self.metrics.gauge(
            "tag_coverage_ratio",
            "Share of followed members with at least one active tag (scope: all, origin:<o>, tag:<name>).",
            ("channel_id", "scope"),
        )
        self.followed = self.metrics.gauge("followed_members", "Followed members.", ("channel_id",))
        self.rules = self.metrics.gauge("rules_loaded", "Enabled rules in this instance's rule set.")
        self.rfm_runs = self.metrics.counter(
            "rfm_recomputations_total", "RFM recomputations.", ("channel_id",)
        )
