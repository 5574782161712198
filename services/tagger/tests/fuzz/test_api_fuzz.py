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

from tagline_testing.apifuzz import (
    ApiCase,
    call,
    cases,
    example,
    examples,
    json_bytes,
    load_schema,
    odd_variants,
    validate,
)

pytestmark = pytest.mark.integration

CHANNEL = "1234567890"
USER = "U" + "a" * 32
TAG = {"name": "fan", "origin": "import", "expires_at": "2030-01-01T00:00:00+08:00"}
SEGMENT = {
    "op": "and",
    "conditions": [
        {"op": "age", "min": 35, "max": 60},
        {"op": "attribute", "key": "level", "gte": 2.5},
        {"op": "not", "condition": {"op": "tags", "any": ["vip"]}},
        {"op": "last_interaction", "within_days": 30},
    ],
}
REPLY = [
    {"type": "text", "text": "優惠券在這裡"},
    {"type": "sticker", "packageId": "446", "stickerId": "1988"},
]
REPLYING_RULE: dict[str, Any] = {
    "name": "coupon",
    "tag": "coupon",
    "tag_ttl_s": 86_400,
    "cooldown_s": 3_600,
    "condition": {"kind": "keyword", "match": "contains", "patterns": ["優惠券"], "auto_reply": REPLY},
    "set_attributes": {"level": 3, "source": "keyword"},
}
SPENDING_RULE = {
    "name": "big spender",
    "tag": "vip",
    "condition": {"kind": "total_spend", "at_least": 5000.5},
}
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

    def seeds(self) -> list[tuple[str, str, dict[str, str], Any]]:
        """Valid requests with a body: (method, path, path parameters, body)."""
        channel, member = {"channel_id": CHANNEL}, {"channel_id": CHANNEL, "user_id": USER}
        return [
            ("POST", "/channels/{channel_id}/rules", channel, REPLYING_RULE),
            ("POST", "/channels/{channel_id}/rules", channel, SPENDING_RULE),
            ("PUT", "/rules/{rule_id}", {"rule_id": self.rule_id}, REPLYING_RULE),
            ("POST", "/channels/{channel_id}/members/{user_id}/tags", member, TAG),
            ("POST", "/channels/{channel_id}/segments/validate", channel, SEGMENT),
            ("POST", "/channels/{channel_id}/segments/count", channel, SEGMENT),
            ("POST", "/channels/{channel_id}/segments/members", channel, SEGMENT),
        ]

    async def check(
        self, method: str, path: str, status: int | range, *, raw: bytes | None = None, **values: Any
    ) -> httpx.Response:
        """Send one hand-made case (``raw``: the body as bytes); the answer must be ``status``, documented."""
        case = example(self.schema, method, path, **values)
        response = await call(self.client, case, content=raw)
        assert response.status_code in (status if isinstance(status, range) else {status}), response.text
        validate(case, response)
        return response


@pytest.fixture
async def api(start_tagger: Any, eventually: Any) -> AsyncIterator[Api]:
    async with start_tagger(rules_refresh_s=60.0) as tagger:  # thousands of rules get created
        client = tagger.client
        rule = await client.post(f"/channels/{CHANNEL}/rules", json=RULE)
        assert rule.status_code == 201, rule.text
        tagged = await client.post(
            f"/channels/{CHANNEL}/members/{USER}/tags", json={"name": "fan"}, params={"create": "true"}
        )
        assert tagged.status_code == 202, tagged.text
        await eventually(lambda: tagger.member(USER), 20, "the member exists")
        rule_id = rule.json()["id"]
        schema = await load_schema(client)
        known = {"channel_id": [CHANNEL], "rule_id": [rule_id], "user_id": [USER], "name": ["fan"]}
        yield Api(client, schema, cases(schema, known=known), rule_id)
        assert (await client.get("/healthz")).status_code == 200, "still serving"


@settings(max_examples=examples(1000), deadline=None, suppress_health_check=list(HealthCheck))
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
    too_long = {**member, "user_id": "U" * 101}  # MemberUpdated refused it inside the handler: a 500
    await api.check(
        "POST", "/channels/{channel_id}/members/{user_id}/tags", 422, path_parameters=too_long, body=TAG
    )
    await api.check("PUT", "/rules/{rule_id}", 200, path_parameters={"rule_id": api.rule_id}, body=RULE)
    await api.check("GET", "/channels/{channel_id}/members/{user_id}", 200, path_parameters=member)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_valid_bodies_with_an_odd_value(api: Api, data: st.DataObject) -> None:
    """Valid requests with one or two values replaced (NaN, 1e999, huge, wrong types) or removed: no 5xx."""
    method, path, parameters, body = data.draw(st.sampled_from(api.seeds()), label="seed")
    odd = data.draw(odd_variants(body), label="body")
    case = example(
        api.schema, method, path, path_parameters=parameters, body=odd, media_type="application/json"
    )
    validate(case, await call(api.client, case, content=json_bytes(odd)))


async def test_the_seed_requests_are_valid(api: Api) -> None:
    """The requests the odd values go into are accepted as they are (else the property tests little)."""
    for method, path, parameters, body in api.seeds():
        await api.check(method, path, range(200, 300), path_parameters=parameters, body=body)


async def test_values_mongodb_or_json_cannot_hold_are_422(api: Api) -> None:
    """Found by the odd-value property: each was a 500 (FastAPI echoing NaN; FerretDB refusing the write)."""
    channel = {"channel_id": CHANNEL}
    rules = "/channels/{channel_id}/rules"
    await api.check("POST", rules, 422, path_parameters=channel, body=RULE, raw=b'{"name": NaN}')
    for odd in (b"1e999", b"-Infinity", b"18446744073709551616"):
        body = json_bytes({**REPLYING_RULE, "set_attributes": {"level": 0}}).replace(
            b'"level": 0', b'"level": ' + odd
        )
        await api.check("POST", rules, 422, path_parameters=channel, body=REPLYING_RULE, raw=body)
    for message in ({"type": "text", "text": "x", "$where": 1}, {"type": "text", "text": "x", "n": 2**64}):
        spec = {**REPLYING_RULE, "condition": {**REPLYING_RULE["condition"], "auto_reply": [message]}}
        await api.check("POST", rules, 422, path_parameters=channel, body=spec)
