"""The emulator's processing without HTTP, on a fake clock (token expiry, key TTL, auth, quota effects)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tagline_line_emulator import Answer, Call, Emulator

AUTH = "Bearer 1656000001"
CHANNEL = "1656000001"
MESSAGES = [{"type": "text", "text": "hi"}]

MakeEmulator = Callable[..., Emulator]


def handle(emu: Emulator, endpoint: str, body: Any = None, **call: Any) -> Answer:
    call.setdefault("authorization", AUTH)
    raw = b"" if body is None else json.dumps(body).encode()
    exchange = emu.begin(Call(endpoint=endpoint, body=raw, **call))
    return exchange.answer or emu.execute(exchange)


def test_reply_token_expires_after_the_configured_ttl(make_emulator: MakeEmulator, clock: Any) -> None:
    emu = make_emulator(reply_token_ttl_s=30.0)
    fresh = emu.issue_reply_token(CHANNEL, "U1")
    stale = emu.issue_reply_token(CHANNEL, "U2")
    clock.advance(29.0)
    assert handle(emu, "reply", {"replyToken": fresh, "messages": MESSAGES}).status == 200
    clock.advance(2.0)
    answer = handle(emu, "reply", {"replyToken": stale, "messages": MESSAGES})
    assert (answer.status, answer.body) == (400, {"message": "Invalid reply token"})
    assert emu.deliveries(CHANNEL) == {"U1": 1}


def test_reply_is_free_and_delivered_to_the_bound_user(make_emulator: MakeEmulator) -> None:
    emu = make_emulator()
    emu.set_quota(CHANNEL, 0)
    token = emu.issue_reply_token(CHANNEL, "U9", token="abc")
    answer = handle(emu, "reply", {"replyToken": "abc", "messages": MESSAGES * 2})
    assert answer.status == 200
    assert len(answer.body["sentMessages"]) == 2
    assert token == "abc"
    assert emu.deliveries(CHANNEL) == {"U9": 1}
    assert emu.usage(CHANNEL) == 0


def test_a_reply_with_a_bad_body_does_not_use_the_token(make_emulator: MakeEmulator) -> None:
    emu = make_emulator()
    token = emu.issue_reply_token(CHANNEL, "U1")
    assert handle(emu, "reply", {"replyToken": token, "messages": []}).status == 400
    assert handle(emu, "reply", {"replyToken": token, "messages": MESSAGES}).status == 200


def test_retry_key_is_forgotten_after_24_hours(make_emulator: MakeEmulator, clock: Any) -> None:
    emu = make_emulator()
    key = str(uuid.uuid4())
    body = {"to": "U1", "messages": MESSAGES}
    assert handle(emu, "push", body, retry_key=key).status == 200
    clock.advance(23 * 3600)
    assert handle(emu, "push", body, retry_key=key).status == 409
    clock.advance(3600)
    assert handle(emu, "push", body, retry_key=key).status == 200
    assert emu.deliveries(CHANNEL) == {"U1": 2}


def test_configured_channels_name_the_channel_of_a_token_and_refuse_others(
    make_emulator: MakeEmulator,
) -> None:
    emu = make_emulator(channels={"2000000001": "secret-token"})
    assert emu.authenticate("Bearer secret-token") == "2000000001"
    assert emu.authenticate("Bearer other") is None
    assert emu.authenticate("Basic secret-token") is None
    assert emu.authenticate(None) is None
    answer = handle(emu, "quota", authorization="Bearer other")
    assert answer.status == 401
    lenient = make_emulator()
    assert lenient.authenticate("Bearer anything") == "anything"
    assert lenient.authenticate("Bearer ") is None


def test_monthly_limit_counts_recipients_not_message_objects(make_emulator: MakeEmulator) -> None:
    emu = make_emulator()
    emu.set_quota(CHANNEL, 5)
    emu.block(CHANNEL, "B1")
    five_messages = MESSAGES * 5
    assert handle(emu, "multicast", {"to": ["U1", "U2", "B1"], "messages": five_messages}).status == 200
    assert emu.usage(CHANNEL) == 2
    assert handle(emu, "push", {"to": "B1", "messages": MESSAGES}).status == 200  # blocked: free
    assert emu.usage(CHANNEL) == 2
    refused = handle(emu, "multicast", {"to": ["U3", "U4", "U5", "U6"], "messages": MESSAGES})
    assert (refused.status, refused.body) == (429, {"message": "You have reached your monthly limit."})
    assert emu.usage(CHANNEL) == 2
    assert handle(emu, "multicast", {"to": ["U3", "U4", "U5"], "messages": MESSAGES}).status == 200
    assert emu.usage(CHANNEL) == 5


def test_broadcast_and_narrowcast_reach_friends_minus_blocked(make_emulator: MakeEmulator) -> None:
    emu = make_emulator()
    emu.set_friends(CHANNEL, ["U1", "U2", "U3", "U4"])
    emu.block(CHANNEL, "U2")
    assert handle(emu, "broadcast", {"messages": MESSAGES}).status == 200
    assert handle(emu, "narrowcast", {"messages": MESSAGES, "limit": {"max": 2}}).status == 202
    assert emu.deliveries(CHANNEL) == {"U1": 2, "U3": 2, "U4": 1}
    assert emu.usage(CHANNEL) == 5
    assert emu.blocked_attempts(CHANNEL) == {}  # LINE skips them: not the sender's attempt


def test_reset_forgets_state_and_restores_configured_limits(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(rate_limits={"push": (1, 60.0)})
    emu.set_quota(CHANNEL, 1)
    assert handle(emu, "push", {"to": "U1", "messages": MESSAGES}).status == 200
    emu.set_rate_limit("push", 100, 1.0)
    emu.reset()
    assert emu.quota(CHANNEL) is None
    assert emu.requests() == []
    assert emu.rate_limits()["push"].limit == 1
    assert handle(emu, "push", {"to": "U1", "messages": MESSAGES}).status == 200
    assert handle(emu, "push", {"to": "U1", "messages": MESSAGES}).status == 429


def test_unknown_endpoint_names_are_refused(make_emulator: MakeEmulator) -> None:
    emu = make_emulator()
    with pytest.raises(ValueError, match="unknown endpoint"):
        emu.set_rate_limit("pushes", 1, 1.0)
    with pytest.raises(ValueError, match="unknown endpoint"):
        make_emulator(rate_limits={"pushes": (1, 1.0)})
