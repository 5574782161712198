"""MongoDB client factory (PyMongo's async API; motor is deprecated and not used)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient


def create_mongo_client(
    url: str, *, app_name: str, timeout_ms: int = 5_000, **overrides: Any
) -> AsyncMongoClient[dict[str, Any]]:
    """An ``AsyncMongoClient`` with short server-selection timeouts, so a missing server fails fast.

    Works against MongoDB and FerretDB alike. The client connects lazily on first use.
    """
    return AsyncMongoClient(
        url,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        **overrides,
    )
