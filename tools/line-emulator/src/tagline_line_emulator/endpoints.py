"""The emulated endpoints: names (used by rate limits, faults and records), routes and defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

REPLY: Final = "reply"
PUSH: Final = "push"
MULTICAST: Final = "multicast"
NARROWCAST: Final = "narrowcast"
NARROWCAST_PROGRESS: Final = "narrowcast_progress"
BROADCAST: Final = "broadcast"
QUOTA: Final = "quota"
QUOTA_CONSUMPTION: Final = "quota_consumption"
PROFILE: Final = "profile"
POINTS: Final = "points"

ENDPOINTS: Final = (
    REPLY,
    PUSH,
    MULTICAST,
    NARROWCAST,
    NARROWCAST_PROGRESS,
    BROADCAST,
    QUOTA,
    QUOTA_CONSUMPTION,
    PROFILE,
    POINTS,
)

# endpoints that accept X-Line-Retry-Key
RETRYABLE: Final = frozenset({PUSH, MULTICAST, NARROWCAST, BROADCAST})
# endpoints whose recipients count against the monthly quota
BILLED: Final = frozenset({PUSH, MULTICAST, NARROWCAST, BROADCAST})

# (method, exact path) -> endpoint; the profile route is a prefix (``/v2/bot/profile/{userId}``)
ROUTES: Final[dict[tuple[str, str], str]] = {
    ("POST", "/v2/bot/message/reply"): REPLY,
    ("POST", "/v2/bot/message/push"): PUSH,
    ("POST", "/v2/bot/message/multicast"): MULTICAST,
    ("POST", "/v2/bot/message/narrowcast"): NARROWCAST,
    ("GET", "/v2/bot/message/progress/narrowcast"): NARROWCAST_PROGRESS,
    ("POST", "/v2/bot/message/broadcast"): BROADCAST,
    ("GET", "/v2/bot/message/quota"): QUOTA,
    ("GET", "/v2/bot/message/quota/consumption"): QUOTA_CONSUMPTION,
    ("POST", "/v1/points/grants"): POINTS,
}
PROFILE_PREFIX: Final = "/v2/bot/profile/"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` requests in any ``window_s`` seconds (a sliding window)."""

    limit: int
    window_s: float

    def __post_init__(self) -> None:
        if self.limit < 0 or self.window_s <= 0:
            raise ValueError(f"invalid rate limit {self.limit} per {self.window_s} s")


DEFAULT_RATE_LIMITS: Final[dict[str, RateLimit]] = {
    REPLY: RateLimit(2000, 1.0),
    PUSH: RateLimit(2000, 1.0),
    MULTICAST: RateLimit(200, 1.0),
    NARROWCAST: RateLimit(60, 3600.0),
    NARROWCAST_PROGRESS: RateLimit(2000, 1.0),
    BROADCAST: RateLimit(60, 3600.0),
    QUOTA: RateLimit(2000, 1.0),
    QUOTA_CONSUMPTION: RateLimit(2000, 1.0),
    PROFILE: RateLimit(2000, 1.0),
    POINTS: RateLimit(2000, 1.0),
}


def check_endpoint(name: str, *, wildcard: bool = False) -> str:
    if name in ENDPOINTS or (wildcard and name == "*"):
        return name
    allowed = ", ".join(ENDPOINTS)
    raise ValueError(f"unknown endpoint {name!r}; one of {allowed}" + (" or *" if wildcard else ""))
