"""Sliding-window rate limiting per (channel, endpoint): pure, with the time passed in."""

from __future__ import annotations

from collections import deque

from tagline_line_emulator.endpoints import RateLimit


class SlidingWindowLimiter:
    """Admits a request when fewer than ``limit`` requests were admitted in the last ``window_s`` seconds.

    A log of admission times per key (at most ``limit`` entries each), so a burst at the end of one window and
    another at the start of the next cannot together exceed the limit, as they could with fixed windows.
    Rejected requests are not logged: they have no effect.
    """

    def __init__(self, limits: dict[str, RateLimit]) -> None:
        self._limits = dict(limits)
        self._logs: dict[tuple[str, str], deque[float]] = {}

    @property
    def limits(self) -> dict[str, RateLimit]:
        return dict(self._limits)

    def set_limit(self, endpoint: str, limit: RateLimit) -> None:
        self._limits[endpoint] = limit

    def try_acquire(self, channel: str, endpoint: str, now: float) -> bool:
        rule = self._limits.get(endpoint)
        if rule is None:
            return True
        log = self._logs.get((channel, endpoint))
        if log is None:
            log = self._logs[(channel, endpoint)] = deque()
        horizon = now - rule.window_s
        while log and log[0] <= horizon:
            log.popleft()
        if len(log) >= rule.limit:
            return False
        log.append(now)
        return True

    def reset(self) -> None:
        self._logs.clear()
