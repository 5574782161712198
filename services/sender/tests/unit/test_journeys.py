"""Journey definitions and decisions, on the seed articles' cases (LINE Pay thank-you, sticker-campaign week,
restaurant age bands)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

import pytest
from pydantic import ValidationError

from tagline_contracts.members import FollowState, MemberSnapshot
from tagline_sender.domain.journeys import (
    CatchUp,
    EnrollmentState,
    JourneyLimits,
    JourneySpec,
    LateAction,
    Reentry,
    choose,
    due_at,
    is_active,
    late_action,
    limit_errors,
    may_enroll,
    schedule,
    triggered,
)

TEXT = [{"type": "text", "text": "hi"}]
NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # 10:00 in Taipei


def member(**attributes: Any) -> MemberSnapshot:
    tags = attributes.pop("tags", [])
    return MemberSnapshot(user_id="U1", follow_state=FollowState.FOLLOWED, attributes=attributes, tags=tags)


def journey(**fields: Any) -> JourneySpec:
    body: dict[str, Any] = {
        "name": "j",
        "trigger": {"kind": "friend_added"},
        "steps": [{"wait": 1, "at": "10:00", "otherwise": TEXT}],
        **fields,
    }
    return JourneySpec.model_validate(body)


def sticker_week() -> JourneySpec:
    """A daily offer for a week to friends from a sticker campaign, by gender × under/over 35."""
    branches = [
        {
            "name": f"{g}-{band}",
            "when": {
                "op": "and",
                "conditions": [{"op": "attribute", "key": "gender", "equals": g}, {"op": "age", **ages}],
            },
            "messages": TEXT,
        }
        for g in ("male", "female")
        for band, ages in (("under35", {"max": 34}), ("35plus", {"min": 35}))
    ]
    steps = [{"wait": 1, "at": "12:00", "branches": branches, "otherwise": TEXT} for _ in range(7)]
    return journey(trigger={"kind": "friend_added", "sources": ["sticker"]}, steps=steps)


def test_line_pay_thank_you_is_due_the_next_day_at_ten_taipei() -> None:
    spec = journey(trigger={"kind": "friend_added", "sources": ["line_pay"]})
    joined = datetime(2026, 11, 23, 15, 50, tzinfo=UTC)  # 23:50 Monday in Taipei
    assert schedule(spec, joined) == [datetime(2026, 11, 24, 2, 0, tzinfo=UTC)]  # Tuesday 10:00 Taipei
    assert triggered(spec, {"followed"}, [], member(source="line_pay"), was_in_segment=None, now=NOW)
    assert not triggered(spec, {"followed"}, [], member(source="sticker"), was_in_segment=None, now=NOW)
    assert not triggered(spec, {"unblocked"}, [], member(source="line_pay"), was_in_segment=None, now=NOW)


def test_sticker_week_sends_daily_at_noon_and_branches_by_gender_and_age() -> None:
    spec = sticker_week()
    times = schedule(spec, datetime(2026, 11, 24, 1, 0, tzinfo=UTC))
    assert [t.day for t in times] == [25, 26, 27, 28, 29, 30, 1]
    assert all(t.astimezone(spec.zone).time() == time(12, 0) for t in times)
    step = spec.steps[0]
    assert choose(spec, step, member(gender="male", birth_date="2000-01-01"), now=NOW)[0] == "male-under35"
    assert choose(spec, step, member(gender="female", birth_date="1980-05-05"), now=NOW)[0] == "female-35plus"
    assert choose(spec, step, member(gender="female"), now=NOW)[0] == "otherwise"  # no birth date
    assert choose(spec, step, member(), now=NOW) == ("otherwise", TEXT)


def test_restaurant_journey_branches_on_three_age_bands_in_order() -> None:
    bands = [("young", {"max": 29}), ("middle", {"min": 30, "max": 49}), ("senior", {"min": 50})]
    spec = journey(
        steps=[
            {
                "wait": 3,
                "branches": [
                    {"name": n, "when": {"op": "age", **a}, "messages": [{"type": "text", "text": n}]}
                    for n, a in bands
                ],
            }
        ]
    )
    picks = [
        choose(spec, spec.steps[0], member(birth_date=b), now=NOW)[0]
        for b in ("2001-01-01", "1990-01-01", "1960-01-01")
    ]
    assert picks == ["young", "middle", "senior"]
    assert choose(spec, spec.steps[0], member(), now=NOW) == ("otherwise", [])  # sends nothing


def test_hours_and_default_time_of_day() -> None:
    spec = journey(
        steps=[{"wait": 6, "wait_unit": "hours", "otherwise": TEXT}, {"wait": 2, "otherwise": TEXT}]
    )
    start = datetime(2026, 11, 24, 3, 17, tzinfo=UTC)
    first, second = schedule(spec, start)
    assert first == datetime(2026, 11, 24, 9, 17, tzinfo=UTC)
    assert second == datetime(2026, 11, 26, 9, 17, tzinfo=UTC)  # same local time, two days later
    assert due_at(spec, spec.steps[1], first) == second


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"steps": []}, "at least 1"),
        ({"steps": [{"wait": 1, "wait_unit": "hours", "at": "10:00", "otherwise": TEXT}]}, "only goes with"),
        ({"steps": [{"wait": 1, "otherwise": [{"text": "no type"}]}]}, "steps[0].otherwise[0].type: must be"),
        ({"steps": [{"wait": 1, "otherwise": TEXT * 6}]}, "at most 5"),
        (
            {"active_from": "2026-12-01T00:00:00Z", "active_until": "2026-11-01T00:00:00Z"},
            "after active_from",
        ),
        ({"trigger": {"kind": "tag_added"}}, "tag"),
        ({"reentry": "sometimes"}, "reentry"),
    ],
)
def test_invalid_definitions_are_rejected_with_the_reason(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        journey(**change)
    assert problem in str(caught.value)


def test_limits_are_defaults_that_can_be_changed() -> None:
    spec = journey(steps=[{"wait": 31, "otherwise": TEXT}] * 11 + [{"wait": 0, "branches": []}])
    errors = limit_errors(spec, JourneyLimits())
    assert "steps: 12 steps, at most 10" in errors
    assert "steps[0].wait: 31 days, must be 1-30" in errors
    assert any("sends nothing" in e for e in errors)
    assert (
        limit_errors(journey(steps=[{"wait": 31, "otherwise": TEXT}]), JourneyLimits(max_wait_days=60)) == []
    )


def test_active_window_and_enabled_flag() -> None:
    spec = journey(active_from="2026-11-01T00:00:00Z", active_until="2026-12-01T00:00:00Z")
    assert is_active(spec, NOW)
    assert not is_active(spec, datetime(2026, 12, 1, tzinfo=UTC))
    assert not is_active(journey(enabled=False), NOW)


@pytest.mark.parametrize(
    ("reentry", "previous", "allowed"),
    [
        (Reentry.NEVER, None, True),
        (Reentry.NEVER, EnrollmentState.COMPLETED, False),
        (Reentry.AFTER_COMPLETION, EnrollmentState.COMPLETED, True),
        (Reentry.AFTER_COMPLETION, EnrollmentState.EXITED, False),
        (Reentry.ALWAYS, EnrollmentState.EXITED, True),
        (Reentry.ALWAYS, EnrollmentState.ACTIVE, False),  # at most once at a time
    ],
)
def test_reentry_policy(reentry: Reentry, previous: EnrollmentState | None, allowed: bool) -> None:
    assert may_enroll(journey(reentry=reentry), previous) is allowed


def test_catch_up_rule_for_late_steps() -> None:
    due = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    skip = journey(catch_up=CatchUp.SKIP_LATE, late_after_s=600)
    assert late_action(skip, due, due.replace(minute=5)) is LateAction.SEND
    assert late_action(skip, due, due.replace(hour=5)) is LateAction.SKIP
    assert late_action(journey(late_after_s=600), due, due.replace(hour=5)) is LateAction.SEND


def test_tag_and_segment_triggers() -> None:
    tagged = journey(trigger={"kind": "tag_added", "tag": "vip"})
    assert triggered(tagged, {"tagged"}, ["vip"], member(), was_in_segment=None, now=NOW)
    assert not triggered(tagged, {"tagged"}, ["new"], member(), was_in_segment=None, now=NOW)
    segment = journey(trigger={"kind": "segment_entered", "segment": {"op": "tags", "any": ["buyer"]}})
    buyer = member(tags=["buyer"])
    assert triggered(segment, {"tagged"}, ["buyer"], buyer, was_in_segment=False, now=NOW)
    assert not triggered(segment, {"tagged"}, ["buyer"], buyer, was_in_segment=True, now=NOW)  # already in
    assert not triggered(segment, {"tagged"}, [], member(), was_in_segment=False, now=NOW)
