"""LINE webhook bodies as pydantic models, one per schema of LINE's ``webhook.yml``.

Parse a request body with :func:`parse_callback` (or :class:`CallbackRequest`), a single event with
:func:`parse_event` / :data:`WEBHOOK_EVENT_ADAPTER`. Every model keeps LINE's camelCase keys on the wire and
snake_case attributes in Python, keeps fields LINE adds later (``extra="allow"``) and is strict about the
types of the fields it knows (no ``"123"`` → ``123`` coercion), so ``model_dump(mode="json", by_alias=True,
exclude_none=True)`` (:func:`~tagline_contracts.base.dump_line`) gives back LINE's JSON.

Types LINE adds later never fail: an event, message, source, mentionee, membership or module object whose
``type`` is a string this module does not know becomes an ``Unknown*`` model that keeps the complete object in
``raw`` and serializes back to exactly that object. An object without a string ``type`` is rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_serializer,
    model_validator,
)

from tagline_contracts.base import LineModel

__all__ = [
    "EVENT_TYPES",
    "MEMBERSHIP_CONTENT_TYPES",
    "MENTIONEE_TYPES",
    "MESSAGE_CONTENT_TYPES",
    "MODULE_CONTENT_TYPES",
    "SOURCE_TYPES",
    "WEBHOOK_EVENT_ADAPTER",
    "AccountLinkEvent",
    "ActivatedEvent",
    "AllMentionee",
    "AttachedModuleContent",
    "AudioMessageContent",
    "BaseEvent",
    "BeaconContent",
    "BeaconEvent",
    "BeaconEventType",
    "BotResumedEvent",
    "BotSuspendedEvent",
    "CallbackRequest",
    "ChatControl",
    "ContentProvider",
    "ContentProviderType",
    "DeactivatedEvent",
    "DeliveryContext",
    "DetachedModuleContent",
    "Emoji",
    "EventMode",
    "FileMessageContent",
    "FollowDetail",
    "FollowEvent",
    "GroupSource",
    "ImageMessageContent",
    "ImageSet",
    "JoinEvent",
    "JoinedMembers",
    "JoinedMembershipContent",
    "LeaveEvent",
    "LeftMembers",
    "LeftMembershipContent",
    "LinkContent",
    "LinkResult",
    "LocationMessageContent",
    "MemberJoinedEvent",
    "MemberLeftEvent",
    "MembershipContent",
    "MembershipEvent",
    "Mention",
    "Mentionee",
    "MessageContent",
    "MessageEvent",
    "ModuleContent",
    "ModuleEvent",
    "PnpDelivery",
    "PnpDeliveryCompletionEvent",
    "PostbackContent",
    "PostbackEvent",
    "PostbackParams",
    "RenewedMembershipContent",
    "RoomSource",
    "Source",
    "StickerMessageContent",
    "StickerResourceType",
    "TextMessageContent",
    "UnfollowEvent",
    "UnknownEvent",
    "UnknownMembershipContent",
    "UnknownMentionee",
    "UnknownMessageContent",
    "UnknownModuleContent",
    "UnknownSource",
    "UnsendDetail",
    "UnsendEvent",
    "UserMentionee",
    "UserSource",
    "VideoMessageContent",
    "VideoPlayComplete",
    "VideoPlayCompleteEvent",
    "WebhookEvent",
    "parse_callback",
    "parse_event",
    "parse_event_json",
]

_UNKNOWN = "__unknown__"
"""Union tag of the ``Unknown*`` fallbacks (the tag functions return it for any type they do not know)."""


# ----------------------------------------------------------------------------------------------------
# Building blocks


class _LineObject(LineModel):
    """A LINE object with known fields: types checked strictly, so a dump reproduces LINE's JSON.

    Numbers must be finite: ``NaN``, ``Infinity`` (or ``1e999``) are not JSON and would be dumped as ``null``.
    """

    model_config = ConfigDict(strict=True, allow_inf_nan=False)


class _RawObject(LineModel):
    """An object of a ``type`` this module does not know, kept whole in ``raw``.

    Validation always treats its input as LINE's object: ``raw`` is (a shallow copy of) that object, and the
    typed fields are read from it leniently (an invalid value becomes ``None``, never an error). Build one
    with ``model_validate(obj)``; serializing it returns ``raw`` unchanged.
    """

    model_config = ConfigDict(strict=True, extra="ignore")

    type: str
    raw: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _keep_raw(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {**data, "raw": data}
        return data

    @model_serializer(mode="plain")
    def _dump_raw(self) -> dict[str, Any]:
        return self.raw


def _none_if_invalid(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        result = handler(value)
    except ValidationError:
        return None
    else:
        return result


_Lenient = WrapValidator(_none_if_invalid)
"""For the typed fields of ``Unknown*`` models: a value that does not validate becomes ``None``."""


def _tagger(known: frozenset[str], unknown: type[_RawObject]) -> Callable[[Any], str | None]:
    """A union discriminator: the ``type`` if known, :data:`_UNKNOWN` for another string, else ``None``."""

    def tag(value: Any) -> str | None:
        if isinstance(value, dict):
            kind = value.get("type")
        elif isinstance(value, unknown):  # serializing: an Unknown* may carry a type that is now known
            return _UNKNOWN
        else:
            kind = getattr(value, "type", None)
        if isinstance(kind, str):
            return kind if kind in known else _UNKNOWN
        return None

    tag.__name__ = f"{unknown.__name__.removeprefix('Unknown')}_type"
    return tag


def _discriminator(known: frozenset[str], unknown: type[_RawObject]) -> Discriminator:
    return Discriminator(
        _tagger(known, unknown),
        custom_error_type="missing_type",
        custom_error_message="Object must have a string 'type'",
    )


def _types(*models: type[LineModel]) -> frozenset[str]:
    """The ``type`` literals of ``models`` (each declares ``type: Literal[...] = ...``)."""
    return frozenset(model.model_fields["type"].default for model in models)


class EventMode(StrEnum):
    """Channel state: never send messages for an event received in ``standby``."""

    ACTIVE = "active"
    STANDBY = "standby"


class ContentProviderType(StrEnum):
    """Where the media file of an image, video or audio message is."""

    LINE = "line"
    EXTERNAL = "external"


class StickerResourceType(StrEnum):
    """Known ``stickerResourceType`` values; the field itself is a plain ``str`` (LINE adds values)."""

    STATIC = "STATIC"
    ANIMATION = "ANIMATION"
    SOUND = "SOUND"
    ANIMATION_SOUND = "ANIMATION_SOUND"
    POPUP = "POPUP"
    POPUP_SOUND = "POPUP_SOUND"
    CUSTOM = "CUSTOM"
    MESSAGE = "MESSAGE"
    NAME_TEXT = "NAME_TEXT"
    PER_STICKER_TEXT = "PER_STICKER_TEXT"


class BeaconEventType(StrEnum):
    """Known beacon event types; ``BeaconContent.type`` itself is a plain ``str`` (LINE has added values)."""

    ENTER = "enter"
    BANNER = "banner"
    STAY = "stay"


class LinkResult(StrEnum):
    """Outcome of an account link."""

    OK = "ok"
    FAILED = "failed"


# ----------------------------------------------------------------------------------------------------
# Sources


class UserSource(_LineObject):
    """A one-to-one chat with a user (``userId`` may be absent, e.g. for some module channels)."""

    type: Literal["user"] = "user"
    user_id: str | None = None

    @property
    def source_id(self) -> str | None:
        """The user ID."""
        return self.user_id


class GroupSource(_LineObject):
    """A group chat; ``userId`` only in message events from LINE for iOS/Android users."""

    type: Literal["group"] = "group"
    group_id: str
    user_id: str | None = None

    @property
    def source_id(self) -> str:
        """The group ID."""
        return self.group_id


class RoomSource(_LineObject):
    """A multi-person chat; ``userId`` only in message events from LINE for iOS/Android users."""

    type: Literal["room"] = "room"
    room_id: str
    user_id: str | None = None

    @property
    def source_id(self) -> str:
        """The room ID."""
        return self.room_id


class UnknownSource(_RawObject):
    """A source of a type LINE added after this module was written; ``userId`` read from it if present."""

    user_id: Annotated[str | None, _Lenient] = None

    @property
    def source_id(self) -> None:
        """Unknown: which ID identifies the chat is not known for this type."""
        return None


SOURCE_TYPES = _types(UserSource, GroupSource, RoomSource)
"""The source ``type`` values of webhook.yml."""

Source: TypeAlias = Annotated[
    Annotated[UserSource, Tag("user")]
    | Annotated[GroupSource, Tag("group")]
    | Annotated[RoomSource, Tag("room")]
    | Annotated[UnknownSource, Tag(_UNKNOWN)],
    _discriminator(SOURCE_TYPES, UnknownSource),
]
"""Where an event comes from, discriminated on ``type``."""


class DeliveryContext(_LineObject):
    """How the event was delivered."""

    is_redelivery: bool


# ----------------------------------------------------------------------------------------------------
# Message contents


class ContentProvider(_LineObject):
    """Where an image, video or audio file is; URLs (plain ``str``) only for ``external``."""

    type: str  # ContentProviderType values; a str so a value LINE adds later is kept, not rejected
    original_content_url: str | None = None
    preview_image_url: str | None = None


class Emoji(_LineObject):
    """A LINE emoji inside a text message."""

    index: int
    length: int
    product_id: str
    emoji_id: str


class UserMentionee(_LineObject):
    """A mentioned user; ``userId`` only if the user consented to profile access."""

    type: Literal["user"] = "user"
    index: int
    length: int
    user_id: str | None = None
    is_self: bool | None = None


class AllMentionee(_LineObject):
    """An ``@All`` mention of the whole group."""

    type: Literal["all"] = "all"
    index: int
    length: int


class UnknownMentionee(_RawObject):
    """A mentionee of a type this module does not know."""

    index: Annotated[int | None, _Lenient] = None
    length: Annotated[int | None, _Lenient] = None


MENTIONEE_TYPES = _types(UserMentionee, AllMentionee)
"""The mentionee ``type`` values of webhook.yml."""

Mentionee: TypeAlias = Annotated[
    Annotated[UserMentionee, Tag("user")]
    | Annotated[AllMentionee, Tag("all")]
    | Annotated[UnknownMentionee, Tag(_UNKNOWN)],
    _discriminator(MENTIONEE_TYPES, UnknownMentionee),
]
"""A mention target, discriminated on ``type``."""


class Mention(_LineObject):
    """The mentions in a text message."""

    mentionees: list[Mentionee]


class TextMessageContent(_LineObject):
    """A text message, with its LINE emojis, mentions and quote."""

    type: Literal["text"] = "text"
    id: str
    text: str
    emojis: list[Emoji] | None = None
    mention: Mention | None = None
    quote_token: str | None = None
    quoted_message_id: str | None = None
    mark_as_read_token: str | None = None


class ImageSet(_LineObject):
    """Images sent together; ``index`` (from 1) and ``total`` may be absent."""

    id: str
    index: int | None = None
    total: int | None = None


class ImageMessageContent(_LineObject):
    """An image message; fetch the content unless the provider is external."""

    type: Literal["image"] = "image"
    id: str
    content_provider: ContentProvider
    image_set: ImageSet | None = None
    quote_token: str | None = None
    mark_as_read_token: str | None = None


class VideoMessageContent(_LineObject):
    """A video message; ``duration`` in milliseconds."""

    type: Literal["video"] = "video"
    id: str
    duration: int | None = None
    content_provider: ContentProvider
    quote_token: str | None = None
    mark_as_read_token: str | None = None


class AudioMessageContent(_LineObject):
    """An audio message; ``duration`` in milliseconds."""

    type: Literal["audio"] = "audio"
    id: str
    content_provider: ContentProvider
    duration: int | None = None
    mark_as_read_token: str | None = None


class FileMessageContent(_LineObject):
    """A file message; ``fileSize`` in bytes."""

    type: Literal["file"] = "file"
    id: str
    file_name: str
    file_size: int
    mark_as_read_token: str | None = None


class LocationMessageContent(_LineObject):
    """A location message."""

    type: Literal["location"] = "location"
    id: str
    title: str | None = None
    address: str | None = None
    latitude: float
    longitude: float
    mark_as_read_token: str | None = None


class StickerMessageContent(_LineObject):
    """A sticker; ``stickerResourceType`` is a ``str`` (see :class:`StickerResourceType` for known values)."""

    type: Literal["sticker"] = "sticker"
    id: str
    package_id: str
    sticker_id: str
    sticker_resource_type: str
    keywords: list[str] | None = None
    text: str | None = None
    quote_token: str | None = None
    quoted_message_id: str | None = None
    mark_as_read_token: str | None = None


class UnknownMessageContent(_RawObject):
    """A message of a type this module does not know; its ``id`` read from it if present."""

    id: Annotated[str | None, _Lenient] = None


MESSAGE_CONTENT_TYPES = _types(
    TextMessageContent,
    ImageMessageContent,
    VideoMessageContent,
    AudioMessageContent,
    FileMessageContent,
    LocationMessageContent,
    StickerMessageContent,
)
"""The message ``type`` values of webhook.yml."""

MessageContent: TypeAlias = Annotated[
    Annotated[TextMessageContent, Tag("text")]
    | Annotated[ImageMessageContent, Tag("image")]
    | Annotated[VideoMessageContent, Tag("video")]
    | Annotated[AudioMessageContent, Tag("audio")]
    | Annotated[FileMessageContent, Tag("file")]
    | Annotated[LocationMessageContent, Tag("location")]
    | Annotated[StickerMessageContent, Tag("sticker")]
    | Annotated[UnknownMessageContent, Tag(_UNKNOWN)],
    _discriminator(MESSAGE_CONTENT_TYPES, UnknownMessageContent),
]
"""The content of a message event, discriminated on ``type``."""


# ----------------------------------------------------------------------------------------------------
# Event details


class UnsendDetail(_LineObject):
    """Which message the user unsent."""

    message_id: str


class FollowDetail(_LineObject):
    """``isUnblocked``: ``true`` when the user unblocked the account, ``false`` when newly added."""

    is_unblocked: bool


class JoinedMembers(_LineObject):
    """Users who joined a group or room."""

    members: list[UserSource]


class LeftMembers(_LineObject):
    """Users who left a group or room."""

    members: list[UserSource]


class PostbackParams(_LineObject):
    """Postback ``params``: what a datetime picker or rich menu switch returned; other keys are kept."""

    date: str | None = None
    time: str | None = None
    datetime: str | None = None
    new_rich_menu_alias_id: str | None = None
    status: str | None = None


class PostbackContent(_LineObject):
    """The postback ``data`` and, for pickers and rich menu switches, ``params``."""

    data: str
    params: PostbackParams | None = None


class VideoPlayComplete(_LineObject):
    """The ``trackingId`` of the video message that was watched to the end."""

    tracking_id: str


class BeaconContent(_LineObject):
    """A LINE Beacon detection; ``type`` is a ``str`` (see :class:`BeaconEventType`)."""

    hwid: str
    type: str
    dm: str | None = None


class LinkContent(_LineObject):
    """The outcome of an account link and the nonce it was started with."""

    result: str  # LinkResult values; a str so a value LINE adds later is kept, not rejected
    nonce: str


class JoinedMembershipContent(_LineObject):
    """The user joined the membership ``membershipId``."""

    type: Literal["joined"] = "joined"
    membership_id: int


class LeftMembershipContent(_LineObject):
    """The user left the membership ``membershipId``."""

    type: Literal["left"] = "left"
    membership_id: int


class RenewedMembershipContent(_LineObject):
    """The user renewed the membership ``membershipId``."""

    type: Literal["renewed"] = "renewed"
    membership_id: int


class UnknownMembershipContent(_RawObject):
    """A membership event of a type this module does not know."""

    membership_id: Annotated[int | None, _Lenient] = None


MEMBERSHIP_CONTENT_TYPES = _types(JoinedMembershipContent, LeftMembershipContent, RenewedMembershipContent)
"""The membership ``type`` values of webhook.yml."""

MembershipContent: TypeAlias = Annotated[
    Annotated[JoinedMembershipContent, Tag("joined")]
    | Annotated[LeftMembershipContent, Tag("left")]
    | Annotated[RenewedMembershipContent, Tag("renewed")]
    | Annotated[UnknownMembershipContent, Tag(_UNKNOWN)],
    _discriminator(MEMBERSHIP_CONTENT_TYPES, UnknownMembershipContent),
]
"""The content of a membership event, discriminated on ``type``."""


class AttachedModuleContent(_LineObject):
    """A module channel was attached to the bot ``botId`` with ``scopes``."""

    type: Literal["attached"] = "attached"
    bot_id: str
    scopes: list[str]


class DetachedModuleContent(_LineObject):
    """A module channel was detached; ``reason`` is a ``str`` (webhook.yml knows ``bot_deleted``)."""

    type: Literal["detached"] = "detached"
    bot_id: str
    reason: str


class UnknownModuleContent(_RawObject):
    """A module event of a type this module does not know."""


MODULE_CONTENT_TYPES = _types(AttachedModuleContent, DetachedModuleContent)
"""The module ``type`` values of webhook.yml."""

ModuleContent: TypeAlias = Annotated[
    Annotated[AttachedModuleContent, Tag("attached")]
    | Annotated[DetachedModuleContent, Tag("detached")]
    | Annotated[UnknownModuleContent, Tag(_UNKNOWN)],
    _discriminator(MODULE_CONTENT_TYPES, UnknownModuleContent),
]
"""The content of a module event, discriminated on ``type``."""


class ChatControl(_LineObject):
    """When the module channel's active state expires (ms since the epoch)."""

    expire_at: int


