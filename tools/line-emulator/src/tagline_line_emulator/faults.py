"""Fault injection rules and their selection: pure, with the time and the random source passed in."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal, get_args

from tagline_line_emulator.endpoints import check_endpoint

FaultKind = Literal["error", "latency", "timeout", "timeout_after_accept", "drop", "drop_after_accept"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

# how long a fault sleeps when the rule gives no ``delay_s``
DEFAULT_DELAY_S: dict[str, float] = {
    "error": 0.0,
    "latency": 1.0,
    "timeout": 30.0,
    "timeout_after_accept": 30.0,
    "drop": 0.0,
    "drop_after_accept": 0.0,
}

# kinds that let the request take effect (the emulated LINE accepted it) before misbehaving
PROCESSING_KINDS = frozenset({"latency", "timeout_after_accept", "drop_after_accept"})


@dataclass(frozen=True, slots=True)
class Fault:
    """One rule: which requests (``endpoint`` name or ``*``), what goes wrong, and how often.

    - ``error``: answer ``status`` (default 500) ``{"message": "Internal server error"}``; no effect.
    - ``latency``: sleep ``delay_s``, then process normally.
    - ``timeout``: sleep ``delay_s`` (default 30) without processing, then answer 504.
    - ``timeout_after_accept``: process and record the request, then sleep ``delay_s`` before answering.
    - ``drop``: close the connection without an HTTP response; no effect.
    - ``drop_after_accept``: process, then close the connection without answering.

    Selection: ``times`` (the next N matching requests, then the rule is spent) and/or ``probability``
    (each matching request with that chance, from the emulator's seeded RNG); neither means every matching
    request. ``duration_s`` limits the rule to that many seconds from its injection.
    """

    endpoint: str = "*"
    kind: FaultKind = "error"
    status: int = 500
    delay_s: float | None = None
    times: int | None = None
    probability: float | None = None
    duration_s: float | None = None

    def __post_init__(self) -> None:
        check_endpoint(self.endpoint, wildcard=True)
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(FAULT_KINDS)}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if self.delay_s is not None and self.delay_s < 0:
            raise ValueError("delay_s must not be negative")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration_s must be positive")
        if not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status")

    @property
    def delay(self) -> float:
        return DEFAULT_DELAY_S[self.kind] if self.delay_s is None else self.delay_s

    def to_json(self) -> dict[str, object]:
        return {
            "endpoint": self.endpoint,
            "kind": self.kind,
            "status": self.status,
            "delayS": self.delay,
            "times": self.times,
            "probability": self.probability,
            "durationS": self.duration_s,
        }


@dataclass(slots=True)
class _Armed:
    fault: Fault
    injected_at: float
    remaining: int | None
    applied: int = 0


@dataclass(slots=True)
class FaultBook:
    """The active rules, first match wins (in injection order)."""

    rng: random.Random = field(default_factory=lambda: random.Random(0))  # noqa: S311 (not for security)
    _rules: list[_Armed] = field(default_factory=list)

    def inject(self, fault: Fault, now: float) -> None:
        self._rules.append(_Armed(fault, now, fault.times))

    def clear(self) -> None:
        self._rules.clear()

    def active(self, now: float) -> list[Fault]:
        self._expire(now)
        return [armed.fault for armed in self._rules]

    def pick(self, endpoint: str, now: float) -> Fault | None:
        """The fault to apply to a request to ``endpoint`` arriving at ``now``, if any (and count it)."""
        if not self._rules:
            return None
        self._expire(now)
        for armed in self._rules:
            fault = armed.fault
            if fault.endpoint not in ("*", endpoint):
                continue
            if fault.probability is not None and self.rng.random() >= fault.probability:
                continue
            armed.applied += 1
            if armed.remaining is not None:
                armed.remaining -= 1
                if armed.remaining == 0:
                    self._rules.remove(armed)
            return fault
        return None

    def _expire(self, now: float) -> None:
        self._rules = [
            armed
            for armed in self._rules
            if armed.fault.duration_s is None or now - armed.injected_at < armed.fault.duration_s
        ]
