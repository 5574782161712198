"""One member (a friend of one channel) and how each input changes it. Pure: no I/O.

A :class:`Member` is loaded, changed by any number of inputs (LINE activities, attribute updates, order
events, RFM scores) and written back as one document, with the :class:`Effects` of all of them. Guarantees
kept here, and where they come from:

* **Once per event** — kept in the same document as the state they changed (one document write is atomic):
  ``offsets``, the Kafka offset of the last input applied from each topic partition, so a record replayed
  after a crash or a rebalance is recognised exactly, however many inputs the member had in the batch (a
  member's inputs always come from the same partitions, in order); and ``seen``, the ids of the last
  :data:`SEEN_IDS` inputs, for the same event arriving again at a new offset (LINE redelivers an event that
  ingest did not acknowledge in time, within minutes).
* **Time order** — follow state only moves to an event newer than the one that set it (``follow_state_at``),
  so a redelivered, older unfollow never overrides a newer follow. Counters and first/last times are
  commutative (``+1``, ``min``, ``max``), so the order inputs arrive in does not matter for them.
* **Changes** — every applied input records what changed in :class:`Effects`; the caller bumps ``version``
  once per write and publishes one ``MemberChanged`` with the union.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tagline_contracts.attributes import MemberUpdated, RfmScored, TagGrant, TagOrigin
from tagline_contracts.members import AttributeValue, ChangeKind, FollowState, MemberChanged, MemberSnapshot
from tagline_contracts.orders import OrderEvent, OrderEventKind
from tagline_tagger.domain.activity import Activity, ActivityKind, OrderFacts
from tagline_tagger.domain.counts import Share
from tagline_tagger.domain.rfm import RfmModel, RfmValues
from tagline_tagger.domain.rules import RuleHit, RuleSet

SEEN_IDS = 32
"""Input ids remembered per member, for events that arrive again at a new offset (LINE redeliveries)."""

INTERACTIONS = frozenset(
    {
        ActivityKind.MESSAGE,
        ActivityKind.FOLLOW,
        ActivityKind.POSTBACK,
        ActivityKind.BEACON,
        ActivityKind.VIDEO_PLAY_COMPLETE,
        ActivityKind.ACCOUNT_LINK,
        ActivityKind.OTHER,
    }
)
"""Activities that count as the member interacting with the account (last-interaction recency)."""


@dataclass(slots=True)
class TagRecord:
    name: str
    origin: TagOrigin
    rule_id: str | None
    first_at: datetime
    last_at: datetime
    count: int
    expires_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "origin": self.origin.value,
            "rule_id": self.rule_id,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "count": self.count,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> TagRecord:
        return cls(
            name=doc["name"],
            origin=TagOrigin(doc["origin"]),
            rule_id=doc.get("rule_id"),
            first_at=doc["first_at"],
            last_at=doc["last_at"],
            count=doc["count"],
            expires_at=doc.get("expires_at"),
        )


@dataclass(slots=True)
class Rfm:
    """Raw recency/frequency/monetary kept incrementally, and the scores of the last model applied."""

    last_order_at: datetime | None = None
    orders: int = 0
    monetary: float = 0.0
    counted: list[str] = field(default_factory=list)
    """Orders counted (paid and not returned): an order is counted once."""
    recency_score: int | None = None
    frequency_score: int | None = None
    monetary_score: int | None = None
    model_id: str | None = None
    scored_at: datetime | None = None

    def values(self) -> RfmValues | None:
        if self.last_order_at is None or self.orders <= 0:
            return None
        return RfmValues(last_order_at=self.last_order_at, orders=self.orders, monetary=self.monetary)


@dataclass(slots=True)
class AutoReply:
    """A keyword rule's reply to the message that fired it (sent with the message's reply token: free)."""

    rule_id: str
    event_id: str
    reply_token: str
    received_at: datetime
    messages: tuple[dict[str, Any], ...]


@dataclass(slots=True)
class Effects:
    changes: list[ChangeKind] = field(default_factory=list)
    tags_added: list[str] = field(default_factory=list)
    tags_removed: list[str] = field(default_factory=list)
    replies: list[AutoReply] = field(default_factory=list)

    def change(self, kind: ChangeKind) -> None:
        if kind not in self.changes:
            self.changes.append(kind)

    def added(self, name: str) -> None:
        self.change(ChangeKind.TAGGED)
        if name in self.tags_removed:
            self.tags_removed.remove(name)
        elif name not in self.tags_added:
            self.tags_added.append(name)

    def removed(self, name: str) -> None:
        self.change(ChangeKind.UNTAGGED)
        if name in self.tags_added:
            self.tags_added.remove(name)
        elif name not in self.tags_removed:
            self.tags_removed.append(name)

    def __bool__(self) -> bool:
        return bool(self.changes or self.replies)


def member_key(channel_id: str, user_id: str) -> str:
    """The member document's ``_id`` and the Kafka key of every topic about the member."""
    return f"{channel_id}:{user_id}"


