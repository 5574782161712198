"""``member.attributes.v1`` (key ``channel:userId``): facts about a member that do not come from LINE.

Producers: external systems (CRM, POS, forms: attribute upserts, imports, manual tags), the tagger's own HTTP
API (manual tags) and the tagger itself for per-member commands derived elsewhere (tags from send results,
RFM scores from a recomputation). Keyed by member, so every fact about one member reaches the tagger instance
that owns the member's partition, in order, next to the member's LINE events: that instance is the only writer
of the member's record (see ``tagline_tagger.pipeline``).

Two schemas travel on the topic, told apart by the envelope's ``schema``: :class:`MemberUpdated` and
:class:`RfmScored`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, field_validator

from tagline_contracts.base import Contract, check_storable
from tagline_contracts.envelope import Envelope
from tagline_contracts.members import AttributeValue
from tagline_contracts.segments import RfmSegment

MEMBER_UPDATED_SCHEMA: Literal["MemberUpdated"] = "MemberUpdated"
RFM_SCORED_SCHEMA: Literal["RfmScored"] = "RfmScored"

MAX_TAG_NAME_LENGTH = 50
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY = 100
_BAD_KEY_CHARS = frozenset(".$\x00")

TagName = Annotated[str, Field(min_length=1, max_length=MAX_TAG_NAME_LENGTH, pattern=r"^[^\x00-\x1f]+$")]


def check_attribute_keys(value: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
    """Attribute keys are stored as MongoDB field names: 1-100 characters, no ``.``, ``$`` or NUL; values must
    be storable too (:func:`~tagline_contracts.base.check_storable`: no NaN, infinity or 64-bit overflow)."""
    for key, item in value.items():
        if not key or len(key) > MAX_ATTRIBUTE_KEY or _BAD_KEY_CHARS.intersection(key):
            raise ValueError(f"attribute key {key!r}: 1-{MAX_ATTRIBUTE_KEY} characters, no '.', '$' or NUL")
        check_storable(item, f"attribute {key!r}")
    return value


class TagOrigin(StrEnum):
    """Where a member's tag came from."""

    KEYWORD = "keyword"
    BEHAVIOR = "behavior"
    MANUAL = "manual"
    IMPORT = "import"


class TagGrant(Contract):
    """Put tag ``name`` on the member (again: its count and last time move on)."""

    name: TagName
    origin: TagOrigin = TagOrigin.MANUAL
    rule_id: str | None = None
    expires_at: AwareDatetime | None = None


class MemberUpdated(Contract):
    """Attribute upserts and tag changes for one member.

    ``attributes``: keys to set; a ``null`` value removes the key. Well-known keys are listed in
    :mod:`tagline_contracts.members` (``gender``, ``birth_date``, ``age_band``, ``region``, ``os``,
    ``source``, ``route``); others are free-form custom key/values.
    """

    user_id: str = Field(min_length=1, max_length=100)
    attributes: dict[str, AttributeValue] = Field(default_factory=dict, max_length=MAX_ATTRIBUTES)
    display_name: str | None = Field(default=None, max_length=200)
    tags_add: list[TagGrant] = Field(default_factory=list, max_length=100)
    tags_remove: list[TagName] = Field(default_factory=list, max_length=100)

    @field_validator("attributes")
    @classmethod
    def _usable_keys(cls, value: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        return check_attribute_keys(value)


class MemberUpdatedEvent(Envelope[MemberUpdated]):
    schema_name: Literal["MemberUpdated"] = Field(alias="schema", default=MEMBER_UPDATED_SCHEMA)


class RfmScored(Contract):
    """The member's RFM quintile scores (1-5) and segment, from the channel's model ``model_id``."""

    user_id: str = Field(min_length=1, max_length=100)
    recency: int = Field(ge=1, le=5)
    frequency: int = Field(ge=1, le=5)
    monetary: int = Field(ge=1, le=5)
    segment: RfmSegment
    model_id: str = Field(min_length=1)
    computed_at: datetime


class RfmScoredEvent(Envelope[RfmScored]):
    schema_name: Literal["RfmScored"] = Field(alias="schema", default=RFM_SCORED_SCHEMA)