class PnpDelivery(_LineObject):
    """A hashed phone number, or the ``X-Line-Delivery-Tag`` of the request."""

    data: str


# ----------------------------------------------------------------------------------------------------
# Events


class BaseEvent(_LineObject):
    """The fields every webhook event has. ``timestamp`` is in ms and is the original time on redelivery."""

    type: str
    timestamp: int
    mode: str  # EventMode values (active / standby); a str so a new mode is kept, not rejected
    webhook_event_id: str
    delivery_context: DeliveryContext
    source: Source | None = None

    @property
    def source_id(self) -> str | None:
        """The user, group or room ID of the source (``None`` without a source or for an unknown source)."""
        return self.source.source_id if self.source is not None else None

    @property
    def user_id(self) -> str | None:
        """The user ID of the source when LINE sent one, for any source type."""
        return self.source.user_id if self.source is not None else None


class MessageEvent(BaseEvent):
    """A user sent a message."""

    type: Literal["message"] = "message"
    reply_token: str | None = None
    message: MessageContent


class UnsendEvent(BaseEvent):
    """A user unsent a message."""

    type: Literal["unsend"] = "unsend"
    unsend: UnsendDetail


class FollowEvent(BaseEvent):
    """The account was added as a friend (or unblocked: ``follow.is_unblocked``)."""

    type: Literal["follow"] = "follow"
    reply_token: str | None = None
    follow: FollowDetail


