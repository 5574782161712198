"""What every service's FastAPI app shares about errors (found by fuzzing the APIs with schemathesis).

* Documentation: a route lists what it answers besides success with ``responses={**NOT_FOUND, **CONFLICT}``;
  :func:`setup_errors` makes the OpenAPI also say what FastAPI itself answers: 400 when a body cannot be
  parsed (not UTF-8, say), and a 422 whose ``detail`` is pydantic's list of errors *or* a sentence (the
  services' own checks answer with one).
* Non-finite numbers: Python's JSON parser reads ``NaN``, ``Infinity`` and ``1e999`` (valid JSON) as floats
  that JSON cannot carry back, so a 422 echoing such an input (or an error detail holding one) was a 500.
  The error handlers answer with :class:`FiniteJSONResponse`, which writes them as strings (``"inf"``,
  ``"-inf"``, ``"nan"``). (FastAPI already writes them as ``null`` in what routes return.)
* NUL characters: the store (PostgreSQL's jsonb under FerretDB) cannot hold ``\\u0000``; :class:`RefuseNul`
  answers 422 naming the path, query parameter or body field that holds one, before any route runs.

Call ``setup_errors(api)`` once the routes are registered.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.utils import is_body_allowed_for_status_code
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tagline_contracts.base import NUL, find_nul

__all__ = [
    "CONFLICT",
    "NOT_FOUND",
    "UNAVAILABLE",
    "ErrorBody",
    "FiniteJSONResponse",
    "RefuseNul",
    "add_error_responses",
    "finite",
    "setup_errors",
]


class ErrorBody(BaseModel):
    """The body of every error answer: a sentence, or a list of the problems (pydantic's errors)."""

    detail: str | list[Any]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _error("What the path names does not exist")}
CONFLICT: dict[int | str, dict[str, Any]] = {409: _error("The current state does not allow it (the reason)")}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: _error("A server it depends on does not answer")}

_REF = "#/components/schemas/ErrorBody"
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def _content() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF}}}


def add_error_responses(document: dict[str, Any]) -> dict[str, Any]:
    """Add the 400 and widen the 422 of every operation of an OpenAPI ``document`` (in place, idempotent)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}"))
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:
                responses.setdefault(
                    "400", {"description": "The body could not be parsed (not UTF-8)", "content": _content()}
                )
            if "422" in responses:
                responses["422"] = {
                    "description": "Invalid request: pydantic's errors, or the reason",
                    "content": _content(),
                }
    return document


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in dicts, lists, tuples) replaced by ``str(number)``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


class FiniteJSONResponse(JSONResponse):
    """Starlette's JSON answer, except that NaN and infinities become strings instead of a 500."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:  # "Out of range float values are not JSON compliant"
            return json.dumps(
                finite(content), ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
            ).encode("utf-8")


async def _validation_error(_request: Request, exc: Exception) -> Response:
    if not isinstance(exc, RequestValidationError):
        raise exc
    return FiniteJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)


async def _http_error(_request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):
        raise exc
    if not is_body_allowed_for_status_code(exc.status_code):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return FiniteJSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


class RefuseNul:
    """ASGI middleware: a request whose path, query or JSON body holds a NUL character is answered 422.

    The body is read only to look for the JSON escape ``\\u0000`` (a raw NUL byte is invalid JSON, which the
    route refuses anyway); only when it is there is the body parsed to name the field. The body is then
    handed on unchanged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = _nul_in_target(scope)
        messages: list[Message] = []
        if where is None and scope["method"] in {"POST", "PUT", "PATCH", "DELETE"}:
            chunks: list[bytes] = []
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request":
                    break
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            if b"\\u0000" in body and _is_json(scope):
                try:
                    found = find_nul(json.loads(body))
                except ValueError:
                    found = None  # not JSON after all: the route answers that
                where = None if found is None else ("body", *found)
        if where is not None:
            detail = [
                {
                    "type": "string_nul",
                    "loc": list(where),
                    "msg": "holds a NUL character (\\u0000), which cannot be stored",
                    "input": None,
                }
            ]
            await FiniteJSONResponse({"detail": detail}, status_code=422)(scope, receive, send)
            return
        replay = iter(messages)

        async def receive_again() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, receive_again if messages else receive, send)


def _nul_in_target(scope: Scope) -> tuple[str | int, ...] | None:
    if NUL in scope.get("path", ""):
        return ("path",)
    query = scope.get("query_string", b"").decode("latin-1")
    if "%00" in query or NUL in query:
        for name, value in parse_qsl(query, keep_blank_values=True):
            if NUL in name or NUL in value:
                return ("query", name.replace(NUL, ""))
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return b"json" in value.lower()
    return True  # FastAPI reads a body without a content type as JSON too


def setup_errors(api: FastAPI) -> None:
    """Document the error answers in ``api``'s OpenAPI, answer errors with :class:`FiniteJSONResponse` and
    refuse NUL characters (:class:`RefuseNul`)."""
    api.add_middleware(RefuseNul)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(HTTPException, _http_error)
    api.openapi = with_error_responses(api.openapi)  # type: ignore[method-assign]


def with_error_responses(openapi: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Wrap a FastAPI app's ``openapi`` method: ``api.openapi = with_error_responses(api.openapi)``."""

    def build() -> dict[str, Any]:
        return add_error_responses(openapi())  # FastAPI caches the document: this edits it once

    return build
