"""``python -m tagline_sender.request`` (``make send-request``) against the real Kafka: the record it
publishes is a valid ``SendMessages`` envelope under the sender's key, and a running sender sends it."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tagline_contracts import topics
from tagline_contracts.sending import SEND_MESSAGES_SCHEMA, SendMessages, SendRequested, send_request_key
from tagline_platform.kafka import ensure_topics
from tagline_platform.settings import ServiceSettings
from tagline_sender.request import run
from tagline_testing.kafka import read_topic

pytestmark = pytest.mark.integration

CHANNEL = "1234567890"
Eventually = Callable[..., Awaitable[None]]
REQUEST = {
    "idempotency_key": "hello-1",
    "category": "marketing",
    "messages": [{"type": "text", "text": "新品上市"}],
    "target": {"kind": "users", "user_ids": ["U1", "U2"]},
}


async def test_the_published_record_is_a_send_request_envelope_under_the_senders_key(
    kafka_bootstrap: str, namespace: str, tmp_path: Path
) -> None:
    topic = f"{namespace}{topics.SEND_REQUESTS}"
    await ensure_topics(kafka_bootstrap, [topic], partitions=3)
    file = tmp_path / "request.json"
    file.write_text(json.dumps(REQUEST, ensure_ascii=False), encoding="utf-8")
    # as `make send-request` runs it: Kafka and the namespace from the environment
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGLINE_")}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "TAGLINE_TOPIC_NAMESPACE": namespace}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tagline_sender.request", "--channel", CHANNEL, str(file),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
    assert process.returncode == 0, output

    [record] = await read_topic(kafka_bootstrap, topic, count=1, settle_s=0.5)
    envelope = SendRequested.model_validate_json(record.value)
    assert json.loads(record.value)["schema"] == SEND_MESSAGES_SCHEMA == "SendMessages"
    assert envelope.channel_id == CHANNEL
    assert envelope.payload == SendMessages.model_validate(REQUEST)
    assert record.key.decode() == send_request_key(CHANNEL, envelope.payload.target) == f"{CHANNEL}:users"
    assert f"partition {record.partition} offset {record.offset}" in output
    assert "curl -s http://127.0.0.1:8081/sends/1234567890/hello-1" in output


async def test_a_running_sender_sends_what_the_command_published(
    start_sender: Any, line: Any, kafka_bootstrap: str, namespace: str, eventually: Eventually
) -> None:
    settings = ServiceSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_namespace=namespace)
    async with start_sender() as sender:
        out = io.StringIO()
        status = await run(
            ["--channel", CHANNEL, "-", "--sender-url", "http://sender"],
            settings=settings,
            stdin=io.StringIO(json.dumps(REQUEST)),
            out=out,
        )
        assert status == 0, out.getvalue()
        url = re.search(r"curl -s http://sender(\S+)", out.getvalue())
        assert url is not None, out.getvalue()

        async def sent() -> bool:
            answer = await sender.client.get(url.group(1))
            return answer.status_code == 200 and bool(answer.json()["state"] == "planned")

        await eventually(sent, what="GET /sends/1234567890/hello-1 planned")
        await eventually(lambda: line.emu.deliveries(CHANNEL) == {"U1": 1, "U2": 1}, what="the multicast")


async def test_nothing_is_published_to_a_topic_that_does_not_exist(
    kafka_bootstrap: str, namespace: str
) -> None:
    settings = ServiceSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_namespace=namespace)
    out = io.StringIO()
    status = await run(
        ["--channel", CHANNEL, "-"], settings=settings, stdin=io.StringIO(json.dumps(REQUEST)), out=out
    )
    assert status == 1
    assert f"topic {namespace}send.requests.v1 does not exist" in out.getvalue()
