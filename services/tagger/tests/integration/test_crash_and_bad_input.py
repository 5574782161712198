"""Reliability: killed mid-batch, a tagger loses and double-counts nothing; bad input is dead-lettered."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from pymongo.asynchronous.database import AsyncDatabase

from tagline_contracts import topics
from tagline_contracts.deadletter import DeadLetter
from tagline_contracts.members import MemberChangedEvent
from tagline_tagger.adapters.mongo import TaggerStore
from tagline_tagger.domain.rules import Rule
from tagline_tagger.jobs import rule_to_doc
from tagline_testing.kafka import read_topic
from tagline_testing.processes import free_port

Eventually = Callable[..., Awaitable[None]]
CHANNEL = "1234567890"
USERS = 150
MESSAGES_PER_USER = 40


async def _insert_coupon_rule(db: AsyncDatabase[dict[str, Any]]) -> None:
    now = datetime.now(UTC)
    rule = Rule.model_validate(
        {
            "id": "R1",
            "channel_id": CHANNEL,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "name": "coupon",
            "tag": "coupon",
            "condition": {"kind": "keyword", "match": "contains", "patterns": ["優惠"]},
        }
    )
    await db["rules"].insert_one(rule_to_doc(rule))


def _start_process(tagger_settings: Any, port: int) -> subprocess.Popen[bytes]:
    settings = tagger_settings(max_batch=100, port=port)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MONGODB_URL": settings.mongodb_url,
        "TAGLINE_TOPIC_NAMESPACE": settings.topic_namespace,
        "TAGLINE_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "TAGLINE_TAGGER_DATABASE": settings.database,
        "TAGLINE_TAGGER_GROUP_ID": settings.group_id,
        "TAGLINE_TAGGER_CHANNELS": json.dumps(settings.channels),
        "TAGLINE_TAGGER_MAX_BATCH": "100",
        "TAGLINE_TAGGER_PORT": str(port),
        "TAGLINE_TAGGER_JOBS": "false",
    }
    return subprocess.Popen([sys.executable, "-m", "tagline_tagger"], env=env)


async def _applied(port: int) -> float:
    try:
        async with httpx.AsyncClient(timeout=1.0) as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.HTTPError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("tagline_tagger_inputs_applied_total "):
            return float(line.split()[1])
    return 0.0


async def test_killed_mid_batch_loses_nothing_and_counts_nothing_twice(
    tagger_settings: Any,
    tagger_topics: None,
    inputs: Any,
    mongo_db: AsyncDatabase[dict[str, Any]],
    eventually: Eventually,
    kafka_bootstrap: str,
    namespace: str,
) -> None:
    await _insert_coupon_rule(mongo_db)
    users = [f"K{i:03d}" for i in range(USERS)]
    line = inputs.line
    events = [line.follow(user) for user in users]
    for n in range(MESSAGES_PER_USER):
        events += [line.text(user, f"第{n}次 優惠 please") for user in users]
    for start in range(0, len(events), 500):
        await inputs.events(*events[start : start + 500])
    total = len(events)

    port = free_port()
    process = _start_process(tagger_settings, port)
    try:
        applied_at_kill = 0.0
        while True:
            applied_at_kill = await _applied(port)
            if applied_at_kill >= total / 4:
                process.send_signal(signal.SIGKILL)  # no graceful shutdown: mid-batch, uncommitted offsets
                break
            assert process.poll() is None, "the tagger exited on its own"
            await asyncio.sleep(0.02)
        process.wait(10)
        assert applied_at_kill < total, "the kill came after everything was applied: nothing was tested"
        process = _start_process(tagger_settings, port)

        async def all_applied() -> bool:
            docs = await mongo_db["members"].find({}, {"tag_records": 1, "follow_count": 1}).to_list()
            counts = [
                next((r["count"] for r in d.get("tag_records", []) if r["name"] == "coupon"), 0) for d in docs
            ]
            return len(docs) == USERS and sum(counts) >= USERS * MESSAGES_PER_USER

        await eventually(all_applied, 120, "every event applied after the restart")
        await asyncio.sleep(1.0)  # anything replayed twice would land now
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)

    docs = await mongo_db["members"].find({}).to_list()
    assert sorted(d["user_id"] for d in docs) == users
    for doc in docs:
        coupon = next(r for r in doc["tag_records"] if r["name"] == "coupon")
        assert coupon["count"] == MESSAGES_PER_USER, doc["user_id"]  # each message counted exactly once
        assert doc["follow_count"] == 1
        assert doc["follow_state"] == "followed"
    # The channel's member counts (tag coverage) count every member once, however the kill fell.
    counts = await TaggerStore(mongo_db).load_counts(CHANNEL)
    assert counts.members == {"followed": USERS}
    assert (counts.tagged, counts.by_tag) == (USERS, {"coupon": USERS})
    # The sender's projection ends with every member's final state (replayed changes are dropped by version).
    records = await read_topic(
        kafka_bootstrap, f"{namespace}{topics.MEMBER_CHANGES}", count=USERS, settle_s=2
    )
    latest: dict[str, int] = {}
    tagged: dict[str, bool] = {}
    for record in records:
        change = MemberChangedEvent.model_validate_json(record.value).payload
        if change.version >= latest.get(change.user_id, 0):
            latest[change.user_id] = change.version
            tagged[change.user_id] = "coupon" in change.snapshot.tags
    assert sorted(latest) == users
    assert all(tagged.values())
    stored = {d["user_id"]: d["version"] for d in docs}
    assert latest == stored  # the last write of every member was published


async def test_write_without_publish_is_republished_on_replay(
    start_tagger: Any, inputs: Any, eventually: Eventually, kafka_bootstrap: str, namespace: str
) -> None:
    async with start_tagger() as tagger:
        service = tagger.service
        real_publish = service.pipeline._publish_all
        failures = {"left": 1}

        async def crash_once(messages: Any) -> None:
            if failures["left"] and messages:
                failures["left"] -= 1
                raise ConnectionError("simulated crash between the member write and the publish")
            await real_publish(messages)

        service.pipeline._publish_all = crash_once
        await inputs.events(inputs.line.follow("P1"), inputs.line.text("P1", "hello"))
        records = await read_topic(
            kafka_bootstrap, f"{namespace}{topics.MEMBER_CHANGES}", count=1, timeout_s=30
        )
        assert failures["left"] == 0
        change = MemberChangedEvent.model_validate_json(records[0].value).payload
        assert change.snapshot.follow_state == "followed"
        doc = await tagger.member("P1")
        assert doc["follow_count"] == 1
        assert doc["version"] == change.version == 1


async def test_bad_input_is_dead_lettered_and_the_consumer_carries_on(
    start_tagger: Any, inputs: Any, eventually: Eventually, kafka_bootstrap: str, namespace: str
) -> None:
    async with start_tagger() as tagger:
        await inputs.raw(topics.LINE_EVENTS, b"{not json", key=b"1234567890:U1")
        await inputs.raw(topics.MEMBER_ATTRIBUTES, b'{"schema": "Mystery"}', key=b"1234567890:U1")
        await inputs.raw(topics.SHOP_ORDERS, b'{"schema": "OrderEvent", "payload": {}}', key=b"1234567890:U1")
        await inputs.raw(topics.SEND_RESULTS, b"[]", key=b"1234567890:r")
        await inputs.update({"user_id": "G1", "attributes": {"region": "taipei"}})

        async def applied() -> bool:
            doc = await tagger.member("G1")
            return doc is not None and doc["attributes"].get("region") == "taipei"

        await eventually(applied, 20, "a good message after the bad ones applied")
        letters = {}
        for topic in (topics.LINE_EVENTS, topics.MEMBER_ATTRIBUTES, topics.SHOP_ORDERS, topics.SEND_RESULTS):
            records = await read_topic(
                kafka_bootstrap, f"{namespace}{topics.dlq(topic)}", count=1, timeout_s=30
            )
            assert len(records) == 1, topic
            letters[topic] = DeadLetter.model_validate_json(records[0].value)
    assert letters[topics.LINE_EVENTS].value == "{not json"
    assert "Mystery" in letters[topics.MEMBER_ATTRIBUTES].error
    assert "payload" in letters[topics.SHOP_ORDERS].error
    assert letters[topics.SEND_RESULTS].consumer.endswith("tagger")
