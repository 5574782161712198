"""The tagger's MongoDB (or FerretDB) collections.

* ``members`` — one document per (channel, user), ``_id`` = ``channel:userId``. Written only by the tagger
  instance that owns the member's Kafka partition (``tagline_tagger.pipeline``), always as a whole document
  (``replace_one`` upsert by ``_id``), so every write is atomic and there is never a second writer to race.
  Segment fields are stored where ``tagline_contracts.segments.DEFAULT_FIELDS`` expects them:
  ``follow_state``, ``tags`` (active tag names), ``attributes``, ``last_interaction_at``, ``rfm_segment``.
* ``rules`` — keyword and behavior rules (HTTP API); every instance reloads them every few seconds.
* ``rfm_models`` — the latest RFM model per channel (``_id`` = channel).

Only lookups by ``_id`` are indexed on FerretDB (1.24, with our build's patch), so members are read one
``find_one`` per id, concurrently, never with ``$in`` (a full scan there).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tagline_contracts.members import FollowState
from tagline_platform.mongo import chunked
from tagline_tagger.domain.member import Member, Rfm, TagRecord
from tagline_tagger.domain.rfm import RfmModel

Doc = dict[str, Any]


def member_to_doc(member: Member, now: datetime) -> Doc:
    expiries = [record.expires_at for record in member.tags.values() if record.expires_at is not None]
    rfm = member.rfm
    return {
        "_id": member.key,
        "channel_id": member.channel_id,
        "user_id": member.user_id,
        "version": member.version,
        "follow_state": member.follow_state.value,
        "follow_state_at": member.follow_state_at,
        "first_followed_at": member.first_followed_at,
        "last_followed_at": member.last_followed_at,
        "blocked_at": member.blocked_at,
        "follow_count": member.follow_count,
        "last_interaction_at": member.last_interaction_at,
        "display_name": member.display_name,
        "attributes": member.attributes,
        "tags": member.active_tags(now),
        "tag_origins": sorted({r.origin.value for r in member.tags.values() if r.active(now)}),
        "tag_records": [record.to_doc() for record in member.tags.values()],
        "next_expiry": min(expiries) if expiries else None,
        "rule_fired_at": member.rule_fired_at,
        "rfm": {
            "last_order_at": rfm.last_order_at,
            "orders": rfm.orders,
            "monetary": rfm.monetary,
            "counted": rfm.counted,
            "r": rfm.recency_score,
            "f": rfm.frequency_score,
            "m": rfm.monetary_score,
            "model_id": rfm.model_id,
            "scored_at": rfm.scored_at,
        },
        "rfm_segment": member.rfm_segment,
        "seen": member.seen,
        "offsets": member.offsets,
        "outbox": member.outbox,
        "created_at": member.created_at or now,
        "updated_at": now,
    }


def member_from_doc(doc: Doc) -> Member:
    rfm = doc.get("rfm") or {}
    return Member(
        channel_id=doc["channel_id"],
        user_id=doc["user_id"],
        version=doc.get("version", 0),
        follow_state=FollowState(doc.get("follow_state", FollowState.UNKNOWN.value)),
        follow_state_at=doc.get("follow_state_at"),
        first_followed_at=doc.get("first_followed_at"),
        last_followed_at=doc.get("last_followed_at"),
        blocked_at=doc.get("blocked_at"),
        follow_count=doc.get("follow_count", 0),
        last_interaction_at=doc.get("last_interaction_at"),
        display_name=doc.get("display_name"),
        attributes=dict(doc.get("attributes") or {}),
        tags={r["name"]: TagRecord.from_doc(r) for r in doc.get("tag_records") or []},
        rule_fired_at=dict(doc.get("rule_fired_at") or {}),
        rfm=Rfm(
            last_order_at=rfm.get("last_order_at"),
            orders=rfm.get("orders", 0),
            monetary=rfm.get("monetary", 0.0),
            counted=list(rfm.get("counted") or []),
            recency_score=rfm.get("r"),
            frequency_score=rfm.get("f"),
            monetary_score=rfm.get("m"),
            model_id=rfm.get("model_id"),
            scored_at=rfm.get("scored_at"),
        ),
        rfm_segment=doc.get("rfm_segment"),
        seen=list(doc.get("seen") or []),
        offsets=dict(doc.get("offsets") or {}),
        outbox=list(doc.get("outbox") or []),
        created_at=doc.get("created_at"),
        updated_at=doc.get("updated_at"),
    )


MEMBER_VIEW = {"seen": 0, "offsets": 0, "outbox": 0, "rule_fired_at": 0, "rfm.counted": 0}
"""What the HTTP API does not show of a member document."""


class TaggerStore:
    def __init__(self, db: AsyncDatabase[Doc], *, lookup_concurrency: int = 32) -> None:
        self.db = db
        self.members = db["members"]
        self.rules = db["rules"]
        self.rfm_models = db["rfm_models"]
        self._lookups = asyncio.Semaphore(lookup_concurrency)

    async def ensure_indexes(self) -> None:
        """Indexes for MongoDB (FerretDB creates them too, but only uses the one on ``_id``)."""
        await self.members.create_index([("channel_id", ASCENDING), ("follow_state", ASCENDING)])
        await self.members.create_index([("next_expiry", ASCENDING)])
        await self.rules.create_index([("channel_id", ASCENDING)])

    # ---- members ---------------------------------------------------------------------------------------
    async def load_members(self, keys: Iterable[str]) -> dict[str, Member]:
        """The stored members among ``keys`` (missing ones are absent from the result)."""

        async def one(key: str) -> Doc | None:
            async with self._lookups:
                return await self.members.find_one({"_id": key})

        wanted = list(keys)
        docs = await asyncio.gather(*(one(key) for key in wanted))
        return {doc["_id"]: member_from_doc(doc) for doc in docs if doc is not None}

    async def save_members(self, members: Sequence[Member], now: datetime) -> None:
        """Write each member whole (one atomic document write each; order between members is irrelevant)."""
        ops = [ReplaceOne({"_id": m.key}, member_to_doc(m, now), upsert=True) for m in members]
        for chunk in chunked(ops):  # FerretDB deadlocks on bigger bulk writes (tagline_platform.mongo)
            await self.members.bulk_write(chunk, ordered=False)

    async def get_member(self, channel_id: str, user_id: str) -> Doc | None:
        return await self.members.find_one({"_id": f"{channel_id}:{user_id}"}, MEMBER_VIEW)

    async def member_exists(self, channel_id: str, user_id: str) -> bool:
        return await self.members.find_one({"_id": f"{channel_id}:{user_id}"}, {"_id": 1}) is not None

    async def find_members(
        self, channel_id: str, query: Doc, *, after: str | None, limit: int, fields: Doc | None = None
    ) -> list[Doc]:
        conditions: list[Doc] = [{"channel_id": channel_id}, query]
        if after is not None:
            conditions.append({"user_id": {"$gt": after}})
        cursor = (
            self.members.find({"$and": conditions}, fields or MEMBER_VIEW).sort("user_id", 1).limit(limit)
        )
        return [doc async for doc in cursor]

    async def count_members(self, channel_id: str, query: Doc) -> int:
        return await self.members.count_documents({"$and": [{"channel_id": channel_id}, query]})

    async def coverage_rows(self, channel_id: str) -> AsyncIterator[Doc]:
        """Followed members' active tag names and origins (one scan; the coverage figures are summed in
        Python: FerretDB's ``$group`` cannot ``$unwind`` and sum per tag)."""
        cursor = self.members.find(
            {"channel_id": channel_id, "follow_state": FollowState.FOLLOWED.value},
            {"_id": 0, "tags": 1, "tag_origins": 1},
        )
        async for doc in cursor:
            yield doc

    async def channel_ids(self) -> list[str]:
        return sorted(await self.members.distinct("channel_id"))

    async def rfm_rows(self, channel_id: str) -> AsyncIterator[Doc]:
        """Buyers' raw R/F/M values and current scores."""
        cursor = self.members.find(
            {"channel_id": channel_id, "rfm.orders": {"$gt": 0}},
            {
                "_id": 0,
                "user_id": 1,
                "rfm.last_order_at": 1,
                "rfm.orders": 1,
                "rfm.monetary": 1,
                "rfm.r": 1,
                "rfm.f": 1,
                "rfm.m": 1,
                "rfm_segment": 1,
            },
            batch_size=10_000,
        )
        async for doc in cursor:
            yield doc

    async def members_with_expired_tags(
        self, now: datetime, limit: int, *, channels: Sequence[str]
    ) -> list[tuple[str, str]]:
        """Members of ``channels`` with a tag past its expiry (a scheduled job's scan, not a hot path)."""
        query = {"next_expiry": {"$ne": None, "$lte": now}, "channel_id": {"$in": list(channels)}}
        cursor = self.members.find(query, {"_id": 0, "channel_id": 1, "user_id": 1}).limit(limit)
        return [(doc["channel_id"], doc["user_id"]) async for doc in cursor]

    # ---- rules -----------------------------------------------------------------------------------------
    async def insert_rule(self, doc: Doc) -> None:
        await self.rules.insert_one(doc)

    async def replace_rule(self, doc: Doc) -> bool:
        result = await self.rules.replace_one({"_id": doc["_id"]}, doc)
        return result.matched_count == 1

    async def get_rule(self, rule_id: str) -> Doc | None:
        return await self.rules.find_one({"_id": rule_id})

    async def delete_rule(self, rule_id: str) -> bool:
        return (await self.rules.delete_one({"_id": rule_id})).deleted_count == 1

    async def all_rules(self, channel_id: str | None = None) -> list[Doc]:
        query = {} if channel_id is None else {"channel_id": channel_id}
        return [doc async for doc in self.rules.find(query).sort("_id", 1)]

    # ---- scheduled jobs --------------------------------------------------------------------------------
    async def claim_run_slot(self, name: str, now: datetime) -> bool:
        """``True`` for the one caller that claims run ``name`` (a unique insert: atomic on FerretDB too)."""
        try:
            await self.db["job_runs"].insert_one({"_id": name, "at": now})
        except DuplicateKeyError:
            return False
        return True

    # ---- RFM models ------------------------------------------------------------------------------------
    async def save_rfm_model(self, channel_id: str, model: RfmModel) -> None:
        await self.rfm_models.replace_one(
            {"_id": channel_id}, {"_id": channel_id, **model.to_doc()}, upsert=True
        )

    async def rfm_models_by_channel(self) -> dict[str, RfmModel]:
        models: dict[str, RfmModel] = {}
        async for doc in self.rfm_models.find({}):
            channel_id = doc.pop("_id")
            models[channel_id] = RfmModel.from_doc(doc)
        return models
