"""LINE's rules over HTTP: validation errors, rate limits, monthly quota, retry keys, reply tokens, blocks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import aiohttp

from tagline_line_emulator import Emulator, EmulatorConfig, Fault, serve

Text = Callable[[str], list[dict[str, str]]]


async def test_bad_bodies_get_lines_400_shape_and_have_no_effect(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    cases = [
        ({"to": "U1", "messages": [{"type": "txt", "text": "hi"}]}, "messages[0].type"),
        ({"to": "U1", "messages": text("hi") * 6}, "messages"),
        ({"to": "U1", "messages": text("")}, "messages[0].text"),
        ({"messages": text("hi")}, "to"),
    ]
    for body, prop in cases:
        async with http.post("/v2/bot/message/push", json=body) as resp:
            assert resp.status == 400
            answer = await resp.json()
        assert answer["message"] == "The request body has 1 error(s)"
        assert [d["property"] for d in answer["details"]] == [prop]
        assert answer["details"][0]["message"]
    ids = [f"U{i}" for i in range(501)]
    async with http.post("/v2/bot/message/multicast", json={"to": ids, "messages": text("hi")}) as resp:
        assert (resp.status, await resp.json()) == (
            400,
            {
                "message": "The request body has 1 error(s)",
                "details": [{"message": "Size must be between 1 and 500", "property": "to"}],
            },
        )
    assert emu.deliveries(channel) == {}
    assert emu.usage(channel) == 0


async def test_several_errors_are_counted_in_the_message(http: aiohttp.ClientSession) -> None:
    async with http.post("/v2/bot/message/push", json={"messages": [{"type": "text"}]}) as resp:
        answer = await resp.json()
    assert answer["message"] == "The request body has 2 error(s)"
    assert {d["property"] for d in answer["details"]} == {"to", "messages[0].text"}


async def test_malformed_json(http: aiohttp.ClientSession) -> None:
    async with http.post(
        "/v2/bot/message/push", data=b"{not json", headers={"Content-Type": "application/json"}
    ) as resp:
        assert (resp.status, await resp.json()) == (
            400,
            {
                "message": "The request body has 1 error(s)",
                "details": [{"message": "Invalid JSON", "property": ""}],
            },
        )


async def test_rate_limit_429_then_the_window_slides(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    emu.set_rate_limit("push", 3, 0.4)
    statuses = []
    for i in range(5):
        async with http.post("/v2/bot/message/push", json={"to": f"U{i}", "messages": text("x")}) as resp:
            statuses.append(resp.status)
            if resp.status == 429:
                assert await resp.json() == {
                    "message": "The API rate limit has been exceeded. Try again later."
                }
    assert statuses == [200, 200, 200, 429, 429]
    assert emu.deliveries(channel) == {"U0": 1, "U1": 1, "U2": 1}  # refused requests have no effect
    assert emu.usage(channel) == 3
    await asyncio.sleep(0.45)
    async with http.post("/v2/bot/message/push", json={"to": "U9", "messages": text("x")}) as resp:
        assert resp.status == 200
    assert emu.max_in_window("push", channel, 0.4, accepted_only=True) <= 3
    assert emu.max_in_window("push", channel, 0.4) == 5


async def test_rate_limits_are_per_endpoint(http: aiohttp.ClientSession, emu: Emulator, text: Text) -> None:
    emu.set_rate_limit("multicast", 1, 60.0)
    body = {"to": ["U1"], "messages": text("x")}
    async with http.post("/v2/bot/message/multicast", json=body) as resp:
        assert resp.status == 200
    async with http.post("/v2/bot/message/multicast", json=body) as resp:
        assert resp.status == 429
    async with http.post("/v2/bot/message/push", json={"to": "U1", "messages": text("x")}) as resp:
        assert resp.status == 200


async def test_monthly_limit(http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text) -> None:
    emu.set_quota(channel, 200)
    emu.set_usage(channel, 199)
    async with http.post(
        "/v2/bot/message/multicast", json={"to": ["U1", "U2"], "messages": text("x")}
    ) as resp:
        assert (resp.status, await resp.json()) == (429, {"message": "You have reached your monthly limit."})
    assert emu.usage(channel) == 199
    assert emu.deliveries(channel) == {}
    async with http.post("/v2/bot/message/push", json={"to": "U1", "messages": text("x")}) as resp:
        assert resp.status == 200
    async with http.get("/v2/bot/message/quota/consumption") as resp:
        assert await resp.json() == {"totalUsage": 200}


async def test_retry_key_repeat_is_409_with_the_accepted_id_and_no_second_delivery(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    key = str(uuid.uuid4())
    headers = {"X-Line-Retry-Key": key}
    body = {"to": "U1", "messages": text("order shipped")}
    async with http.post("/v2/bot/message/push", json=body, headers=headers) as resp:
        assert resp.status == 200
        first_id = resp.headers["X-Line-Request-Id"]
        first = await resp.json()
    # a repeat, even with another body, is refused
    for repeat in (body, {"to": "U2", "messages": text("other")}):
        async with http.post("/v2/bot/message/push", json=repeat, headers=headers) as resp:
            assert resp.status == 409
            assert resp.headers["X-Line-Accepted-Request-Id"] == first_id
            assert resp.headers["X-Line-Request-Id"] != first_id
            answer = await resp.json()
        assert answer == {
            "message": "The retry key is already accepted",
            "sentMessages": first["sentMessages"],
        }
    assert emu.deliveries(channel) == {"U1": 1}
    assert emu.usage(channel) == 1


async def test_retry_key_on_multicast_409_has_no_sent_messages(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    headers = {"X-Line-Retry-Key": str(uuid.uuid4())}
    body = {"to": ["U1", "U2"], "messages": text("x")}
    async with http.post("/v2/bot/message/multicast", json=body, headers=headers) as resp:
        assert resp.status == 200
    async with http.post("/v2/bot/message/multicast", json=body, headers=headers) as resp:
        assert (resp.status, await resp.json()) == (409, {"message": "The retry key is already accepted"})
    assert emu.deliveries(channel) == {"U1": 1, "U2": 1}


async def test_a_key_whose_request_failed_can_be_retried(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    headers = {"X-Line-Retry-Key": str(uuid.uuid4())}
    body = {"to": "U1", "messages": text("x")}
    emu.inject(Fault(endpoint="push", kind="error", times=1))
    async with http.post("/v2/bot/message/push", json=body, headers=headers) as resp:
        assert (resp.status, await resp.json()) == (500, {"message": "Internal server error"})
    emu.set_quota(channel, 0)
    async with http.post("/v2/bot/message/push", json=body, headers=headers) as resp:
        assert resp.status == 429
    emu.set_quota(channel, None)
    async with http.post("/v2/bot/message/push", json={"to": "U1"}, headers=headers) as resp:
        assert resp.status == 400
    async with http.post("/v2/bot/message/push", json=body, headers=headers) as resp:
        assert resp.status == 200
    assert emu.deliveries(channel) == {"U1": 1}


async def test_retry_key_must_be_a_uuid(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    headers = {"X-Line-Retry-Key": "order-42"}
    async with http.post(
        "/v2/bot/message/push", json={"to": "U1", "messages": text("x")}, headers=headers
    ) as resp:
        assert (resp.status, await resp.json()) == (400, {"message": "The retry key is invalid"})
    assert emu.deliveries(channel) == {}


async def test_reply_token_is_single_use_and_must_be_known(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    token = emu.issue_reply_token(channel, "U1")
    body = {"replyToken": token, "messages": text("hi")}
    async with http.post("/v2/bot/message/reply", json=body) as resp:
        assert resp.status == 200
    async with http.post("/v2/bot/message/reply", json=body) as resp:
        assert (resp.status, await resp.json()) == (400, {"message": "Invalid reply token"})
    async with http.post(
        "/v2/bot/message/reply", json={"replyToken": "made-up", "messages": text("x")}
    ) as resp:
        assert resp.status == 400
    other = {"Authorization": "Bearer 2000000002"}
    token = emu.issue_reply_token(channel, "U2")
    async with http.post(
        "/v2/bot/message/reply", json={"replyToken": token, "messages": text("x")}, headers=other
    ) as resp:
        assert resp.status == 400  # another channel's token
    assert emu.deliveries(channel) == {"U1": 1}


async def test_reply_token_expiry_over_http(text: Text) -> None:
    emu = Emulator(EmulatorConfig(reply_token_ttl_s=0.2))
    async with serve(emu) as running, aiohttp.ClientSession(base_url=running.url) as session:
        token = emu.issue_reply_token("c1", "U1")
        await asyncio.sleep(0.25)
        headers = {"Authorization": "Bearer c1"}
        async with session.post(
            "/v2/bot/message/reply", json={"replyToken": token, "messages": text("late")}, headers=headers
        ) as resp:
            assert (resp.status, await resp.json()) == (400, {"message": "Invalid reply token"})


async def test_blocked_users_get_nothing_and_cost_nothing(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    emu.block(channel, "B1", "B2")
    async with http.post("/v2/bot/message/push", json={"to": "B1", "messages": text("x")}) as resp:
        assert resp.status == 200
        assert len((await resp.json())["sentMessages"]) == 1
    async with http.post(
        "/v2/bot/message/multicast", json={"to": ["U1", "B1", "B2"], "messages": text("y")}
    ) as resp:
        assert resp.status == 200
    assert emu.deliveries(channel) == {"U1": 1}
    assert emu.blocked_attempts(channel) == {"B1": 2, "B2": 1}
    assert emu.usage(channel) == 1
    emu.unblock(channel, "B1")
    async with http.post("/v2/bot/message/push", json={"to": "B1", "messages": text("x")}) as resp:
        assert resp.status == 200
    assert emu.deliveries(channel) == {"U1": 1, "B1": 1}


async def test_strict_token_map() -> None:
    emu = Emulator(EmulatorConfig(channels={"1000000001": "tok-a"}))
    async with serve(emu) as server, aiohttp.ClientSession(base_url=server.url) as session:
        async with session.get("/v2/bot/message/quota", headers={"Authorization": "Bearer tok-a"}) as resp:
            assert resp.status == 200
        async with session.get("/v2/bot/message/quota", headers={"Authorization": "Bearer tok-b"}) as resp:
            assert resp.status == 401
        async with session.get("/v2/bot/message/quota") as resp:
            assert resp.status == 401
    assert [r.channel for r in emu.requests()] == ["1000000001", "", ""]
