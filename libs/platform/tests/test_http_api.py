"""Error answers of the services' HTTP APIs: documented, never a 500 for NaN (tagline_platform.http_api)."""

from __future__ import annotations

import math
from typing import Annotated, Any

import httpx
from fastapi import Body, FastAPI, HTTPException
from pydantic import BaseModel

from tagline_platform.http_api import CONFLICT, NOT_FOUND, ErrorBody, finite, setup_errors


class Thing(BaseModel):
    name: str


def _app() -> FastAPI:
    api = FastAPI()

    @api.post("/things", status_code=201)
    async def create(thing: Thing) -> Thing:
        if thing.name == "taken":
            raise HTTPException(422, "a sentence, not a list")
        return thing

    @api.get("/things/{name}", responses={**NOT_FOUND, **CONFLICT})
    async def read(name: str) -> Thing:
        raise HTTPException(404, f"no {name}")

    @api.post("/echo")
    async def echo(value: Annotated[Any, Body()]) -> dict[str, Any]:
        if value == "http":
            raise HTTPException(409, [{"input": math.inf}])
        return {"value": value}

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    setup_errors(api)
    return api


async def test_bodies_document_400_and_every_422_takes_a_sentence_or_a_list() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await _check(client)


async def _check(client: httpx.AsyncClient) -> None:
    doc: dict[str, Any] = (await client.get("/openapi.json")).json()
    create, read = (
        doc["paths"]["/things"]["post"]["responses"],
        doc["paths"]["/things/{name}"]["get"]["responses"],
    )
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    assert create["400"]["content"]["application/json"]["schema"] == ref
    assert create["422"]["content"]["application/json"]["schema"] == ref
    assert "400" not in read, "no body, no parse error"
    assert read["404"]["content"]["application/json"]["schema"] == ref
    assert read["409"]["content"]["application/json"]["schema"] == ref
    assert set(doc["paths"]["/healthz"]["get"]["responses"]) == {"200"}
    assert doc["components"]["schemas"]["ErrorBody"]["required"] == ["detail"]
    assert (await client.get("/openapi.json")).json() == doc, "building it twice changes nothing"

    # What FastAPI and the handlers answer fits: pydantic's list, a sentence, and the parse error.
    json = {"content-type": "application/json"}
    for response, status in (
        (await client.post("/things", json={}), 422),
        (await client.post("/things", json={"name": "taken"}), 422),
        (await client.post("/things", content=b"\xff{", headers=json), 400),
        (await client.get("/things/x"), 404),
    ):
        assert response.status_code == status
        ErrorBody.model_validate(response.json())


async def test_nan_and_infinities_are_answered_as_strings_not_500() -> None:
    """Python reads NaN, Infinity and 1e999 in a body; starlette's JSONResponse could not write them back."""
    transport = httpx.ASGITransport(app=_app())
    json = {"content-type": "application/json"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        invalid = await client.post("/things", content=b'{"name": NaN}', headers=json)
        assert invalid.status_code == 422
        assert invalid.json()["detail"][0]["input"] == "nan"
        echoed = await client.post("/echo", content=b"[1e999, -Infinity, 1.5]", headers=json)
        assert echoed.json() == {"value": [None, None, 1.5]}, "FastAPI's own serialization writes null"
        conflict = await client.post("/echo", json="http")
        assert (conflict.status_code, conflict.json()) == (409, {"detail": [{"input": "inf"}]})


def test_finite_leaves_everything_else_alone() -> None:
    value = {"a": [1, 2.5, None, "x", True, (math.nan,)], "b": {"c": -math.inf}}
    assert finite(value) == {"a": [1, 2.5, None, "x", True, ["nan"]], "b": {"c": "-inf"}}


JSON = {"content-type": "application/json"}


async def _call(method: str, url: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.request(method, url, **kwargs)


async def test_a_nul_in_a_body_field_is_a_422_naming_the_field() -> None:
    """The store (PostgreSQL's jsonb) cannot hold NUL: it was a 500 from the database, now refused first."""
    answer = await _call("POST", "/echo", content=b'{"messages": [{"text": "a\\u0000b"}]}', headers=JSON)
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert error["loc"] == ["body", "messages", 0, "text"] and "NUL" in error["msg"]


async def test_a_nul_in_a_key_a_query_parameter_or_the_path_is_a_422() -> None:
    key = await _call("POST", "/echo", content=b'{"a\\u0000": 1}', headers=JSON)
    query = await _call("GET", "/things/x", params={"channel_id": "1\x00"})
    path = await _call("GET", "/things/a%00b")
    assert [key.status_code, query.status_code, path.status_code] == [422, 422, 422]
    assert key.json()["detail"][0]["loc"] == ["body", "a\\u0000"]
    assert query.json()["detail"][0]["loc"] == ["query", "channel_id"]
    assert path.json()["detail"][0]["loc"] == ["path"]


async def test_bodies_without_nul_reach_the_route_unchanged() -> None:
    escaped = await _call(
        "POST", "/echo", content=b'{"text": "a\\\\u0000 is how JSON spells NUL"}', headers=JSON
    )
    plain = await _call("POST", "/things", json={"name": "tea"})
    assert escaped.status_code == 200 and escaped.json() == {
        "value": {"text": "a\\u0000 is how JSON spells NUL"}
    }
    assert plain.status_code == 201 and plain.json() == {"name": "tea"}
