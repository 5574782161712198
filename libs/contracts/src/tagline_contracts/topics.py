"""Every Kafka topic name, in one place (DESIGN.md §3). Import the constants; never spell a topic inline."""

from __future__ import annotations

from typing import Final

LINE_EVENTS: Final = "line.events.v1"
MEMBER_ATTRIBUTES: Final = "member.attributes.v1"
MEMBER_CHANGES: Final = "member.changes.v1"
SEND_REQUESTS: Final = "send.requests.v1"
SEND_RESULTS: Final = "send.results.v1"
LIVE_COMMENTS: Final = "live.comments.v1"
SHOP_ORDER_STATUS: Final = "shop.order-status.v1"
SHOP_ORDERS: Final = "shop.orders.v1"

ALL: Final[tuple[str, ...]] = (
    LINE_EVENTS,
    MEMBER_ATTRIBUTES,
    MEMBER_CHANGES,
    SEND_REQUESTS,
    SEND_RESULTS,
    LIVE_COMMENTS,
    SHOP_ORDER_STATUS,
    SHOP_ORDERS,
)


def dlq(topic: str) -> str:
    """The dead-letter topic of ``topic``: ``line.events.v1`` → ``line.events.dlq.v1``."""
    base, sep, version = topic.rpartition(".")
    if not sep or not version.startswith("v"):
        raise ValueError(f"topic {topic!r} has no version suffix")
    return f"{base}.dlq.{version}"
