"""Schemathesis against ingest's own OpenAPI (the webhook as documented, health, readiness), real Kafka.

Generated requests are not signed, so the webhook answers 401 (a configured channel) or 404; signed requests
are fuzzed in test_webhook_fuzz.py. Every answer must be as documented, and nothing may be published.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagline_contracts import topics
from tagline_testing.apifuzz import ApiCase, call, cases, examples, load_schema, validate
from tagline_testing.kafka import read_topic

pytestmark = pytest.mark.integration

CHANNELS = ["1234567890", "2000000001"]  # configured by the ingest conftest


@dataclass
class Api:
    client: httpx.AsyncClient
    cases: st.SearchStrategy[ApiCase]
    statuses: dict[int, int] = field(default_factory=dict)


@pytest.fixture
async def api(start_ingest: Any, kafka_bootstrap: str) -> AsyncIterator[Api]:
    async with start_ingest(kafka_bootstrap_servers=kafka_bootstrap) as ingest:
        client = ingest.client
        fuzzed = Api(client, cases(await load_schema(client), known={"channel_id": CHANNELS}))
        yield fuzzed
        assert fuzzed.statuses.get(401), f"a configured channel was reached: {fuzzed.statuses}"
        topic = ingest.settings.topic(topics.LINE_EVENTS)
    assert await read_topic(kafka_bootstrap, topic, count=1, timeout_s=2.0) == [], "nothing is published"


@settings(max_examples=examples(300), deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_every_operation_answers_as_documented(api: Api, data: st.DataObject) -> None:
    case = data.draw(api.cases, label="case")
    response = await call(api.client, case)
    api.statuses[response.status_code] = api.statuses.get(response.status_code, 0) + 1
    validate(case, response)
