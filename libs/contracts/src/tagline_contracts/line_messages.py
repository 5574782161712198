"""The one validator of LINE message objects: what every API that stores messages, and the sender before any
LINE call, checks (welcome messages, journey steps, the tagger's auto-replies, every ``SendMessages``).

A message object is valid when

1. it can be stored (:func:`~tagline_contracts.base.check_storable`: no NaN, no 64-bit overflow, no ``$``
   key);
2. line-bot-sdk's models accept it (``Message.from_dict``: LINE's OpenAPI document — the types, the required
   properties, the known ``type`` values, some lengths);
3. it keeps LINE's documented limits the OpenAPI document does not state
   (:data:`tagline_contracts.line_limits.LIMITS`: a buttons template has at most 4 actions, …).

Errors name the message and the property, in LINE's notation: ``messages[0].previewImageUrl: must be
specified``. line-bot-sdk's own errors do not say where in the message they are, so when it refuses a message
the same models are walked to find the property (:func:`_locate`); only on that error path.

Cost (``bench/test_line_messages_bench.py``): line-bot-sdk is imported on the first validation (about a
second; services call :func:`warm_up` at start so no request waits for it). A text message takes about
10 µs, a flex carousel of twelve bubbles milliseconds; the messages found valid are remembered by a hash of
their JSON, so the welcome, journey and auto-reply messages that are validated again each time their
definitions are reloaded or sent cost a hash.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from tagline_contracts.base import check_storable
from tagline_contracts.line_limits import LineError, message_limit_errors

__all__ = [
    "MAX_REPORTED",
    "InvalidMessages",
    "LineError",
    "check_line_messages",
    "message_errors",
    "validate_line_messages",
    "warm_up",
]

MAX_REPORTED = 10
"""Errors named in an :class:`InvalidMessages` message (all are in ``.errors``)."""
_REMEMBERED = 4096
_valid: dict[bytes, None] = {}
"""Digests of message objects found valid (cleared when full; validation is a pure function of the JSON)."""

M = TypeVar("M", bound=Sequence[Any])


class InvalidMessages(ValueError):
    """Message objects LINE would refuse; ``errors`` names each problem (a ``ValueError``, so a pydantic field
    validator raising it makes FastAPI answer 422 and a consumer dead-letter the record with the reason)."""

    def __init__(self, errors: Sequence[LineError]) -> None:
        self.errors = tuple(errors)
        shown = "; ".join(str(e) for e in self.errors[:MAX_REPORTED])
        more = len(self.errors) - MAX_REPORTED
        super().__init__(shown + (f"; and {more} more" if more > 0 else ""))


def validate_line_messages(messages: Sequence[Any], where: str = "messages") -> None:
    """Raise :class:`InvalidMessages` unless every message object of ``messages`` is valid; the errors name
    ``<where>[<index>].<property>``."""
    errors = message_errors(messages, where)
    if errors:
        raise InvalidMessages(errors)


def check_line_messages(messages: M, where: str = "messages") -> M:
    """``messages`` if valid (see :func:`validate_line_messages`): the body of a pydantic field validator."""
    validate_line_messages(messages, where)
    return messages


def message_errors(messages: Sequence[Any], where: str = "messages") -> list[LineError]:
    """Every problem of every message object in ``messages`` (empty: all valid)."""
    errors: list[LineError] = []
    for index, message in enumerate(messages):
        errors.extend(_errors(message, f"{where}[{index}]"))
    return errors


def warm_up() -> None:
    """Import line-bot-sdk now (about a second), not when the first message is validated."""
    _sdk()


def _errors(message: Any, at: str) -> list[LineError]:
    if not isinstance(message, dict):
        return [LineError(at, "must be an object")]
    try:
        check_storable(message, at)
    except ValueError as exc:
        return [LineError(at, str(exc))]
    key = _digest(message)
    if key is not None and key in _valid:
        return []
    errors = _structure_errors(message, at)
    named = {e.property for e in errors}
    errors += [e for e in message_limit_errors(message, at) if e.property not in named]
    if not errors and key is not None:
        if len(_valid) >= _REMEMBERED:
            _valid.clear()
        _valid[key] = None
    return errors


def _digest(message: dict[str, Any]) -> bytes | None:
    try:
        text = json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):  # not JSON (a Python caller's datetime, say): validated every time
        return None
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


# --- line-bot-sdk ------------------------------------------------------------------------------------------


@functools.cache
def _sdk() -> Any:
    """line-bot-sdk's models module, imported once (the import takes about a second)."""
    from linebot.v3.messaging import models  # noqa: PLC0415 - heavy, and only the validator needs it

    return models


