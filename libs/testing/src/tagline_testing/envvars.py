"""Numbers from environment variables, for benchmark knobs (``TAGLINE_BENCH_*``)."""

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
