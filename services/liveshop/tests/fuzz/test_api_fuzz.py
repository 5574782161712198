"""Schemathesis against liveshop's own OpenAPI (sessions, products, orders, the POINTS ledger), liveshop
running on the real Kafka and MongoDB with the LINE emulator.

Valid and invalid requests for every operation, half of the valid ones about a live session and orders that
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
SESSION = {
    "title": "週末",
    "reservation_minutes": 30,
    "points_rate": 0.05,
    "points_cap": 100,
    "featured": "A01",
}
PRODUCTS = [
    {"code": "A01", "name": "洋裝", "price": 590, "stock": 50, "aliases": ["洋裝"]},
    {"code": "B02", "name": "T恤", "price": 290, "stock": {"紅 L": 5}, "variants": ["紅 L", "藍 M"]},
]


@dataclass
class Api:
    client: httpx.AsyncClient
    schema: BaseSchema
    cases: st.SearchStrategy[ApiCase]
    session_id: str
    order_ids: list[str]

    def seeds(self) -> list[tuple[str, str, dict[str, str], dict[str, Any]]]:
        """Valid requests with a body: (method, path, path parameters, body)."""
        session, order = {"session_id": self.session_id}, {"order_id": self.order_ids[0]}
        product = {
            "code": "C03",
            "name": "帽子",
            "price": 199.5,
            "stock": {"黑": 3},
            "variants": ["黑", "白"],
        }
        return [
            (
                "POST",
                "/channels/{channel_id}/sessions",
                {"channel_id": CHANNEL},
                {**SESSION, "products": PRODUCTS},
            ),
            ("PATCH", "/sessions/{session_id}", session, {"reservation_minutes": 15.5, "points_cap": 10}),
            ("POST", "/sessions/{session_id}/products", session, product),
            ("POST", "/sessions/{session_id}/featured", session, {"code": "B02"}),
            (
                "POST",
                "/sessions/{session_id}/restock",
                session,
                {"code": "B02", "variant": "紅 L", "quantity": 2},
            ),
            (
                "POST",
                "/orders/{order_id}/status",
                order,
                {"status": "paid", "amount_paid": 590, "discount": 10},
            ),
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
async def api(start_liveshop: Any, inputs: Any, liveshop_topics: None, eventually: Any) -> AsyncIterator[Api]:
    async with start_liveshop() as shop:
        client = shop.client
        session_id = (await shop.create_session(products=PRODUCTS, featured="A01"))["session_id"]
        await shop.call("POST", f"/sessions/{session_id}/start")
        await inputs.comments(session_id, ("c1", "U1", "+1"), ("c2", "U2", "B02 紅 L +1"))

        async def orders() -> list[str]:
            return [o["_id"] for o in (await shop.call("GET", f"/sessions/{session_id}/orders"))["orders"]]

        await eventually(lambda: _count(orders, 2), 30, "two orders")
        order_ids = await orders()
        schema = await load_schema(client)
        known = {"channel_id": [CHANNEL], "session_id": [session_id], "order_id": order_ids}
        yield Api(client, schema, cases(schema, known=known), session_id, order_ids)
        assert (await client.get("/healthz")).status_code == 200, "still serving"


async def _count(orders: Any, n: int) -> bool:
    return len(await orders()) == n


@settings(max_examples=examples(1000), deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_every_operation_answers_as_documented(api: Api, data: st.DataObject) -> None:
    case = data.draw(api.cases, label="case")
    validate(case, await call(api.client, case))


async def test_error_answers_are_documented(api: Api) -> None:
    """Found undocumented by schemathesis: 404s, 409s, FastAPI's 400 for a non-UTF-8 body, 422 sentences."""
    session = {"session_id": api.session_id}
    await api.check("GET", "/sessions/{session_id}", 404, path_parameters={"session_id": "nope"})
    await api.check("GET", "/orders/{order_id}", 404, path_parameters={"order_id": "nope"})
    await api.check(
        "POST", "/sessions/{session_id}/featured", 409, path_parameters=session, body={"code": "Z99"}
    )
    await api.check(
        "POST",
        "/sessions/{session_id}/restock",
        400,
        path_parameters=session,
        body=b"\xff{",
        media_type="application/json",
    )
    await api.check("GET", "/ledger", 422)  # neither session_id nor order_id
    await api.check(
        "POST",
        "/channels/{channel_id}/sessions",
        422,
        path_parameters={"channel_id": CHANNEL},
        body={"title": "x", "products": PRODUCTS, "featured": "Z99"},
    )
    await api.check("GET", "/orders/{order_id}", 200, path_parameters={"order_id": api.order_ids[0]})
    await api.check("GET", "/sessions/{session_id}/dashboard", 200, path_parameters=session)


async def test_start_pause_and_end_take_no_query_parameter(api: Api) -> None:
    """``…/pause?_status=ended`` ended the session: the bound status leaked as a query parameter."""
    operation = api.schema["/sessions/{session_id}/pause"]["POST"]
    assert [p.name for p in operation.iter_parameters()] == ["session_id"]
    answer = await api.client.post(f"/sessions/{api.session_id}/pause", params={"_status": "ended"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "paused"
    answer = await api.client.post(f"/sessions/{api.session_id}/start", params={"_status": "ended"})
    assert answer.json()["status"] == "live"


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
    """Found by the odd-value property: each was a 500 (FerretDB refusing infinity and 64-bit overflows)."""
    order, session = {"order_id": api.order_ids[1]}, {"session_id": api.session_id}
    paid = {"status": "paid", "amount_paid": 290}
    for odd in (b"1e999", b"Infinity", b"NaN"):
        raw = json_bytes(paid).replace(b"290", odd)
        await api.check("POST", "/orders/{order_id}/status", 422, path_parameters=order, body=paid, raw=raw)
    await api.check(
        "PATCH", "/sessions/{session_id}", 422, path_parameters=session, body={"points_cap": 2**64}
    )
    product = {"code": "D04", "name": "襪子", "price": 0, "stock": 2**64}
    await api.check("POST", "/sessions/{session_id}/products", 422, path_parameters=session, body=product)
    raw = json_bytes({**product, "stock": 1}).replace(b'"price": 0', b'"price": 1e999')
    await api.check(
        "POST", "/sessions/{session_id}/products", 422, path_parameters=session, body=product, raw=raw
    )
    await api.check("POST", "/orders/{order_id}/status", 200, path_parameters=order, body=paid)