class UnfollowEvent(BaseEvent):
    """The account was blocked."""

    type: Literal["unfollow"] = "unfollow"


class JoinEvent(BaseEvent):
    """The account joined a group or room."""

    type: Literal["join"] = "join"
    reply_token: str | None = None


class LeaveEvent(BaseEvent):
    """The account was removed from, or left, a group or room."""

    type: Literal["leave"] = "leave"


class MemberJoinedEvent(BaseEvent):
    """Users joined a group or room the account is in."""

    type: Literal["memberJoined"] = "memberJoined"
    reply_token: str | None = None
    joined: JoinedMembers


class MemberLeftEvent(BaseEvent):
    """Users left a group or room the account is in."""

    type: Literal["memberLeft"] = "memberLeft"
    left: LeftMembers


class PostbackEvent(BaseEvent):
    """A user triggered a postback action."""

    type: Literal["postback"] = "postback"
    reply_token: str | None = None
    postback: PostbackContent


class VideoPlayCompleteEvent(BaseEvent):
    """A user watched a tracked video to the end."""

    type: Literal["videoPlayComplete"] = "videoPlayComplete"
    reply_token: str | None = None
    video_play_complete: VideoPlayComplete


class BeaconEvent(BaseEvent):
    """A user came in range of a LINE Beacon."""

    type: Literal["beacon"] = "beacon"
    reply_token: str | None = None
    beacon: BeaconContent


