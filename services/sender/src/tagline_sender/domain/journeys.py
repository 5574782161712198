"""Journeys (漸進式訊息, progressive / step messages): definitions, their validation, and the pure decisions.

A journey has a trigger (a friend added — from any or from given add-friend sources —, a tag added, or
entering a segment), an active window, and up to ``max_steps`` steps. Each step waits after the previous one
(days, or hours), is sent at a time of day in the journey's timezone (default Asia/Taipei) and picks the first
of up to 4 branches whose condition (a :data:`~tagline_contracts.segments.SegmentFilter`: attributes such as
gender, age, region, OS; tags; segments) matches the member, else the "everyone else" messages. A branch with
no messages sends nothing for that step.

This module is pure: no clock, no I/O. The scheduler (issue 7, in progress) stores enrollments and claims due
steps; these functions say when a step is due, which branch a member gets, whether a late step is still sent,
and whether a member may (re-)enter.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from tagline_contracts.line_messages import InvalidMessages, message_errors
from tagline_contracts.members import MemberSnapshot
from tagline_contracts.segments import SegmentFilter, matches
from tagline_contracts.sending import MAX_MESSAGES_PER_REQUEST

DEFAULT_TIMEZONE = "Asia/Taipei"
MAX_BRANCHES = 4


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Messages = Annotated[list[dict[str, Any]], Field(max_length=MAX_MESSAGES_PER_REQUEST)]


class FriendAdded(_Spec):
    kind: Literal["friend_added"] = "friend_added"
    sources: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list,
        description="add-friend sources (the member's `source` attribute); empty = every source",
    )
    include_unblocked: bool = Field(default=False, description="also friends who unblock the account")


class TagAdded(_Spec):
    kind: Literal["tag_added"] = "tag_added"
    tag: str = Field(min_length=1, max_length=200)


class SegmentEntered(_Spec):
    kind: Literal["segment_entered"] = "segment_entered"
    segment: SegmentFilter


Trigger = Annotated[FriendAdded | TagAdded | SegmentEntered, Field(discriminator="kind")]


class Branch(_Spec):
    name: str = Field(min_length=1, max_length=100)
    when: SegmentFilter
    messages: Messages = Field(description="1-5 LINE message objects; empty = send nothing to this branch")


class Step(_Spec):
    wait: int = Field(
        ge=0, description="days (or hours, see wait_unit) after the previous step or enrollment"
    )
    wait_unit: Literal["days", "hours"] = "days"
    at: time | None = Field(
        default=None,
        description="time of day in the journey's timezone (days only); default: the enrollment's",
    )
    branches: list[Branch] = Field(default_factory=list, max_length=MAX_BRANCHES)
    otherwise: Messages = Field(default_factory=list, description="everyone else; empty = send nothing")

    @model_validator(mode="after")
    def _sane(self) -> Step:
        if self.at is not None and self.wait_unit == "hours":
            raise ValueError("'at' (a time of day) only goes with wait_unit 'days'")
        if self.at is not None and self.at.tzinfo is not None:
            raise ValueError(
                "'at' is a local time of day in the journey's timezone: give it without an offset"
            )
        return self


class Reentry(StrEnum):
    NEVER = "never"
    AFTER_COMPLETION = "after_completion"
    ALWAYS = "always"


class CatchUp(StrEnum):
    SEND_LATE = "send_late"
    SKIP_LATE = "skip_late"


class JourneySpec(_Spec):
    name: str = Field(min_length=1, max_length=200)
    enabled: bool = True
    active_from: AwareDatetime | None = None
    active_until: AwareDatetime | None = None
    timezone: str = DEFAULT_TIMEZONE
    trigger: Trigger
    steps: list[Step] = Field(min_length=1)
    reentry: Reentry = Reentry.NEVER
    catch_up: CatchUp = CatchUp.SEND_LATE
    late_after_s: int = Field(
        default=3_600, ge=0, description="a step this much past its time is late (the catch-up rule applies)"
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {name!r} (use an IANA name such as Asia/Taipei)") from exc
        return name

    @model_validator(mode="after")
    def _window(self) -> JourneySpec:
        if self.active_from and self.active_until and self.active_until <= self.active_from:
            raise ValueError("active_until must be after active_from")
        return self

    @model_validator(mode="after")
    def _valid_messages(self) -> JourneySpec:
        """Every message object as the sender checks it at send time; errors name the full path
        (``steps[1].branches[0].messages[2].template.actions``)."""
        errors = []
        for i, step in enumerate(self.steps):
            for j, branch in enumerate(step.branches):
                errors += message_errors(branch.messages, f"steps[{i}].branches[{j}].messages")
            errors += message_errors(step.otherwise, f"steps[{i}].otherwise")
        if errors:
            raise InvalidMessages(errors)
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class JourneyLimits(BaseModel):
    """The platform's defaults (DESIGN.md §1), configurable per deployment."""

    model_config = ConfigDict(frozen=True)

    max_steps: int = 10
    min_wait_days: int = 1
    max_wait_days: int = 30
    min_wait_hours: int = 1
    max_wait_hours: int = 30 * 24


