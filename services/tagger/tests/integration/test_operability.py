"""Operability: /metrics counts records per consumer and shows its lag; SIGTERM stops the tagger cleanly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from pymongo.asynchronous.database import AsyncDatabase

from tagline_contracts import topics
from tagline_testing.metrics import sample
from tagline_testing.processes import ServiceProcess, is_error

Eventually = Callable[..., Awaitable[None]]
CHANNEL = "1234567890"
MEMBER_TOPICS = (topics.LINE_EVENTS, topics.MEMBER_ATTRIBUTES, topics.SHOP_ORDERS)


async def test_metrics_count_handled_failed_and_dead_lettered_records_and_show_the_lag(
    start_tagger: Any, inputs: Any, eventually: Eventually, namespace: str
) -> None:
    group, results_group = f"{namespace}tagger", f"{namespace}tagger-results"
    async with start_tagger(consumer_lag_interval_s=0.1) as tagger:
        service = tagger.service
        real_handle, real_publish = service.pipeline.handle, service.pipeline._publish_all
        release = asyncio.Event()
        failures = {"left": 0}

        async def held_handle(records: Sequence[Any]) -> None:
            await release.wait()
            await real_handle(records)

        async def publish_failing_once(messages: Any) -> None:
            if failures["left"] and messages:
                failures["left"] -= 1
                raise ConnectionError("simulated Kafka outage while publishing member changes")
            await real_publish(messages)

        service.pipeline.handle = held_handle
        service.pipeline._publish_all = publish_failing_once
        await inputs.raw(topics.LINE_EVENTS, b"{not json", key=f"{CHANNEL}:U1".encode())
        await inputs.events(inputs.line.follow("M1"), inputs.line.follow("M2"))
        await inputs.raw(topics.SEND_RESULTS, b"[]", key=f"{CHANNEL}:r1".encode())

        async def metric(name: str, **labels: str) -> float | None:
            text = (await tagger.client.get("/metrics")).text
            return sample(text, f"tagline_tagger_{name}", **labels)

        async def lag_is(expected: float, group_id: str, topic: str) -> bool:
            return await metric("consumer_lag", group=group_id, topic=topic) == expected

        # the member batch is held: nothing of line.events.v1 is committed, all three records lag
        await eventually(lambda: lag_is(3, group, topics.LINE_EVENTS), 20, "the held records as lag")
        release.set()
        await eventually(
            lambda: lag_is(0, group, topics.LINE_EVENTS), 20, "no lag once the records were handled"
        )
        for topic in MEMBER_TOPICS:
            assert await lag_is(0, group, topic), topic
        await eventually(lambda: lag_is(0, results_group, topics.SEND_RESULTS), 20, "no send results lag")

        labels = {"group": group, "topic": topics.LINE_EVENTS}
        assert await metric("records_handled_total", **labels) == 3
        assert await metric("records_failed_total", **labels) is None
        assert await metric("records_dead_lettered_total", **labels) == 1
        assert await metric("records_handled_total", group=results_group, topic=topics.SEND_RESULTS) == 1
        # the send results' dead letters name the tagger's main group as their consumer (DeadLetter.consumer)
        assert await metric("records_dead_lettered_total", group=group, topic=topics.SEND_RESULTS) == 1

        failures["left"] = 1  # the next batch fails once and is consumed again
        await inputs.events(inputs.line.follow("M3"))

        async def handled(count: float) -> bool:
            return await metric("records_handled_total", **labels) == count

        await eventually(lambda: handled(4), 20, "the failed record handled on its second delivery")
        assert failures["left"] == 0
        assert await metric("records_failed_total", **labels) == 1
        assert await metric("records_dead_lettered_total", **labels) == 1


def _env(settings: Any) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MONGODB_URL": settings.mongodb_url,
        "TAGLINE_TOPIC_NAMESPACE": settings.topic_namespace,
        "TAGLINE_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "TAGLINE_TAGGER_DATABASE": settings.database,
        "TAGLINE_TAGGER_GROUP_ID": settings.group_id,
        "TAGLINE_TAGGER_CHANNELS": json.dumps(settings.channels),
        "TAGLINE_TAGGER_MAX_BATCH": str(settings.max_batch),
        "TAGLINE_TAGGER_JOBS": "false",
        "TAGLINE_TAGGER_CONSUMER_LAG_INTERVAL_S": "0.2",
    }


async def test_sigterm_mid_stream_finishes_the_batch_commits_it_and_exits_0(
    tagger_settings: Any,
    tagger_topics: None,
    inputs: Any,
    mongo_db: AsyncDatabase[dict[str, Any]],
    kafka_bootstrap: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    users, follows_each = 60, 50  # a follow event adds one to the member's follow_count, every time
    events = [inputs.line.follow(f"S{u:02d}") for _ in range(follows_each) for u in range(users)]
    for start in range(0, len(events), 500):
        await inputs.events(*events[start : start + 500])
    total = len(events)
    settings = tagger_settings(max_batch=50)
    tagger = ServiceProcess("tagger", _env(settings), tmp_path)
    try:
        await tagger.wait_ready()
        labels = {"group": settings.group_id, "topic": topics.LINE_EVENTS}
        handled = 0.0
        while handled < total / 4:
            response = await tagger.get("/metrics")
            handled = (
                response and sample(response.text, "tagline_tagger_records_handled_total", **labels)
            ) or 0
            assert tagger.process.poll() is None, tagger.output()
            await asyncio.sleep(0.01)
        code, took = tagger.terminate(20)
    finally:
        tagger.kill()

    assert code == 0, tagger.output()
    assert took < 20
    logs = tagger.logs()
    assert all("raw" not in entry for entry in logs), "every log line is JSON"
    assert [e for e in logs if is_error(e)] == []
    assert [e["logger"] for e in logs if e.get("msg") == "stopped cleanly"] == ["tagline.tagger"]
    # what was applied is exactly what was committed: the batch in hand finished and its offsets went in
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(settings.group_id)
    finally:
        await admin.close()
    done = sum(o.offset for tp, o in committed.items() if tp.topic == f"{namespace}{topics.LINE_EVENTS}")
    docs = await mongo_db["members"].find({}, {"follow_count": 1}).to_list()
    applied = sum(doc["follow_count"] for doc in docs)
    assert applied == done
    assert 0 < done < total, "stopped before or after the stream: the shutdown was not tested mid-stream"
