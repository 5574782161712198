"""Schemathesis against the sender's own OpenAPI (sends, quota, estimates, journeys, welcome messages), the
sender running on the real Kafka and MongoDB with the LINE emulator.

Valid and invalid requests for every operation, half of the valid ones about a channel, journey and send that
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

CHANNEL = "1234567890"  # configured by the sender conftest
USER = "U" + "a" * 32
TEXT = [{"type": "text", "text": "謝謝"}]
JOURNEY = {
    "name": "thanks",
    "trigger": {"kind": "friend_added", "sources": ["line_pay"]},
    "steps": [{"wait": 1, "at": "10:00", "otherwise": TEXT}],
}
WELCOME = {
    "messages": [*TEXT, {"type": "sticker", "packageId": "446", "stickerId": "1988"}],
    "unblocked_messages": TEXT,
    "by_source": [{"source": "line_pay", "messages": TEXT}],
}
BRANCHING = {
    "name": "sticker week",
    "trigger": {"kind": "friend_added", "sources": ["sticker"]},
    "steps": [
        {
            "wait": 2,
            "at": "12:00",
            "branches": [{"name": "young", "when": {"op": "age", "max": 30}, "messages": TEXT}],
            "otherwise": [{"type": "text", "text": "週末愉快"}],
        }
    ],
}
SEND = {"idempotency_key": "fuzz-1", "category": "transactional", "messages": TEXT}


@dataclass
class Api:
    client: httpx.AsyncClient
    schema: BaseSchema
    cases: st.SearchStrategy[ApiCase]
    journey_id: str

    def seeds(self) -> list[tuple[str, str, dict[str, str], Any]]:
        """Valid requests with a body: (method, path, path parameters, body)."""
        channel = {"channel_id": CHANNEL}
        segment = {"kind": "segment", "filter": {"op": "age", "min": 20}}
        return [
            (
                "POST",
                "/channels/{channel_id}/estimate",
                channel,
                {**SEND, "target": {"kind": "users", "user_ids": [USER, "U2"]}},
            ),
            (
                "POST",
                "/channels/{channel_id}/estimate",
                channel,
                {**SEND, "category": "marketing", "target": segment},
            ),
            ("POST", "/channels/{channel_id}/journeys", channel, BRANCHING),
            ("PUT", "/journeys/{journey_id}", {"journey_id": self.journey_id}, JOURNEY),
            ("PUT", "/channels/{channel_id}/welcome", channel, WELCOME),
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
async def api(start_sender: Any, publish: Any, eventually: Any) -> AsyncIterator[Api]:
    async with start_sender(journey_refresh_s=60.0) as sender:  # thousands of journeys get created
        client: httpx.AsyncClient = sender.client
        journey = await client.post(f"/channels/{CHANNEL}/journeys", json=JOURNEY)
        assert journey.status_code == 201, journey.text
        welcome = await client.put(f"/channels/{CHANNEL}/welcome", json={"messages": TEXT})
        assert welcome.status_code == 200, welcome.text
        await publish.send({**SEND, "target": {"kind": "user", "user_id": USER}})

        async def recorded() -> bool:
            answer = await client.get(f"/sends/{CHANNEL}/fuzz-1")
            return answer.status_code == 200

        await eventually(recorded, 20, "the send is recorded")
        journey_id = journey.json()["id"]
        schema = await load_schema(client)
        known = {"channel_id": [CHANNEL], "journey_id": [journey_id], "key": ["fuzz-1"]}
        yield Api(client, schema, cases(schema, known=known), journey_id)
        assert (await client.get("/healthz")).status_code == 200, "still serving"


@settings(max_examples=examples(1000), deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_every_operation_answers_as_documented(api: Api, data: st.DataObject) -> None:
    case = data.draw(api.cases, label="case")
    validate(case, await call(api.client, case))


async def test_error_answers_are_documented(api: Api) -> None:
    """Found undocumented by schemathesis: 404s, FastAPI's 400 for a body not in UTF-8, 422 sentences."""
    channel, journey = {"channel_id": CHANNEL}, {"journey_id": api.journey_id}
    await api.check("GET", "/journeys/{journey_id}", 404, path_parameters={"journey_id": "nope"})
    await api.check("POST", "/journeys/{journey_id}/disable", 404, path_parameters={"journey_id": "nope"})
    await api.check("GET", "/channels/{channel_id}/welcome", 404, path_parameters={"channel_id": "9"})
    await api.check("GET", "/channels/{channel_id}/quota", 404, path_parameters={"channel_id": "9"})
    await api.check("GET", "/sends/{channel_id}/{key}", 404, path_parameters={**channel, "key": "nope"})
    await api.check(
        "PUT",
        "/channels/{channel_id}/welcome",
        400,
        path_parameters=channel,
        body=b"\xff{",
        media_type="application/json",
    )
    estimate = {**SEND, "target": {"kind": "users", "user_ids": [USER, "U2"]}}
    await api.check(
        "POST", "/channels/{channel_id}/estimate", 422, path_parameters={"channel_id": "9"}, body=estimate
    )
    await api.check("POST", "/channels/{channel_id}/estimate", 200, path_parameters=channel, body=estimate)
    await api.check("GET", "/sends/{channel_id}/{key}", 200, path_parameters={**channel, "key": "fuzz-1"})
    await api.check("GET", "/journeys/{journey_id}/stats", 200, path_parameters=journey)


async def test_enable_and_disable_take_no_query_parameter(api: Api) -> None:
    """``?_enabled=false`` on …/enable disabled the journey: the bound value leaked as a query parameter."""
    operation = api.schema["/journeys/{journey_id}/enable"]["POST"]
    assert [p.name for p in operation.iter_parameters()] == ["journey_id"]
    answer = await api.client.post(f"/journeys/{api.journey_id}/enable", params={"_enabled": "false"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["enabled"] is True
    answer = await api.client.post(f"/journeys/{api.journey_id}/disable", params={"_enabled": "true"})
    assert answer.json()["enabled"] is False


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
    """Found by the odd-value property: each was a 500 (FerretDB refusing to store the message objects)."""
    channel = {"channel_id": CHANNEL}
    for odd in ({"$": 0}, {"a.b": 0}, {"n": 2**64}):
        welcome = {"messages": [{"type": "text", "text": "hi", **odd}]}
        await api.check("PUT", "/channels/{channel_id}/welcome", 422, path_parameters=channel, body=welcome)
    raw = json_bytes({"messages": [{"type": "text", "text": 0}]}).replace(b'"text": 0', b'"text": 1e999')
    await api.check(
        "PUT", "/channels/{channel_id}/welcome", 422, path_parameters=channel, body=WELCOME, raw=raw
    )
    journey = {**JOURNEY, "steps": [{"wait": 1, "otherwise": [{"type": "text", "text": "x", "$a": 1}]}]}
    await api.check("POST", "/channels/{channel_id}/journeys", 422, path_parameters=channel, body=journey)