@dataclass(slots=True)
class Member:
    channel_id: str
    user_id: str
    version: int = 0
    follow_state: FollowState = FollowState.UNKNOWN
    follow_state_at: datetime | None = None
    first_followed_at: datetime | None = None
    last_followed_at: datetime | None = None
    blocked_at: datetime | None = None
    follow_count: int = 0
    last_interaction_at: datetime | None = None
    display_name: str | None = None
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    tags: dict[str, TagRecord] = field(default_factory=dict)
    rule_fired_at: dict[str, datetime] = field(default_factory=dict)
    rfm: Rfm = field(default_factory=Rfm)
    rfm_segment: str | None = None
    seen: list[str] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)
    """``"<topic>:<partition>"`` (dots as ``_``) → offset of the last record applied from it."""
    outbox: list[dict[str, Any]] = field(default_factory=list)
    """The messages the last write produced, republished when an input of that write is replayed."""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    share: Share | None = None
    """What the member adds to its channel's member counts as last written (``None``: never written)."""
    counted: Share | None = None
    """The share the channel's member counts hold for it (``None``: none); kept by the pipeline
    (``tagline_tagger.domain.counts``)."""

    @property
    def key(self) -> str:
        return member_key(self.channel_id, self.user_id)

    # ---- deduplication ---------------------------------------------------------------------------------
    def has_seen(self, event_id: str) -> bool:
        return event_id in self.seen

    def already_applied(self, event_id: str, position: str | None = None, offset: int | None = None) -> bool:
        """A Kafka replay of an applied record (by offset), or the same event again (by id)."""
        replay = position is not None and offset is not None and self.is_replay(position, offset)
        return replay or self.has_seen(event_id)

    def is_replay(self, position: str, offset: int) -> bool:
        """The record at ``offset`` of partition ``position`` was applied already (Kafka replayed it)."""
        return offset <= self.offsets.get(position, -1)

    def mark_seen(self, event_id: str, position: str | None = None, offset: int | None = None) -> None:
        self.seen.append(event_id)
        if len(self.seen) > SEEN_IDS:
            del self.seen[: len(self.seen) - SEEN_IDS]
        if position is not None and offset is not None:
            self.offsets[position] = max(offset, self.offsets.get(position, -1))

    # ---- inputs ----------------------------------------------------------------------------------------
    def apply_activity(self, activity: Activity, rules: RuleSet, effects: Effects) -> None:
        """A LINE event or a send result from/to this member, then the rules it fires."""
        if activity.kind is ActivityKind.FOLLOW:
            self._followed(activity, effects)
        elif activity.kind is ActivityKind.UNFOLLOW:
            self._unfollowed(activity.at, effects)
        if activity.kind in INTERACTIONS and (
            self.last_interaction_at is None or activity.at > self.last_interaction_at
        ):
            self.last_interaction_at = activity.at
            effects.change(ChangeKind.INTERACTED)
        self._fire(rules.hits(self.channel_id, activity), activity, effects)

    def apply_order(
        self, event: OrderEvent, event_id: str, rules: RuleSet, model: RfmModel | None, effects: Effects
    ) -> None:
        """An order change: keep R/F/M (an order counts once, when paid), then the order rules.

        Monetary (and so ``total_spend``) adds what the buyer spent on the goods, ``event.spend``: paid after
        discounts, without the shipping (the same basis as LINE POINTS, ``tagline_contracts.orders``)."""
        rfm = self.rfm
        at = event.placed_at
        if event.kind is OrderEventKind.PAID and event.order_id not in rfm.counted:
            rfm.counted.append(event.order_id)
            rfm.orders += 1
            rfm.monetary += event.spend
            if rfm.last_order_at is None or at > rfm.last_order_at:
                rfm.last_order_at = at
        elif event.kind is OrderEventKind.RETURNED and event.order_id in rfm.counted:
            rfm.counted.remove(event.order_id)
            rfm.orders -= 1
            rfm.monetary = max(0.0, rfm.monetary - event.spend)
        if model is not None and event.kind in (OrderEventKind.PAID, OrderEventKind.RETURNED):
            self._score(model, effects)
        activity = Activity(
            kind=ActivityKind.ORDER,
            event_id=event_id,
            at=at,
            order=OrderFacts(
                order_id=event.order_id,
                kind=event.kind.value,
                amount=event.amount,
                live=event.session_id is not None,
                total_spend=rfm.monetary,
            ),
        )
        self._fire(rules.hits(self.channel_id, activity), activity, effects)

    def apply_update(self, update: MemberUpdated, at: datetime, effects: Effects) -> None:
        """Attribute upserts (``None`` removes a key), profile, manual/import tags."""
        self._set_attributes(update.attributes, effects)
        if update.display_name is not None and update.display_name != self.display_name:
            self.display_name = update.display_name
            effects.change(ChangeKind.PROFILE_CHANGED)
        for grant in update.tags_add:
            self._grant(grant, at, effects)
        for name in update.tags_remove:
            if self.tags.pop(name, None) is not None:
                effects.removed(name)

    def apply_rfm(self, scored: RfmScored, effects: Effects) -> None:
        """Scores from a recomputation; an older model's scores never replace a newer one's."""
        rfm = self.rfm
        if rfm.scored_at is not None and scored.computed_at < rfm.scored_at:
            return
        rfm.recency_score, rfm.frequency_score, rfm.monetary_score = (
            scored.recency,
            scored.frequency,
            scored.monetary,
        )
        rfm.model_id, rfm.scored_at = scored.model_id, scored.computed_at
        if self.rfm_segment != scored.segment:
            self.rfm_segment = scored.segment
            effects.change(ChangeKind.RFM_CHANGED)

    def expire_tags(self, now: datetime, effects: Effects) -> None:
        for name in [name for name, record in self.tags.items() if not record.active(now)]:
            del self.tags[name]
            effects.removed(name)

    # ---- internals -------------------------------------------------------------------------------------
    def _followed(self, activity: Activity, effects: Effects) -> None:
        at = activity.at
        self.follow_count += 1
        if self.first_followed_at is None or at < self.first_followed_at:
            self.first_followed_at = at
        if self.last_followed_at is None or at > self.last_followed_at:
            self.last_followed_at = at
        if self.follow_state_at is None or at > self.follow_state_at:
            was_blocked = self.follow_state is FollowState.BLOCKED
            self.follow_state, self.follow_state_at = FollowState.FOLLOWED, at
            effects.change(ChangeKind.UNBLOCKED if activity.unblocked or was_blocked else ChangeKind.FOLLOWED)

    def _unfollowed(self, at: datetime, effects: Effects) -> None:
        if self.blocked_at is None or at > self.blocked_at:
            self.blocked_at = at
        if self.follow_state_at is None or at > self.follow_state_at:
            self.follow_state, self.follow_state_at = FollowState.BLOCKED, at
            effects.change(ChangeKind.BLOCKED)

    def _fire(self, hits: Iterable[RuleHit], activity: Activity, effects: Effects) -> None:
        for hit in hits:
            last = self.rule_fired_at.get(hit.rule_id)
            if (
                hit.cooldown_s is not None
                and last is not None
                and activity.at - last < timedelta(seconds=hit.cooldown_s)
            ):
                continue
            if last is None or activity.at > last:
                self.rule_fired_at[hit.rule_id] = activity.at
            self._grant(
                TagGrant(name=hit.tag, origin=hit.origin, rule_id=hit.rule_id, expires_at=hit.expires_at),
                activity.at,
                effects,
            )
            if hit.set_attributes:
                self._set_attributes(hit.set_attributes, effects)
            if hit.auto_reply and activity.reply_token and activity.active:
                effects.replies.append(
                    AutoReply(
                        rule_id=hit.rule_id,
                        event_id=activity.event_id,
                        reply_token=activity.reply_token,
                        received_at=activity.at,
                        messages=hit.auto_reply,
                    )
                )

    def _set_attributes(self, attributes: dict[str, AttributeValue], effects: Effects) -> None:
        changed = False
        for key, value in attributes.items():
            if value is None:
                if key in self.attributes:
                    del self.attributes[key]
                    changed = True
            elif key not in self.attributes or self.attributes[key] != value:
                self.attributes[key] = value
                changed = True
        if changed:
            effects.change(ChangeKind.ATTRIBUTES_CHANGED)

    def _grant(self, grant: TagGrant, at: datetime, effects: Effects) -> None:
        record = self.tags.get(grant.name)
        if record is None:
            self.tags[grant.name] = TagRecord(
                name=grant.name,
                origin=grant.origin,
                rule_id=grant.rule_id,
                first_at=at,
                last_at=at,
                count=1,
                expires_at=grant.expires_at,
            )
            effects.added(grant.name)
            return
        record.count += 1
        record.first_at = min(record.first_at, at)
        record.last_at = max(record.last_at, at)
        if grant.rule_id is not None:
            record.rule_id = grant.rule_id
        if record.expires_at is not None:
            # A grant without expiry makes the tag permanent; otherwise the later expiry wins.
            record.expires_at = None if grant.expires_at is None else max(record.expires_at, grant.expires_at)

    def _score(self, model: RfmModel, effects: Effects) -> None:
        values = self.rfm.values()
        if values is None:
            if self.rfm_segment is not None:
                self.rfm_segment = None
                effects.change(ChangeKind.RFM_CHANGED)
            return
        score = model.score(values, now=max(model.computed_at, values.last_order_at))
        rfm = self.rfm
        rfm.recency_score, rfm.frequency_score, rfm.monetary_score = (
            score.recency,
            score.frequency,
            score.monetary,
        )
        rfm.model_id, rfm.scored_at = model.model_id, model.computed_at
        if self.rfm_segment != score.segment:
            self.rfm_segment = score.segment
            effects.change(ChangeKind.RFM_CHANGED)

    # ---- views -----------------------------------------------------------------------------------------
    def active_tags(self, now: datetime) -> list[str]:
        return sorted(name for name, record in self.tags.items() if record.active(now))

    def snapshot(self, now: datetime) -> MemberSnapshot:
        return MemberSnapshot(
            user_id=self.user_id,
            follow_state=self.follow_state,
            first_followed_at=self.first_followed_at,
            last_followed_at=self.last_followed_at,
            blocked_at=self.blocked_at,
            follow_count=self.follow_count,
            last_interaction_at=self.last_interaction_at,
            display_name=self.display_name,
            attributes=dict(self.attributes),
            tags=self.active_tags(now),
            rfm_segment=self.rfm_segment,
        )

    def changed(self, effects: Effects, now: datetime) -> MemberChanged:
        """Bump the version for one write and describe it."""
        self.version += 1
        return MemberChanged(
            user_id=self.user_id,
            version=self.version,
            changes=effects.changes,
            tags_added=effects.tags_added,
            tags_removed=effects.tags_removed,
            snapshot=self.snapshot(now),
        )
