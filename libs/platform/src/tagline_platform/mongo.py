"""MongoDB client factory (PyMongo's async API; motor is deprecated and not used)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from tagline_platform.errors import TaglineError


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


@dataclass(frozen=True)
class HotQuery:
    """One query shape a service runs on a hot path (per event, per delivery, per API call on one record).

    Each store lists its hot queries in one module-level tuple ``HOT_QUERIES``, next to the code that runs
    them; the storage conformance suite (``tests/storage``) creates the store's indexes, runs ``explain`` on
    every declared shape and fails when the server would answer it with a full scan (FerretDB:
    ``filterPushdown`` false; MongoDB: no ``IXSCAN``/``IDHACK``). So a new full scan on a hot path fails CI.

    ``filter`` is an example with realistic values of the right types (the shape is what matters); updates,
    deletes and ``find_one_and_update`` are declared by the filter they select with.
    """

    collection: str
    filter: Mapping[str, Any]
    purpose: str


def utc_minute(moment: datetime) -> datetime:
    """``moment`` in UTC, floored to its minute: the time bucket that turns "due by now" (a range, a full
    scan) into indexed equalities, one per minute (the journeys' due slots, the tagger's expiry buckets)."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


class LockTimeout(TaglineError):
    """A :class:`DocumentLock` could not be taken in time."""


class DocumentLock:
    """A short mutual-exclusion lock over one logical record: an insert of ``{_id: name}`` into ``locks``
    (atomic on every server: the unique ``_id``), removed on release; a lock older than ``stale_after_s``
    (its holder crashed) is taken over.

    Conditional updates are atomic on the embedded server now (the project's FerretDB patches, checked by
    ``tests/storage``), so a single record needs no lock: use a conditional ``update_one``. This lock is for
    a sequence of several writes that must not interleave with another writer's (liveshop's session batch).
    """

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        *,
        stale_after_s: float = 10.0,
        timeout_s: float = 10.0,
    ) -> None:
        self._locks = collection
        self._stale = timedelta(seconds=stale_after_s)
        self._timeout_s = timeout_s

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self._timeout_s
        delay = 0.001
        while True:
            now = datetime.now(UTC)
            try:
                await self._locks.insert_one({"_id": name, "token": token, "taken_at": now})
                break
            except DuplicateKeyError:
                held = await self._locks.find_one({"_id": name})
                if held is not None and held["taken_at"] < now - self._stale:
                    await self._locks.delete_one({"_id": name, "token": held["token"]})
                    continue
            if time.monotonic() > deadline:
                raise LockTimeout(f"lock {name!r} still held after {self._timeout_s}s")
            await asyncio.sleep(delay + random.random() * delay)  # noqa: S311 - jitter
            delay = min(delay * 2, 0.05)
        try:
            yield
        finally:
            await self._locks.delete_one({"_id": name, "token": token})