class AccountLinkEvent(BaseEvent):
    """A user linked (or failed to link) their LINE account; no reply token on failure."""

    type: Literal["accountLink"] = "accountLink"
    reply_token: str | None = None
    link: LinkContent


class MembershipEvent(BaseEvent):
    """A user joined, left or renewed a membership."""

    type: Literal["membership"] = "membership"
    reply_token: str | None = None
    membership: MembershipContent


class ModuleEvent(BaseEvent):
    """A module channel was attached or detached."""

    type: Literal["module"] = "module"
    module: ModuleContent


class ActivatedEvent(BaseEvent):
    """The module channel became the active channel."""

    type: Literal["activated"] = "activated"
    chat_control: ChatControl


class DeactivatedEvent(BaseEvent):
    """The module channel went to standby."""

    type: Literal["deactivated"] = "deactivated"


class BotSuspendedEvent(BaseEvent):
    """The LINE Official Account was suspended."""

    type: Literal["botSuspended"] = "botSuspended"


class BotResumedEvent(BaseEvent):
    """The LINE Official Account returned from suspension."""

    type: Literal["botResumed"] = "botResumed"


class PnpDeliveryCompletionEvent(BaseEvent):
    """A LINE notification message (PNP) was delivered."""

    type: Literal["delivery"] = "delivery"
    delivery: PnpDelivery


