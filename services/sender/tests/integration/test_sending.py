"""The sender against real Kafka, FerretDB and the LINE API emulator over HTTP."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tagline_contracts import topics
from tagline_contracts.members import FollowState
from tagline_line_emulator import Fault
from tagline_sender.domain.delivery import DeliveryState
from tagline_testing.kafka import read_topic

pytestmark = pytest.mark.integration

CHANNEL = "1234567890"
TEXT = [{"type": "text", "text": "您的訂單已成立"}]
Eventually = Callable[..., Awaitable[None]]


def request(key: str, target: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"idempotency_key": key, "category": "transactional", "messages": TEXT, "target": target, **kw}


def user(uid: str) -> dict[str, Any]:
    return {"kind": "user", "user_id": uid}


async def results(
    kafka_bootstrap: str, namespace: str, count: int, settle_s: float = 0.5
) -> list[dict[str, Any]]:
    records = await read_topic(
        kafka_bootstrap, f"{namespace}{topics.SEND_RESULTS}", count=count, timeout_s=20, settle_s=settle_s
    )
    return [json.loads(r.value)["payload"] for r in records]


async def test_push_is_delivered_once_and_reported(
    start_sender: Any, publish: Any, line: Any, eventually: Eventually, kafka_bootstrap: str, namespace: str
) -> None:
    async with start_sender():
        await publish.send(request("order-1", user("U1"), labels={"campaign": "c1"}))
        await publish.send(request("order-1", user("U1")))  # the same idempotency key again
        await eventually(lambda: line.emu.deliveries(CHANNEL).get("U1") == 1, what="the push")
        [result] = await results(kafka_bootstrap, namespace, 1, settle_s=1.5)
    assert line.emu.count("push") == 1
    assert result["outcome"] == "accepted" and result["method"] == "push"
    assert result["user_ids"] == ["U1"] and result["messages_counted"] == 1
    assert result["labels"] == {"campaign": "c1"}


async def test_a_list_becomes_multicasts_of_at_most_500(
    start_sender: Any, publish: Any, line: Any, eventually: Eventually
) -> None:
    ids = [f"U{i:05d}" for i in range(1_201)]
    async with start_sender():
        await publish.send(request("list-1", {"kind": "users", "user_ids": [*ids, ids[0]]}))
        await eventually(lambda: len(line.emu.deliveries(CHANNEL)) == 1_201, what="1,201 recipients")
    sizes = sorted(r.recipient_count for r in line.emu.requests(endpoint="multicast") if r.accepted)
    assert sizes == [201, 500, 500]
    assert line.emu.duplicates(CHANNEL) == {}


async def test_a_push_whose_answer_was_lost_is_delivered_exactly_once(
    start_sender: Any, publish: Any, line: Any, eventually: Eventually, kafka_bootstrap: str, namespace: str
) -> None:
    line.emu.inject(Fault(endpoint="push", kind="timeout_after_accept", times=1, delay_s=3.0))
    line.emu.inject(Fault(endpoint="multicast", kind="drop_after_accept", times=1))
    async with start_sender(request_timeout_s=0.5):
        await publish.send(request("t-1", user("U1")))
        await publish.send(request("t-2", {"kind": "users", "user_ids": ["U2", "U3"]}))
        outcomes = await results(kafka_bootstrap, namespace, 2, settle_s=1.0)
    assert line.emu.deliveries(CHANNEL) == {"U1": 1, "U2": 1, "U3": 1}
    assert line.emu.duplicates(CHANNEL) == {}
    assert line.emu.count("push", status=409) == 1 and line.emu.count("multicast", status=409) == 1
    assert sorted(o["outcome"] for o in outcomes) == ["accepted", "accepted"]
    assert line.emu.usage(CHANNEL) == 3


async def test_server_errors_are_retried_with_the_same_key(
    start_sender: Any, publish: Any, line: Any, eventually: Eventually
) -> None:
    line.emu.inject(Fault(endpoint="push", kind="error", status=503, times=3))
    async with start_sender():
        await publish.send(request("e-1", user("U1")))
        await eventually(lambda: line.emu.deliveries(CHANNEL).get("U1") == 1, what="the push")
    keys = {r.retry_key for r in line.emu.requests(endpoint="push")}
    assert len(keys) == 1 and line.emu.count("push") == 4


async def test_rate_limited_requests_back_off_and_all_arrive_once(
    start_sender: Any, publish: Any, line: Any, eventually: Eventually
) -> None:
    line.emu.set_rate_limit("push", 3, 1.0)
    async with start_sender():
        for i in range(8):
            await publish.send(request(f"rl-{i}", user(f"U{i}")))
        await eventually(lambda: len(line.emu.deliveries(CHANNEL)) == 8, timeout_s=30, what="8 pushes")
    assert line.emu.count("push", status=429) >= 1
    assert line.emu.duplicates(CHANNEL) == {}
    assert line.emu.usage(CHANNEL) == 8


async def test_segment_send_reaches_followed_members_only(
    start_sender: Any, publish: Any, line: Any, eventually: Eventually
) -> None:
    async with start_sender() as sender:
        await publish.member("U1", tags=["vip"])
        await publish.member("U2", tags=["vip", "tea"])
        await publish.member("U3", tags=["tea"])
        await publish.member("U4", tags=["vip"], version=1)
        await publish.member("U4", tags=["vip"], version=2, state=FollowState.BLOCKED)
        await publish.member("U4", tags=["vip"], version=1)  # redelivered older change: ignored
        await eventually(
            lambda: sender.service.store.members.count_documents({"version": {"$gte": 1}}),
            what="the projection",
        )
        await eventually(
            lambda: _count(sender, {"user_id": "U4", "follow_state": "blocked"}), what="U4 blocked"
        )
        segment = {"kind": "segment", "filter": {"op": "tags", "any": ["vip"]}}
        await publish.send({**request("seg-1", segment), "category": "marketing"})
        await eventually(lambda: len(line.emu.deliveries(CHANNEL)) == 2, what="the segment send")
        await publish.send(request("blocked-1", user("U4")))
        await eventually(
            lambda: _send_state(sender, "blocked-1"), what="the request to the blocked member to be handled"
        )
    assert set(line.emu.deliveries(CHANNEL)) == {"U1", "U2"}
    assert line.emu.blocked_attempts(CHANNEL) == {}


async def _count(sender: Any, query: dict[str, Any]) -> bool:
    return bool(await sender.service.store.members.count_documents(query))


async def _send_state(sender: Any, key: str, state: str = "failed") -> bool:
    summary = await sender.service.store.delivery_summary(f"{CHANNEL}:{key}")
    return state in summary


async def test_monthly_limit_answer_defers_and_resumes_when_the_limit_rises(
    start_sender: Any, publish: Any, line: Any, eventually: Eventually, kafka_bootstrap: str, namespace: str
) -> None:
    line.emu.set_quota(CHANNEL, 4)
    # The sender is told a larger limit than LINE enforces, so LINE's 429 "monthly limit" is what stops it.
    async with start_sender(channel={"monthly_limit": 1_000, "marketing_headroom_ratio": 0}) as sender:
        for i in range(6):
            await publish.send({**request(f"m-{i}", user(f"U{i}")), "category": "marketing"})
        await eventually(lambda: line.emu.usage(CHANNEL) == 4, what="4 pushes")
        await eventually(
            lambda: sender.service.store.count_deliveries(CHANNEL, DeliveryState.DEFERRED),
            what="deferred deliveries",
        )
        assert line.emu.usage(CHANNEL) == 4
        line.emu.set_quota(CHANNEL, 10)
        await eventually(lambda: len(line.emu.deliveries(CHANNEL)) == 6, what="the deferred pushes")
        # read while the sender runs: the last result is published just after LINE's answer
        outcomes: list[dict[str, Any]] = []

        async def six_accepted() -> bool:
            outcomes[:] = await results(kafka_bootstrap, namespace, 8, settle_s=0.2)
            return bool(sum(o["outcome"] == "accepted" for o in outcomes) >= 6)

        await eventually(six_accepted, what="six accepted results")
    assert sum(o["outcome"] == "accepted" for o in outcomes) == 6
    assert any(o["outcome"] == "deferred" for o in outcomes)
    assert line.emu.duplicates(CHANNEL) == {}


async def test_quota_is_never_exceeded_by_three_racing_instances(
    start_sender: Any, publish: Any, line: Any, eventually: Eventually
) -> None:
    line.emu.set_quota(CHANNEL, 50)
    settings = {"channel": {"marketing_headroom_ratio": 0.2}}  # 10 of 50 kept for transactional sends
    async with start_sender(**settings) as a, start_sender(**settings), start_sender(**settings):
        for i in range(30):
            ids = [f"U{i:02d}{j}" for j in range(5)]
            await publish.send(
                {**request(f"q-{i}", {"kind": "users", "user_ids": ids}), "category": "marketing"}
            )
        await eventually(
            lambda: _deferred_count(a, 22), timeout_s=90, what="marketing sends beyond the headroom deferred"
        )
        assert line.emu.usage(CHANNEL) == 40  # 8 multicasts of 5; the last 10 messages are headroom
        for i in range(2):
            await publish.send(
                request(f"tx-{i}", {"kind": "users", "user_ids": [f"T{i}{j}" for j in range(5)]})
            )
        await eventually(
            lambda: line.emu.usage(CHANNEL) == 50, what="transactional sends within the headroom"
        )
        await publish.send(request("tx-over", user("T99")))
        await eventually(
            lambda: _deferred_count(a, 23), what="a transactional send beyond the limit deferred"
        )
    assert line.emu.usage(CHANNEL) == 50
    assert line.emu.count("multicast", status=429) == 0 and line.emu.count("push", status=429) == 0
    assert line.emu.duplicates(CHANNEL) == {}


async def _deferred_count(sender: Any, n: int) -> bool:
    """``n`` deliveries held back, at least one of them deferred by the quota. The quota refresher puts
    deferred deliveries back to pending whenever the month has room (for transactional sends, here), and they
    are deferred again at their next attempt, so the two states are counted together."""
    store = sender.service.store
    deferred = await store.count_deliveries(CHANNEL, DeliveryState.DEFERRED)
    pending = await store.count_deliveries(CHANNEL, DeliveryState.PENDING)
    return bool(deferred >= 1 and deferred + pending == n)


async def test_bad_requests_go_to_the_dlq_with_the_reason(
    start_sender: Any, publish: Any, line: Any, kafka_bootstrap: str, namespace: str, eventually: Eventually
) -> None:
    async with start_sender():
        await publish.raw(topics.SEND_REQUESTS, b"{not json", b"x")
        await publish.send_unchecked(request("bad-msg", user("U1"), messages=[{"type": "hologram"}]))
        await publish.send(request("bad-channel", user("U1")), channel="999")
        await publish.send(request("good", user("U1")))
        await eventually(lambda: line.emu.deliveries(CHANNEL).get("U1") == 1, what="the good request")
        letters = await read_topic(
            kafka_bootstrap, f"{namespace}{topics.dlq(topics.SEND_REQUESTS)}", count=3, timeout_s=15
        )
    reasons = sorted(json.loads(r.value)["error"] for r in letters)
    assert len(reasons) == 3
    assert any("Invalid JSON" in r or "json" in r.lower() for r in reasons)
    assert any("messages[0]" in r for r in reasons)
    assert any("999" in r and "not configured" in r for r in reasons)


async def test_a_message_line_would_refuse_is_dead_lettered_once_before_any_line_call(
    start_sender: Any, publish: Any, line: Any, kafka_bootstrap: str, namespace: str, eventually: Eventually
) -> None:
    """A buttons template with 5 actions (LINE allows 4) to 1,001 friends: not three multicasts LINE refuses
    one by one, but one dead letter naming the property, and no LINE call."""
    buttons = {
        "type": "template",
        "altText": "本週優惠",
        "template": {
            "type": "buttons",
            "text": "選一個",
            "actions": [{"type": "message", "label": f"選項{i}", "text": f"{i}"} for i in range(5)],
        },
    }
    ids = [f"U{i:05d}" for i in range(1_001)]
    async with start_sender():
        await publish.send_unchecked(
            request("five-actions", {"kind": "users", "user_ids": ids}, messages=[buttons])
        )
        await publish.send(request("after", user("U1")))
        await eventually(lambda: line.emu.deliveries(CHANNEL).get("U1") == 1, what="the next request")
        letters = await read_topic(
            kafka_bootstrap,
            f"{namespace}{topics.dlq(topics.SEND_REQUESTS)}",
            count=1,
            timeout_s=15,
            settle_s=1.0,
        )
    [letter] = letters
    assert "messages[0].template.actions: Size must be between 1 and 4" in json.loads(letter.value)["error"]
    sends = [r.endpoint for r in line.emu.requests() if r.endpoint in ("reply", "push", "multicast")]
    assert sends == ["push"]  # only the request after it
    assert line.emu.deliveries(CHANNEL) == {"U1": 1}


async def test_standby_mode_sends_nothing(
    start_sender: Any, publish: Any, line: Any, kafka_bootstrap: str, namespace: str
) -> None:
    async with start_sender():
        await publish.send(request("sb-1", user("U1"), trigger_mode="standby"))
        [result] = await results(kafka_bootstrap, namespace, 1)
    assert result["outcome"] == "failed" and "standby" in result["reason"]
    assert line.emu.count("push") == 0


async def test_http_api_estimates_cost_and_shows_ledger_and_sends(
    start_sender: Any, publish: Any, line: Any, eventually: Eventually
) -> None:
    line.emu.set_quota(CHANNEL, 100_000)
    async with start_sender(channel={"plan": "high"}) as sender:
        ids = [f"U{i:05d}" for i in range(7_000)]
        body = {**request("est", {"kind": "users", "user_ids": ids}), "category": "marketing"}
        estimate = (await sender.client.post(f"/channels/{CHANNEL}/estimate", json=body)).json()
        assert estimate["recipients"] == 7_000 and estimate["billable_messages"] == 7_000
        assert estimate["free_messages"] == 6_000 and estimate["extra_messages"] == 1_000
        assert estimate["cost_ntd"] == pytest.approx(200.0)  # 1,000 extras at NT$0.2
        assert line.emu.count("multicast") == 0  # nothing was sent

        bad = await sender.client.post(
            f"/channels/{CHANNEL}/estimate", json={**body, "messages": [{"type": "x"}]}
        )
        assert bad.status_code == 422

        await publish.send(request("api-1", {"kind": "users", "user_ids": ["A", "B"]}))
        await eventually(lambda: len(line.emu.deliveries(CHANNEL)) == 2, what="the multicast")
        await eventually(lambda: _ledger_used(sender, 2), what="the ledger")
        ledger = (await sender.client.get(f"/channels/{CHANNEL}/quota")).json()
        assert ledger["limit"] == 100_000 and ledger["used"] == 2 and ledger["remaining"] == 99_998
        send = (await sender.client.get(f"/sends/{CHANNEL}/api-1")).json()
        assert send["state"] == "planned" and send["deliveries"]["sent"]["recipients"] == 2
        listed = (await sender.client.get("/sends", params={"channel_id": CHANNEL})).json()
        assert [s["key"] for s in listed] == ["api-1"]
        assert (await sender.client.get(f"/sends/{CHANNEL}/{uuid.uuid4()}")).status_code == 404
        metrics = (await sender.client.get("/metrics")).text
        assert "tagline_sender_deliveries_total" in metrics


async def _ledger_used(sender: Any, n: int) -> bool:
    return bool((await sender.client.get(f"/channels/{CHANNEL}/quota")).json()["used"] == n)


async def test_a_friend_who_blocks_after_the_planning_is_not_sent_to(
    start_sender: Any, publish: Any, line: Any, eventually: Eventually
) -> None:
    """Planning left out who had blocked; who blocks between the planning and the call is left out by the
    dispatcher (from the follow-state changes since the planning), and one who unblocks again is not."""
    async with start_sender() as sender:
        for uid in ("U1", "U2", "U3"):
            await publish.member(uid)
        await eventually(
            lambda: sender.service.store.members.find_one({"_id": f"{CHANNEL}:U3"}), what="the projection"
        )
        later = (datetime.now(UTC) + timedelta(seconds=4)).isoformat()
        await publish.send(
            request("later-1", {"kind": "users", "user_ids": ["U1", "U2", "U3"]}, not_before=later)
        )
        await eventually(lambda: _send_state(sender, "later-1", "pending"), what="the planning")
        line.emu.block(CHANNEL, "U2", "U3")
        await publish.member("U2", version=2, state=FollowState.BLOCKED)
        await publish.member("U3", version=2, state=FollowState.BLOCKED)
        await publish.member("U3", version=3)  # back again before the call
        line.emu.unblock(CHANNEL, "U3")
        await eventually(lambda: len(line.emu.deliveries(CHANNEL)) == 2, timeout_s=20, what="the multicast")
    assert set(line.emu.deliveries(CHANNEL)) == {"U1", "U3"}
    assert line.emu.blocked_attempts(CHANNEL) == {}
