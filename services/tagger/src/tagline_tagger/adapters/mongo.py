"""The tagger's MongoDB (or FerretDB) collections.

* ``members`` — one document per (channel, user), ``_id`` = ``channel:userId``. Written only by the tagger
  instance that owns the member's Kafka partition (``tagline_tagger.pipeline``), always as a whole document
  (``replace_one`` upsert by ``_id``), so every write is atomic and there is never a second writer to race.
  Segment fields are stored where ``tagline_contracts.segments.DEFAULT_FIELDS`` expects them:
  ``follow_state``, ``tags`` (active tag names), ``attributes``, ``last_interaction_at``, ``rfm_segment``.
  ``expiry_bucket`` (the minute of ``next_expiry``) is what the expired-tag sweep looks members up by, and
  ``counted`` is the member's share in the counts below before its last write (``domain.counts``).
* ``member_counts`` — one document per channel (``_id`` = channel): members per follow state and the tag
  coverage of followed members, kept by the pipelines with ``$inc`` as they write members (every instance
  adds to the same document: ``$inc`` is atomic on MongoDB and on the project's FerretDB build).
* ``sweeps`` — per channel, the last minute bucket the expired-tag sweep has finished.
* ``rules`` — keyword and behavior rules (HTTP API); every instance reloads its channels' rules every few
  seconds.
* ``rfm_models`` — the latest RFM model per channel (``_id`` = channel).

Every query on a hot path goes by ``_id`` or an equality on indexed top-level fields (:data:`HOT_QUERIES`):
those are what FerretDB answers from an index; ``$in``, ranges, ``$or``, sorts and counts read the whole
collection there. Members are read one ``find_one`` per id, concurrently, never with ``$in``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tagline_contracts.members import FollowState
from tagline_platform.mongo import HotQuery
from tagline_tagger.domain.counts import Counter, MemberCounts, Share, absorbed
from tagline_tagger.domain.member import Member, Rfm, TagRecord
from tagline_tagger.domain.rfm import RfmModel

Doc = dict[str, Any]

BULK_BATCH = 1_000
"""Most statements per ``bulk_write`` command: bounds one command's size, not a workaround (the project's
FerretDB build runs bulk writes of thousands of statements)."""

_CHANNEL = "1234567890"
_USER = "U4af4980629a0c6b9f2dc7d0b3e1a0c2d"

HOT_QUERIES: tuple[HotQuery, ...] = (
    HotQuery(
        "members",
        {"_id": f"{_CHANNEL}:{_USER}"},
        "a member by id: each member of a pipeline batch (find_one, then its replace_one), the API's member "
        "reads and tag requests",
    ),
    HotQuery(
        "members",
        {"channel_id": _CHANNEL, "expiry_bucket": "20261201T1005"},
        "the expired-tag sweep: members whose next tag expiry falls in one minute (every sweep, per channel)",
    ),
    HotQuery(
        "member_counts",
        {"_id": _CHANNEL},
        "a channel's member counts: read for coverage (API, gauges) and once per rebalance by the "
        "pipeline; $inc by every batch that changes a member's share",
    ),
    HotQuery("sweeps", {"_id": _CHANNEL}, "where the expired-tag sweep of a channel has got to"),
    HotQuery("rules", {"_id": "01JF3Z8M6Q4W2N7B5V9C1X0K8T"}, "a rule by id (API read, replace, delete)"),
    HotQuery(
        "rules",
        {"channel_id": _CHANNEL},
        "a channel's rules: every instance reloads them every few seconds; the API lists them",
    ),
)
"""Every query shape this store runs on a hot path (checked by ``tests/storage``). Not hot, and full scans
on FerretDB by design: the segment API (``find_members``, ``count_members``: an operator's query over a
whole segment, any filter), the RFM recomputation (``rfm_rows``: a daily batch over the channel's buyers)
and the RFM models read at start-up."""

EXPIRY_BUCKET_FORMAT = "%Y%m%dT%H%M"


def expiry_bucket(at: datetime) -> str:
    """The minute of ``at`` (UTC) as the sweep looks members up by it; sorts as time does."""
    return at.astimezone(UTC).strftime(EXPIRY_BUCKET_FORMAT)


def _escape(name: str) -> str:
    """A tag or origin name as a field name (tag names may hold ``.`` and ``$``)."""
    return name.replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def _unescape(field: str) -> str:
    return field.replace("%24", "$").replace("%2E", ".").replace("%25", "%")


def counter_field(counter: Counter) -> str:
    """Where a counter is kept in a ``member_counts`` document."""
    group, name = counter
    return f"{group}.{_escape(name)}" if name else group


def _named(doc: Mapping[str, Any] | None) -> dict[str, int]:
    return {_unescape(key): int(n) for key, n in (doc or {}).items() if n}


def member_to_doc(member: Member, now: datetime) -> Doc:
    """The member's document as written at ``now``; ``counted`` is ``member.counted`` (the pipeline sets it
    after the counts include the write)."""
    expiries = [record.expires_at for record in member.tags.values() if record.expires_at is not None]
    next_expiry = min(expiries) if expiries else None
    share = Share.of(member, now)
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
        "tags": list(share.tags),
        "tag_origins": list(share.origins),
        "tag_records": [record.to_doc() for record in member.tags.values()],
        "next_expiry": next_expiry,
        "expiry_bucket": expiry_bucket(next_expiry) if next_expiry is not None else None,
        "counted": member.counted.to_doc() if member.counted is not None else None,
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


def share_of_doc(doc: Doc) -> Share:
    """The share a member document adds to its channel's counts once its write is counted."""
    return Share(
        doc.get("follow_state", FollowState.UNKNOWN.value),
        tuple(doc.get("tags") or ()),
        tuple(doc.get("tag_origins") or ()),
    )


