"""LINE's limits on message objects that its OpenAPI document does not state: one table, one evaluator.

LINE's OpenAPI document (``line-openapi/messaging-api.yml``, and line-bot-sdk generated from it) describes
the *shape* of a message object, but few of the limits its reference lists: a buttons template with 5 actions,
a carousel of 11 columns, an empty text or an ``http://`` image passed the shape check and LINE refused them
with 400. :data:`LIMITS` lists those limits, one row each: the object, its property, the rule and where
LINE's reference (:data:`REFERENCE`) says so. One evaluator applies the table everywhere:

* :func:`message_limit_errors` — the sender-side validator (:mod:`tagline_contracts.line_messages`: every
  API that stores messages, and every ``send.requests.v1`` record, before any LINE call);
* :func:`request_limit_errors` — the LINE emulator, after its check of the body against the OpenAPI document.

Lengths are counted as LINE counts them: in UTF-16 code units, so an emoji such as 🍎 counts 2 (LINE's
"Character counting in a text": https://developers.line.biz/en/docs/messaging-api/text-character-count/).
Errors come out in LINE's shape (``{"message": …, "property": "messages[0].template.actions"}``).

The evaluator takes any JSON: a value of an unexpected type is left to the structural check (the OpenAPI
document or line-bot-sdk's models), which reports it; nothing here raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

REFERENCE = "https://developers.line.biz/en/reference/messaging-api/"
MAX_DEPTH = 50
"""How deep the evaluator follows nested flex boxes (a body nested deeper is not LINE's business anyway)."""


@dataclass(frozen=True, slots=True)
class LineError:
    """One problem, as LINE reports it: ``property`` is a path such as ``messages[0].template.actions``."""

    property: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"message": self.message, "property": self.property}

    def __str__(self) -> str:
        return f"{self.property}: {self.message}"


def utf16_len(text: str) -> int:
    """Length as LINE counts it: UTF-16 code units (characters outside the BMP count 2)."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def fit_text(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-16 code units (never in the middle of a character)."""
    if len(text) * 2 <= limit or utf16_len(text) <= limit:
        return text
    used = 0
    for end, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return text[:end]
    return text


# --- rules -------------------------------------------------------------------------------------------------