class UnknownEvent(_RawObject):
    """An event of a type this module does not know (e.g. ``messageEdited``), kept whole in ``raw``.

    The common fields are read from it when present and valid, else ``None``; a dump is ``raw`` itself.
    Build one with ``UnknownEvent.model_validate(obj)``: whatever is validated becomes ``raw``.
    """

    timestamp: Annotated[int | None, _Lenient] = None
    mode: Annotated[EventMode | None, Field(strict=False), _Lenient] = None
    webhook_event_id: Annotated[str | None, _Lenient] = None
    delivery_context: Annotated[DeliveryContext | None, _Lenient] = None
    source: Annotated[Source | None, _Lenient] = None

    @property
    def source_id(self) -> str | None:
        """As :attr:`BaseEvent.source_id`."""
        return self.source.source_id if self.source is not None else None

    @property
    def user_id(self) -> str | None:
        """As :attr:`BaseEvent.user_id`."""
        return self.source.user_id if self.source is not None else None


EVENT_TYPES = _types(
    MessageEvent,
    UnsendEvent,
    FollowEvent,
    UnfollowEvent,
    JoinEvent,
    LeaveEvent,
    MemberJoinedEvent,
    MemberLeftEvent,
    PostbackEvent,
    VideoPlayCompleteEvent,
    BeaconEvent,
    AccountLinkEvent,
    MembershipEvent,
    ModuleEvent,
    ActivatedEvent,
    DeactivatedEvent,
    BotSuspendedEvent,
    BotResumedEvent,
    PnpDeliveryCompletionEvent,
)
"""The event ``type`` values of webhook.yml; any other string parses as :class:`UnknownEvent`."""