def member_from_doc(doc: Doc, through: Mapping[str, int] | None = None) -> Member:
    """The member of ``doc``; with ``through`` (its channel's counted offsets, ``domain.counts``) also the
    share the channel's counts hold for it."""
    rfm = doc.get("rfm") or {}
    share = share_of_doc(doc)
    offsets = dict(doc.get("offsets") or {})
    if through is not None and absorbed(offsets, through):
        counted: Share | None = share
    else:
        counted = Share.from_doc(doc.get("counted"))
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
        offsets=offsets,
        outbox=list(doc.get("outbox") or []),
        created_at=doc.get("created_at"),
        updated_at=doc.get("updated_at"),
        share=share,
        counted=counted,
    )


MEMBER_VIEW = {
    "seen": 0,
    "offsets": 0,
    "outbox": 0,
    "rule_fired_at": 0,
    "rfm.counted": 0,
    "counted": 0,
    "expiry_bucket": 0,
}
"""What the HTTP API does not show of a member document."""


class TaggerStore:
    def __init__(self, db: AsyncDatabase[Doc], *, lookup_concurrency: int = 32) -> None:
        self.db = db
        self.members = db["members"]
        self.member_counts = db["member_counts"]
        self.sweeps = db["sweeps"]
        self.rules = db["rules"]
        self.rfm_models = db["rfm_models"]
        self._lookups = asyncio.Semaphore(lookup_concurrency)

    async def ensure_indexes(self) -> None:
        """The indexes :data:`HOT_QUERIES` use (``_id`` needs none), and one for the segment API on MongoDB.

        Each index of ``members`` costs every member write (the tagger's busiest statement), so there is
        none that no query uses."""
        await self.members.create_index([("channel_id", ASCENDING), ("follow_state", ASCENDING)])
        await self.members.create_index([("channel_id", ASCENDING), ("expiry_bucket", ASCENDING)])
        await self.rules.create_index([("channel_id", ASCENDING)])

    # ---- members ---------------------------------------------------------------------------------------
    async def load_members(
        self, keys: Iterable[str], through: Mapping[str, Mapping[str, int]] | None = None
    ) -> dict[str, Member]:
        """The stored members among ``keys`` (missing ones are absent from the result).

        ``through``: channel → its counted offsets (:meth:`load_counts`), to tell each member's counted share
        (``Member.counted``); without it that is the share before the member's last write."""

        async def one(key: str) -> Doc | None:
            async with self._lookups:
                return await self.members.find_one({"_id": key})

        wanted = list(keys)
        docs = await asyncio.gather(*(one(key) for key in wanted))
        return {
            doc["_id"]: member_from_doc(doc, None if through is None else through.get(doc["channel_id"], {}))
            for doc in docs
            if doc is not None
        }

    async def save_members(self, members: Sequence[Member], now: datetime) -> None:
        """Write each member whole (one atomic document write each; order between members is irrelevant)."""
        ops = [ReplaceOne({"_id": m.key}, member_to_doc(m, now), upsert=True) for m in members]
        for start in range(0, len(ops), BULK_BATCH):
            await self.members.bulk_write(ops[start : start + BULK_BATCH], ordered=False)

    async def get_member(self, channel_id: str, user_id: str) -> Doc | None:
        return await self.members.find_one({"_id": f"{channel_id}:{user_id}"}, MEMBER_VIEW)

    async def member_exists(self, channel_id: str, user_id: str) -> bool:
        return await self.members.find_one({"_id": f"{channel_id}:{user_id}"}, {"_id": 1}) is not None

    async def find_members(
        self, channel_id: str, query: Doc, *, after: str | None, limit: int, fields: Doc | None = None
    ) -> list[Doc]:
        """A page of a segment, in user id order (the segment API: a scan of the channel, not a hot path)."""
        conditions: list[Doc] = [{"channel_id": channel_id}, query]
        if after is not None:
            conditions.append({"user_id": {"$gt": after}})
        cursor = (
            self.members.find({"$and": conditions}, fields or MEMBER_VIEW).sort("user_id", 1).limit(limit)
        )
        return [doc async for doc in cursor]

    async def count_members(self, channel_id: str, query: Doc) -> int:
        """Members of a segment (the segment API: any filter, so a count over the channel; not a hot path —
        the figures asked for often are counters, :meth:`load_counts`)."""
        return await self.members.count_documents({"$and": [{"channel_id": channel_id}, query]})

    async def rfm_rows(self, channel_id: str) -> AsyncIterator[Doc]:
        """Buyers' raw R/F/M values and current scores, streamed in batches of 10,000.

        The RFM recomputation's read: a batch job (daily, or on request), not a hot path. Only the
        ``channel_id`` equality is answered from an index on FerretDB; ``rfm.orders > 0`` (a dotted range) is
        checked on each of the channel's members as they stream by."""
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

    # ---- member counts ---------------------------------------------------------------------------------
    async def load_counts(self, channel_id: str) -> MemberCounts:
        """The channel's member counts and the offsets they are counted through (zero if none yet)."""
        doc = await self.member_counts.find_one({"_id": channel_id})
        if doc is None:
            return MemberCounts.empty()
        return MemberCounts(
            members=_named(doc.get("members")),
            tagged=int(doc.get("tagged", 0)),
            by_tag=_named(doc.get("by_tag")),
            by_origin=_named(doc.get("by_origin")),
            through={position: int(n) for position, n in (doc.get("through") or {}).items()},
            since=doc.get("since"),
        )

    async def add_counts(
        self, channel_id: str, delta: Mapping[Counter, int], through: Mapping[str, int], now: datetime
    ) -> None:
        """Add ``delta`` to the channel's counts and move its counted offsets up to ``through``, in one update
        (atomic: instances owning other partitions add to the same document at the same time)."""
        update: Doc = {
            "$max": {f"through.{position}": offset for position, offset in through.items()},
            "$min": {"since": now},
        }
        if delta:
            update["$inc"] = {counter_field(counter): n for counter, n in delta.items()}
        try:
            await self.member_counts.update_one({"_id": channel_id}, update, upsert=True)
        except DuplicateKeyError:  # two first writers upserted at once; the document exists now
            await self.member_counts.update_one({"_id": channel_id}, update)

    # ---- the expired-tag sweep -------------------------------------------------------------------------
    async def expiring_members(self, channel_id: str, bucket: str) -> AsyncIterator[tuple[str, datetime]]:
        """``(user_id, next_expiry)`` of the channel's members whose next tag expiry is in that minute."""
        cursor = self.members.find(
            {"channel_id": channel_id, "expiry_bucket": bucket}, {"_id": 0, "user_id": 1, "next_expiry": 1}
        )
        async for doc in cursor:
            if doc.get("next_expiry") is not None:
                yield doc["user_id"], doc["next_expiry"]

    async def swept_through(self, channel_id: str) -> str | None:
        """The last minute bucket the sweep of the channel has finished (``None``: never swept)."""
        doc = await self.sweeps.find_one({"_id": channel_id})
        return None if doc is None else str(doc["through"])

    async def mark_swept(self, channel_id: str, bucket: str) -> None:
        await self.sweeps.update_one({"_id": channel_id}, {"$max": {"through": bucket}}, upsert=True)

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
        """The channel's rules by id (every channel's without one: a scan, for tools only)."""
        query = {} if channel_id is None else {"channel_id": channel_id}
        docs = [doc async for doc in self.rules.find(query)]
        return sorted(docs, key=lambda doc: str(doc["_id"]))  # sorted here: a sort is a scan on FerretDB

    # ---- scheduled jobs --------------------------------------------------------------------------------
    async def claim_run_slot(self, name: str, now: datetime) -> bool:
        """``True`` for the one caller that claims run ``name`` (a unique insert)."""
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
        """Every channel's model (read once at start-up: one small document per channel)."""
        models: dict[str, RfmModel] = {}
        async for doc in self.rfm_models.find({}):
            channel_id = doc.pop("_id")
            models[channel_id] = RfmModel.from_doc(doc)
        return models
