"""Journeys at run time: enrollment from ``member.changes.v1``, the step scheduler, stats from results.

Where the guarantees come from:

- **A member is in a journey at most once at a time**: one enrollment document per (journey, member); a new
  round replaces a finished one only if the journey's re-entry policy allows it (``domain.journeys``), and
  only if the document is still as it was read (one conditional update; else it is read again).
- **A step is sent exactly once**: a scheduler claims the due step with one conditional update (on the round
  and step it read, and no live claim), sends it, and moves the enrollment on only if it is still at that
  step; the send request's idempotency key is ``journey:<journey>:<user>:<round>:<step>``, so a step
  published again after a crash (between the publish and the enrollment update; the claim runs out) is
  dropped by the planner. Any number of schedulers may run.
- **Steps survive restarts**: due times are stored; a step found late is sent or skipped by the journey's
  catch-up rule.
- Steps are ``marketing`` send requests, so the planner holds them back for quota headroom (deferred, not
  lost) and the dispatcher keeps the rate limits.
- Stats are counts of once-only facts (``adapters.journeys``): entered, sent (requested), nothing (a branch
  without messages), skipped (late), accepted / deferred / failed (from ``send.results.v1``), exited
  (blocked), blocked within 48 h of a step, completed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from tagline_contracts import topics
from tagline_contracts.envelope import new_event_id
from tagline_contracts.members import FollowState, MemberChanged, MemberSnapshot
from tagline_contracts.segments import matches
from tagline_contracts.sending import (
    SendCategory,
    SendMessages,
    SendRequested,
    SendResult,
    UserTarget,
    send_request_key,
)
from tagline_platform.errors import InfrastructureUnavailable
from tagline_platform.kafka import Outgoing
from tagline_sender.adapters.journeys import Doc, JourneyStore, enrollment_id
from tagline_sender.domain.journeys import (
    EnrollmentState,
    JourneySpec,
    LateAction,
    SegmentEntered,
    choose,
    due_at,
    is_active,
    late_action,
    may_enroll,
    triggered,
)

log = logging.getLogger("tagline.sender.journeys")

BLOCK_WINDOW = timedelta(hours=48)
STEP_LEASE = timedelta(seconds=60)
"""How long a scheduler's claim of a due step lasts; one that crashed is replaced after it (and the step's
send request, published again, is dropped by the planner as a duplicate)."""
JOURNEY_WAIT = timedelta(hours=1)
"""A due step of a disabled journey is looked at again after this long (or when the journey is enabled)."""
WRITE_ATTEMPTS = 5
Publish = Callable[[Outgoing], Awaitable[None]]


class JourneyCache:
    """Every journey definition, reloaded periodically by each instance."""

    def __init__(self, store: JourneyStore) -> None:
        self._store = store
        self._by_id: dict[str, tuple[str, JourneySpec]] = {}
        self._during_refresh: dict[str, tuple[str, JourneySpec] | None] | None = None

    async def refresh(self) -> None:
        # changes this instance makes while the reload reads are kept (the read may predate them)
        self._during_refresh = {}
        loaded: dict[str, tuple[str, JourneySpec]] = {}
        for doc in await self._store.list_journeys():
            try:
                loaded[doc["_id"]] = (doc["channel_id"], JourneySpec.model_validate(doc["spec"]))
            except ValidationError:
                log.exception("stored journey is not valid; ignored", extra={"journey_id": doc["_id"]})
        for journey_id, value in self._during_refresh.items():
            if value is None:
                loaded.pop(journey_id, None)
            else:
                loaded[journey_id] = value
        self._by_id = loaded
        self._during_refresh = None

    def put(self, journey_id: str, channel_id: str, spec: JourneySpec | None) -> None:
        value = None if spec is None else (channel_id, spec)
        if value is None:
            self._by_id.pop(journey_id, None)
        else:
            self._by_id[journey_id] = value
        if self._during_refresh is not None:
            self._during_refresh[journey_id] = value

    def get(self, journey_id: str) -> JourneySpec | None:
        found = self._by_id.get(journey_id)
        return found[1] if found else None

    def of_channel(self, channel_id: str) -> list[tuple[str, JourneySpec]]:
        return [(jid, spec) for jid, (channel, spec) in self._by_id.items() if channel == channel_id]


def snapshot_of(doc: Doc | None, user_id: str) -> MemberSnapshot:
    """A member as the sender's projection knows it (unknown members: nothing but the id)."""
    if doc is None:
        return MemberSnapshot(user_id=user_id)
    return MemberSnapshot(
        user_id=user_id,
        follow_state=FollowState(doc.get("follow_state", FollowState.UNKNOWN.value)),
        attributes=doc.get("attributes", {}),
        tags=doc.get("tags", []),
        last_interaction_at=doc.get("last_interaction_at"),
        rfm_segment=doc.get("rfm_segment"),
    )