WebhookEvent: TypeAlias = Annotated[
    Annotated[MessageEvent, Tag("message")]
    | Annotated[UnsendEvent, Tag("unsend")]
    | Annotated[FollowEvent, Tag("follow")]
    | Annotated[UnfollowEvent, Tag("unfollow")]
    | Annotated[JoinEvent, Tag("join")]
    | Annotated[LeaveEvent, Tag("leave")]
    | Annotated[MemberJoinedEvent, Tag("memberJoined")]
    | Annotated[MemberLeftEvent, Tag("memberLeft")]
    | Annotated[PostbackEvent, Tag("postback")]
    | Annotated[VideoPlayCompleteEvent, Tag("videoPlayComplete")]
    | Annotated[BeaconEvent, Tag("beacon")]
    | Annotated[AccountLinkEvent, Tag("accountLink")]
    | Annotated[MembershipEvent, Tag("membership")]
    | Annotated[ModuleEvent, Tag("module")]
    | Annotated[ActivatedEvent, Tag("activated")]
    | Annotated[DeactivatedEvent, Tag("deactivated")]
    | Annotated[BotSuspendedEvent, Tag("botSuspended")]
    | Annotated[BotResumedEvent, Tag("botResumed")]
    | Annotated[PnpDeliveryCompletionEvent, Tag("delivery")]
    | Annotated[UnknownEvent, Tag(_UNKNOWN)],
    _discriminator(EVENT_TYPES, UnknownEvent),
]
"""Any webhook event, discriminated on ``type``; unknown types become :class:`UnknownEvent`."""


class CallbackRequest(_LineObject):
    """A webhook request body: the bot's user ID and the events (``[]`` is a connectivity check).

    ``destination`` is not checked against webhook.yml's ``^U[0-9a-f]{32}$``: the signature already
    authenticates the body.
    """

    destination: str
    events: list[WebhookEvent]


WEBHOOK_EVENT_ADAPTER: TypeAdapter[WebhookEvent] = TypeAdapter(WebhookEvent)
"""Validates and serializes one event (built once; reuse it rather than creating adapters per call)."""


def parse_callback(body: bytes) -> CallbackRequest:
    """Validate a raw webhook body; raises :class:`pydantic.ValidationError` (also for invalid JSON)."""
    return CallbackRequest.model_validate_json(body)


def parse_event(obj: dict[str, Any]) -> WebhookEvent:
    """Validate one event given as a JSON-like dict; raises :class:`pydantic.ValidationError`."""
    return WEBHOOK_EVENT_ADAPTER.validate_python(obj)


def parse_event_json(data: bytes | str) -> WebhookEvent:
    """Validate one event given as JSON text; raises :class:`pydantic.ValidationError`."""
    return WEBHOOK_EVENT_ADAPTER.validate_json(data)
