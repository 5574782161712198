"""The member pipeline: batches of member inputs → member documents → ``member.changes.v1`` and auto-replies.

One FastStream batch subscriber consumes ``line.events.v1``, ``member.attributes.v1`` and ``shop.orders.v1``
with Kafka's range assignor. All three are keyed ``channel:userId`` and have the same partition count, so the
range assignor gives partition *p* of every topic to the same instance: **the instance that owns a member's
partition is the only writer of that member's document**. That is what makes the read-modify-write below
safe without transactions or conditional updates (which FerretDB does not apply atomically), and what lets
an instance keep the members it owns in a cache (cleared on every rebalance).

Per batch: decode (bad input → DLQ), group the inputs by member keeping their order, load the members (cache,
else one ``find_one`` by ``_id`` each, concurrently), apply each input once (``Member.seen``), write every
changed member whole in one unordered bulk write, add what the batch changed to each channel's member counts
(one ``$inc`` per channel, ``tagline_tagger.domain.counts``), then publish what the writes produced, then
return so the offsets are committed. A crash anywhere before the commit replays the batch: inputs already
written are recognised as seen, their counts are taken again only if the counts did not include them yet,
and the messages their write produced (kept in the member's ``outbox``, written with it) are published
again; consumers drop them by version (member changes) or idempotency key (auto-replies).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError

from tagline_contracts import topics
from tagline_contracts.attributes import (
    MEMBER_UPDATED_SCHEMA,
    RFM_SCORED_SCHEMA,
    MemberUpdated,
    MemberUpdatedEvent,
    RfmScored,
    RfmScoredEvent,
)
from tagline_contracts.envelope import LineEventReceived
from tagline_contracts.members import MemberChangedEvent
from tagline_contracts.orders import OrderEvent, OrderEventRecord
from tagline_contracts.sending import (
    ReplyContext,
    SendCategory,
    SendMessages,
    SendRequested,
    UserTarget,
    send_request_key,
)
from tagline_platform.deadletters import reason
from tagline_platform.kafka import Outgoing
from tagline_tagger.adapters.mongo import TaggerStore
from tagline_tagger.domain.activity import Activity
from tagline_tagger.domain.counts import Counter, Share, absorbed, add, advance, difference
from tagline_tagger.domain.member import AutoReply, Effects, Member, member_key
from tagline_tagger.domain.rfm import RfmModel
from tagline_tagger.domain.rules import RuleSet
from tagline_tagger.metrics import TaggerMetrics
from tagline_tagger.translate import member_activity

log = logging.getLogger("tagline.tagger.pipeline")

MEMBER_TOPICS = (topics.LINE_EVENTS, topics.MEMBER_ATTRIBUTES, topics.SHOP_ORDERS)
"""The co-partitioned topics of the member pipeline (all keyed ``channel:userId``)."""

Input = Activity | MemberUpdated | RfmScored | OrderEvent


@dataclass(frozen=True, slots=True)
class MemberInput:
    channel_id: str
    user_id: str
    event_id: str
    at: datetime
    item: Input
    position: str | None = None
    """``"<topic>:<partition>"`` the record came from (see ``Member.offsets``)."""
    offset: int | None = None


class Undecodable(ValueError):
    """A record that is not a valid message of its topic."""


def decode(topic: str, value: bytes | None) -> MemberInput | None:
    """The member input in a record of logical ``topic``; ``None`` for a valid record that changes no member.

    Raises :class:`pydantic.ValidationError` or :class:`Undecodable` for bad input.
    """
    if value is None:
        raise Undecodable("empty record")
    if topic == topics.LINE_EVENTS:
        envelope = LineEventReceived.model_validate_json(value)
        found = member_activity(envelope)
        if found is None:
            return None
        user_id, activity = found
        return MemberInput(envelope.channel_id, user_id, envelope.event_id, activity.at, activity)
    if topic == topics.SHOP_ORDERS:
        order = OrderEventRecord.model_validate_json(value)
        return MemberInput(
            order.channel_id, order.payload.user_id, order.event_id, order.occurred_at, order.payload
        )
    if topic == topics.MEMBER_ATTRIBUTES:
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise Undecodable(f"invalid JSON: {exc}") from exc
        schema = data.get("schema") if isinstance(data, dict) else None
        if schema == MEMBER_UPDATED_SCHEMA:
            update = MemberUpdatedEvent.model_validate(data)
            return MemberInput(
                update.channel_id, update.payload.user_id, update.event_id, update.occurred_at, update.payload
            )
        if schema == RFM_SCORED_SCHEMA:
            scored = RfmScoredEvent.model_validate(data)
            return MemberInput(
                scored.channel_id, scored.payload.user_id, scored.event_id, scored.occurred_at, scored.payload
            )
        raise Undecodable(
            f"unknown schema {schema!r} (expected {MEMBER_UPDATED_SCHEMA} or {RFM_SCORED_SCHEMA})"
        )
    raise Undecodable(f"topic {topic!r} is not a member topic")


class MemberCache:
    """Members this instance owns, most recently used last; valid only while its partitions stay assigned."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._members: OrderedDict[str, Member] = OrderedDict()

    def get(self, key: str) -> Member | None:
        member = self._members.get(key)
        if member is not None:
            self._members.move_to_end(key)
        return member

    def put(self, member: Member) -> None:
        self._members[member.key] = member
        self._members.move_to_end(member.key)
        while len(self._members) > self._capacity:
            self._members.popitem(last=False)

    def clear(self) -> None:
        self._members.clear()

    def __len__(self) -> int:
        return len(self._members)


