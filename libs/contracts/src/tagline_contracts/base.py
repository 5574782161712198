"""Base classes every contract model derives from.

Two families:

* :class:`Contract` — Tagline's own messages (envelopes, commands, events). snake_case on the wire, frozen,
  unknown fields rejected so a producer bug shows up as a DLQ entry rather than silently lost data.
* :class:`LineModel` — mirrors of LINE's own JSON (webhook events). camelCase on the wire exactly as LINE
  sends it (``alias_generator=to_camel``), snake_case attributes in Python, and unknown fields *kept*
  (``extra="allow"``): LINE adds fields without notice and Tagline must pass them on, never drop them.
  Serialize with :func:`dump_line` (or ``model_dump(by_alias=True, exclude_none=True)``) to get LINE's shape.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

NUL = "\0"
"""The one character no Tagline string may hold: PostgreSQL's jsonb (under the embedded FerretDB) cannot store
it, so a record holding one would fail every write and retry forever. Refused where it enters: HTTP APIs
(``tagline_platform.http_api``: a 422 naming the field), Kafka contracts (:class:`Contract`: a dead letter
with the reason), stored JSON (:func:`check_storable`); stripped from LINE's webhooks by ingest (LINE's
events are facts to keep, not requests to refuse)."""


def find_nul(value: Any, where: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """The location of the first string or key in ``value`` (parsed JSON, models included) holding a NUL."""
    if isinstance(value, str):
        return where if NUL in value else None
    if isinstance(value, BaseModel):
        value = {**value.__dict__, **(value.__pydantic_extra__ or {})}
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and NUL in key:
                return (*where, key.replace(NUL, "\\u0000"))  # shown, not sent back raw
            found = find_nul(item, (*where, key))
            if found is not None:
                return found
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            found = find_nul(item, (*where, index))
            if found is not None:
                return found
    return None


def strip_nul(value: Any) -> Any:
    """``value`` (parsed JSON) with every NUL removed from its strings and keys."""
    if isinstance(value, str):
        return value.replace(NUL, "")
    if isinstance(value, dict):
        return {strip_nul(key): strip_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [strip_nul(item) for item in value]
    return value


def nul_message(where: tuple[str | int, ...]) -> str:
    field = ".".join(str(part) for part in where) or "(value)"
    return f"{field}: holds a NUL character (\\u0000), which cannot be stored"


class Contract(BaseModel):
    """A Tagline message: frozen, snake_case, strict about unknown fields, no NUL in any string."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _no_nul(self) -> Contract:
        # Plain values only (strings, lists, dicts): nested contracts have checked themselves, and LINE's
        # own models (LineModel) come from ingest, which strips NUL from webhooks (walking them too doubled
        # the cost of decoding a line.events.v1 record: 11 → 21 µs).
        for name, value in self.__dict__.items():
            if not isinstance(value, BaseModel):
                found = find_nul(value, (name,))
                if found is not None:
                    raise ValueError(nul_message(found))
        return self


class LineModel(BaseModel):
    """A model of LINE's JSON: camelCase aliases, unknown fields kept."""

    model_config = ConfigDict(
        frozen=True,
        extra="allow",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


def dump_line(model: BaseModel) -> dict[str, Any]:
    """LINE's JSON shape of a :class:`LineModel` (camelCase keys, absent optionals left out)."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


MAX_JSON_DEPTH = 20
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_storable(value: Any, where: str, depth: int = 0) -> None:
    """Raise ``ValueError`` unless ``value`` (parsed JSON) can be stored in MongoDB and written back as JSON.

    NaN and infinities (``1e999`` parses as one), integers past 64 bits, keys starting with ``$`` or holding
    ``.`` or NUL, strings holding NUL (:data:`NUL`), and nesting deeper than :data:`MAX_JSON_DEPTH` are
    refused: storing them was a 500.
    """
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is not a finite number")
    if isinstance(value, str) and NUL in value:
        raise ValueError(f"{where} holds a NUL character (\\u0000), which cannot be stored")
    # Compared, not `in range(...)`: that walks the range for an int subclass (bson's Int64, read back).
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{where} is an integer beyond 64 bits")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or key.startswith("$") or "." in key or "\0" in key:
                raise ValueError(f"{where} has a key that cannot be stored: {str(key)[:40]!r}")
            check_storable(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_storable(item, f"{where}[{index}]", depth + 1)
