"""Members, keyword and behavior tags, auto-replies: real Kafka + FerretDB, tagger in-process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tagline_contracts import topics
from tagline_contracts.members import MemberChangedEvent
from tagline_contracts.sending import SendRequested
from tagline_testing.kafka import read_topic

Eventually = Callable[..., Awaitable[None]]
CHANNEL = "1234567890"


def keyword_rule(tag: str, *patterns: str, match: str = "contains", **extra: Any) -> dict[str, Any]:
    condition: dict[str, Any] = {"kind": "keyword", "match": match, "patterns": list(patterns)}
    condition.update(extra.pop("condition", {}))
    return {"name": f"rule {tag}", "tag": tag, "condition": condition, **extra}


async def changes_of(kafka_bootstrap: str, namespace: str, count: int) -> list[MemberChangedEvent]:
    records = await read_topic(
        kafka_bootstrap, f"{namespace}{topics.MEMBER_CHANGES}", count=count, settle_s=0.5
    )
    return [MemberChangedEvent.model_validate_json(r.value) for r in records]


async def test_follow_unfollow_in_time_order_and_once(
    start_tagger: Any, inputs: Any, eventually: Eventually, kafka_bootstrap: str, namespace: str
) -> None:
    line = inputs.line
    follow = line.follow("U1")
    old_unfollow = line.unfollow("U1")
    old_unfollow["timestamp"] = follow["timestamp"] - 60_000  # an older unfollow, redelivered late
    async with start_tagger() as tagger:
        await inputs.events(follow)
        await eventually(lambda: _state(tagger, "U1", "followed"), 20, "member followed")
        await inputs.events(follow)  # the same event again (LINE redelivery / Kafka replay)
        await inputs.events(old_unfollow)

        async def unfollow_applied() -> bool:
            doc = await tagger.member("U1")
            return doc is not None and doc["blocked_at"] is not None

        await eventually(unfollow_applied, 20, "old unfollow recorded")
        doc = await tagger.member("U1")
        assert doc["follow_state"] == "followed"  # the newer follow wins
        assert doc["follow_count"] == 1  # the redelivered follow counted once

        newer_unfollow = line.unfollow("U1")
        await inputs.events(newer_unfollow)
        await eventually(lambda: _state(tagger, "U1", "blocked"), 20, "member blocked")
    changes = await changes_of(kafka_bootstrap, namespace, 3)
    kinds = [c.payload.changes for c in changes]
    assert [k.value for k in kinds[0] if k.value in ("followed", "blocked")] == ["followed"]
    assert changes[-1].payload.snapshot.follow_state == "blocked"
    versions = [c.payload.version for c in changes]
    assert versions == sorted(versions)


async def _state(tagger: Any, user_id: str, state: str) -> bool:
    doc = await tagger.member(user_id)
    return doc is not None and doc["follow_state"] == state


async def test_keyword_rules_tag_full_width_text_and_auto_reply(
    start_tagger: Any, inputs: Any, eventually: Eventually, kafka_bootstrap: str, namespace: str
) -> None:
    async with start_tagger() as tagger:
        reply = [{"type": "text", "text": "優惠券在這裡"}]
        created = await tagger.client.post(
            f"/channels/{CHANNEL}/rules",
            json=keyword_rule("coupon", "優惠券", "#sale", condition={"auto_reply": reply}, cooldown_s=3600),
        )
        assert created.status_code == 201, created.text
        rule = created.json()
        await eventually(lambda: len(tagger.service.rules.current()) == 1, 10, "rule loaded")

        first = inputs.line.text("U2", "我想要 優惠券！")
        second = inputs.line.text("U2", "＃ＳＡＬＥ")  # full-width, matched after NFKC + casefold
        ids = await inputs.events(first, second)

        async def tagged() -> bool:
            doc = await tagger.member("U2")
            return doc is not None and "coupon" in doc["tags"]

        await eventually(tagged, 20, "member tagged")
        doc = await tagger.member("U2")
        record = next(r for r in doc["tag_records"] if r["name"] == "coupon")
        assert record["origin"] == "keyword"
        assert record["rule_id"] == rule["id"]
        assert record["count"] == 1  # the second hit fell inside the rule's cooldown
        requests = await read_topic(
            kafka_bootstrap, f"{namespace}{topics.SEND_REQUESTS}", count=1, settle_s=1.0
        )
    assert len(requests) == 1  # one reply: the cooldown holds the second one back too
    request = SendRequested.model_validate_json(requests[0].value).payload
    assert request.reply is not None
    assert request.reply.token == first["replyToken"]
    assert request.messages == reply
    assert request.category == "transactional"
    assert request.idempotency_key == f"autoreply:{rule['id']}:{ids[0]}"


async def test_rules_api_validation_update_disable_delete(start_tagger: Any) -> None:
    async with start_tagger() as tagger:
        client = tagger.client
        bad = await client.post(f"/channels/{CHANNEL}/rules", json=keyword_rule("x", "([a-z", match="regex"))
        assert bad.status_code == 422
        assert "([a-z" in bad.text
        created = (await client.post(f"/channels/{CHANNEL}/rules", json=keyword_rule("vip", "vip"))).json()
        rule_id = created["id"]
        updated = await client.put(f"/rules/{rule_id}", json=keyword_rule("vip2", "vip", match="prefix"))
        assert updated.status_code == 200
        assert updated.json()["version"] == 2
        assert updated.json()["tag"] == "vip2"
        disabled = await client.post(f"/rules/{rule_id}/disable")
        assert disabled.json()["enabled"] is False
        listed = (await client.get(f"/channels/{CHANNEL}/rules")).json()
        assert [r["id"] for r in listed] == [rule_id]
        assert (await client.delete(f"/rules/{rule_id}")).status_code == 204
        assert (await client.get(f"/rules/{rule_id}")).status_code == 404
        assert (await client.delete(f"/rules/{rule_id}")).status_code == 404


async def test_a_rule_created_in_one_instance_applies_in_another(
    start_tagger: Any, inputs: Any, eventually: Eventually
) -> None:
    async with start_tagger() as first, start_tagger() as second:
        await first.client.post(
            f"/channels/{CHANNEL}/rules",
            json={
                "name": "menu",
                "tag": "menu-click",
                "condition": {"kind": "postback", "params": {"action": "menu"}},
            },
        )
        await eventually(
            lambda: len(first.service.rules.current()) == 1 and len(second.service.rules.current()) == 1,
            10,
            "both instances loaded the rule",
        )
        users = [f"U{i:03d}" for i in range(12)]  # spread over every partition, so both instances write
        for user in users:
            await inputs.events(inputs.line.postback(user, "action=menu&item=3"))

        async def all_tagged() -> bool:
            for user in users:
                doc = await first.member(user)
                if doc is None or "menu-click" not in doc["tags"]:
                    return False
            return True

        await eventually(all_tagged, 30, "every member tagged by whichever instance owns it")


async def test_orders_tags_and_rfm_values(start_tagger: Any, inputs: Any, eventually: Eventually) -> None:
    async with start_tagger() as tagger:
        for body in (
            {"name": "buyer", "tag": "buyer", "condition": {"kind": "purchase"}},
            {"name": "live", "tag": "live-buyer", "condition": {"kind": "live_buyer"}},
            {"name": "big", "tag": "big-spender", "condition": {"kind": "total_spend", "at_least": 1000}},
        ):
            assert (await tagger.client.post(f"/channels/{CHANNEL}/rules", json=body)).status_code == 201
        await eventually(lambda: len(tagger.service.rules.current()) == 3, 10, "rules loaded")
        at = datetime.now(UTC) - timedelta(days=1)
        order = {
            "order_id": "O1",
            "user_id": "U3",
            "session_id": "S1",
            "amount": 600,
            "placed_at": at.isoformat(),
        }
        await inputs.order({**order, "kind": "placed"})
        paid_id = await inputs.order({**order, "kind": "paid", "amount_paid": 600})
        await inputs.order({**order, "kind": "paid", "amount_paid": 600}, event_id=paid_id)  # redelivered
        second = {**order, "order_id": "O2", "session_id": None, "amount": 500}
        await inputs.order({**second, "kind": "placed"})
        await inputs.order({**second, "kind": "paid", "amount_paid": 500})

        async def spent() -> bool:
            doc = await tagger.member("U3")
            return doc is not None and doc["rfm"]["orders"] == 2

        await eventually(spent, 20, "both orders counted")
        doc = await tagger.member("U3")
        assert doc["rfm"]["monetary"] == 1100
        assert set(doc["tags"]) == {"buyer", "live-buyer", "big-spender"}
        await inputs.order({**second, "kind": "returned", "amount_paid": 500})

        async def returned() -> bool:
            doc = await tagger.member("U3")
            return doc is not None and doc["rfm"]["orders"] == 1

        await eventually(returned, 20, "the returned order taken back")
        assert (await tagger.member("U3"))["rfm"]["monetary"] == 600


async def test_attributes_manual_tags_and_campaign_tags(
    start_tagger: Any, inputs: Any, eventually: Eventually
) -> None:
    async with start_tagger() as tagger:
        await tagger.client.post(
            f"/channels/{CHANNEL}/rules",
            json={
                "name": "got x",
                "tag": "saw-x",
                "condition": {"kind": "campaign_received", "campaign": "x"},
            },
        )
        await eventually(lambda: len(tagger.service.rules.current()) == 1, 10, "rule loaded")
        await inputs.update({"user_id": "U4", "attributes": {"gender": "female", "birth_date": "1990-05-01"}})

        async def imported() -> bool:  # manual tags are for members Tagline knows (or ?create=true)
            return await tagger.member("U4") is not None

        await eventually(imported, 20, "U4 imported")
        added = await tagger.client.post(f"/channels/{CHANNEL}/members/U4/tags", json={"name": "VIP"})
        assert added.status_code == 202
        await inputs.result(
            {
                "request_id": "camp-1",
                "batch": 0,
                "outcome": "accepted",
                "method": "multicast",
                "category": "marketing",
                "user_ids": ["U4", "U5"],
                "recipients": 2,
                "messages_counted": 2,
                "cost_ntd": 0,
                "labels": {"campaign": "x"},
            }
        )

        async def done() -> bool:
            four, five = await tagger.member("U4"), await tagger.member("U5")
            return (
                four is not None
                and {"VIP", "saw-x"} <= set(four["tags"])
                and five is not None
                and "saw-x" in five["tags"]
            )

        await eventually(done, 20, "manual and campaign tags applied")
        doc = await tagger.member("U4")
        assert doc["attributes"] == {"gender": "female", "birth_date": "1990-05-01"}
        origins = {r["name"]: r["origin"] for r in doc["tag_records"]}
        assert origins == {"VIP": "manual", "saw-x": "behavior"}
        removed = await tagger.client.delete(f"/channels/{CHANNEL}/members/U4/tags/VIP")
        assert removed.status_code == 202
        await inputs.update({"user_id": "U4", "attributes": {"gender": None}})

        async def removed_all() -> bool:
            doc = await tagger.member("U4")
            return doc is not None and "VIP" not in doc["tags"] and "gender" not in doc["attributes"]

        await eventually(removed_all, 20, "tag removed and attribute unset")


async def test_expired_tags_are_swept(start_tagger: Any, inputs: Any, eventually: Eventually) -> None:
    async with start_tagger(sweep_interval_s=0.3) as tagger:
        soon = datetime.now(UTC) + timedelta(seconds=1)
        await inputs.update(
            {
                "user_id": "U6",
                "tags_add": [{"name": "flash", "expires_at": soon.isoformat()}, {"name": "keep"}],
            }
        )

        async def tags_are(expected: set[str]) -> bool:
            doc = await tagger.member("U6")
            return doc is not None and set(doc["tags"]) == expected

        await eventually(lambda: tags_are({"flash", "keep"}), 20, "tags applied")
        await eventually(lambda: tags_are({"keep"}), 20, "the expired tag removed without any activity")
