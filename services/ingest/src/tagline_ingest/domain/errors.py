"""Ingest's domain errors."""

from __future__ import annotations

from tagline_platform.errors import TaglineError


class IngestError(TaglineError):
    """Root of ingest's errors."""


class BadWebhook(IngestError):
    """The body is not JSON or not a LINE webhook; ``reason`` is safe to return to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EventTooLarge(IngestError):
    """An event of the request would make a Kafka record over the size limit; nothing of it was published."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
