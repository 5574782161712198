"""What the ingest API needs from the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tagline_ingest.domain.normalize import OutgoingRecord


class EventPublisher(Protocol):
    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        """Return only once the broker has durably acknowledged every record; raise otherwise.

        Raises :class:`~tagline_ingest.domain.errors.EventTooLarge`, before publishing any record, when one
        of them is over the broker's size limit.
        """

    async def ready(self) -> bool:
        """True when the broker answers."""
