"""Schemathesis against a service's own OpenAPI, through the test's ``httpx`` client.

Services run in-process on the test's event loop (their Kafka and MongoDB clients live there), so requests go
through the ``httpx.ASGITransport`` client of the service fixtures rather than schemathesis' own ASGI client,
which runs the app on another thread's loop. Schemathesis generates the cases (positive and negative, from the
document served at ``/openapi.json``) and checks the responses::

    schema = await load_schema(client)
    # in a @given(case=cases(schema)) test, or drawing with data.draw(cases(schema)):
    response = await call(client, case)
    validate(case, response)  # raises schemathesis' FailureGroup with a curl command to reproduce
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import CheckFunction, load_all_checks
from schemathesis.schemas import BaseSchema

__all__ = ["CHECKS", "ApiCase", "call", "cases", "example", "load_schema", "validate"]

ApiCase = Case[Any]
"""A request schemathesis generated for one operation."""

CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)
"""The checks that judge one response; those that send more requests of their own are left out."""


def _checks() -> list[CheckFunction]:
    load_all_checks()
    return [getattr(schemathesis.checks, name) for name in CHECK_NAMES]  # registered by load_all_checks()


CHECKS = _checks()


async def load_schema(client: httpx.AsyncClient, path: str = "/openapi.json") -> BaseSchema:
    """The OpenAPI document the service serves, loaded by schemathesis."""
    response = await client.get(path)
    response.raise_for_status()
    return schemathesis.openapi.from_dict(response.json())


def cases(
    schema: BaseSchema,
    *,
    known: Mapping[str, Iterable[str]] | None = None,
    exclude_paths: Iterable[str] = (),
) -> st.SearchStrategy[ApiCase]:
    """Cases for every operation: valid and invalid requests, the invalid ones a quarter of the time.

    ``known`` lists path parameter values that name something that exists (a channel, a rule, a session):
    half of the valid cases use them (never to delete them), so the operations behind a lookup get past their
    404.
    """
    excluded = list(exclude_paths)
    if excluded:
        schema = schema.exclude(path=excluded)
    valid = schema.as_strategy(GenerationMode.POSITIVE)
    invalid = schema.as_strategy(GenerationMode.NEGATIVE)
    if not known:
        return st.one_of(valid, valid, valid, invalid)
    names = sorted(known)
    keeping = schema.exclude(method="DELETE")
    existing = st.fixed_dictionaries({name: st.sampled_from(sorted(known[name])) for name in names}).flatmap(
        lambda values: keeping.as_strategy(GenerationMode.POSITIVE, path_parameters=values)
    )
    return st.one_of(valid, existing, existing, invalid)


def example(schema: BaseSchema, method: str, path: str, **values: Any) -> ApiCase:
    """One case chosen by hand: ``path_parameters=``, ``query=``, ``body=``, ``media_type=``, ``headers=``."""
    operation: Any = schema[path][method.upper()]
    case: ApiCase = operation.Case(**values)
    return case


async def call(client: httpx.AsyncClient, case: ApiCase) -> httpx.Response:
    """Send ``case`` with ``client`` (whose base URL stands in for the schema's)."""
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url).rstrip("/"))
    content: Any = kwargs.pop("data", None)
    if isinstance(content, str):
        content = content.encode()
    request = client.build_request(
        kwargs.pop("method"),
        kwargs.pop("url"),
        params=kwargs.pop("params", None) or None,
        headers=kwargs.pop("headers", None),
        cookies=kwargs.pop("cookies", None) or None,
        json=kwargs.pop("json", None),
        content=content,
    )
    unexpected = set(kwargs) - {"files", "auth"}
    assert not unexpected, f"transport arguments not passed on: {unexpected}"
    assert not kwargs.get("files"), "multipart bodies are not used by these APIs"
    return await client.send(request)


def validate(case: ApiCase, response: httpx.Response) -> None:
    """Run :data:`CHECKS` on the response; raises schemathesis' ``FailureGroup`` (with a curl command)."""
    case.validate_response(response, checks=CHECKS)
