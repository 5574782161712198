"""The welcome message (歡迎訊息): what a channel says to a friend who adds it, by the reply token (free).

One to five LINE message objects per channel; optionally different ones for friends who unblock the account,
and per add-friend source (the member's ``source`` attribute, when it is known at the time of the follow,
e.g. set by the integration that brought the friend).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tagline_contracts.line_messages import InvalidMessages, message_errors
from tagline_contracts.sending import MAX_MESSAGES_PER_REQUEST

Messages = list[dict[str, Any]]


class SourceWelcome(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1, max_length=100)
    messages: Messages = Field(min_length=1, max_length=MAX_MESSAGES_PER_REQUEST)


class WelcomeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    messages: Messages = Field(min_length=1, max_length=MAX_MESSAGES_PER_REQUEST)
    unblocked_messages: Messages | None = Field(
        default=None, max_length=MAX_MESSAGES_PER_REQUEST, description="for friends who unblock; [] = nothing"
    )
    by_source: list[SourceWelcome] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _unique_sources(self) -> WelcomeSpec:
        sources = [s.source for s in self.by_source]
        if len(sources) != len(set(sources)):
            raise ValueError("by_source lists a source twice")
        return self

    @model_validator(mode="after")
    def _valid_messages(self) -> WelcomeSpec:
        """Every message object as the sender checks it at send time; errors name the full path
        (``by_source[1].messages[0].previewImageUrl``)."""
        errors = message_errors(self.messages, "messages")
        errors += message_errors(self.unblocked_messages or [], "unblocked_messages")
        for index, item in enumerate(self.by_source):
            errors += message_errors(item.messages, f"by_source[{index}].messages")
        if errors:
            raise InvalidMessages(errors)
        return self


def welcome_for(spec: WelcomeSpec, *, unblocked: bool, source: str | None) -> Messages:
    """The messages for one follow (empty: send nothing)."""
    if not spec.enabled:
        return []
    if unblocked and spec.unblocked_messages is not None:
        return spec.unblocked_messages
    for item in spec.by_source:
        if item.source == source:
            return item.messages
    return spec.messages