def unknown_channel(channel_id: str) -> str:
    """The reason a record of a channel the tagger does not serve is dead-lettered."""
    return f"channel {channel_id} is not one of this tagger's channels (TAGLINE_TAGGER_CHANNELS)"


@dataclass
class Counting:
    """One batch's change to the member counts, and what each member's counted share is once it is stored."""

    delta: dict[str, dict[Counter, int]] = field(default_factory=dict)
    """Channel → what to add to its counters."""
    last: dict[str, int] = field(default_factory=dict)
    """The batch's last offset per partition: the counts of the batch's channels include them after it."""
    through: dict[str, dict[str, int]] = field(default_factory=dict)
    """Channel → its counted offsets after the batch."""
    settle: list[tuple[Member, Share | None, Share | None]] = field(default_factory=list)
    """``(member, its share as written, its counted share)`` after the batch."""

    async def commit(self, store: TaggerStore, now: datetime) -> None:
        """Store the counts (after the members are written), then set the members' shares in memory.

        Every channel of the batch is written, also with nothing to add: its counted offsets must reach every
        input applied, or a member whose last input came from a partition that goes quiet would never count
        as counted again."""
        await asyncio.gather(
            *(
                store.add_counts(channel, self.delta.get(channel, {}), self.last, now)
                for channel in sorted(self.through)
            )
        )
        for member, share, counted in self.settle:
            member.share, member.counted = share, counted


PublishAll = Callable[[Sequence[Outgoing]], Awaitable[None]]
DeadLetter = Callable[[str, Any, str], Awaitable[None]]


