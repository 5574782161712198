"""How a send request becomes deliveries (LINE calls), pure.

* A single user with a reply token: one reply (free; joined with the other replies to the same event, and a
  stale or refused token follows the channel's ``reply_fallback``: see :mod:`tagline_sender.domain.replies`).
* A single user: one push. A list or a segment: multicasts of at most 500 recipients (a lone recipient left
  over becomes a push), recipients sorted and deduplicated so the batches are the same however often the
  request is planned. A crashed planning resumes after the last recipient of the last stored batch.
* Message objects need no check here: a :class:`SendMessages` holds valid ones only (its model validates them
  with :mod:`tagline_contracts.line_messages`), so an invalid record is dead-lettered when it is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from tagline_contracts.sending import SendMessages, SendMethod

MULTICAST_MAX = 500


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
