"""The monthly quota ledger's rules (DESIGN.md §4), pure.

LINE counts billable messages (recipients of push / multicast / narrowcast / broadcast; replies are free)
per calendar month and refuses sends beyond the channel's limit. The sender keeps one ledger document per
(channel, month) whose ``remaining`` field is what may still be reserved:

    remaining = limit − used − reserved − external

``used`` is confirmed by LINE's answer, ``reserved`` is held by calls in flight, ``external`` is what LINE's
consumption endpoint reports beyond our own sends (other tools on the same channel). A reservation is one
conditional update ``remaining >= n (+ headroom)`` that decrements ``remaining``; so the limit holds with any
number of sender instances, because the database applies the check and the decrement atomically.

Marketing sends must leave ``headroom`` messages for transactional ones (order confirmations must still get
through at the end of the month); what does not fit is deferred, never dropped.
"""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

from tagline_contracts.sending import SendCategory

# "No limit" (LINE's quota type "none") is kept as a very large number so the same conditional update works.
UNLIMITED = 10**15


def month_of(moment: datetime, timezone: str) -> str:
    """The ledger month (``YYYY-MM``) of ``moment`` in the channel's timezone."""
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m")


def headroom_for(limit: int, ratio: float, minimum: int = 0) -> int:
    """Messages kept back from marketing sends: ``ratio`` of the limit, at least ``minimum``."""
    if limit >= UNLIMITED:
        return 0
    return max(minimum, math.ceil(limit * ratio))


def required_remaining(n: int, category: SendCategory, headroom: int) -> int:
    """What ``remaining`` must be at least for a reservation of ``n`` messages of ``category``."""
    return n + (headroom if category is SendCategory.MARKETING else 0)


def external_usage(total_usage: int, used: int, reserved: int) -> int:
    """Messages LINE counted that our ledger does not know about (never negative).

    In-flight reservations may already be counted by LINE, so they are subtracted too: this errs on the
    side of reserving less for others, never of overspending.
    """
    return max(0, total_usage - used - reserved)
