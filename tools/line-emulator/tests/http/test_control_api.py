"""The HTTP control API under /_emulator, as an out-of-process test or benchmark uses it."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import aiohttp
import pytest

from tagline_line_emulator import Emulator, EmulatorConfig, serve

Text = Callable[[str], list[dict[str, str]]]
C = "/_emulator"


async def test_quota_usage_and_reset(http: aiohttp.ClientSession, emu: Emulator, channel: str) -> None:
    async with http.put(f"{C}/channels/{channel}/quota", json={"type": "limited", "value": 10}) as resp:
        assert resp.status == 200
    async with http.put(f"{C}/channels/{channel}/usage", json={"totalUsage": 4}) as resp:
        assert resp.status == 200
    async with http.get("/v2/bot/message/quota") as resp:
        assert await resp.json() == {"type": "limited", "value": 10}
    async with http.get(f"{C}/channels/{channel}") as resp:
        state = await resp.json()
    assert (state["quota"], state["totalUsage"]) == ({"type": "limited", "value": 10}, 4)
    async with http.put(f"{C}/channels/{channel}/quota", json={"type": "limited"}) as resp:
        assert resp.status == 422
    async with http.put(f"{C}/channels/{channel}/quota", json={"type": "none"}) as resp:
        assert resp.status == 200
    assert emu.quota(channel) is None
    async with http.post(f"{C}/reset") as resp:
        assert resp.status == 200
    assert emu.usage(channel) == 0


async def test_block_friends_and_reply_tokens(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    async with http.put(f"{C}/channels/{channel}/friends", json={"userIds": ["U1", "U2", "U3"]}) as resp:
        assert await resp.json() == {"friends": 3}
    async with http.post(f"{C}/channels/{channel}/block", json={"userIds": ["U2", "U3"]}) as resp:
        assert await resp.json() == {"blocked": ["U2", "U3"]}
    async with http.post(f"{C}/channels/{channel}/unblock", json={"userIds": ["U3"]}) as resp:
        assert await resp.json() == {"blocked": ["U2"]}
    async with http.post("/v2/bot/message/broadcast", json={"messages": text("x")}) as resp:
        assert resp.status == 200
    async with http.post(f"{C}/channels/{channel}/reply-tokens", json={"userId": "U9"}) as resp:
        token = (await resp.json())["replyToken"]
    async with http.post(
        f"{C}/channels/{channel}/reply-tokens", json={"userId": "U8", "token": "mine"}
    ) as resp:
        assert await resp.json() == {"replyToken": "mine"}
    async with http.post("/v2/bot/message/reply", json={"replyToken": token, "messages": text("y")}) as resp:
        assert resp.status == 200
    async with http.get(f"{C}/channels/{channel}/deliveries") as resp:
        assert await resp.json() == {
            "recipients": 3,
            "messages": 3,
            "deliveries": {"U1": 1, "U3": 1, "U9": 1},
        }


async def test_rate_limits_and_faults(http: aiohttp.ClientSession, emu: Emulator, text: Text) -> None:
    async with http.put(f"{C}/rate-limits/push", json={"limit": 1, "windowS": 60}) as resp:
        assert resp.status == 200
    async with http.put(f"{C}/rate-limits/pushes", json={"limit": 1, "windowS": 60}) as resp:
        assert resp.status == 422
    async with http.get(f"{C}/rate-limits") as resp:
        limits = await resp.json()
    assert limits["push"] == {"limit": 1, "windowS": 60.0}
    assert limits["multicast"] == {"limit": 200, "windowS": 1.0}
    async with http.post(
        f"{C}/faults", json={"endpoint": "quota", "kind": "error", "status": 502, "times": 1}
    ) as resp:
        assert resp.status == 201
    async with http.post(f"{C}/faults", json={"endpoint": "quota", "kind": "melt"}) as resp:
        assert resp.status == 422
    async with http.get(f"{C}/faults") as resp:
        assert [f["status"] for f in (await resp.json())["faults"]] == [502]
    async with http.get("/v2/bot/message/quota") as resp:
        assert resp.status == 502
    async with http.post(f"{C}/faults", json={"kind": "error"}) as resp:
        assert resp.status == 201
    async with http.delete(f"{C}/faults") as resp:
        assert resp.status == 200
    async with http.get("/v2/bot/message/quota") as resp:
        assert resp.status == 200
    for _ in range(2):
        async with http.post("/v2/bot/message/push", json={"to": "U1", "messages": text("x")}) as resp:
            pass
    assert resp.status == 429


async def test_requests_stats_duplicates_and_blocked_attempts(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    emu.block(channel, "B1")
    for to in ("U1", "U1", "B1"):
        async with http.post("/v2/bot/message/push", json={"to": to, "messages": text("same")}) as resp:
            assert resp.status == 200
    async with http.post("/v2/bot/message/push", json={"to": "U1"}) as resp:
        assert resp.status == 400
    async with http.get(
        f"{C}/requests", params={"endpoint": "push", "limit": "2", "recipients": "true"}
    ) as resp:
        listed = await resp.json()
    assert listed["total"] == 4
    assert [(r["status"], r["recipients"]) for r in listed["requests"]] == [(200, []), (400, [])]
    async with http.get(f"{C}/requests", params={"status": "200"}) as resp:
        assert (await resp.json())["total"] == 3
    async with http.get(f"{C}/channels/{channel}/duplicates") as resp:
        [duplicate] = (await resp.json())["duplicates"]
    assert (duplicate["userId"], duplicate["count"]) == ("U1", 2)
    async with http.get(f"{C}/channels/{channel}/blocked-attempts") as resp:
        assert await resp.json() == {"blockedAttempts": {"B1": 1}}
    async with http.get(f"{C}/stats", params={"channel": channel, "windowS": "10"}) as resp:
        stats = await resp.json()
    assert {"endpoint": "push", "status": 200, "count": 3} in stats["counts"]
    assert {"endpoint": "push", "status": 400, "count": 1} in stats["counts"]
    assert stats["maxInWindow"]["push"] == 4
    assert stats["maxAcceptedInWindow"]["push"] == 3


async def test_points_inspection(http: aiohttp.ClientSession, channel: str) -> None:
    body = {"channelId": channel, "userId": "U1", "amount": 30, "reference": "o-1"}
    async with http.post(
        "/v1/points/grants", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
    ) as resp:
        assert resp.status == 200
    async with http.get(f"{C}/channels/{channel}/points/U1") as resp:
        assert (await resp.json())["balance"] == 30
    async with http.get(f"{C}/channels/{channel}/points") as resp:
        [recorded] = (await resp.json())["grants"]
    assert (recorded["userId"], recorded["amount"], recorded["reference"]) == ("U1", 30, "o-1")


async def test_health_needs_no_auth(http: aiohttp.ClientSession) -> None:
    async with http.get(f"{C}/health", headers={"Authorization": ""}) as resp:
        assert (resp.status, await resp.json()) == (200, {"ok": True})


async def test_control_api_documents_itself(http: aiohttp.ClientSession) -> None:
    async with http.get(f"{C}/openapi.json") as resp:
        paths = (await resp.json())["paths"]
    assert f"{C}/channels/{{channel}}/reply-tokens" in paths
    async with http.get(f"{C}/docs") as resp:
        assert resp.status == 200
        assert f"{C}/openapi.json" in await resp.text()


async def test_one_channel_has_one_key_whatever_api_names_it() -> None:
    """The sender names its channel by access token, liveshop's POINTS grants by channel id: both land under
    the channel id, and the access token is not a second key of the control API."""
    channel, token = "1234567890", "dev-token-1234567890"
    emu = Emulator(EmulatorConfig(channels={channel: token}))
    auth = {"Authorization": f"Bearer {token}"}
    message = [{"type": "text", "text": "hi"}]
    async with serve(emu) as server, aiohttp.ClientSession(base_url=server.url) as http:
        async with http.post(
            "/v2/bot/message/push", json={"to": "U1", "messages": message}, headers=auth
        ) as r:
            assert r.status == 200
        async with http.post(f"{C}/channels/{channel}/reply-tokens", json={"userId": "U2"}) as r:
            reply_token = (await r.json())["replyToken"]
        reply = {"replyToken": reply_token, "messages": message}
        async with http.post("/v2/bot/message/reply", json=reply, headers=auth) as r:
            assert r.status == 200
        grant = {"channelId": channel, "userId": "U1", "amount": 10, "reference": "order-1"}
        async with http.post("/v1/points/grants", json=grant, headers={"Idempotency-Key": "k1"}) as r:
            assert r.status == 200
        async with http.get(f"{C}/channels/{channel}/deliveries") as r:
            assert (await r.json())["deliveries"] == {"U1": 1, "U2": 1}
        async with http.get(f"{C}/channels/{channel}/points") as r:
            assert [g["userId"] for g in (await r.json())["grants"]] == ["U1"]
        async with http.get(f"{C}/channels/{channel}") as r:
            assert (await r.json())["totalUsage"] == 1
        for wrong in (token, "0000000000"):
            async with http.get(f"{C}/channels/{wrong}/points") as r:
                assert r.status == 404
                assert "1234567890" in (await r.json())["detail"]
        stranger = {**grant, "channelId": token}
        async with http.post("/v1/points/grants", json=stranger, headers={"Idempotency-Key": "k2"}) as r:
            assert r.status == 400
            assert (await r.json())["details"] == [
                {"message": "is not a channel of this platform", "property": "channelId"}
            ]
        bad = {"Authorization": "Bearer 1234567890"}  # the channel id is not its access token
        async with http.post(
            "/v2/bot/message/push", json={"to": "U1", "messages": message}, headers=bad
        ) as r:
            assert r.status == 401
    assert emu.deliveries(channel) == {"U1": 1, "U2": 1}
    assert emu.deliveries(token) == {}


def test_two_channels_cannot_share_an_access_token() -> None:
    with pytest.raises(ValueError, match="same access token"):
        EmulatorConfig(channels={"1": "t", "2": "t"})


async def test_health_and_readiness_probes_like_every_service(http: aiohttp.ClientSession) -> None:
    """``make run`` and the test stacks wait on ``/readyz`` of every process, the emulator's too."""
    async with http.get("/healthz") as resp:
        assert (resp.status, await resp.json()) == (200, {"status": "ok"})
    async with http.get("/readyz") as resp:
        assert (resp.status, await resp.json()) == (200, {"status": "ready"})
