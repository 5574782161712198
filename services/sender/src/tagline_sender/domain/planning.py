"""How a send request becomes deliveries (LINE calls), pure.

* A single user with a reply token: one reply (free; joined with the other replies to the same event, and a
  stale or refused token follows the channel's ``reply_fallback``: see :mod:`tagline_sender.domain.replies`).
* A single user: one push. A list or a segment: multicasts of at most 500 recipients (a lone recipient left
  over becomes a push), recipients sorted and deduplicated so the batches are the same however often the
  request is planned. A crashed planning resumes after the last recipient of the last stored batch.
* Messages are validated against line-bot-sdk's models before anything is stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from tagline_contracts.sending import SendMessages, SendMethod

MULTICAST_MAX = 500
MAX_TEXT_LENGTH = 5_000


class InvalidRequest(ValueError):
    """The request cannot be sent as it is; it goes to the DLQ with this reason."""


def reply_is_fresh(request: SendMessages, now: datetime, ttl: timedelta) -> bool:
    return request.reply is not None and now - request.reply.received_at < ttl


def batches(sorted_unique_ids: Iterable[str], size: int = MULTICAST_MAX) -> Iterator[list[str]]:
    """Chunks of at most ``size`` ids, in order."""
    batch: list[str] = []
    for user_id in sorted_unique_ids:
        batch.append(user_id)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def method_for_batch(batch: list[str]) -> SendMethod:
    return SendMethod.PUSH if len(batch) == 1 else SendMethod.MULTICAST


def validate_messages(messages: list[dict[str, Any]]) -> None:
    """Check every message object against line-bot-sdk's models (plus LINE's text length limit)."""
    from linebot.v3.messaging import Message  # noqa: PLC0415 - heavy import, only where it is needed

    for index, message in enumerate(messages):
        try:
            Message.from_dict(message)
        except (ValueError, TypeError) as exc:  # pydantic v1's ValidationError is a ValueError
            raise InvalidRequest(
                f"messages[{index}] is not a valid LINE message: {_first_line(exc)}"
            ) from exc
        text = message.get("text")
        if isinstance(text, str) and len(text) > MAX_TEXT_LENGTH:
            raise InvalidRequest(f"messages[{index}].text is longer than {MAX_TEXT_LENGTH} characters")


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]
