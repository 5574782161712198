"""Per-channel, per-endpoint rate limits (DESIGN.md §1), pure.

LINE counts requests in a window per channel and endpoint and answers 429 beyond the limit. The limiter is a
sliding-window log: a request may start only when fewer than ``limit`` requests started in the last
``window_s`` seconds. That bounds *every* window of that length, not only aligned ones (a token bucket lets
through up to twice its rate across a refill boundary), so the highest count in any 1-second window seen by
LINE stays under the limit.

Several sender instances share one channel's limit by their share of the ``send.requests.v1`` partitions
(each instance sends only the deliveries of the partitions it owns): an instance owning ``k`` of ``n``
partitions gets ``floor(limit × k / n × safety)`` requests per window, so the instances together stay under
the limit. ``safety`` (< 1) leaves room for network jitter bunching requests up on the way.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RateLimit:
    limit: int
    window_s: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window_s <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window_s > 0")

    def share(self, owned: int, total: int, safety: float) -> RateLimit:
        """This instance's part of the limit when it owns ``owned`` of ``total`` partitions."""
        if total <= 0 or owned <= 0:
            return RateLimit(1, self.window_s)
        return RateLimit(max(1, math.floor(self.limit * min(owned, total) / total * safety)), self.window_s)


@dataclass
class SlidingWindow:
    """The start times of the requests in the current window of one (channel, endpoint)."""

    rate: RateLimit
    starts: deque[float] = field(default_factory=deque)

    def try_acquire(self, now: float) -> float:
        """Record a request starting at ``now`` and return 0, or return how long to wait before retrying."""
        horizon = now - self.rate.window_s
        while self.starts and self.starts[0] <= horizon:
            self.starts.popleft()
        if len(self.starts) < self.rate.limit:
            self.starts.append(now)
            return 0.0
        # The slot frees when the oldest request in the window leaves it (at least 1 µs, so a float rounding
        # error can never make a caller wait ~0 s over and over).
        return max(1e-6, self.starts[len(self.starts) - self.rate.limit] - horizon)


DEFAULT_LIMITS: dict[str, RateLimit] = {
    "push": RateLimit(2_000, 1.0),
    "reply": RateLimit(2_000, 1.0),
    "multicast": RateLimit(200, 1.0),
    "narrowcast": RateLimit(60, 3600.0),
    "broadcast": RateLimit(60, 3600.0),
    "quota": RateLimit(2_000, 1.0),
}