class Rule(Protocol):
    def errors(self, value: Any, node: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """``(path suffix, message)`` for each problem of ``value`` (``None``: absent) in ``node``."""
        ...


def _length_message(low: int, high: int | None) -> str:
    return (
        f"Length must be between {low} and {high}" if high is not None else f"Length must be at least {low}"
    )


@dataclass(frozen=True, slots=True)
class Length:
    """A string of ``low``–``high`` UTF-16 code units; ``required``: absent is an error too."""

    low: int
    high: int | None = None
    required: bool = False

    def errors(self, value: Any, node: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        if value is None:
            if self.required:
                yield "", "must be specified"
            return
        if not isinstance(value, str):
            return
        if value == "" and self.low > 0:
            yield "", "must be specified"
            return
        size = utf16_len(value)
        if size < self.low or (self.high is not None and size > self.high):
            yield "", _length_message(self.low, self.high)

    def __str__(self) -> str:
        return f"{self.low}–{self.high} characters" + (", required" if self.required else "")


@dataclass(frozen=True, slots=True)
class HeaderText:
    """A template's text: at most ``plain`` characters, ``with_header`` when it has an image or a title."""

    plain: int
    with_header: int

    def errors(self, value: Any, node: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        if not isinstance(value, str):
            return
        if value == "":
            yield "", "must be specified"
            return
        header = bool(node.get("thumbnailImageUrl") or node.get("title"))
        limit = self.with_header if header else self.plain
        if utf16_len(value) > limit:
            yield "", _length_message(1, limit) + (" (with an image or title)" if header else "")

    def __str__(self) -> str:
        return f"1–{self.plain} characters, 1–{self.with_header} with an image or title"


@dataclass(frozen=True, slots=True)
class Size:
    """An array (or object) of ``low``–``high`` items."""

    low: int
    high: int

    def errors(self, value: Any, node: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        if isinstance(value, list | dict) and not self.low <= len(value) <= self.high:
            yield "", f"Size must be between {self.low} and {self.high}"

    def __str__(self) -> str:
        return f"{self.low}–{self.high} items"


@dataclass(frozen=True, slots=True)
class Uri:
    """A URI with one of ``schemes``, of at most ``high`` characters (``None``: the OpenAPI document states
    the length already)."""

    high: int | None
    schemes: tuple[str, ...] = ("http", "https", "line", "tel")

    def errors(self, value: Any, node: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        if not isinstance(value, str):
            return
        scheme, colon, _ = value.partition(":")
        if not colon or scheme.lower() not in self.schemes:
            yield "", self._scheme_message()
        elif self.high is not None and utf16_len(value) > self.high:
            yield "", _length_message(1, self.high)

    def _scheme_message(self) -> str:
        if self.schemes == ("https",):
            return "must be an HTTPS URL (https://…)"
        return "must be a URI with the scheme " + ", ".join(self.schemes)

    def __str__(self) -> str:
        length = f", 1–{self.high} characters" if self.high is not None else ""
        return "/".join(self.schemes) + length


def HttpsUrl(high: int | None) -> Uri:  # noqa: N802 - reads as a rule in the table, like the classes
    """An ``https:`` URL of at most ``high`` characters."""
    return Uri(high, ("https",))


@dataclass(frozen=True, slots=True)
class EmojiPlaceholders:
    """Each LINE emoji's ``index`` is the position (in UTF-16 code units) of a ``$`` in the text."""

    def errors(self, value: Any, node: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        text = node.get("text")
        if not isinstance(value, list) or not isinstance(text, str):
            return
        units = text.encode("utf-16-le")
        for k, emoji in enumerate(value):
            index = emoji.get("index") if isinstance(emoji, dict) else None
            if not isinstance(index, int) or isinstance(index, bool):
                continue
            if not 0 <= index < len(units) // 2 or units[2 * index : 2 * index + 2] != b"$\x00":
                yield f"[{k}].index", "must be the position of a $ in text"

    def __str__(self) -> str:
        return "each index points at a $ in text"


_SUBSTITUTION_KEY = re.compile(r"[0-9A-Za-z_]{1,20}")


@dataclass(frozen=True, slots=True)
class SubstitutionKeys:
    """textV2 ``substitution`` keys: 1–20 characters of ``0-9a-zA-Z_``."""

    def errors(self, value: Any, node: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str) or not _SUBSTITUTION_KEY.fullmatch(key):
                    yield f".{key}", "key must be 1-20 characters of 0-9, a-z, A-Z and _"

    def __str__(self) -> str:
        return "keys [0-9a-zA-Z_]{1,20}"


@dataclass(frozen=True, slots=True)
class AlikeColumns:
    """Carousel columns all have the same number of actions, and all or none have an image, a title."""

    def errors(self, value: Any, node: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        if not isinstance(value, list) or not value or not isinstance(value[0], dict):
            return
        first = value[0]
        first_actions = first.get("actions")
        for k, column in enumerate(value[1:], start=1):
            if not isinstance(column, dict):
                continue
            actions = column.get("actions")
            if (
                isinstance(actions, list)
                and isinstance(first_actions, list)
                and len(actions) != len(first_actions)
            ):
                yield f"[{k}].actions", f"must have as many actions as columns[0] ({len(first_actions)})"
            for key, what in (("thumbnailImageUrl", "an image"), ("title", "a title")):
                if bool(column.get(key)) != bool(first.get(key)):
                    must = "set" if first.get(key) else "left out"
                    yield (
                        f"[{k}].{key}",
                        f"must be {must} as in columns[0] (every column has {what}, or none)",
                    )

    def __str__(self) -> str:
        return "same number of actions; image and title in all columns or none"


@dataclass(frozen=True, slots=True)
class JsonSize:
    """The object, as compact UTF-8 JSON, is at most ``high`` bytes (KB read as 1,000 bytes)."""

    high: int

    def errors(self, value: Any, node: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        try:
            size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
        except (TypeError, ValueError, RecursionError):  # not JSON: the structural check says so
            return
        if size > self.high:
            yield "", f"JSON must be at most {self.high:,} bytes, is {size:,}"

    def __str__(self) -> str:
        return f"JSON ≤ {self.high:,} bytes"


# --- the table ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limit:
    """One row: on every ``kind`` object (see :func:`objects`), its ``field`` (a dotted path; ``""`` the
    object itself) obeys ``rule``; ``source`` is the anchor in :data:`REFERENCE`, ``says`` what it says."""

    kind: str
    field: str
    rule: Rule
    source: str
    says: str


_TEXT_LIMIT = 5000
_URL = HttpsUrl(2000)
_URL_SAYS = "Max character limit: 2000; Protocol: HTTPS"
_ALT_TEXT = "Alternative text … Max character limit: 1500"
_LABEL_SPEC = "#action-object-label-spec"

LIMITS: tuple[Limit, ...] = (
    # common properties of every message
    # (quickReply.items ≤ 13, sender.name ≤ 20 and the lengths of these two URLs are in the OpenAPI document)
    Limit("message", "sender.iconUrl", HttpsUrl(None), "#icon-nickname-switch", "Protocol: HTTPS"),
    Limit("quick reply button", "imageUrl", HttpsUrl(None), "#quick-reply-button-object", "Protocol: HTTPS"),
    Limit(
        "quick reply action", "label", Length(1, 20, required=True), _LABEL_SPEC, "Quick reply: Required, 20"
    ),
    # text, textV2
    Limit("text message", "text", Length(1, _TEXT_LIMIT), "#text-message", "Max character limit: 5000"),
    Limit("text message", "emojis", Size(0, 20), "#text-message", "Max: 20 LINE emoji"),
    Limit(
        "text message",
        "emojis",
        EmojiPlaceholders(),
        "#text-message",
        "emojis.index: a position that doesn't match the position of $ returns 400",
    ),
    Limit("textV2 message", "text", Length(1, _TEXT_LIMIT), "#text-message-v2", "Max character limit: 5000"),
    Limit("textV2 message", "substitution", Size(0, 100), "#text-message-v2", "Max number of objects: 100"),
    Limit(
        "textV2 message",
        "substitution",
        SubstitutionKeys(),
        "#text-message-v2",
        "keys: 0-9a-zA-Z and _, max length of the key 20",
    ),
    # media and location
    Limit("image message", "originalContentUrl", _URL, "#image-message", _URL_SAYS),
    Limit("image message", "previewImageUrl", _URL, "#image-message", _URL_SAYS),
    Limit("video message", "originalContentUrl", _URL, "#video-message", _URL_SAYS),
    Limit("video message", "previewImageUrl", _URL, "#video-message", _URL_SAYS),
    Limit("video message", "trackingId", Length(1, 100), "#video-message", "Max character limit: 100"),
    Limit("audio message", "originalContentUrl", _URL, "#audio-message", _URL_SAYS),
    Limit("location message", "title", Length(1, 100), "#location-message", "Max character limit: 100"),
    Limit("location message", "address", Length(1, 100), "#location-message", "Max character limit: 100"),
    # imagemap
    Limit("imagemap message", "baseUrl", _URL, "#imagemap-message", _URL_SAYS),
    Limit("imagemap message", "altText", Length(1, 1500), "#imagemap-message", _ALT_TEXT),
    Limit("imagemap message", "actions", Size(1, 50), "#imagemap-message", "actions: Max: 50"),
    Limit("imagemap message", "video.originalContentUrl", _URL, "#imagemap-message", _URL_SAYS),
    Limit("imagemap message", "video.previewImageUrl", _URL, "#imagemap-message", _URL_SAYS),
    Limit("imagemap message", "video.externalLink.linkUri", Uri(1000), "#imagemap-message", "Max: 1000"),
    Limit("imagemap message", "video.externalLink.label", Length(1, 30), "#imagemap-message", "Max: 30"),
    Limit("imagemap action", "label", Length(0, 100), "#imagemap-action-objects", "Max character limit: 100"),
    Limit("imagemap uri action", "linkUri", Uri(1000), "#imagemap-uri-action-object", "Max: 1000"),
    Limit("imagemap message action", "text", Length(1, 400), "#imagemap-message-action-object", "Max: 400"),
    # templates
    Limit("template message", "altText", Length(1, 1500), "#template-messages", _ALT_TEXT),
    Limit("buttons template", "thumbnailImageUrl", _URL, "#buttons", _URL_SAYS),
    Limit("buttons template", "title", Length(1, 40), "#buttons", "Max character limit: 40"),
    Limit(
        "buttons template",
        "text",
        HeaderText(160, 60),
        "#buttons",
        "Max character limit: 160 (no image or title), 60 (message with an image or title)",
    ),
    Limit("buttons template", "actions", Size(1, 4), "#buttons", "Max objects: 4"),
    Limit("confirm template", "text", Length(1, 240), "#confirm", "Max character limit: 240"),
    Limit("confirm template", "actions", Size(2, 2), "#confirm", "Set 2 actions for the 2 buttons"),
    Limit("carousel template", "columns", Size(1, 10), "#carousel", "Max columns: 10"),
    Limit(
        "carousel template",
        "columns",
        AlikeColumns(),
        "#column-object-for-carousel",
        "Keep the number of actions consistent for all columns. If you use an image or title for a column, "
        "make sure to do the same for all other columns.",
    ),
    Limit("carousel column", "thumbnailImageUrl", _URL, "#column-object-for-carousel", _URL_SAYS),
    Limit(
        "carousel column", "title", Length(1, 40), "#column-object-for-carousel", "Max character limit: 40"
    ),
    Limit(
        "carousel column",
        "text",
        HeaderText(120, 60),
        "#column-object-for-carousel",
        "Max character limit: 120 (no image or title), 60 (message with an image or title)",
    ),
    Limit("carousel column", "actions", Size(1, 3), "#column-object-for-carousel", "Max objects: 3"),
    Limit("image_carousel template", "columns", Size(1, 10), "#image-carousel", "Max columns: 10"),
    Limit("image carousel column", "imageUrl", _URL, "#column-object-for-image-carousel", _URL_SAYS),
    Limit(
        "template action",
        "label",
        Length(1, 20, required=True),
        _LABEL_SPEC,
        "Template messages other than image carousel: Required, 20",
    ),
    Limit("image carousel action", "label", Length(0, 12), _LABEL_SPEC, "Image carousel: Optional, 12"),
    # flex
    Limit("flex message", "altText", Length(1, 1500), "#flex-message", _ALT_TEXT),
    Limit("flex carousel", "contents", Size(1, 12), "#f-carousel", "Max: 12 bubbles"),
    Limit("flex carousel", "", JsonSize(50_000), "#f-carousel", "The maximum size of JSON data … is 50 KB"),
    Limit("flex bubble", "", JsonSize(30_000), "#bubble", "The maximum size of JSON data … is 30 KB"),
    Limit("flex image", "url", _URL, "#f-image", _URL_SAYS),
    Limit("flex video", "url", _URL, "#f-video", _URL_SAYS),
    Limit("flex video", "previewUrl", _URL, "#f-video", _URL_SAYS),
    Limit("flex icon", "url", _URL, "#icon", _URL_SAYS),
    Limit(
        "flex button action",
        "label",
        Length(1, 40, required=True),
        _LABEL_SPEC,
        "Flex Message button: Required, 40",
    ),
    Limit("flex action", "label", Length(0, 40), _LABEL_SPEC, "Flex Message other than button: Optional, 40"),
    # actions, wherever they are
    # (postback and datetime picker data ≤ 300 and clipboardText ≤ 1000 are in the OpenAPI document)
    Limit("postback action", "displayText", Length(0, 300), "#postback-action", "Max character limit: 300"),
    Limit("postback action", "text", Length(0, 300), "#postback-action", "Max character limit: 300"),
    Limit("postback action", "fillInText", Length(0, 300), "#postback-action", "Max character limit: 300"),
    Limit("message action", "text", Length(1, 300), "#message-action", "Max character limit: 300"),
    Limit("uri action", "uri", Uri(1000), "#uri-action", "Max character limit: 1000; http, https, line, tel"),
    Limit("uri action", "altUri.desktop", Uri(None), "#uri-action", "http, https, line, tel"),
    # request bodies (the emulator): what the OpenAPI document leaves out
    Limit("push request", "to", Length(1), "#send-push-message", "to: the ID of the target recipient"),
)
"""Every limit of :mod:`tagline_contracts.line_limits`, in the order they are checked."""

_BY_KIND: dict[str, tuple[Limit, ...]] = {}
for _row in LIMITS:
    _BY_KIND[_row.kind] = (*_BY_KIND.get(_row.kind, ()), _row)


# --- the objects of a message ------------------------------------------------------------------------------


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _dicts(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict):
                yield index, item


def _action(action: Any, path: str, context: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    if isinstance(action, dict):
        yield context, action, path
        kind = action.get("type")
        if isinstance(kind, str):
            yield f"{kind} action", action, path


def _flex_component(
    component: dict[str, Any], path: str, depth: int
) -> Iterator[tuple[str, dict[str, Any], str]]:
    kind = component.get("type")
    if not isinstance(kind, str) or depth > MAX_DEPTH:
        return
    yield f"flex {kind}", component, path
    if kind == "box":
        for index, child in _dicts(component.get("contents")):
            yield from _flex_component(child, f"{path}.contents[{index}]", depth + 1)
    context = "flex button action" if kind == "button" else "flex action"
    yield from _action(component.get("action"), f"{path}.action", context)


def _flex_bubble(bubble: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    yield "flex bubble", bubble, path
    for block in ("header", "hero", "body", "footer"):
        component = bubble.get(block)
        if isinstance(component, dict):
            yield from _flex_component(component, f"{path}.{block}", 0)
    yield from _action(bubble.get("action"), f"{path}.action", "flex action")


def _template(template: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    kind = template.get("type")
    if not isinstance(kind, str):
        return
    yield f"{kind} template", template, path
    if kind in ("buttons", "confirm"):
        for index, action in _dicts(template.get("actions")):
            yield from _action(action, f"{path}.actions[{index}]", "template action")
        yield from _action(template.get("defaultAction"), f"{path}.defaultAction", "default action")
    elif kind == "carousel":
        for index, column in _dicts(template.get("columns")):
            at = f"{path}.columns[{index}]"
            yield "carousel column", column, at
            for k, action in _dicts(column.get("actions")):
                yield from _action(action, f"{at}.actions[{k}]", "template action")
            yield from _action(column.get("defaultAction"), f"{at}.defaultAction", "default action")
    elif kind == "image_carousel":
        for index, column in _dicts(template.get("columns")):
            at = f"{path}.columns[{index}]"
            yield "image carousel column", column, at
            yield from _action(column.get("action"), f"{at}.action", "image carousel action")


def objects(message: Any, path: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """``(kind, object, path)`` of ``message`` and of every object in it that a row of :data:`LIMITS` may
    name: ``"message"`` and ``"<type> message"``, templates and their columns, actions (by where they are and
    by their type), quick reply buttons, imagemap actions, flex containers and components."""
    if not isinstance(message, dict):
        return
    yield "message", message, path
    kind = message.get("type")
    if not isinstance(kind, str):
        return
    yield f"{kind} message", message, path
    quick_reply = message.get("quickReply")
    if isinstance(quick_reply, dict):
        for index, item in _dicts(quick_reply.get("items")):
            at = f"{path}.quickReply.items[{index}]"
            yield "quick reply button", item, at
            yield from _action(item.get("action"), f"{at}.action", "quick reply action")
    if kind == "template" and isinstance(message.get("template"), dict):
        yield from _template(message["template"], f"{path}.template")
    elif kind == "imagemap":
        for index, action in _dicts(message.get("actions")):
            at = f"{path}.actions[{index}]"
            yield "imagemap action", action, at
            action_kind = action.get("type")
            if isinstance(action_kind, str):
                yield f"imagemap {action_kind} action", action, at
    elif kind == "flex":
        contents, at = message.get("contents"), f"{path}.contents"
        if isinstance(contents, dict) and contents.get("type") == "carousel":
            yield "flex carousel", contents, at
            for index, bubble in _dicts(contents.get("contents")):
                yield from _flex_bubble(bubble, f"{at}.contents[{index}]")
        elif isinstance(contents, dict) and contents.get("type") == "bubble":
            yield from _flex_bubble(contents, at)


# --- the evaluator -----------------------------------------------------------------------------------------


def _field(node: Mapping[str, Any], dotted: str) -> Any:
    value: Any = node
    for key in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _check(kind: str, node: dict[str, Any], path: str) -> Iterator[LineError]:
    for row in _BY_KIND.get(kind, ()):
        value = _field(node, row.field) if row.field else node
        at = _at(path, row.field) if row.field else path
        for suffix, message in row.rule.errors(value, node):
            yield LineError(at + suffix, message)


def message_limit_errors(message: Any, path: str) -> list[LineError]:
    """What in one message object (at ``path``, e.g. ``messages[0]``) breaks a limit of :data:`LIMITS`."""
    return [error for kind, node, at in objects(message, path) for error in _check(kind, node, at)]


def request_limit_errors(operation: str, body: Any) -> list[LineError]:
    """What in a request body of ``operation`` (``push``, ``reply``, ``multicast``, …) breaks a limit: its own
    rows (``"<operation> request"``) and those of every message in its ``messages``."""
    if not isinstance(body, dict):
        return []
    errors = list(_check(f"{operation} request", body, ""))
    messages = body.get("messages")
    if isinstance(messages, list):
        for index, message in enumerate(messages):
            errors.extend(message_limit_errors(message, f"messages[{index}]"))
    return errors
