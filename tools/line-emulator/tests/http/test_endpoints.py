"""Every LINE endpoint over real HTTP: happy paths, LINE's JSON shapes, request ids, authentication."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import aiohttp

from tagline_line_emulator import Emulator

Text = Callable[[str], list[dict[str, str]]]


async def test_push_answers_sent_messages_and_delivers(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    messages = [*text("hi"), {"type": "sticker", "packageId": "446", "stickerId": "1988"}]
    async with http.post("/v2/bot/message/push", json={"to": "U1", "messages": messages}) as resp:
        assert resp.status == 200
        body = await resp.json()
        request_id = resp.headers["X-Line-Request-Id"]
    assert len(body["sentMessages"]) == 2
    assert all(m["id"].isdigit() and m["quoteToken"] for m in body["sentMessages"])
    assert uuid.UUID(request_id)
    assert emu.deliveries(channel) == {"U1": 1}
    assert emu.usage(channel) == 1
    [record] = emu.requests("push")
    assert (record.request_id, record.status, record.accepted, record.recipients) == (
        request_id,
        200,
        True,
        ("U1",),
    )


async def test_every_answer_has_a_fresh_request_id(http: aiohttp.ClientSession) -> None:
    ids = set()
    for _ in range(3):
        async with http.get("/v2/bot/message/quota") as resp:
            ids.add(resp.headers["X-Line-Request-Id"])
    async with http.post("/v2/bot/message/push", json={}) as resp:
        assert resp.status == 400
        ids.add(resp.headers["X-Line-Request-Id"])
    assert len(ids) == 4


async def test_reply_with_an_issued_token(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    token = emu.issue_reply_token(channel, "U7")
    async with http.post(
        "/v2/bot/message/reply", json={"replyToken": token, "messages": text("thanks")}
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert [set(m) for m in body["sentMessages"]] == [{"id", "quoteToken"}]
    assert emu.deliveries(channel) == {"U7": 1}
    assert emu.usage(channel) == 0


async def test_multicast_delivers_to_each_id(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    ids = [f"U{i:032x}" for i in range(500)]
    async with http.post("/v2/bot/message/multicast", json={"to": ids, "messages": text("sale")}) as resp:
        assert resp.status == 200
        assert await resp.json() == {}
    assert len(emu.deliveries(channel)) == 500
    assert emu.usage(channel) == 500
    assert emu.requests("multicast")[0].recipient_count == 500


async def test_narrowcast_then_its_progress(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    emu.set_friends(channel, ["U1", "U2", "U3"])
    async with http.post("/v2/bot/message/narrowcast", json={"messages": text("news")}) as resp:
        assert resp.status == 202
        assert await resp.json() == {}
        request_id = resp.headers["X-Line-Request-Id"]
    async with http.get("/v2/bot/message/progress/narrowcast", params={"requestId": request_id}) as resp:
        assert resp.status == 200
        progress = await resp.json()
    assert progress["phase"] == "succeeded"
    assert (progress["successCount"], progress["failureCount"], progress["targetCount"]) == (3, 0, 3)
    assert progress["acceptedTime"].endswith("Z")
    async with http.get("/v2/bot/message/progress/narrowcast", params={"requestId": "nope"}) as resp:
        assert resp.status == 404
    async with http.get("/v2/bot/message/progress/narrowcast") as resp:
        assert resp.status == 400


async def test_broadcast_reaches_the_friends(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    emu.set_friends(channel, ["U1", "U2"])
    async with http.post("/v2/bot/message/broadcast", json={"messages": text("hello all")}) as resp:
        assert resp.status == 200
        assert await resp.json() == {}
    assert emu.deliveries(channel) == {"U1": 1, "U2": 1}


async def test_quota_and_consumption(http: aiohttp.ClientSession, emu: Emulator, channel: str) -> None:
    async with http.get("/v2/bot/message/quota") as resp:
        assert await resp.json() == {"type": "none"}
    emu.set_quota(channel, 3000)
    emu.set_usage(channel, 1234)
    async with http.get("/v2/bot/message/quota") as resp:
        assert await resp.json() == {"type": "limited", "value": 3000}
    async with http.get("/v2/bot/message/quota/consumption") as resp:
        assert await resp.json() == {"totalUsage": 1234}


async def test_profile_is_deterministic_and_hidden_by_a_block(
    http: aiohttp.ClientSession, emu: Emulator, channel: str
) -> None:
    async with http.get("/v2/bot/profile/U1234abcd") as resp:
        assert resp.status == 200
        first = await resp.json()
    async with http.get("/v2/bot/profile/U1234abcd") as resp:
        assert await resp.json() == first
    assert set(first) == {"displayName", "userId", "pictureUrl", "statusMessage", "language"}
    assert first["userId"] == "U1234abcd"
    emu.block(channel, "U1234abcd")
    async with http.get("/v2/bot/profile/U1234abcd") as resp:
        assert (resp.status, await resp.json()) == (404, {"message": "Not found"})


async def test_state_is_per_channel(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    other = {"Authorization": "Bearer 2000000002"}
    async with http.post(
        "/v2/bot/message/push", json={"to": "U1", "messages": text("a")}, headers=other
    ) as resp:
        assert resp.status == 200
    assert emu.usage("2000000002") == 1
    assert emu.usage(channel) == 0
    assert emu.deliveries(channel) == {}


async def test_missing_or_malformed_authorization_is_401(http: aiohttp.ClientSession, emu: Emulator) -> None:
    message = "Authentication failed. Confirm that the access token in the authorization header is valid."
    expected = {"message": message}
    for headers in ({"Authorization": ""}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        async with http.get("/v2/bot/message/quota", headers=headers) as resp:
            assert (resp.status, await resp.json()) == (401, expected)
            assert resp.headers["X-Line-Request-Id"]
    assert emu.count("quota", status=401) == 3


async def test_unknown_paths_and_methods(http: aiohttp.ClientSession) -> None:
    async with http.get("/v2/bot/nothing") as resp:
        assert (resp.status, await resp.json()) == (404, {"message": "Not found"})
    async with http.get("/v2/bot/message/push") as resp:
        assert resp.status == 405
