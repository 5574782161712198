"""Reply groups: one reply per event, at most five message objects, a window that fits the token."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tagline_sender.domain.replies import fit, gather_until, group_retry_key, reply_group_id

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
TTL = timedelta(seconds=25)
GATHER = timedelta(milliseconds=800)


def test_whole_requests_in_arrival_order_while_they_fit() -> None:
    three_three = fit([("a", 3), ("b", 3)])
    assert three_three.included == ["a"]
    [(left_out, why)] = three_three.excluded
    assert left_out == "b" and "holds 3 of LINE's 5" in why and "never split" in why
    # a later, smaller request that still fits is taken; nothing is ever split
    assert fit([("a", 3), ("b", 3), ("c", 2)]).included == ["a", "c"]
    assert fit([("a", 1), ("b", 1), ("c", 1), ("d", 2)]).included == ["a", "b", "c", "d"]
    assert fit([("a", 5), ("b", 1)]).included == ["a"]


def test_the_window_starts_at_the_first_arrival_and_ends_while_the_token_is_fresh() -> None:
    received = NOW - timedelta(milliseconds=200)
    assert gather_until(NOW, received, GATHER, TTL) == NOW + GATHER
    # the sender lags 10 s behind: the window keeps its width (the next request is right behind this one)
    assert gather_until(NOW, NOW - timedelta(seconds=10), GATHER, TTL) == NOW + GATHER
    # a token close to its TTL is not held past the point where it could still be tried
    old = NOW - timedelta(seconds=22.5)
    assert gather_until(NOW, old, GATHER, TTL) == old + TTL - timedelta(seconds=2)
    assert gather_until(NOW, NOW - timedelta(seconds=24), GATHER, TTL) == NOW


def test_group_names_and_retry_keys_are_stable_and_per_channel() -> None:
    assert reply_group_id("c1", "tok") == reply_group_id("c1", "tok") != reply_group_id("c2", "tok")
    assert "tok" not in reply_group_id("c1", "tok")
    key = group_retry_key(reply_group_id("c1", "tok"))
    assert key == group_retry_key(reply_group_id("c1", "tok")) and uuid.UUID(key)
