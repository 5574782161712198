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
