"""Sending: the ``send.requests.v1`` command and the ``send.results.v1`` outcomes (DESIGN.md §3, §4).

A :class:`SendMessages` asks the sender to deliver 1–5 LINE message objects to a target: one user, a list of
users of any length, or a segment (:data:`tagline_contracts.segments.SegmentFilter`, the same model tagger
evaluates). ``idempotency_key`` is the natural key: the same key twice on one channel is sent once. Message
objects are LINE's own JSON (``{"type": "text", "text": "…"}``), checked by the model itself with
:func:`tagline_contracts.line_messages.validate_line_messages` (line-bot-sdk's models and LINE's limits): a
producer cannot build an invalid request, and the sender dead-letters a record that is not one, with the
reason (``messages[0].template.actions: Size must be between 1 and 4``), before any LINE call.

Every outcome of every LINE call the sender makes is a :class:`SendResult` on ``send.results.v1`` (key
``channel:requestId``): ``accepted`` (LINE took it), ``deferred`` (held back by the monthly quota; it is
stored and resumes by itself), ``failed`` (LINE refused it for good, or it expired). Consumers dedupe by the
envelope's ``event_id``, which is stable across redeliveries of the same outcome.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from tagline_contracts.base import Contract
from tagline_contracts.envelope import Envelope
from tagline_contracts.line_messages import check_line_messages
from tagline_contracts.segments import SegmentFilter

SEND_MESSAGES_SCHEMA: Literal["SendMessages"] = "SendMessages"
SEND_RESULT_SCHEMA: Literal["SendResult"] = "SendResult"

MAX_MESSAGES_PER_REQUEST = 5
MAX_USER_ID_LENGTH = 100


class SendCategory(StrEnum):
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


class UserTarget(Contract):
    kind: Literal["user"] = "user"
    user_id: str = Field(min_length=1, max_length=MAX_USER_ID_LENGTH)


class UsersTarget(Contract):
    kind: Literal["users"] = "users"
    user_ids: list[Annotated[str, Field(min_length=1, max_length=MAX_USER_ID_LENGTH)]] = Field(min_length=1)


class SegmentTarget(Contract):
    kind: Literal["segment"] = "segment"
    filter: SegmentFilter


Target = Annotated[UserTarget | UsersTarget | SegmentTarget, Field(discriminator="kind")]


class ReplyContext(Contract):
    """A reply token from a webhook event, and when Tagline received it (tokens go stale in ~30 s)."""

    token: str = Field(min_length=1)
    received_at: AwareDatetime
    sole: bool = Field(
        default=False,
        description="The publisher is the only answer to this event (the welcome message to a follow: no "
        "other service replies to follows), so the sender replies at once instead of waiting the gather "
        "window (TAGLINE_SENDER_REPLY_GATHER_MS) for other answers to join. A request for the same token "
        "that comes later is late: it fails and is never pushed.",
    )


class SendMessages(Contract):
    """Payload of ``send.requests.v1`` (key ``channel:<target>``): send these messages to that target."""

    idempotency_key: str = Field(min_length=1, max_length=200)
    category: SendCategory
    messages: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_MESSAGES_PER_REQUEST)
    target: Target
    reply: ReplyContext | None = None
    not_before: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    trigger_mode: Literal["active", "standby"] = Field(
        default="active",
        description="the webhook mode of the event that caused this send; nothing is sent for standby",
    )
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("messages")
    @classmethod
    def _valid_messages(cls, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return check_line_messages(messages, "messages")

    @model_validator(mode="after")
    def _consistent(self) -> SendMessages:
        if self.reply is not None and not isinstance(self.target, UserTarget):
            raise ValueError("a reply token can only be used for a single-user target")
        if self.not_before and self.expires_at and self.expires_at <= self.not_before:
            raise ValueError("expires_at must be after not_before")
        return self


class SendRequested(Envelope[SendMessages]):
    schema_name: Literal["SendMessages"] = Field(alias="schema", default=SEND_MESSAGES_SCHEMA)


class SendOutcome(StrEnum):
    ACCEPTED = "accepted"
    DEFERRED = "deferred"
    FAILED = "failed"


class SendMethod(StrEnum):
    REPLY = "reply"
    PUSH = "push"
    MULTICAST = "multicast"


class SendResult(Contract):
    """Payload of ``send.results.v1``: what happened to one LINE call (one batch) of a request."""

    request_id: str = Field(description="the request's idempotency key")
    batch: int = Field(ge=0)
    outcome: SendOutcome
    method: SendMethod
    category: SendCategory
    user_ids: list[str]
    recipients: int = Field(ge=0)
    messages_counted: int = Field(ge=0, description="billable messages (recipients; 0 for a reply)")
    cost_ntd: float = Field(ge=0, description="extra-message charge in NT$ at the channel's plan")
    reason: str | None = None
    line_error: dict[str, Any] | None = None
    line_request_id: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class SendResulted(Envelope[SendResult]):
    schema_name: Literal["SendResult"] = Field(alias="schema", default=SEND_RESULT_SCHEMA)


def send_request_key(channel_id: str, target: UserTarget | UsersTarget | SegmentTarget) -> str:
    """Kafka key of a send request: ``channel:userId`` (one user), ``channel:users`` / ``channel:segment``."""
    if isinstance(target, UserTarget):
        return f"{channel_id}:{target.user_id}"
    return f"{channel_id}:{target.kind}"
