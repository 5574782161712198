"""Numbers from environment variables, for benchmark knobs (``TAGLINE_BENCH_*``) and the fuzzing scale."""

from __future__ import annotations

import os


def env_int(name: str, default: int) -> int:
    """``int`` of ``$name`` (``1_000_000`` allowed), else ``default``."""
    raw = os.environ.get(name)
    return int(raw.replace("_", "")) if raw else default


def env_float(name: str, default: float) -> float:
    """``float`` of ``$name``, else ``default``."""
    raw = os.environ.get(name)
    return float(raw) if raw else default


def fuzz_scale() -> int:
    """``TAGLINE_FUZZ_SCALE`` (default 1): fuzz tests try that many times more examples, and may take that
    many times longer (their per-test timeout is scaled too)."""
    return max(1, env_int("TAGLINE_FUZZ_SCALE", 1))
