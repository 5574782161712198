"""Request-body validation against LINE's OpenAPI 3.0 document (``messaging-api.yml``).

``jsonschema`` speaks JSON Schema, not OpenAPI 3.0, so the component schemas are translated once at start-up:

- ``discriminator`` + ``mapping`` becomes the custom keyword ``x-discriminator``: the instance is validated
  against the subtype its ``type`` (the property name) selects, and an unknown value is an error. The subtypes
  are ``allOf: [Base, {...}]``; inside such an ``allOf`` the reference points at ``Base~base`` (the base
  without its discriminator), everywhere else at the dispatching ``Base``.
- ``nullable: true`` adds ``"null"`` to ``type`` (and ``None`` to ``enum``).
- ``required`` is replaced by a keyword that reports each missing property at its own path.
- arrays of plain strings (the 500 ids of a multicast) are checked by one keyword in one loop.

LINE's documented limits the document does not state (a text of 1–5,000 characters, a buttons template of
at most 4 actions, ``https://`` image URLs, a push ``to`` that is not empty, …) are checked after it, with
the table the sender checks them with (:data:`tagline_contracts.line_limits.LIMITS`); a property the
document already found wrong is not reported twice.

Errors come out in LINE's shape: ``{"message": "...", "property": "messages[0].text"}``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

# no type stubs for jsonschema in the workspace: its names are Any here
from jsonschema import Draft4Validator, ValidationError, validators  # type: ignore[import-untyped]
from jsonschema.protocols import Validator  # type: ignore[import-untyped]

from tagline_contracts import line_openapi
from tagline_contracts.line_limits import request_limit_errors

SPEC_ENV = "TAGLINE_EMULATOR_SPEC_PATH"

# operationId of the request bodies the emulator validates, by emulator endpoint name
OPERATIONS: dict[str, str] = {
    "reply": "replyMessage",
    "push": "pushMessage",
    "multicast": "multicast",
    "narrowcast": "narrowcast",
    "broadcast": "broadcast",
}

_REF_PREFIX = "#/components/schemas/"
_DEF_PREFIX = "#/definitions/"
_BASE_SUFFIX = "~base"
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SUBSCHEMA_ONE = ("items", "not", "additionalProperties")
# OpenAPI-only or annotation keywords (``format`` is not checked, as LINE's own checks differ)
_DROPPED = frozenset({"nullable", "example", "externalDocs", "description", "format"})
_RENAMED = {"required": "x-required"}


class SpecNotFound(Exception):
    """No ``messaging-api.yml`` where it was looked for."""


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    message: str
    property: str

    def to_json(self) -> dict[str, str]:
        return {"message": self.message, "property": self.property}


def find_spec(explicit: str | os.PathLike[str] | None = None) -> Traversable:
    """The spec file: ``explicit``, else ``$TAGLINE_EMULATOR_SPEC_PATH``, else the ``messaging-api.yml``
    shipped with ``tagline-contracts`` (:mod:`tagline_contracts.line_openapi`)."""
    if explicit is None:
        explicit = os.environ.get(SPEC_ENV) or None
    if explicit is None:
        return line_openapi.spec(line_openapi.MESSAGING_API)
    path = Path(explicit)
    if not path.is_file():
        raise SpecNotFound(f"LINE OpenAPI spec not found at {path}")
    return path


def property_path(path: Sequence[str | int]) -> str:
    """``["messages", 0, "text"]`` -> ``messages[0].text`` (LINE's notation)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


# --- translation OpenAPI 3.0 -> JSON Schema draft 4 -------------------------------------------------------


def _ref_target(ref: str) -> str:
    if not ref.startswith(_REF_PREFIX):
        raise ValueError(f"unsupported $ref {ref!r}")
    return ref.removeprefix(_REF_PREFIX)


class _Translator:
    def __init__(self, schemas: Mapping[str, Any]) -> None:
        self._schemas = schemas
        self._polymorphic = {
            name for name, s in schemas.items() if isinstance(s, dict) and "discriminator" in s
        }

    def definitions(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, schema in self._schemas.items():
            if name in self._polymorphic:
                base = {k: v for k, v in schema.items() if k != "discriminator"}
                out[name + _BASE_SUFFIX] = self.schema(base)
                out[name] = {"x-discriminator": self._dispatch(schema["discriminator"], name)}
            else:
                out[name] = self.schema(schema)
        return out

    def _dispatch(self, discriminator: Mapping[str, Any], base_name: str) -> dict[str, Any]:
        mapping = discriminator.get("mapping") or {}
        return {
            "propertyName": discriminator["propertyName"],
            "mapping": {value: {"$ref": _DEF_PREFIX + _ref_target(ref)} for value, ref in mapping.items()},
            "base": {"$ref": _DEF_PREFIX + base_name + _BASE_SUFFIX},
        }

    def _ref(self, ref: str, *, in_all_of: bool) -> dict[str, Any]:
        name = _ref_target(ref)
        if in_all_of and name in self._polymorphic:
            name += _BASE_SUFFIX
        return {"$ref": _DEF_PREFIX + name}

    def schema(self, node: Any, *, in_all_of: bool = False) -> Any:
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return self._ref(node["$ref"], in_all_of=in_all_of)
        if "discriminator" in node:  # an inline polymorphic schema (the named ones are handled above)
            dispatch = self._dispatch(node["discriminator"], "")
            dispatch["base"] = self.schema({k: v for k, v in node.items() if k != "discriminator"})
            return {"x-discriminator": dispatch}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROPPED:
                continue
            out[_RENAMED.get(key) or key] = self._keyword(key, value)
        if node.get("nullable") is True:
            if "type" in out:
                out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        if out.get("type") == "array" and out.get("items") == {"type": "string"}:
            del out["items"]
            out["x-strings"] = True
        return out

    def _keyword(self, key: str, value: Any) -> Any:
        if key == "properties":
            return {name: self.schema(sub) for name, sub in value.items()}
        if key in _SUBSCHEMA_LISTS:
            return [self.schema(sub, in_all_of=key == "allOf") for sub in value]
        if key in _SUBSCHEMA_ONE:
            return self.schema(value)
        return value


# --- custom keywords ----------------------------------------------------------------------------------------


def _discriminator(
    validator: Validator, value: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not isinstance(instance, dict):
        yield from validator.descend(instance, value["base"])
        return
    prop = value["propertyName"]
    if prop not in instance:
        yield from validator.descend(instance, value["base"])
        return
    target = value["mapping"].get(instance[prop]) if isinstance(instance[prop], str) else None
    if target is None:
        allowed = ", ".join(value["mapping"])
        yield ValidationError(f"must be one of the following values: [{allowed}]", path=[prop])
        return
    yield from validator.descend(instance, target)


def _required(
    validator: Validator, value: Sequence[str], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not isinstance(instance, dict):
        return
    for name in value:
        if name not in instance:
            yield ValidationError("must be specified", path=[name])


def _strings(
    validator: Validator, value: bool, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not isinstance(instance, list):
        return
    for index, item in enumerate(instance):
        if not isinstance(item, str):
            yield ValidationError("must be a string", path=[index])


_LineValidator = validators.extend(
    Draft4Validator,
    {"x-discriminator": _discriminator, "x-required": _required, "x-strings": _strings},
)

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
}


def _size_message(schema: Mapping[str, Any]) -> str:
    low, high = schema.get("minItems", 0), schema.get("maxItems")
    return f"Size must be between {low} and {high}" if high is not None else f"Size must be at least {low}"


def _length_message(error: ValidationError, schema: Mapping[str, Any]) -> str:
    if error.instance == "":
        return "must be specified"
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    return (
        f"Length must be between {low} and {high}" if high is not None else f"Length must be at least {low}"
    )


def _type_message(expected: str | list[str]) -> str:
    names = [expected] if isinstance(expected, str) else list(expected)
    return "must be " + " or ".join(_TYPE_NAMES.get(n, n) for n in names if n != "null")


def _line_message(error: ValidationError) -> str:
    """LINE's wording for a jsonschema error."""
    keyword: str = error.validator
    value = error.validator_value
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    if keyword == "type":
        return _type_message(value)
    if keyword in ("minItems", "maxItems"):
        return _size_message(schema)
    if keyword in ("minLength", "maxLength"):
        return _length_message(error, schema)
    simple = {
        "enum": lambda: "must be one of the following values: [{}]".format(
            ", ".join(str(v) for v in value if v is not None)
        ),
        "minimum": lambda: f"must be greater than or equal to {value}",
        "maximum": lambda: f"must be less than or equal to {value}",
        "pattern": lambda: f"must match {value}",
    }
    make = simple.get(keyword)
    return make() if make else str(error.message)


# --- the validator ------------------------------------------------------------------------------------------


class BodyValidator:
    """Validates request bodies of the operations in :data:`OPERATIONS`; compiled once per spec file."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        definitions = _Translator(spec["components"]["schemas"]).definitions()
        request_schemas = _request_schemas(spec)
        self._validators: dict[str, Validator] = {}
        for endpoint, operation_id in OPERATIONS.items():
            if operation_id not in request_schemas:
                raise ValueError(f"operation {operation_id} has no JSON request body in the spec")
            root = {"$ref": _DEF_PREFIX + request_schemas[operation_id], "definitions": definitions}
            self._validators[endpoint] = _LineValidator(root)

    def validate(self, endpoint: str, body: Any) -> list[ErrorDetail]:
        """LINE-style error details for ``body`` (an empty list when it is valid): the document's, then
        LINE's limits it does not state (:func:`tagline_contracts.line_limits.request_limit_errors`)."""
        validator = self._validators[endpoint]
        errors = [
            ErrorDetail(_line_message(error), property_path(list(error.absolute_path)))
            for error in validator.iter_errors(body)
        ]
        named = {e.property for e in errors}
        return errors + [
            ErrorDetail(e.message, e.property)
            for e in request_limit_errors(endpoint, body)
            if e.property not in named
        ]

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> BodyValidator:
        """The validator for the spec at ``path`` (see :func:`find_spec`); compiled once per file."""
        source = find_spec(path)
        key = str(source.resolve()) if isinstance(source, Path) else str(source)
        validator = _COMPILED.get(key)
        if validator is None:
            with source.open("rb") as handle:
                spec = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
            validator = _COMPILED[key] = BodyValidator(spec)
        return validator


_COMPILED: dict[str, BodyValidator] = {}


def _request_schemas(spec: Mapping[str, Any]) -> dict[str, str]:
    """operationId -> name of the component schema of its JSON request body."""
    out: dict[str, str] = {}
    for item in spec.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict) or "operationId" not in operation:
                continue
            content = operation.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema", {})
            if "$ref" in schema:
                out[operation["operationId"]] = _ref_target(schema["$ref"])
    return out
