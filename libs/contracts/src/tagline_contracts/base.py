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

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Contract(BaseModel):
    """A Tagline message: frozen, snake_case, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


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
    ``.`` or NUL, and nesting deeper than :data:`MAX_JSON_DEPTH` are refused: storing them was a 500.
    """
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is not a finite number")
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
