"""Error answers as the services' OpenAPI documents them (found by schemathesis: they were undocumented).

A route lists what it answers besides success with ``responses={**NOT_FOUND, **CONFLICT}``; wrapping the
app's ``openapi`` with :func:`with_error_responses` adds what FastAPI itself answers: 400 when a body cannot
be parsed (not UTF-8, say), and a 422 whose ``detail`` is pydantic's list of errors *or* a sentence (the
services' own checks answer with one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

__all__ = ["CONFLICT", "NOT_FOUND", "UNAVAILABLE", "ErrorBody", "add_error_responses", "with_error_responses"]


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


def with_error_responses(openapi: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Wrap a FastAPI app's ``openapi`` method: ``api.openapi = with_error_responses(api.openapi)``."""

    def build() -> dict[str, Any]:
        return add_error_responses(openapi())  # FastAPI caches the document: this edits it once

    return build