def member_at_step(projected: Doc | None, enrollment: Doc) -> MemberSnapshot:
    """The member a step is chosen for: the projection, unless it is older than the enrolling change.

    The ``members`` projection and enrollment consume ``member.changes.v1`` in different consumer groups, so
    a step can come due before the projection has seen the change that enrolled the member (a fresh
    instance, a lagging group); the snapshot kept on the enrollment is then the newer truth.
    """
    kept = enrollment.get("member_json")
    if kept and (projected is None or int(projected.get("version", 0)) < int(enrollment["member_version"])):
        return MemberSnapshot.model_validate_json(kept)
    return snapshot_of(projected, enrollment["user_id"])


def step_key(journey_id: str, user_id: str, round_: int, step: int) -> str:
    return f"journey:{journey_id}:{user_id}:{round_}:{step}"


class JourneyRunner:
    def __init__(
        self,
        store: JourneyStore,
        cache: JourneyCache,
        publish: Publish,
        *,
        topic_of: Callable[[str], str],
        clock: Callable[[], datetime],
        batch: int = 200,
    ) -> None:
        self._store = store
        self._cache = cache
        self._publish = publish
        self._topic_of = topic_of
        self._clock = clock
        self._batch = batch

    # ---- enrollment ------------------------------------------------------------------------------------
    async def on_changes(self, channel_id: str, changes: Sequence[MemberChanged]) -> None:
        for change in changes:
            await self._on_change(channel_id, change)

    async def _on_change(self, channel_id: str, change: MemberChanged) -> None:
        now = self._clock()
        kinds = {c.value for c in change.changes}
        journeys = self._cache.of_channel(channel_id)
        if "blocked" in kinds:
            for journey_id, _ in journeys:
                await self._blocked(journey_id, change.user_id, now)
            return
        for journey_id, spec in journeys:
            if not is_active(spec, now):
                continue
            segment = spec.trigger if isinstance(spec.trigger, SegmentEntered) else None
            if segment is None and not triggered(
                spec, kinds, change.tags_added, change.snapshot, was_in_segment=None, now=now
            ):
                continue  # friend-added and tag triggers need no stored state: most changes stop here
            await self._maybe_enroll(channel_id, journey_id, spec, change, kinds=kinds, now=now)

    async def _maybe_enroll(
        self,
        channel_id: str,
        journey_id: str,
        spec: JourneySpec,
        change: MemberChanged,
        *,
        kinds: set[str],
        now: datetime,
    ) -> None:
        eid = enrollment_id(journey_id, change.user_id)
        for _ in range(WRITE_ATTEMPTS):
            doc = await self._store.get_enrollment(eid)
            if await self._enroll(channel_id, journey_id, spec, change, doc, kinds=kinds, now=now):
                return
        raise InfrastructureUnavailable(f"enrollment {eid} kept changing while a member change was applied")

    async def _enroll(
        self,
        channel_id: str,
        journey_id: str,
        spec: JourneySpec,
        change: MemberChanged,
        doc: Doc | None,
        *,
        kinds: set[str],
        now: datetime,
    ) -> bool:
        """Apply the change to the enrollment as read (``doc``); ``False`` if it changed meanwhile."""
        was_in: bool | None = None
        in_segment: bool | None = None
        if isinstance(spec.trigger, SegmentEntered):
            # a member seen for the first time counts as not having been in the segment
            was_in = bool(doc.get("in_segment")) if doc else False
            in_segment = matches(
                spec.trigger.segment, change.snapshot, now=now, today=now.astimezone(spec.zone).date()
            )
            if doc is not None and was_in == in_segment:
                return True
        go = triggered(spec, kinds, change.tags_added, change.snapshot, was_in_segment=was_in, now=now)
        previous = EnrollmentState(doc["state"]) if doc and doc.get("state") else None
        base: Doc = doc or {
            "_id": enrollment_id(journey_id, change.user_id),
            "journey_id": journey_id,
            "channel_id": channel_id,
            "user_id": change.user_id,
            "round": 0,
            "state": None,
        }
        if go and change.snapshot.follow_state is not FollowState.BLOCKED and may_enroll(spec, previous):
            enrolled = {
                **{k: v for k, v in base.items() if k not in {"claim_until", "waiting", "due_slot"}},
                "round": int(base["round"]) + 1,
                "state": EnrollmentState.ACTIVE.value,
                "step": 0,
                "enrolled_at": now,
                "next_due_at": due_at(spec, spec.steps[0], now),
                "in_segment": in_segment,
                # the member as the enrolling change saw them: the runner's fallback while the
                # ``members`` projection (another consumer group) has not caught up with this change
                "member_version": change.version,
                "member_json": change.snapshot.model_dump_json(),
            }
            if not await self._store.write_enrollment(enrolled, doc, now):
                return False
            await self._event(enrolled, 0, "entered", now)
            return True
        if in_segment is not None:
            return await self._store.set_in_segment(base, doc is not None, in_segment)
        return True

    async def _blocked(self, journey_id: str, user_id: str, now: datetime) -> None:
        eid = enrollment_id(journey_id, user_id)
        doc = await self._store.get_enrollment(eid)
        if doc is None:
            return
        sent_at, sent_step = doc.get("last_sent_at"), doc.get("last_sent_step")
        if sent_at is not None and sent_step is not None and now - sent_at <= BLOCK_WINDOW:
            await self._event(doc, int(sent_step), "blocked_within_48h", now)
        if doc.get("state") == EnrollmentState.ACTIVE.value:
            left = await self._store.exit_enrollment(eid, now)
            if left is not None:
                await self._event(left, int(left["step"]), "exited", now)

    # ---- the scheduler ---------------------------------------------------------------------------------
    async def run_due(self) -> int:
        """One pass: every due step is sent (or skipped), then its enrollment moves on. Returns steps done."""
        now = self._clock()
        done = 0
        for found in await self._store.due_enrollments(now, self._batch):
            spec = self._cache.get(found["journey_id"])
            if spec is None and await self._store.get_journey(found["journey_id"]) is None:
                await self._store.park(found)  # deleted: its members wait where they are
                continue
            if spec is None or not spec.enabled:  # disabled, or created moments ago on another instance
                await self._store.wait_for_journey(found, now + JOURNEY_WAIT, now)
                continue
            if not await self._store.claim_step(found, now + STEP_LEASE):
                continue  # another scheduler took it, or it changed
            await self._run_step(found, spec, now)
            done += 1
        return done

    async def _run_step(self, doc: Doc, spec: JourneySpec, now: datetime) -> None:
        index = int(doc["step"])
        step = spec.steps[index] if index < len(spec.steps) else None
        if step is None:  # the journey lost steps since: this round is over
            await self._store.finish_step(
                doc, {"state": EnrollmentState.COMPLETED.value, "next_due_at": None}, now
            )
            return
        due = doc["next_due_at"]
        member = member_at_step(await self._store.member(doc["channel_id"], doc["user_id"]), doc)
        if member.follow_state is FollowState.BLOCKED:
            exited = {"state": EnrollmentState.EXITED.value, "exited_at": now, "next_due_at": None}
            if await self._store.finish_step(doc, exited, now):
                await self._event(doc, index, "exited", now)
            return
        fields: Doc = {}
        if late_action(spec, due, now) is LateAction.SKIP:
            await self._event(doc, index, "skipped", now)
        else:
            branch, messages = choose(spec, step, member, now=now)
            if messages:
                await self._send(doc, index, branch, messages, now)
                await self._event(doc, index, "sent", now, branch=branch)
                fields |= {"last_sent_at": now, "last_sent_step": index}
            else:
                await self._event(doc, index, "nothing", now, branch=branch)
        if index + 1 < len(spec.steps):
            fields |= {"step": index + 1, "next_due_at": due_at(spec, spec.steps[index + 1], due)}
        else:
            fields |= {"step": index + 1, "state": EnrollmentState.COMPLETED.value, "next_due_at": None}
            await self._event(doc, index, "completed", now)
        await self._store.finish_step(doc, fields, now)

    async def _send(
        self, doc: Doc, index: int, branch: str, messages: list[dict[str, Any]], now: datetime
    ) -> None:
        target = UserTarget(user_id=doc["user_id"])
        request = SendMessages(
            idempotency_key=step_key(doc["journey_id"], doc["user_id"], int(doc["round"]), index),
            category=SendCategory.MARKETING,
            messages=messages,
            target=target,
            labels={
                "source": "journey",
                "journey_id": doc["journey_id"],
                "step": str(index),
                "round": str(doc["round"]),
                "branch": branch,
                "user_id": doc["user_id"],  # a deferred result names no recipients
            },
        )
        envelope = SendRequested(
            event_id=new_event_id(),
            channel_id=doc["channel_id"],
            occurred_at=now,
            produced_at=now,
            payload=request,
        )
        await self._publish(
            Outgoing.of(
                self._topic_of(topics.SEND_REQUESTS), send_request_key(doc["channel_id"], target), envelope
            )
        )

    # ---- stats -----------------------------------------------------------------------------------------
    async def on_result(self, result: SendResult, now: datetime) -> None:
        """A send result of a journey step: counted once per (member, round, step, outcome)."""
        labels = result.labels
        if labels.get("source") != "journey" or "journey_id" not in labels:
            return
        users = result.user_ids or ([labels["user_id"]] if "user_id" in labels else [])
        for user_id in users:
            doc = {
                "journey_id": labels["journey_id"],
                "user_id": user_id,
                "round": int(labels.get("round", 0)),
            }
            await self._event(doc, int(labels.get("step", 0)), result.outcome.value, now)

    async def _event(self, doc: Doc, step: int, kind: str, now: datetime, **extra: Any) -> None:
        await self._store.record(
            {
                "_id": f"{doc['journey_id']}:{doc['user_id']}:{doc['round']}:{step}:{kind}",
                "journey_id": doc["journey_id"],
                "user_id": doc["user_id"],
                "round": doc["round"],
                "step": step,
                "kind": kind,
                "at": now,
                **extra,
            }
        )

    async def stats(self, journey_id: str) -> dict[str, Any]:
        steps: dict[int, dict[str, int]] = {}
        for (step, kind), count in (await self._store.counts(journey_id)).items():
            steps.setdefault(step, {})[kind] = count
        entered = sum(s.get("entered", 0) for s in steps.values())
        return {
            "journey_id": journey_id,
            "entered": entered,
            "steps": [{"step": index, **counts} for index, counts in sorted(steps.items())],
        }
