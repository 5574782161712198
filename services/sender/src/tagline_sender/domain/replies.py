"""Every reply to one inbound event goes out as one reply call: the rules, pure.

LINE gives each webhook event one reply token: usable once, for one reply of at most five message objects.
Several services may answer the same event, each with its own send request carrying that token: two keyword
rules with auto-replies (the tagger publishes one request per rule), or liveshop's confirmation of an order
typed in the chat ("+1") and the tagger's auto-reply to a keyword in the same message. LINE accepts the first
reply and refuses the second ("Invalid reply token"). So the sender gathers the requests that carry one token
into a **reply group** and sends them as one reply:

* The group is named by the channel and a hash of the token (:func:`reply_group_id`).
* The group is sent once no request has joined it for the gather window (``TAGLINE_SENDER_REPLY_GATHER_MS``,
  :func:`gather_until`), so the other services' answers to the same event arrive first and join it. A request
  whose publisher says it is the event's only answer (``ReplyContext.sole``: the welcome message, as no other
  service answers a follow) is sent at once, with no window.
* Its message objects are its requests' messages in arrival order. At most five fit (:func:`fit`): whole
  requests are taken in arrival order while they fit; a request whose messages no longer fit is left out and
  fails with :func:`over_limit_reason` (a request is never split, and never pushed instead).
* A request for a token whose group was already sent (it arrived after the window) is never pushed: it fails
  with :data:`LATE_REASON` (the token is spent, and a push would be a second, paid message for one event).
* If the group's reply must fall back to a push (stale or refused token, ``reply_fallback: push``), the group
  is pushed as one push with :func:`group_retry_key`: one billable message, not one per request.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tagline_contracts.sending import MAX_MESSAGES_PER_REQUEST

MAX_REPLY_MESSAGES = MAX_MESSAGES_PER_REQUEST
"""LINE's limit of message objects in one reply (and one push): five."""

SEND_MARGIN = timedelta(seconds=2)
"""A group is sent at least this long before its token would be too old to try (claim, lock, rate limit)."""

LATE_REASON = (
    "arrived after this event's reply was sent (a reply token is single-use); not sent, and never pushed "
    "instead"
)

_RETRY_KEYS = uuid.UUID("0b7a6f4e-5d8c-4b0e-9a51-3c2f1e7d9a60")


def reply_group_id(channel_id: str, token: str) -> str:
    """The group of every request replying with ``token`` on ``channel_id`` (named by a hash of the token)."""
    return f"{channel_id}:{hashlib.sha256(token.encode()).hexdigest()[:32]}"


def group_retry_key(group_id: str) -> str:
    """The ``X-Line-Retry-Key`` of the group's push fallback: the same for every attempt, whichever member
    leads it (a UUID, as LINE requires)."""
    return str(uuid.uuid5(_RETRY_KEYS, group_id))


def gather_until(arrived_at: datetime, received_at: datetime, gather: timedelta, ttl: timedelta) -> datetime:
    """The earliest a group is sent, given a request that joined it at ``arrived_at`` (the latest such time
    of its requests wins: the window restarts with each request that joins).

    Measured from the requests' arrival, not from ``received_at`` (when ingest received the event): the other
    requests of the event are keyed like the first (``channel:userId``), so they follow it on the same
    partition of ``send.requests.v1``, and a window measured from their arrival keeps its width when the
    sender lags behind or plans slowly (a window measured from ``received_at`` would be over then, and the
    second request late). Restarting it with each request keeps a burst of requests planned one after the
    other together. It never runs past the point where the token would be too old to try.
    """
    latest = received_at + ttl - SEND_MARGIN
    return max(arrived_at, min(arrived_at + gather, latest))


@dataclass(frozen=True)
class Fit:
    included: list[str]
    excluded: list[tuple[str, str]]  # (id, why it was left out)


def fit(members: Sequence[tuple[str, int]], limit: int = MAX_REPLY_MESSAGES) -> Fit:
    """Which requests (``(id, message count)`` in arrival order) go into the one reply.

    Whole requests, in arrival order, each one taken if its messages still fit in ``limit``: a request that
    does not fit is left out (never split), and a later, smaller one that still fits is taken.
    """
    included: list[str] = []
    excluded: list[tuple[str, str]] = []
    used = 0
    for member_id, count in members:
        if used + count <= limit:
            included.append(member_id)
            used += count
        else:
            excluded.append((member_id, over_limit_reason(used, count, limit)))
    return Fit(included, excluded)


def over_limit_reason(taken: int, own: int, limit: int = MAX_REPLY_MESSAGES) -> str:
    return (
        f"this event's reply already holds {taken} of LINE's {limit} message objects and this request has "
        f"{own}: not sent (a request is never split, and never pushed instead)"
    )