def _structure_errors(message: dict[str, Any], at: str) -> list[LineError]:
    models = _sdk()
    try:
        models.Message.from_dict(message)
    except Exception as exc:  # the generated code raises ValueError, TypeError, KeyError …
        return _locate(message, models.Message, at, models) or [LineError(at, _one_line(exc))]
    return []


def _size_errors(items: list[Any], constrained: Any, where: str) -> list[LineError]:
    """The size limits of a ``conlist`` field (``quickReply.items``: at most 13)."""
    low, high = getattr(constrained, "min_items", None) or 0, getattr(constrained, "max_items", None)
    if len(items) < low or (high is not None and len(items) > high):
        return [LineError(where, f"Size must be between {low} and {high}")]
    return []


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _discriminator(cls: type) -> tuple[str, dict[str, str]] | None:
    """The property and the value → class-name map of a polymorphic line-bot-sdk model (``Message``)."""
    prefix = f"_{cls.__name__}__discriminator_"
    prop = cls.__dict__.get(prefix + "property_name")
    mapping = cls.__dict__.get(prefix + "value_class_map")
    return (prop, mapping) if isinstance(prop, str) and isinstance(mapping, dict) else None


def _locate(value: Any, cls: type, at: str, models: Any) -> list[LineError]:
    """Where ``value`` does not fit the line-bot-sdk model ``cls``: the same pydantic (v1) fields,
    followed property by property so each error has its path."""
    if not isinstance(value, dict):
        return [LineError(at, "must be an object")]
    polymorphic = _discriminator(cls)
    if polymorphic is not None:
        prop, mapping = polymorphic
        kind = value.get(prop)
        name = mapping.get(kind) if isinstance(kind, str) else None
        if name is None:
            allowed = ", ".join(mapping)
            return [LineError(f"{at}.{prop}", f"must be one of the following values: [{allowed}]")]
        cls = getattr(models, name)
    errors: list[LineError] = []
    for field in cls.__fields__.values():  # type: ignore[attr-defined]
        where, item = f"{at}.{field.alias}", value.get(field.alias)
        if item is None:
            if field.required:
                errors.append(LineError(where, "must be specified"))
        else:
            errors += _field_errors(field, item, where, cls, models)
    return errors


def _field_errors(field: Any, item: Any, where: str, cls: type, models: Any) -> list[LineError]:
    from pydantic.v1 import BaseModel  # noqa: PLC0415 - with line-bot-sdk, on the error path only
    from pydantic.v1.error_wrappers import ValidationError  # noqa: PLC0415
    from pydantic.v1.fields import SHAPE_SINGLETON  # noqa: PLC0415

    inner = field.type_
    if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
        # a plain field (a string's type and length, an enum, a list of strings): pydantic's own check of it
        _, problem = field.validate(item, {}, loc=field.alias, cls=cls)
        if problem is None:
            return []
        details = ValidationError([problem], cls).errors()
        return [LineError(where, str(d["msg"])) for d in details[:1]]
    if field.shape == SHAPE_SINGLETON:
        return _locate(item, inner, where, models)
    if isinstance(item, list):
        errors = _size_errors(item, field.outer_type_, where)
        for index, element in enumerate(item):
            errors += _locate(element, inner, f"{where}[{index}]", models)
        return errors
    if isinstance(item, dict):  # textV2's substitution: a map of objects
        return [e for key, element in item.items() for e in _locate(element, inner, f"{where}.{key}", models)]
    return [LineError(where, "must be an array")]
