"""The dead-letter tool against the real Kafka: a record dead-lettered by DeadLetters is listed, inspected,
replayed onto its topic once (not twice), and a replay that fails again is replayed as a second generation."""

from __future__ import annotations

import io
from typing import Any

import pytest

from tagline_contracts import topics
from tagline_platform.deadletters import DeadLetters
from tagline_platform.dlq.cli import run
from tagline_platform.dlq.records import REPLAY_GENERATION, REPLAY_OF
from tagline_platform.kafka import create_broker, ensure_topics
from tagline_platform.settings import ServiceSettings
from tagline_testing.kafka import read_topic

pytestmark = pytest.mark.integration

BAD = b'{"event_id":"01BADREQUEST","channel_id":"123","payload":{"idempotency_key":"k1"}}'


async def tool(settings: ServiceSettings, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = await run(list(argv), settings=settings, out=out)
    return status, out.getvalue()


async def dead_letter(settings: ServiceSettings, record: Any, error: str) -> None:
    broker = create_broker(settings, client_id="dlq-tool-test")
    await broker.connect()
    try:
        await DeadLetters(broker, settings, consumer="tagline-sender").send(
            topics.SEND_REQUESTS, record, error
        )
    finally:
        await broker.stop()


async def test_list_inspect_and_replay_a_dead_letter(
    kafka_bootstrap: Any, namespace: Any, kafka_producer: Any
) -> None:
    settings = ServiceSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_namespace=namespace)
    original = settings.topic(topics.SEND_REQUESTS)
    dlq = settings.topic(topics.dlq(topics.SEND_REQUESTS))
    await ensure_topics(kafka_bootstrap, [original, dlq], partitions=3)
    await kafka_producer.send_and_wait(original, BAD, key=b"123:U1", headers=[("traceparent", b"00-abc-01")])
    [refused] = await read_topic(kafka_bootstrap, original, count=1)
    await dead_letter(settings, refused, "payload.messages: Field required")
    [letter] = await read_topic(kafka_bootstrap, dlq, count=1)
    where = f"{letter.partition}:{letter.offset}"

    status, text = await tool(settings, "list")
    assert status == 0
    assert text.splitlines()[0] == f"{dlq}: 1 record (p{letter.partition}=1)"
    [row] = [line for line in text.splitlines() if line.startswith(f"  {where} ")]
    assert row.split()[3:5] == ["tagline-sender", f"{refused.partition}:{refused.offset}"]
    assert row.endswith("payload.messages: Field required") and "123:U1" in row

    status, text = await tool(settings, "inspect", "send.requests.v1", where)
    assert status == 0
    assert "reason\n  payload.messages: Field required" in text
    assert "  traceparent: 00-abc-01" in text  # the original record's headers, read from its topic
    assert '"idempotency_key": "k1"' in text

    status, text = await tool(settings, "replay", "send.requests.dlq.v1", "--all", "--dry-run")
    assert status == 0 and "1 would be replayed" in text and "generation=1 (original record)" in text
    status, text = await tool(settings, "replay", "send.requests.dlq.v1", "--all")
    assert status == 0
    assert f"replayed         {dlq}:{where} → {original} {refused.partition}:" in text
    assert "generation=1 (original record)" in text and "1 replayed, 0 skipped" in text
    first, replayed = await read_topic(kafka_bootstrap, original, count=2)
    assert (replayed.key, replayed.value, replayed.partition) == (b"123:U1", BAD, first.partition)
    headers = dict(replayed.headers)
    assert headers["traceparent"] == b"00-abc-01"
    assert headers[REPLAY_OF] == f"{dlq}:{where}".encode()
    assert headers[REPLAY_GENERATION] == b"1"

    # a second replay of the same dead letter is skipped: nothing more lands on the topic
    status, text = await tool(settings, "replay", "send.requests.v1", "--since", "1h")
    assert status == 0 and "0 replayed, 1 skipped as already replayed" in text
    assert len(await read_topic(kafka_bootstrap, original, count=3, timeout_s=1.5)) == 2

    # the replay is refused again: its dead letter shows the chain, and replaying it is generation 2
    await dead_letter(settings, replayed, "still broken")
    letters = await read_topic(kafka_bootstrap, dlq, count=2)
    second = f"{letters[1].partition}:{letters[1].offset}"
    status, text = await tool(settings, "inspect", "send.requests.v1", second)
    assert f"it was itself a replay (generation 1) of {dlq}:{where}" in text
    status, text = await tool(settings, "replay", "send.requests.v1", "--offset", second)
    assert status == 0 and "generation=2 (original record)" in text and "1 replayed" in text
    third = (await read_topic(kafka_bootstrap, original, count=3))[2]
    assert dict(third.headers)[REPLAY_GENERATION] == b"2" and third.value == BAD

    status, text = await tool(settings, "list", "send.requests.v1", "--consumer", "nobody")
    assert status == 0 and text.strip() == f"{dlq}: 2 records (p{letter.partition}=2)"
    status, text = await tool(settings, "inspect", "send.requests.v1", "0:999")
    assert status == 1 and "no record at" in text
