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

import copy
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import CheckFunction, load_all_checks
from schemathesis.schemas import BaseSchema

from tagline_testing.envvars import fuzz_scale

__all__ = [
    "CHECKS",
    "ODD_VALUES",
    "ApiCase",
    "call",
    "cases",
    "example",
    "examples",
    "json_bytes",
    "load_schema",
    "odd_variants",
    "validate",
]

ApiCase = Case[Any]
"""A request schemathesis generated for one operation."""

CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
"""The checks that judge one response; those that send more requests of their own are left out, and so is
``negative_data_rejection``: pydantic's lax mode accepts what the schema calls invalid (``2.5`` or ``"2"``
where it says a date-time or an integer), by design, so that check fails at random."""


def examples(count: int) -> int:
    """``count`` times ``TAGLINE_FUZZ_SCALE`` (default 1), for the ``max_examples`` of fuzz tests.

    ``TAGLINE_FUZZ_SCALE=20 pytest services/*/tests/fuzz`` fuzzes twenty times longer than CI does.
    """
    return count * fuzz_scale()


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


ODD_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(
        [
            math.inf,
            -math.inf,
            math.nan,
            1e308,
            -1e308,
            2**64,
            -(2**63) - 1,
            10**30,
            -1,
            0,
            0.5,
            True,
            None,
            "",
            [],
        ]
    ),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.integers(1_000, 100_000).map(lambda n: "長" * n),
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
)
"""Values a careless client puts where a valid body had something else (non-finite numbers included)."""


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def odd_variants(draw: st.DrawFn, body: Any) -> Any:
    """``body`` (a valid request body) with one or two of its values replaced or removed."""
    body = copy.deepcopy(body)
    for _ in range(draw(st.integers(1, 2))):
        paths = _paths(body)[1:]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(ODD_VALUES)
    return body


def json_bytes(value: Any) -> bytes:
    """JSON as Python writes it by default: ``NaN`` and ``Infinity`` included (``1e999`` parses as those)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


async def call(client: httpx.AsyncClient, case: ApiCase, *, content: bytes | None = None) -> httpx.Response:
    """Send ``case`` with ``client`` (its base URL stands in for the schema's); ``content``: the raw body."""
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url).rstrip("/"))
    body: Any = kwargs.pop("data", None)
    if isinstance(body, str):
        body = body.encode()
    as_json = kwargs.pop("json", None)
    if content is not None:
        body, as_json = content, None
    request = client.build_request(
        kwargs.pop("method"),
        kwargs.pop("url"),
        params=kwargs.pop("params", None) or None,
        headers=kwargs.pop("headers", None),
        cookies=kwargs.pop("cookies", None) or None,
        json=as_json,
        content=body,
    )
    unexpected = set(kwargs) - {"files", "auth"}
    assert not unexpected, f"transport arguments not passed on: {unexpected}"
    assert not kwargs.get("files"), "multipart bodies are not used by these APIs"
    return await client.send(request)


def validate(case: ApiCase, response: httpx.Response) -> None:
    """Run :data:`CHECKS` on the response; raises schemathesis' ``FailureGroup`` (with a curl command)."""
    case.validate_response(response, checks=CHECKS)