def limit_errors(spec: JourneySpec, limits: JourneyLimits) -> list[str]:
    """What in ``spec`` is outside ``limits``, as messages naming the place (empty: within them)."""
    errors: list[str] = []
    if len(spec.steps) > limits.max_steps:
        errors.append(f"steps: {len(spec.steps)} steps, at most {limits.max_steps}")
    for index, step in enumerate(spec.steps):
        low, high = (
            (limits.min_wait_days, limits.max_wait_days)
            if step.wait_unit == "days"
            else (limits.min_wait_hours, limits.max_wait_hours)
        )
        if not low <= step.wait <= high:
            errors.append(f"steps[{index}].wait: {step.wait} {step.wait_unit}, must be {low}-{high}")
        if not step.branches and not step.otherwise:
            errors.append(f"steps[{index}]: no branch and no 'otherwise' messages: the step sends nothing")
    return errors


# ---- decisions ---------------------------------------------------------------------------------------------
def is_active(spec: JourneySpec, now: datetime) -> bool:
    if not spec.enabled:
        return False
    if spec.active_from is not None and now < spec.active_from:
        return False
    return spec.active_until is None or now < spec.active_until


def due_at(spec: JourneySpec, step: Step, previous_at: datetime) -> datetime:
    """When ``step`` is due, ``previous_at`` being the previous step's due time (or the enrollment's).

    Days are calendar days in the journey's timezone: ``wait=1, at=10:00`` after a friend added at 23:50 on
    Monday (Taipei) is Tuesday 10:00 Taipei; without ``at``, the same local time of day as ``previous_at``."""
    if step.wait_unit == "hours":
        return previous_at + timedelta(hours=step.wait)
    local = previous_at.astimezone(spec.zone)
    day: date = local.date() + timedelta(days=step.wait)
    at = step.at or local.time().replace(tzinfo=None)
    return datetime.combine(day, at, tzinfo=spec.zone).astimezone(UTC)


def schedule(spec: JourneySpec, enrolled_at: datetime) -> list[datetime]:
    """The due time of every step for an enrollment at ``enrolled_at`` (UTC)."""
    times: list[datetime] = []
    previous = enrolled_at
    for step in spec.steps:
        previous = due_at(spec, step, previous)
        times.append(previous)
    return times


def choose(
    spec: JourneySpec, step: Step, member: MemberSnapshot, *, now: datetime
) -> tuple[str, list[dict[str, Any]]]:
    """The branch ``member`` gets (its name, or ``"otherwise"``) and its messages (empty: nothing is sent).

    Branches are tried in order; ages are counted on the journey's local date."""
    today = now.astimezone(spec.zone).date()
    for branch in step.branches:
        if matches(branch.when, member, now=now, today=today):
            return branch.name, branch.messages
    return "otherwise", step.otherwise


class LateAction(StrEnum):
    SEND = "send"
    SKIP = "skip"


def late_action(spec: JourneySpec, due: datetime, now: datetime) -> LateAction:
    """A step found at ``now`` is sent, unless it is late (past ``late_after_s``) and late is skipped."""
    late = (now - due).total_seconds() > spec.late_after_s
    return LateAction.SKIP if late and spec.catch_up is CatchUp.SKIP_LATE else LateAction.SEND


class EnrollmentState(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    EXITED = "exited"


def may_enroll(spec: JourneySpec, previous: EnrollmentState | None) -> bool:
    """At most once at a time; after that, by the journey's re-entry policy."""
    if previous is None:
        return True
    if previous is EnrollmentState.ACTIVE:
        return False
    if spec.reentry is Reentry.ALWAYS:
        return True
    return spec.reentry is Reentry.AFTER_COMPLETION and previous is EnrollmentState.COMPLETED


def triggered(
    spec: JourneySpec,
    changes: set[str],
    tags_added: list[str],
    member: MemberSnapshot,
    *,
    was_in_segment: bool | None,
    now: datetime,
) -> bool:
    """Whether a member change (``ChangeKind`` values, tags added, the member after it) enrolls the member.

    ``was_in_segment`` is whether the member matched the trigger segment before this change (``None``: not
    known, e.g. the first change seen); entering means matching now and not before."""
    trigger = spec.trigger
    if isinstance(trigger, FriendAdded):
        kinds = {"followed", "unblocked"} if trigger.include_unblocked else {"followed"}
        if not changes & kinds:
            return False
        source = member.attributes.get("source")
        return not trigger.sources or (isinstance(source, str) and source in trigger.sources)
    if isinstance(trigger, TagAdded):
        return trigger.tag in tags_added
    today = now.astimezone(spec.zone).date()
    return was_in_segment is False and matches(trigger.segment, member, now=now, today=today)
