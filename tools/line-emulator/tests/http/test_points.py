"""The emulated LINE POINTS grant API: idempotency keys, balances, errors."""

from __future__ import annotations

import aiohttp

from tagline_line_emulator import Emulator, Fault

GRANTS = "/v1/points/grants"


def grant(channel: str, user: str = "U1", amount: int = 100, reference: str = "order-1") -> dict[str, object]:
    return {"channelId": channel, "userId": user, "amount": amount, "reference": reference}


async def test_same_key_same_body_is_replayed_not_granted_twice(
    http: aiohttp.ClientSession, emu: Emulator, channel: str
) -> None:
    headers = {"Idempotency-Key": "order-1-points"}
    async with http.post(GRANTS, json=grant(channel), headers=headers) as resp:
        assert resp.status == 200
        assert "Idempotent-Replayed" not in resp.headers
        first = await resp.json()
    assert first["userId"] == "U1"
    assert (first["amount"], first["balance"]) == (100, 100)
    async with http.post(GRANTS, json=grant(channel), headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Idempotent-Replayed"] == "true"
        assert await resp.json() == first
    assert emu.points_balance(channel, "U1") == 100
    async with http.post(
        GRANTS, json=grant(channel, amount=50, reference="order-2"), headers={"Idempotency-Key": "k2"}
    ) as resp:
        assert (await resp.json())["balance"] == 150
    assert [g["reference"] for g in emu.points_grants(channel)] == ["order-1", "order-2"]


async def test_same_key_other_body_is_422(http: aiohttp.ClientSession, emu: Emulator, channel: str) -> None:
    headers = {"Idempotency-Key": "k"}
    async with http.post(GRANTS, json=grant(channel), headers=headers) as resp:
        assert resp.status == 200
    async with http.post(GRANTS, json=grant(channel, amount=101), headers=headers) as resp:
        assert resp.status == 422
        assert "different" in (await resp.json())["message"]
    assert emu.points_balance(channel, "U1") == 100


async def test_key_is_required_and_body_checked(
    http: aiohttp.ClientSession, emu: Emulator, channel: str
) -> None:
    async with http.post(GRANTS, json=grant(channel)) as resp:
        assert resp.status == 400
        assert "Idempotency-Key" in (await resp.json())["message"]
    async with http.post(GRANTS, json=grant(channel, amount=-5), headers={"Idempotency-Key": "k"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["details"] == [
            {"message": "must be a positive integer", "property": "amount"}
        ]
    assert emu.points_balance(channel, "U1") == 0


async def test_a_timed_out_grant_retried_with_its_key_is_granted_once(
    http: aiohttp.ClientSession, emu: Emulator, channel: str
) -> None:
    emu.inject(Fault(endpoint="points", kind="drop_after_accept", times=1))
    headers = {"Idempotency-Key": "order-9"}
    try:
        async with http.post(GRANTS, json=grant(channel), headers=headers):
            raise AssertionError("the connection should have been dropped")
    except aiohttp.ClientConnectionError:
        pass
    async with http.post(GRANTS, json=grant(channel), headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Idempotent-Replayed"] == "true"
    assert emu.points_balance(channel, "U1") == 100
    assert emu.count("points", channel) == 2
