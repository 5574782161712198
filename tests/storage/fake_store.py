"""A store that exists only to test the hot-query checker of ``test_hot_queries.py`` on the real server.

It is written like a service's store module (a class with ``ensure_indexes`` and a module-level
``HOT_QUERIES``) and declares one shape every conforming server answers from an index (equality on ``_id``)
and one no server can (``$in`` on a field without an index: FerretDB does not push ``$in`` down at all,
MongoDB has no index for it). The checker must pass the first and flag the second.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from tagline_platform.mongo import HotQuery

HOT_QUERIES: tuple[HotQuery, ...] = (
    HotQuery("items", {"_id": "1234567890:item-7"}, "one item by id"),
    HotQuery("items", {"state": {"$in": ["open", "held"]}}, "items in some states"),
)
SERVED, FLAGGED = HOT_QUERIES


class FakeStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.items = db["items"]

    async def ensure_indexes(self) -> None:
        await self.items.create_index([("channel_id", ASCENDING)])
