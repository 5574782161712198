"""Monthly message quota per channel: pure bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Quota:
    """``limit`` None is LINE's ``{"type": "none"}``; ``usage`` is ``totalUsage`` for the month."""

    limit: int | None = None
    usage: int = 0

    def allows(self, recipients: int) -> bool:
        """Whether sending to ``recipients`` more users keeps the month within the limit."""
        return self.limit is None or self.usage + recipients <= self.limit

    def consume(self, recipients: int) -> None:
        self.usage += recipients

    def to_json(self) -> dict[str, object]:
        if self.limit is None:
            return {"type": "none"}
        return {"type": "limited", "value": self.limit}
