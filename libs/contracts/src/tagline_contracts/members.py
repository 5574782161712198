"""Members (a channel's friends) as other services see them: ``member.changes.v1``.

Tagger owns the member records and publishes every change with a full :class:`MemberSnapshot`; consumers
(the sender's segment projection, journeys) keep their own copy and apply a change only when its ``version``
is newer than the one they hold, so a redelivered or reordered change never overrides a newer one.

Well-known attribute keys (free-form ones are allowed too): ``gender`` (``male`` | ``female`` | ``other``),
``birth_date`` (``YYYY-MM-DD``), ``age_band``, ``region``, ``os`` (``ios`` | ``android`` | …), ``source``
(add-friend source) and ``route`` (add-friend route).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from tagline_contracts.base import Contract
from tagline_contracts.envelope import Envelope

AttributeValue = str | int | float | bool | None

MEMBER_CHANGED_SCHEMA: Literal["MemberChanged"] = "MemberChanged"


class FollowState(StrEnum):
    FOLLOWED = "followed"
    BLOCKED = "blocked"
    UNKNOWN = "unknown"


class ChangeKind(StrEnum):
    FOLLOWED = "followed"
    UNBLOCKED = "unblocked"
    BLOCKED = "blocked"
    ATTRIBUTES_CHANGED = "attributes_changed"
    PROFILE_CHANGED = "profile_changed"
    TAGGED = "tagged"
    UNTAGGED = "untagged"
    INTERACTED = "interacted"
    RFM_CHANGED = "rfm_changed"


class MemberSnapshot(Contract):
    """Everything a consumer may segment on, as of ``MemberChanged.version``."""

    user_id: str = Field(min_length=1)
    follow_state: FollowState = FollowState.UNKNOWN
    first_followed_at: AwareDatetime | None = None
    last_followed_at: AwareDatetime | None = None
    blocked_at: AwareDatetime | None = None
    follow_count: int = Field(default=0, ge=0)
    last_interaction_at: AwareDatetime | None = None
    display_name: str | None = None
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list, description="names of the member's active tags")
    rfm_segment: str | None = None


class MemberChanged(Contract):
    """Payload of ``member.changes.v1`` (key ``channel:userId``): what changed, and the member after it."""

    user_id: str = Field(min_length=1)
    version: int = Field(ge=1, description="per-member, strictly increasing with every change")
    changes: list[ChangeKind] = Field(min_length=1)
    tags_added: list[str] = Field(default_factory=list)
    tags_removed: list[str] = Field(default_factory=list)
    snapshot: MemberSnapshot


class MemberChangedEvent(Envelope[MemberChanged]):
    """One ``member.changes.v1`` record, keyed ``channel:userId``."""

    schema_name: Literal["MemberChanged"] = Field(alias="schema", default=MEMBER_CHANGED_SCHEMA)