class MemberPipeline:
    def __init__(
        self,
        store: TaggerStore,
        *,
        rules: Callable[[], RuleSet],
        models: Callable[[str], RfmModel | None],
        publish_all: PublishAll,
        dead_letter: DeadLetter,
        channels: frozenset[str],
        topic_of: Callable[[str], str],
        clock: Callable[[], datetime],
        metrics: TaggerMetrics,
        cache_size: int = 200_000,
        reply_ttl: timedelta = timedelta(seconds=25),
    ) -> None:
        self._store = store
        self._rules = rules
        self._models = models
        self._publish_all = publish_all
        self._dead_letter = dead_letter
        self._channels = channels
        self._clock = clock
        self._metrics = metrics
        self._reply_ttl = reply_ttl
        self.cache = MemberCache(cache_size)
        self._through: dict[str, dict[str, int]] = {}
        """Channel → the offsets its member counts include, as this instance last read or moved them (valid
        for the partitions it owns while they stay assigned, like the cache)."""
        # physical topic name → logical topic name (tests and deployments prefix topic names)
        self._logical = {topic_of(name): name for name in MEMBER_TOPICS}
        self._changes_topic = topic_of(topics.MEMBER_CHANGES)
        self._requests_topic = topic_of(topics.SEND_REQUESTS)

    def partitions_changed(self) -> None:
        """A rebalance: members of partitions this instance lost may now be written elsewhere."""
        self.forget()

    def forget(self) -> None:
        """Drop what this instance knows of members and counts (read again from the store when needed)."""
        self.cache.clear()
        self._through.clear()

    async def handle(self, records: Sequence[Any]) -> None:
        """Apply one batch of aiokafka records; raises (after clearing the cache) when it must be replayed."""
        try:
            await self._handle(records)
        except Exception:
            self.forget()  # cached members and counts may hold changes that were never written
            raise

    async def _by_member(self, records: Sequence[Any]) -> tuple[dict[str, list[MemberInput]], dict[str, int]]:
        """The batch's member inputs, grouped by member in their order (bad input dead-lettered), and the last
        offset of each partition in the batch."""
        by_member: dict[str, list[MemberInput]] = {}
        last: dict[str, int] = {}
        for record in records:
            logical = self._logical.get(record.topic, record.topic)
            advance(last, [(f"{logical.replace('.', '_')}:{record.partition}", record.offset)])
            try:
                found = decode(logical, record.value)
            except (ValidationError, ValueError) as exc:
                self._metrics.inputs.labels(logical, "invalid").inc()
                await self._dead_letter(logical, record, reason(exc))
                continue
            if found is None:
                self._metrics.inputs.labels(logical, "ignored").inc()
                continue
            if found.channel_id not in self._channels:
                # Kept out rather than creating members of a channel the API would answer 404 for; replay the
                # dead letters (python -m tagline_platform.dlq replay) once the channel is configured.
                self._metrics.inputs.labels(logical, "unknown_channel").inc()
                await self._dead_letter(logical, record, unknown_channel(found.channel_id))
                continue
            position = f"{logical.replace('.', '_')}:{record.partition}"
            located = replace(found, position=position, offset=record.offset)
            by_member.setdefault(member_key(found.channel_id, found.user_id), []).append(located)
        return by_member, last

    async def _handle(self, records: Sequence[Any]) -> None:
        now = self._clock()
        by_member, last = await self._by_member(records)
        if not by_member:
            return

        through = await self._counted_through({inputs[0].channel_id for inputs in by_member.values()})
        members = await self._members(by_member, through)
        rules = self._rules()
        to_save: list[Member] = []
        outgoing: list[Outgoing] = []
        duplicates = 0
        for key, inputs in by_member.items():
            member = members[key]
            effects = Effects()
            applied = replayed = False
            for item in inputs:
                if member.already_applied(item.event_id, item.position, item.offset):
                    replayed = True
                    duplicates += 1
                    continue
                self._apply(member, item, rules, effects)
                member.mark_seen(item.event_id, item.position, item.offset)
                applied = True
            if not applied:
                if replayed:  # the write of these inputs may have happened without its publish
                    outgoing.extend(Outgoing.from_doc(doc) for doc in member.outbox)
                continue
            member.expire_tags(now, effects)
            produced = self._messages(member, effects, now)
            member.outbox = [message.to_doc() for message in produced]
            to_save.append(member)
            outgoing.extend(produced)

        counting = self._count(
            by_member, members, written={m.key for m in to_save}, through=through, last=last, now=now
        )
        await self._store.save_members(to_save, now)  # each document with its counted share before this write
        await counting.commit(self._store, now)
        self._through.update(counting.through)
        for member in to_save:
            self.cache.put(member)
        await self._publish_all(outgoing)
        applied_count = sum(len(v) for v in by_member.values()) - duplicates
        self._metrics.applied.inc(applied_count)
        self._metrics.duplicates.inc(duplicates)
        self._metrics.writes.inc(len(to_save))

    async def _counted_through(self, channels: set[str]) -> dict[str, dict[str, int]]:
        """Each channel's counted offsets (read from its member counts the first time after a rebalance)."""
        missing = sorted(channels - self._through.keys())
        loaded = await asyncio.gather(*(self._store.load_counts(channel) for channel in missing))
        for channel, counts in zip(missing, loaded, strict=True):
            self._through[channel] = dict(counts.through)
        return {channel: self._through[channel] for channel in channels}

    def _count(
        self,
        by_member: dict[str, list[MemberInput]],
        members: dict[str, Member],
        *,
        written: set[str],
        through: dict[str, dict[str, int]],
        last: dict[str, int],
        now: datetime,
    ) -> Counting:
        """What the batch changes in each channel's member counts (``tagline_tagger.domain.counts``).

        A member is counted when the batch's offsets cover every input applied to it: always, except in a
        replay of a crashed batch that ends before the crashed one did (the rest is counted with the batch
        that replays it). Members of the batch that are not written (replayed inputs only) are counted too:
        their write may be the one whose counting the crash interrupted."""
        counting = Counting(last=last)
        for key, inputs in by_member.items():
            member = members[key]
            channel = inputs[0].channel_id
            after = counting.through.get(channel)
            if after is None:
                after = counting.through[channel] = dict(through[channel])
                advance(after, last.items())
            share = Share.of(member, now) if key in written else member.share
            if not absorbed(member.offsets, after):
                counting.settle.append((member, share, member.counted))
                continue
            if share != member.counted:
                add(counting.delta.setdefault(channel, {}), difference(member.counted, share))
            counting.settle.append((member, share, share))
        return counting

    async def _members(
        self, by_member: dict[str, list[MemberInput]], through: dict[str, dict[str, int]]
    ) -> dict[str, Member]:
        found: dict[str, Member] = {}
        missing: list[str] = []
        for key in by_member:
            cached = self.cache.get(key)
            if cached is None:
                missing.append(key)
            else:
                found[key] = cached
        if missing:
            found.update(await self._store.load_members(missing, through))
            now = self._clock()
            for key in missing:
                if key not in found:
                    first = by_member[key][0]
                    found[key] = Member(channel_id=first.channel_id, user_id=first.user_id, created_at=now)
        return found

    def _apply(self, member: Member, item: MemberInput, rules: RuleSet, effects: Effects) -> None:
        payload = item.item
        if isinstance(payload, Activity):
            member.apply_activity(payload, rules, effects)
        elif isinstance(payload, OrderEvent):
            member.apply_order(payload, item.event_id, rules, self._models(member.channel_id), effects)
        elif isinstance(payload, MemberUpdated):
            member.apply_update(payload, item.at, effects)
        else:
            member.apply_rfm(payload, effects)

    def _messages(self, member: Member, effects: Effects, now: datetime) -> list[Outgoing]:
        produced: list[Outgoing] = []
        if effects.changes:
            change = member.changed(effects, now)
            envelope = MemberChangedEvent(
                event_id=f"{member.key}:{change.version}",
                channel_id=member.channel_id,
                occurred_at=now,
                produced_at=now,
                payload=change,
            )
            produced.append(Outgoing.of(self._changes_topic, member.key, envelope))
        for reply in effects.replies:
            if now - reply.received_at > self._reply_ttl:
                continue  # the reply token is stale: a paid push is not what an auto-reply is for
            produced.append(self._reply(member, reply, now))
        return produced

    def _reply(self, member: Member, reply: AutoReply, now: datetime) -> Outgoing:
        key = f"autoreply:{reply.rule_id}:{reply.event_id}"
        command = SendMessages(
            idempotency_key=key,
            category=SendCategory.TRANSACTIONAL,
            messages=list(reply.messages),
            target=UserTarget(user_id=member.user_id),
            reply=ReplyContext(token=reply.reply_token, received_at=reply.received_at),
            expires_at=reply.received_at + self._reply_ttl,  # after that the sender drops it, never pushes
            labels={"source": "tagger", "rule_id": reply.rule_id},
        )
        envelope = SendRequested(
            event_id=key,
            channel_id=member.channel_id,
            occurred_at=reply.received_at,
            produced_at=now,
            payload=command,
        )
        return Outgoing.of(
            self._requests_topic, send_request_key(member.channel_id, command.target), envelope
        )
