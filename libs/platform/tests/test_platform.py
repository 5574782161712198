"""The shared plumbing: JSON logs, topic names, topic creation and the Mongo client, on the real servers."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, ServerSelectionTimeoutError

from tagline_contracts import topics
from tagline_platform.kafka import ensure_topics
from tagline_platform.logging import JsonFormatter
from tagline_platform.mongo import create_mongo_client
from tagline_platform.settings import ServiceSettings


def test_log_lines_are_json_with_context_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("ingest"))
    logger = logging.getLogger("tagline.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("published %d", 3, extra={"channel_id": "123", "event_id": "01ABC"})
    finally:
        logger.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert entry["msg"] == "published 3"
    assert entry["level"] == "warning"
    assert entry["service"] == "ingest"
    assert (entry["channel_id"], entry["event_id"]) == ("123", "01ABC")


def test_topic_names_and_dead_letter_topics() -> None:
    settings = ServiceSettings(topic_namespace="t1.")
    assert settings.topic(topics.LINE_EVENTS) == "t1.line.events.v1"
    assert topics.dlq(topics.SHOP_ORDER_STATUS) == "shop.order-status.dlq.v1"
    assert len(set(topics.ALL)) == len(topics.ALL)
    with pytest.raises(ValueError, match="version"):
        topics.dlq("unversioned")


def test_shared_settings_read_the_unprefixed_infrastructure_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("MONGODB_URL", "mongodb://m:1/")
    monkeypatch.setenv("TAGLINE_TOPIC_PARTITIONS", "12")
    settings = ServiceSettings()
    assert (settings.kafka_bootstrap_servers, settings.mongodb_url) == ("k1:9092,k2:9092", "mongodb://m:1/")
    assert settings.topic_partitions == 12


@pytest.mark.integration
async def test_ensure_topics_creates_with_partitions_and_is_idempotent(
    kafka_bootstrap: str, namespace: str
) -> None:
    names = [f"{namespace}{t}" for t in (topics.LINE_EVENTS, topics.MEMBER_CHANGES)]
    await ensure_topics(kafka_bootstrap, names, partitions=4)
    await ensure_topics(kafka_bootstrap, names, partitions=4)  # second start-up: no error
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    assert {d["topic"]: len(d["partitions"]) for d in described} == dict.fromkeys(names, 4)


@pytest.mark.integration
async def test_mongo_client_talks_to_the_real_server(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    members = mongo_db["members"]
    await members.create_index([("channel_id", 1), ("user_id", 1)], unique=True)
    await members.insert_one({"channel_id": "c", "user_id": "u", "tags": []})
    with pytest.raises(DuplicateKeyError):
        await members.insert_one({"channel_id": "c", "user_id": "u"})
    updated = await members.find_one_and_update(
        {"channel_id": "c", "user_id": "u"},
        {"$addToSet": {"tags": "vip"}, "$inc": {"count": 1}},
        return_document=True,
    )
    assert updated is not None
    assert (updated["tags"], updated["count"]) == (["vip"], 1)


async def test_mongo_client_fails_fast_when_nothing_listens(unused_tcp_port: int) -> None:
    client = create_mongo_client(f"mongodb://127.0.0.1:{unused_tcp_port}/", app_name="t", timeout_ms=300)
    try:
        with pytest.raises(ServerSelectionTimeoutError, match=r"127\.0\.0\.1"):
            await client.admin.command("ping")
    finally:
        await client.close()
