"""Journeys against real Kafka + FerretDB + the emulator, with a clock the test moves.

The seed articles' cases (LINE Pay thank-you coupon, sticker-campaign week branched by gender and age),
blocked friends leaving, exactly-once steps across two schedulers and a restart, the catch-up rule and
validation errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tagline_contracts import topics
from tagline_contracts.envelope import new_event_id
from tagline_contracts.members import (
    ChangeKind,
    FollowState,
    MemberChanged,
    MemberChangedEvent,
    MemberSnapshot,
)
from tagline_testing.kafka import read_topic
from tagline_testing.waiting import eventually

CHANNEL = "1234567890"
START = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # Monday 12:00 in Taipei


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def to(self, local_day: int, hour: int, minute: int = 0) -> None:
        """Move to ``local_day`` days after the start, at ``hour:minute`` Taipei time."""
        self.now = datetime(2026, 11, 23 + local_day, hour - 8, minute, tzinfo=UTC)


COUPON = [{"type": "text", "text": "感謝使用 LINE Pay，送您 50 元折價券"}]
QUIET = {"journey_poll_s": 3600.0, "journey_refresh_s": 0.2}  # steps run when the test says so


async def _create(sender: Any, spec: dict[str, Any], expect: int = 201) -> dict[str, Any]:
    answer = await sender.client.post(f"/channels/{CHANNEL}/journeys", json=spec)
    assert answer.status_code == expect, answer.text
    return dict(answer.json()) if expect == 201 else {"errors": answer.json()}


async def _stats(sender: Any, journey_id: str) -> dict[str, Any]:
    return dict((await sender.client.get(f"/journeys/{journey_id}/stats")).json())


def _delivered(line: Any, n: int) -> Callable[[], bool]:
    return lambda: sum(line.emu.deliveries(CHANNEL).values()) == n


async def _entered(sender: Any, journey_id: str, n: int) -> None:
    async def check() -> bool:
        return bool((await _stats(sender, journey_id))["entered"] == n)

    await eventually(check, what=f"{n} enrolled", timeout_s=30)


async def test_line_pay_friends_get_a_coupon_the_next_day_once_across_two_schedulers_and_a_restart(
    start_sender: Any, publish: Any, line: Any, kafka_bootstrap: str, namespace: str
) -> None:
    clock = Clock()
    spec = {
        "name": "LINE Pay 感謝",
        "trigger": {"kind": "friend_added", "sources": ["line_pay"]},
        "steps": [{"wait": 1, "at": "10:00", "otherwise": COUPON}],
    }
    async with start_sender(clock=clock, **QUIET) as a, start_sender(clock=clock, **QUIET) as b:
        journey = await _create(a, spec)
        await eventually(lambda: b.service.journey_cache.get(journey["id"]) is not None, what="b knows it")
        await publish.member("U1", attributes={"source": "line_pay"})
        await publish.member("U2", attributes={"source": "sticker"})
        await _entered(a, journey["id"], 1)

        clock.to(1, 9, 59)  # not yet due
        assert await a.service.journeys.run_due() == 0
        clock.to(1, 10, 0)
        done = [await a.service.journeys.run_due(), await b.service.journeys.run_due()]
        assert sorted(done) == [0, 1]  # one scheduler sent it, the other found nothing due
        await eventually(lambda: line.emu.deliveries(CHANNEL).get("U1") == 1, what="the coupon push")
    async with start_sender(clock=clock, **QUIET) as c:  # a restart finds nothing left to send
        assert await c.service.journeys.run_due() == 0
        stats = await _stats(c, journey["id"])
    assert line.emu.deliveries(CHANNEL) == {"U1": 1}
    assert stats["steps"][0]["sent"] == 1 and stats["steps"][0]["completed"] == 1
    requests = await read_topic(kafka_bootstrap, f"{namespace}{topics.SEND_REQUESTS}", count=1)
    payload = json.loads(requests[0].value)["payload"]
    assert payload["category"] == "marketing" and payload["idempotency_key"].startswith("journey:")


async def test_sticker_week_branches_by_gender_and_age_and_blocked_friends_leave(
    start_sender: Any, publish: Any, line: Any, kafka_bootstrap: str, namespace: str
) -> None:
    clock = Clock()
    branches = [
        {
            "name": f"{gender}-{band}",
            "when": {
                "op": "and",
                "conditions": [{"op": "attribute", "key": "gender", "equals": gender}, {"op": "age", **ages}],
            },
            "messages": [{"type": "text", "text": f"{gender} {band} offer"}],
        }
        for gender in ("male", "female")
        for band, ages in (("under35", {"max": 34}), ("35plus", {"min": 35}))
    ]
    spec = {
        "name": "貼圖好友一週優惠",
        "trigger": {"kind": "friend_added", "sources": ["sticker"]},
        "steps": [
            {"wait": 1, "at": "12:00", "branches": branches, "otherwise": [{"type": "text", "text": "offer"}]}
        ]
        * 7,
    }
    friends = {
        "M1": {"gender": "male", "birth_date": "2000-03-01"},
        "M2": {"gender": "male", "birth_date": "1980-03-01"},
        "F1": {"gender": "female", "birth_date": "1999-03-01"},
        "F2": {"gender": "female", "birth_date": "1970-03-01"},
        "X1": {},
    }
    async with start_sender(clock=clock, **QUIET) as sender:
        journey = await _create(sender, spec)
        for user, attributes in friends.items():
            await publish.member(user, attributes={"source": "sticker", **attributes})
        await _entered(sender, journey["id"], len(friends))
        delivered = 0
        for day in range(1, 8):
            clock.to(day, 12, 0)
            if day == 3:  # F2 blocks the account after the second offer
                await publish.member("F2", version=2, state=FollowState.BLOCKED)

                async def exited() -> bool:
                    steps = (await _stats(sender, journey["id"]))["steps"]
                    return any(s.get("exited") for s in steps)

                await eventually(exited, what="F2 left the journey", timeout_s=30)
            await sender.service.journeys.run_due()
            delivered += 5 if day < 3 else 4
            # each day's offers are out before the next day (else the block could overtake F2's second one)
            await eventually(_delivered(line, delivered), what=f"day {day}", timeout_s=30)
        assert line.emu.deliveries(CHANNEL) == {"M1": 7, "M2": 7, "F1": 7, "X1": 7, "F2": 2}
        stats = await _stats(sender, journey["id"])
    records = await read_topic(kafka_bootstrap, f"{namespace}{topics.SEND_REQUESTS}", count=30)
    branch_of: dict[str, set[str]] = {}
    for record in records:
        payload = json.loads(record.value)["payload"]
        branch_of.setdefault(payload["target"]["user_id"], set()).add(payload["labels"]["branch"])
    assert branch_of == {
        "M1": {"male-under35"},
        "M2": {"male-35plus"},
        "F1": {"female-under35"},
        "F2": {"female-35plus"},
        "X1": {"otherwise"},
    }
    by_step = {s["step"]: s for s in stats["steps"]}
    assert by_step[0]["entered"] == 5 and by_step[0]["sent"] == 5 and by_step[6]["sent"] == 4
    assert by_step[2].get("exited") == 1 and by_step[1].get("blocked_within_48h") == 1


async def _tagged(publish: Any, user_id: str, tag: str) -> None:
    change = MemberChanged(
        user_id=user_id,
        version=1,
        changes=[ChangeKind.TAGGED],
        tags_added=[tag],
        snapshot=MemberSnapshot(user_id=user_id, follow_state=FollowState.FOLLOWED, tags=[tag]),
    )
    now = datetime.now(UTC)
    envelope = MemberChangedEvent(
        event_id=new_event_id(), channel_id=CHANNEL, occurred_at=now, produced_at=now, payload=change
    )
    await publish.raw(
        topics.MEMBER_CHANGES,
        envelope.model_dump_json(by_alias=True).encode(),
        f"{CHANNEL}:{user_id}".encode(),
    )


async def test_late_steps_follow_the_catch_up_rule_and_bad_definitions_are_refused(
    start_sender: Any, publish: Any, line: Any
) -> None:
    clock = Clock()
    step = {"wait": 1, "at": "10:00", "otherwise": COUPON}
    async with start_sender(clock=clock, **QUIET) as sender:
        journeys = {
            rule: await _create(
                sender,
                {
                    "name": rule,
                    "trigger": {"kind": "tag_added", "tag": tag},
                    "steps": [step, step],
                    "catch_up": rule,
                    "late_after_s": 3600,
                },
            )
            for rule, tag in (("skip_late", "vip"), ("send_late", "gold"))
        }
        await _tagged(publish, "V1", "vip")
        await _tagged(publish, "G1", "gold")
        for journey in journeys.values():
            await _entered(sender, journey["id"], 1)
        clock.to(3, 10, 0)  # the service was down: both steps are 1-2 days late
        while await sender.service.journeys.run_due():
            pass
        await eventually(lambda: line.emu.deliveries(CHANNEL).get("G1") == 2, what="late steps sent")
        assert "V1" not in line.emu.deliveries(CHANNEL)  # skipped, not sent
        skipped = (await _stats(sender, journeys["skip_late"]["id"]))["steps"]
        assert [s.get("skipped") for s in skipped] == [1, 1] and skipped[1]["completed"] == 1

        bad = await _create(
            sender,
            {
                "name": "bad",
                "trigger": {"kind": "friend_added"},
                "steps": [{"wait": 45, "otherwise": COUPON}] * 12,
            },
            expect=422,
        )
        assert "steps: 12 steps, at most 10" in bad["errors"]["detail"]
        assert "steps[0].wait: 45 days, must be 1-30" in bad["errors"]["detail"]
        shape = await sender.client.post(
            f"/channels/{CHANNEL}/journeys", json={"name": "x", "trigger": {"kind": "nope"}, "steps": []}
        )
        assert shape.status_code == 422


def _age_branch(name: str, ages: dict[str, Any]) -> dict[str, Any]:
    when: dict[str, Any] = {"op": "age"}
    when.update(ages)
    return {"name": name, "when": when, "messages": [{"type": "text", "text": name}]}


async def test_restaurant_journey_branches_on_three_age_bands_and_counts_deferred_steps(
    start_sender: Any, publish: Any, line: Any
) -> None:
    clock = Clock()
    bands: list[tuple[str, dict[str, Any]]] = [
        ("young", {"max": 29}),
        ("family", {"min": 30, "max": 49}),
        ("senior", {"min": 50}),
    ]
    spec = {
        "name": "餐廳回訪",
        "trigger": {"kind": "friend_added"},
        "steps": [
            {
                "wait": 3,
                "at": "11:00",
                "branches": [_age_branch(name, ages) for name, ages in bands],
            }
        ],
    }
    diners = {"D1": "2001-05-01", "D2": "1985-05-01", "D3": "1950-05-01", "D4": None}
    # the channel may send 2 more messages this month: the third step is deferred, not lost
    channel = {"monthly_limit": 2, "marketing_headroom_ratio": 0}
    async with start_sender(channel=channel, clock=clock, **QUIET) as sender:
        journey = await _create(sender, spec)
        for user, birth in diners.items():
            await publish.member(user, attributes={} if birth is None else {"birth_date": birth})
        await _entered(sender, journey["id"], 4)
        clock.to(3, 11, 0)
        assert await sender.service.journeys.run_due() == 4

        async def counted() -> bool:
            step = (await _stats(sender, journey["id"]))["steps"][0]
            return bool(step.get("accepted", 0) == 2 and step.get("deferred", 0) == 1)

        await eventually(counted, what="2 accepted and 1 deferred", timeout_s=30)
        step = (await _stats(sender, journey["id"]))["steps"][0]
    assert step["sent"] == 3 and step["nothing"] == 1  # D4 has no age: no branch, no everyone-else message
    assert sum(line.emu.deliveries(CHANNEL).values()) == 2


async def test_entering_a_segment_enrolls_once_and_reentry_follows_the_policy(
    start_sender: Any, publish: Any, line: Any
) -> None:
    clock = Clock()
    spec = {
        "name": "VIP 歡迎",
        "trigger": {"kind": "segment_entered", "segment": {"op": "tags", "any": ["vip"]}},
        "reentry": "after_completion",
        "steps": [{"wait": 2, "wait_unit": "hours", "otherwise": COUPON}],
    }
    async with start_sender(clock=clock, **QUIET) as sender:
        journey = await _create(sender, spec)
        await publish.member("S1", version=1)  # not in the segment yet
        await publish.member("S1", version=2, tags=["vip"])  # enters: enrolled
        await publish.member("S1", version=3, tags=["vip", "buyer"])  # still in: nothing new
        await _entered(sender, journey["id"], 1)
        clock.now += timedelta(hours=2)
        assert await sender.service.journeys.run_due() == 1
        await eventually(lambda: line.emu.deliveries(CHANNEL).get("S1") == 1, what="the step")
        await publish.member("S1", version=4, tags=["buyer"])  # leaves the segment
        await publish.member("S1", version=5, tags=["buyer", "vip"])  # enters again after completing
        await _entered(sender, journey["id"], 2)
