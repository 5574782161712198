"""The sender's Prometheus metrics."""

from __future__ import annotations

from tagline_contracts.sending import SendOutcome
from tagline_platform.metrics import Metrics


class SenderMetrics:
    def __init__(self) -> None:
        self.metrics = Metrics("sender")
        self.requests = self.metrics.counter(
            "requests_total", "Send requests consumed, by what happened to them.", ("result",)
        )
        self.outcomes = self.metrics.counter(
            "deliveries_total", "LINE calls finished, by outcome.", ("channel_id", "outcome")
        )
        self.messages = self.metrics.counter(
            "messages_counted_total", "Billable messages LINE accepted.", ("channel_id",)
        )
        self.quota_remaining = self.metrics.gauge(
            "quota_remaining", "Messages that may still be reserved this month.", ("channel_id",)
        )
        self.replies_left_out = self.metrics.counter(
            "reply_requests_left_out_total",
            "Reply requests not sent because their event's one reply was already sent (late) or full (over "
            "LINE's five message objects); never pushed instead.",
            ("channel_id", "reason"),
        )
        self.member_changes = self.metrics.counter(
            "member_changes_total", "member.changes.v1 records, by result.", ("result",)
        )

    def outcome(self, channel_id: str, outcome: SendOutcome, counted: int) -> None:
        self.outcomes.labels(channel_id, outcome.value).inc()
        if counted:
            self.messages.labels(channel_id).inc(counted)

    def reply_left_out(self, channel_id: str, reason: str) -> None:
        self.replies_left_out.labels(channel_id, reason).inc()
