"""Issue 14, 2.10: the tagger serves its configured channels only, and a mistyped userId creates no member.

A brand deploying Tagline already has friends Tagline never saw (known by userId from LINE's follower list
or its CRM): imports on ``member.attributes.v1`` and ``POST …/tags?create=true`` create them, with an unknown
follow state; a plain ``POST …/tags`` for a userId Tagline has no record of is a 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tagline_contracts import topics
from tagline_contracts.deadletter import DeadLetter
from tagline_platform.errors import ConfigurationError
from tagline_tagger.service import TaggerService
from tagline_testing.kafka import read_topic

Eventually = Callable[..., Awaitable[None]]
CHANNEL = "1234567890"
OTHER = "9999999999"
RULE = {
    "name": "vip",
    "tag": "vip",
    "condition": {"kind": "keyword", "match": "contains", "patterns": ["vip"]},
}
SEGMENT = {"op": "tags", "any": ["vip"]}
FOLLOWED = {"op": "follow", "state": "followed"}
UNKNOWN = {"op": "follow", "state": "unknown"}


async def test_a_channel_the_tagger_does_not_serve_is_a_404_naming_it(start_tagger: Any) -> None:
    async with start_tagger() as tagger:
        client = tagger.client
        for method, path, body in [
            ("POST", "rules", RULE),
            ("GET", "rules", None),
            ("GET", "members/U1", None),
            ("POST", "members/U1/tags?create=true", {"name": "vip"}),
            ("DELETE", "members/U1/tags/vip", None),
            ("POST", "segments/validate", SEGMENT),
            ("POST", "segments/count", SEGMENT),
            ("POST", "segments/members", SEGMENT),
            ("GET", "coverage", None),
            ("POST", "rfm/recompute", None),
            ("GET", "rfm", None),
        ]:
            answer = await client.request(method, f"/channels/{OTHER}/{path}", json=body)
            assert answer.status_code == 404, (method, path, answer.text)
            assert f"channel {OTHER} not found" in answer.json()["detail"], (method, path)
            assert "TAGLINE_TAGGER_CHANNELS" in answer.json()["detail"]
        assert (await client.post(f"/channels/{CHANNEL}/rules", json=RULE)).status_code == 201
        assert [r["channel_id"] for r in (await client.get(f"/channels/{CHANNEL}/rules")).json()] == [CHANNEL]
        assert await tagger.service.store.all_rules(OTHER) == []


async def test_records_of_a_channel_the_tagger_does_not_serve_are_dead_lettered(
    start_tagger: Any, inputs: Any, eventually: Eventually, kafka_bootstrap: str, namespace: str
) -> None:
    async with start_tagger() as tagger:
        await inputs.events(inputs.line.follow("U1"), channel=OTHER)
        await inputs.update({"user_id": "U2", "tags_add": [{"name": "vip"}]}, channel=OTHER)
        await inputs.update({"user_id": "U3", "attributes": {"region": "taipei"}})

        async def served_applied() -> bool:
            return await tagger.member("U3") is not None

        await eventually(served_applied, 20, "the served channel's record applied")
        letters = []
        for topic in (topics.LINE_EVENTS, topics.MEMBER_ATTRIBUTES):
            records = await read_topic(
                kafka_bootstrap, f"{namespace}{topics.dlq(topic)}", count=1, timeout_s=30
            )
            assert len(records) == 1, topic
            letters.append(DeadLetter.model_validate_json(records[0].value))
        for letter in letters:
            assert f"channel {OTHER} is not one of this tagger's channels" in letter.error
        assert await tagger.member("U1", channel=OTHER) is None
        assert await tagger.member("U2", channel=OTHER) is None


async def test_the_tagger_refuses_to_start_without_a_channel(tagger_settings: Any) -> None:
    service = TaggerService(tagger_settings(channels=[]))
    try:
        with pytest.raises(ConfigurationError, match="TAGLINE_TAGGER_CHANNELS"):
            await service.start()
    finally:
        await service.stop()  # also when it did start


async def test_a_member_tagline_never_saw_is_tagged_only_when_asked_to_create_it(
    start_tagger: Any, inputs: Any, eventually: Eventually, kafka_bootstrap: str, namespace: str
) -> None:
    async with start_tagger() as tagger:
        client = tagger.client
        members = f"/channels/{CHANNEL}/members"

        # a mistyped userId: 404, nothing published, no member
        typo = await client.post(f"{members}/Utypo/tags", json={"name": "vip"})
        assert typo.status_code == 404, typo.text
        assert "member Utypo of channel 1234567890 not found" in typo.json()["detail"]
        assert "?create=true" in typo.json()["detail"]
        assert (await client.delete(f"{members}/Utypo/tags/vip")).status_code == 404

        # a friend from before Tagline, tagged on purpose; another imported by a CRM on member.attributes.v1
        created = await client.post(f"{members}/Uold/tags", json={"name": "vip"}, params={"create": "true"})
        assert created.status_code == 202, created.text
        await inputs.update({"user_id": "Uimport", "tags_add": [{"name": "vip", "origin": "import"}]})
        # a friend Tagline saw follow, then tagged by hand (known: no create needed)
        await inputs.events(inputs.line.follow("Unew"))

        async def known(user: str) -> bool:
            return await tagger.member(user) is not None

        for user in ("Uold", "Uimport", "Unew"):
            await eventually(lambda user=user: known(user), 20, f"{user} stored")
        tagged = await client.post(f"{members}/Unew/tags", json={"name": "vip"})
        assert tagged.status_code == 202, tagged.text
        assert (await client.post(f"{members}/Uimport/tags", json={"name": "fan"})).status_code == 202

        async def tags_of(user: str, wanted: set[str]) -> bool:
            doc = await tagger.member(user)
            return doc is not None and wanted <= set(doc["tags"])

        await eventually(lambda: tags_of("Unew", {"vip"}), 20, "Unew tagged")
        await eventually(lambda: tags_of("Uimport", {"vip", "fan"}), 20, "Uimport tagged")
        for user in ("Uold", "Uimport"):
            doc = await tagger.member(user)
            assert doc["follow_state"] == "unknown", user
        records = await read_topic(
            kafka_bootstrap, f"{namespace}{topics.MEMBER_ATTRIBUTES}", count=4, settle_s=1
        )
        assert f"{CHANNEL}:Utypo".encode() not in {record.key for record in records}
        assert await tagger.member("Utypo") is None

        # segments see the unknown follow state; coverage counts followed friends only and shows the rest
        async def count(segment: dict[str, Any]) -> int:
            return int(
                (await client.post(f"/channels/{CHANNEL}/segments/count", json=segment)).json()["count"]
            )

        assert (await count(SEGMENT), await count(FOLLOWED), await count(UNKNOWN)) == (3, 1, 2)
        coverage = (await client.get(f"/channels/{CHANNEL}/coverage")).json()
        assert (coverage["followed"], coverage["tagged"], coverage["unknown_follow_state"]) == (1, 1, 2)

        # once a friend from before follows (or unblocks) the account, the follow state is known
        await inputs.events(inputs.line.follow("Uold"))

        async def followed() -> bool:
            doc = await tagger.member("Uold")
            return doc is not None and doc["follow_state"] == "followed"

        await eventually(followed, 20, "Uold followed")
        coverage = (await client.get(f"/channels/{CHANNEL}/coverage")).json()
        assert (coverage["followed"], coverage["tagged"], coverage["unknown_follow_state"]) == (2, 2, 1)
