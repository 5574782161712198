"""Operability: /metrics shows the quota left as it is used, records per consumer group and every group's lag;
SIGTERM lets a LINE call in progress finish and report before the sender exits 0."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from tagline_contracts import topics
from tagline_line_emulator import Fault
from tagline_testing.kafka import read_topic
from tagline_testing.metrics import sample, samples
from tagline_testing.processes import ServiceProcess, is_error

pytestmark = pytest.mark.integration

CHANNEL = "1234567890"
Eventually = Callable[..., Awaitable[None]]


def _groups(namespace: str) -> set[tuple[str, str]]:
    """Every (consumer group, topic) of a sender running journeys."""
    group = f"{namespace}sender"
    return {
        (group, topics.SEND_REQUESTS),
        (f"{group}-members", topics.MEMBER_CHANGES),
        (f"{group}-journeys", topics.MEMBER_CHANGES),
        (f"{group}-journeys-results", topics.SEND_RESULTS),
        (f"{group}-welcome", topics.LINE_EVENTS),
    }


def _push(key: str, user_id: str) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "category": "marketing",
        "messages": [{"type": "text", "text": "週末限定"}],
        "target": {"kind": "user", "user_id": user_id},
    }


async def test_quota_gauge_follows_reservations_and_consumers_are_counted(
    start_sender: Any, publish: Any, line: Any, eventually: Eventually, namespace: str
) -> None:
    async with start_sender(
        channel={"monthly_limit": 1000},
        quota_refresh_s=3600,  # LINE is asked once, at start: the gauge must move without it
        quota_gauge_refresh_s=0.1,
        consumer_lag_interval_s=0.1,
    ) as sender:

        async def metric(name: str, **labels: str) -> float | None:
            return sample((await sender.client.get("/metrics")).text, f"tagline_sender_{name}", **labels)

        async def quota_is(left: float) -> bool:
            return await metric("quota_remaining", channel_id=CHANNEL) == left

        await eventually(lambda: quota_is(1000), 10, "the month's quota")
        await publish.raw(topics.SEND_REQUESTS, b'{"schema": "SendRequested"}', key=f"{CHANNEL}:x".encode())
        await publish.send(_push("q-1", "U1"))
        await eventually(lambda: line.emu.deliveries(CHANNEL).get("U1") == 1, 20, "the push")
        await eventually(lambda: quota_is(999), 5, "the gauge after one message was used")

        async def accepted() -> bool:
            return await metric("deliveries_total", channel_id=CHANNEL, outcome="accepted") == 1

        await eventually(accepted, 5, "the send outcome")

        labels = {"group": f"{namespace}sender", "topic": topics.SEND_REQUESTS}
        assert await metric("records_handled_total", **labels) == 2
        assert await metric("records_dead_lettered_total", **labels) == 1
        assert await metric("records_failed_total", **labels) is None

        async def no_lag_anywhere() -> bool:
            text = (await sender.client.get("/metrics")).text
            lags = {(s["group"], s["topic"]): v for s, v in samples(text, "tagline_sender_consumer_lag")}
            return set(lags) == _groups(namespace) and set(lags.values()) == {0}

        await eventually(no_lag_anywhere, 10, "a lag of 0 for every consumer group")


async def test_sigterm_waits_for_the_line_call_in_progress_and_exits_0(
    line: Any,
    publish: Any,
    mongo_db: AsyncDatabase[dict[str, Any]],
    eventually: Eventually,
    kafka_bootstrap: str,
    mongodb_url: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "MONGODB_URL": mongodb_url,
        "TAGLINE_TOPIC_NAMESPACE": namespace,
        "TAGLINE_TOPIC_PARTITIONS": "3",
        "TAGLINE_SENDER_DATABASE": mongo_db.name,
        "TAGLINE_SENDER_GROUP_ID": f"{namespace}sender",
        "TAGLINE_SENDER_CHANNELS": json.dumps({CHANNEL: {"access_token": CHANNEL}}),
        "TAGLINE_SENDER_LINE_API_URL": line.url,
        "TAGLINE_SENDER_POLL_INTERVAL_S": "0.2",
        "TAGLINE_SENDER_CONSUMER_LAG_INTERVAL_S": "0.2",
    }
    sender = ServiceProcess("sender", env, tmp_path)
    try:
        await sender.wait_ready()

        async def every_group_has_a_lag() -> bool:
            response = await sender.get("/metrics")
            found = samples(response.text, "tagline_sender_consumer_lag") if response else []
            return {(labels["group"], labels["topic"]) for labels, _ in found} == _groups(namespace)

        await eventually(every_group_has_a_lag, 20, "the lag of every consumer group on /metrics")
        line.emu.inject(Fault(endpoint="push", kind="latency", delay_s=2.0, times=1))
        await publish.send(_push("term-1", "U1"))

        async def sending() -> bool:
            return await mongo_db["deliveries"].count_documents({"state": "sending"}) == 1

        await eventually(sending, 20, "the delivery claimed")
        await asyncio.sleep(0.3)  # the push is on its way to LINE, which answers 2 s later
        code, _ = await asyncio.to_thread(sender.terminate, 20)
    finally:
        sender.kill()

    assert code == 0, sender.output()
    logs = sender.logs()
    assert all("raw" not in entry for entry in logs), sender.output()
    assert [e for e in logs if is_error(e)] == []
    assert [e["logger"] for e in logs if e.get("msg") == "stopped cleanly"] == ["tagline.sender"]
    [planned] = [e for e in logs if e.get("msg") == "send planned"]
    assert planned["channel_id"] == CHANNEL
    assert planned["event_id"]
    assert line.emu.deliveries(CHANNEL) == {"U1": 1}
    [doc] = await mongo_db["deliveries"].find({}).to_list()
    assert doc["state"] == "sent"
    assert "pending_result" not in doc  # its result went out before the producer closed
    [result] = await read_topic(kafka_bootstrap, f"{namespace}{topics.SEND_RESULTS}", count=1, timeout_s=10)
    assert json.loads(result.value)["payload"]["outcome"] == "accepted"
