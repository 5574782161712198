"""Schemathesis against the tagger's own OpenAPI, the tagger running on the real Kafka and MongoDB.

Valid and invalid requests for every operation, half of the valid ones about a channel, rule and member that
exist: no answer may be a 5xx, and each must match the documented status codes, content type and schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.schemas import BaseSchema

from tagline_testing.apifuzz import ApiCase, call, cases, example, load_schema, validate

pytestmark = pytest.mark.integration

CHANNEL = "1234567890"
USER = "U" + "a" * 32
RULE = {
    "name": "vip",
    "tag": "vip",
    "condition": {"kind": "keyword", "match": "contains", "patterns": ["vip"]},
}


@dataclass
class Api:
    client: httpx.AsyncClient
    schema: BaseSchema
    cases: st.SearchStrategy[ApiCase]
    rule_id: str

    async def check(self, method: str, path: str, status: int, **values: Any) -> httpx.Response:
        """Send one hand-made case; its answer must be ``status`` and as documented."""
        case = example(self.schema, method, path, **values)
        response = await call(self.client, case)
        assert response.status_code == status, response.text
        validate(case, response)
        return response


@pytest.fixture
async def api(start_tagger: Any, eventually: Any) -> AsyncIterator[Api]:
    async with start_tagger() as tagger:
        client = tagger.client
        rule = await client.post(f"/channels/{CHANNEL}/rules", json=RULE)
        assert rule.status_code == 201, rule.text
        tagged = await client.post(f"/channels/{CHANNEL}/members/{USER}/tags", json={"name": "fan"})
        assert tagged.status_code == 202, tagged.text
        await eventually(lambda: tagger.member(USER), 20, "the member exists")
        rule_id = rule.json()["id"]
        schema = await load_schema(client)
        known = {"channel_id": [CHANNEL], "rule_id": [rule_id], "user_id": [USER], "name": ["fan"]}
        yield Api(client, schema, cases(schema, known=known), rule_id)
        assert (await client.get("/healthz")).status_code == 200, "still serving"


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_every_operation_answers_as_documented(api: Api, data: st.DataObject) -> None:
    case = data.draw(api.cases, label="case")
    validate(case, await call(api.client, case))


async def test_error_answers_are_documented(api: Api) -> None:
    """Found undocumented by schemathesis: 404s, FastAPI's 400 for a body not in UTF-8, 422 sentences."""
    channel, member = {"channel_id": CHANNEL}, {"channel_id": CHANNEL, "user_id": USER}
    await api.check("GET", "/rules/{rule_id}", 404, path_parameters={"rule_id": "nope"})
    await api.check("DELETE", "/rules/{rule_id}", 404, path_parameters={"rule_id": "nope"})
    await api.check(
        "GET", "/channels/{channel_id}/members/{user_id}", 404, path_parameters={**member, "user_id": "U0"}
    )
    await api.check("GET", "/channels/{channel_id}/rfm", 404, path_parameters=channel)
    await api.check(
        "POST",
        "/channels/{channel_id}/rules",
        400,
        path_parameters=channel,
        body=b"\xff{",
        media_type="application/json",
    )
    await api.check(
        "POST",
        "/channels/{channel_id}/members/{user_id}/tags",
        422,
        path_parameters=member,
        body={"name": "x", "origin": "keyword"},
    )
    await api.check("PUT", "/rules/{rule_id}", 200, path_parameters={"rule_id": api.rule_id}, body=RULE)
    await api.check("GET", "/channels/{channel_id}/members/{user_id}", 200, path_parameters=member)
