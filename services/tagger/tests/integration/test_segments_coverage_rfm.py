"""Segments, tag coverage and RFM through the HTTP API, on members built from real Kafka inputs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tagline_contracts import topics
from tagline_contracts.members import MemberChangedEvent
from tagline_testing.kafka import read_topic

Eventually = Callable[..., Awaitable[None]]
CHANNEL = "1234567890"


async def _members(tagger: Any, users: list[str], ready: Any) -> bool:
    for user in users:
        doc = await tagger.member(user)
        if doc is None or not ready(doc):
            return False
    return True


async def test_segment_validate_count_and_page(
    start_tagger: Any, inputs: Any, eventually: Eventually
) -> None:
    async with start_tagger() as tagger:
        users = [f"U{i:02d}" for i in range(10)]
        for i, user in enumerate(users):
            await inputs.events(inputs.line.follow(user))
            gender = "female" if i % 2 else "male"
            birth = "1980-01-01" if i < 5 else "2000-01-01"
            tags = [{"name": "vip"}] if i % 3 == 0 else []
            await inputs.update(
                {"user_id": user, "attributes": {"gender": gender, "birth_date": birth}, "tags_add": tags}
            )
        await inputs.events(inputs.line.unfollow("U09"))
        await eventually(
            lambda: _members(tagger, users, lambda d: "gender" in d["attributes"]), 30, "members built"
        )
        await eventually(
            lambda: _members(tagger, ["U09"], lambda d: d["follow_state"] == "blocked"), 20, "block"
        )
        client = tagger.client
        bad = await client.post(f"/channels/{CHANNEL}/segments/validate", json={"op": "tags", "all": []})
        assert bad.status_code == 200
        assert bad.json()["valid"] is False
        assert bad.json()["errors"]
        assert (
            await client.post(f"/channels/{CHANNEL}/segments/count", json={"op": "nope"})
        ).status_code == 422

        female_over_35 = {
            "op": "and",
            "conditions": [
                {"op": "follow", "state": "followed"},
                {"op": "attribute", "key": "gender", "equals": "female"},
                {"op": "age", "min": 35},
            ],
        }
        valid = await client.post(f"/channels/{CHANNEL}/segments/validate", json=female_over_35)
        assert valid.json()["valid"] is True, valid.text
        count = await client.post(f"/channels/{CHANNEL}/segments/count", json=female_over_35)
        assert count.json()["count"] == 2  # U01, U03 (U05+ are under 35)

        vip_or_male = {
            "op": "or",
            "conditions": [
                {"op": "tags", "any": ["vip"]},
                {"op": "attribute", "key": "gender", "equals": "male"},
            ],
        }
        seen: list[str] = []
        after = None
        while True:
            params = {"limit": 3, **({"after": after} if after else {})}
            page = (
                await client.post(f"/channels/{CHANNEL}/segments/members", json=vip_or_male, params=params)
            ).json()
            seen += [m["user_id"] for m in page["members"]]
            after = page["next_after"]
            if after is None:
                break
        # males: U00 U02 U04 U06 U08; vip: U00 U03 U06 U09
        assert seen == ["U00", "U02", "U03", "U04", "U06", "U08", "U09"]


async def test_tag_coverage_overall_by_origin_and_by_tag(
    start_tagger: Any, inputs: Any, eventually: Eventually
) -> None:
    async with start_tagger() as tagger:
        await tagger.client.post(
            f"/channels/{CHANNEL}/rules",
            json={
                "name": "k",
                "tag": "asked-price",
                "condition": {"kind": "keyword", "match": "contains", "patterns": ["多少錢"]},
            },
        )
        await eventually(lambda: len(tagger.service.rules.current()) == 1, 10, "rule loaded")
        users = [f"C{i}" for i in range(8)]
        for user in users:
            await inputs.events(inputs.line.follow(user))
        await inputs.events(inputs.line.text("C0", "這個多少錢?"), inputs.line.text("C1", "請問多少錢"))
        await inputs.update({"user_id": "C1", "tags_add": [{"name": "vip"}]})
        await inputs.update({"user_id": "C2", "tags_add": [{"name": "vip", "origin": "import"}]})
        await inputs.update({"user_id": "C7", "tags_add": [{"name": "vip"}]})
        await inputs.events(inputs.line.unfollow("C7"))  # blocked: not in the denominator

        await eventually(lambda: _members(tagger, ["C0", "C1", "C2"], lambda d: bool(d["tags"])), 20, "tags")
        await eventually(
            lambda: _members(tagger, ["C7"], lambda d: d["follow_state"] == "blocked"), 20, "block"
        )
        result = (await tagger.client.get(f"/channels/{CHANNEL}/coverage")).json()
        assert result["followed"] == 7
        assert result["tagged"] == 3
        assert result["coverage"] == round(3 / 7, 6)
        assert result["by_origin"]["keyword"]["members"] == 2
        assert result["by_origin"]["manual"]["members"] == 1
        assert result["by_origin"]["import"]["members"] == 1
        assert result["by_tag"]["vip"]["members"] == 2
        assert result["by_tag"]["asked-price"]["members"] == 2
        metrics = (await tagger.client.get("/metrics")).text
        assert (
            f'tagline_tagger_tag_coverage_ratio{{channel_id="{CHANNEL}",scope="all"}} {round(3 / 7, 6)}'
            in metrics
        )


async def test_rfm_recompute_scores_every_buyer_and_publishes_segments(
    start_tagger: Any, inputs: Any, eventually: Eventually, kafka_bootstrap: str, namespace: str
) -> None:
    now = datetime.now(UTC)
    async with start_tagger(rfm_min_population=20) as tagger:  # 20 buyers: enough for quintiles here
        # 20 buyers: B00 bought long ago, once, little ... B19 recently, often, a lot.
        for i in range(20):
            user = f"B{i:02d}"
            for n in range(1 + i // 4):
                order = {
                    "order_id": f"{user}-{n}",
                    "user_id": user,
                    "amount": 100 + 50 * i,
                    "amount_paid": 100 + 50 * i,
                    "kind": "paid",
                    "placed_at": (now - timedelta(days=200 - 10 * i)).isoformat(),
                }
                await inputs.order(order)
        buyers = [f"B{i:02d}" for i in range(20)]
        await eventually(lambda: _members(tagger, buyers, lambda d: d["rfm"]["orders"] >= 1), 30, "orders")
        await eventually(
            lambda: _members(tagger, ["B19"], lambda d: d["rfm"]["orders"] == 5), 30, "all orders"
        )

        run = (await tagger.client.post(f"/channels/{CHANNEL}/rfm/recompute")).json()
        assert (run["model"]["scoring"], run["model"]["min_population"]) == ("quintiles", 20)
        assert run["buyers"] == 20
        assert run["changed"] == 20
        assert sum(run["segments"].values()) == 20
        await eventually(
            lambda: _members(tagger, buyers, lambda d: d["rfm_segment"] is not None), 30, "scored"
        )
        best, worst = await tagger.member("B19"), await tagger.member("B00")
        assert best["rfm_segment"] == "Champions"
        assert (best["rfm"]["r"], best["rfm"]["f"], best["rfm"]["m"]) == (5, 5, 5)
        assert worst["rfm_segment"] == "Lost"
        model = (await tagger.client.get(f"/channels/{CHANNEL}/rfm")).json()
        assert (model["population"], model["scoring"]) == (20, "quintiles")

        # The sender's projection learns the segments from member.changes.v1.
        records = await read_topic(
            kafka_bootstrap, f"{namespace}{topics.MEMBER_CHANGES}", count=40, settle_s=1
        )
        latest: dict[str, Any] = {}
        for record in records:
            change = MemberChangedEvent.model_validate_json(record.value).payload
            if change.user_id not in latest or change.version > latest[change.user_id].version:
                latest[change.user_id] = change
        assert latest["B19"].snapshot.rfm_segment == "Champions"

        # A recomputation with nothing new changes nobody; a new order is scored with the stored model.
        again = (await tagger.client.post(f"/channels/{CHANNEL}/rfm/recompute")).json()
        assert again["changed"] == 0
        await inputs.order(
            {
                "order_id": "N1",
                "user_id": "NEW",
                "amount": 100,
                "amount_paid": 100,
                "kind": "paid",
                "placed_at": now.isoformat(),
            }
        )
        await eventually(lambda: _members(tagger, ["NEW"], lambda d: d["rfm_segment"] is not None), 20, "new")
        assert (await tagger.member("NEW"))["rfm"]["r"] == 5


async def test_rfm_of_a_few_buyers_minutes_apart_uses_the_absolute_thresholds(
    start_tagger: Any, inputs: Any, eventually: Eventually
) -> None:
    """Issue 14, 2.8: 4 buyers of one live session, one 2 minutes before the others: none is "At Risk"."""
    now = datetime.now(UTC)
    buyers = {"L1": (2, 590), "L2": (0, 590), "L3": (0, 880), "L4": (1, 290)}  # minutes ago, NT$ paid
    async with start_tagger() as tagger:
        for user, (minutes, paid) in buyers.items():
            await inputs.order(
                {
                    "order_id": f"{user}-1",
                    "user_id": user,
                    "session_id": "S1",
                    "amount": paid,
                    "amount_paid": paid,
                    "kind": "paid",
                    "placed_at": (now - timedelta(minutes=minutes)).isoformat(),
                }
            )
        await eventually(
            lambda: _members(tagger, list(buyers), lambda d: d["rfm"]["orders"] == 1), 30, "orders"
        )

        run = (await tagger.client.post(f"/channels/{CHANNEL}/rfm/recompute")).json()
        assert run["model"]["scoring"] == "absolute"
        assert (run["model"]["population"], run["model"]["min_population"]) == (4, 100)
        assert run["segments"] == {"New Customers": 4}
        await eventually(
            lambda: _members(tagger, list(buyers), lambda d: d["rfm_segment"] is not None), 30, "scored"
        )
        for user in buyers:
            doc = await tagger.member(user)
            assert doc is not None
            assert (doc["rfm_segment"], doc["rfm"]["r"], doc["rfm"]["f"], doc["rfm"]["m"]) == (
                "New Customers",
                5,
                1,
                1,
            ), user
        model = (await tagger.client.get(f"/channels/{CHANNEL}/rfm")).json()
        assert (model["scoring"], model["recency_days"]) == ("absolute", [30.0, 90.0, 180.0, 365.0])
