"""Injected faults as an aiohttp client (the LINE SDK's transport) sees them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import aiohttp
import pytest

from tagline_line_emulator import Emulator, Fault, RunningEmulator

Text = Callable[[str], list[dict[str, str]]]
PUSH = "/v2/bot/message/push"


async def test_error_fault_answers_the_status_without_effect(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    emu.inject(Fault(endpoint="push", kind="error", status=503, times=1))
    async with http.post(PUSH, json={"to": "U1", "messages": text("x")}) as resp:
        assert (resp.status, await resp.json()) == (503, {"message": "Internal server error"})
    async with http.post(PUSH, json={"to": "U1", "messages": text("x")}) as resp:
        assert resp.status == 200  # the rule is spent
    assert emu.deliveries(channel) == {"U1": 1}
    assert [r.fault for r in emu.requests("push")] == ["error", None]


async def test_faults_only_hit_their_endpoint(http: aiohttp.ClientSession, emu: Emulator) -> None:
    emu.inject(Fault(endpoint="multicast", kind="error"))
    async with http.get("/v2/bot/message/quota") as resp:
        assert resp.status == 200


async def test_latency_delays_then_processes(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    emu.inject(Fault(endpoint="push", kind="latency", delay_s=0.3, times=1))
    started = time.monotonic()
    async with http.post(PUSH, json={"to": "U1", "messages": text("x")}) as resp:
        assert resp.status == 200
    assert time.monotonic() - started >= 0.3
    assert emu.deliveries(channel) == {"U1": 1}


async def test_timeout_client_gives_up_and_nothing_happened(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    emu.inject(Fault(endpoint="push", kind="timeout", times=1))  # 30 s unless the client leaves
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            PUSH, json={"to": "U1", "messages": text("x")}, timeout=aiohttp.ClientTimeout(total=0.3)
        ):
            pass
    assert time.monotonic() - started < 2.0
    await asyncio.sleep(0.05)  # the emulator notices the client left and stops waiting
    [record] = emu.requests("push")
    assert (record.fault, record.status, record.accepted) == ("timeout", 504, False)
    assert emu.deliveries(channel) == {}


async def test_timeout_answers_504_to_a_patient_client(
    http: aiohttp.ClientSession, emu: Emulator, text: Text
) -> None:
    emu.inject(Fault(endpoint="push", kind="timeout", delay_s=0.1, times=1))
    async with http.post(PUSH, json={"to": "U1", "messages": text("x")}) as resp:
        assert resp.status == 504


async def test_timeout_after_accept_then_retry_with_the_same_key_is_409(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    emu.inject(Fault(endpoint="push", kind="timeout_after_accept", times=1, delay_s=5.0))
    headers = {"X-Line-Retry-Key": str(uuid.uuid4())}
    body = {"to": "U1", "messages": text("receipt")}
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(PUSH, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=0.3)):
            pass
    assert emu.deliveries(channel) == {"U1": 1}  # LINE accepted it although the client saw a timeout
    accepted_id = emu.requests("push")[0].request_id
    async with http.post(PUSH, json=body, headers=headers) as resp:
        assert resp.status == 409
        assert resp.headers["X-Line-Accepted-Request-Id"] == accepted_id
    assert emu.deliveries(channel) == {"U1": 1}
    assert emu.duplicates(channel) == {}


async def test_timeout_after_accept_retry_without_a_key_duplicates(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    emu.inject(Fault(endpoint="push", kind="timeout_after_accept", times=1, delay_s=5.0))
    body = {"to": "U1", "messages": text("receipt")}
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(PUSH, json=body, timeout=aiohttp.ClientTimeout(total=0.3)):
            pass
    async with http.post(PUSH, json=body) as resp:
        assert resp.status == 200
    [(user, _fingerprint)] = emu.duplicates(channel)
    assert user == "U1"
    assert emu.duplicates(channel)[(user, _fingerprint)] == 2


async def test_drop_is_a_connection_error_and_has_no_effect(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    emu.inject(Fault(endpoint="push", kind="drop", times=1))
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.post(PUSH, json={"to": "U1", "messages": text("x")}):
            pass
    [record] = emu.requests("push")
    assert (record.fault, record.status, record.accepted) == ("drop", None, False)
    assert emu.deliveries(channel) == {}
    async with http.post(PUSH, json={"to": "U1", "messages": text("x")}) as resp:  # the server is fine
        assert resp.status == 200


async def test_drop_writes_not_a_single_byte(running: RunningEmulator, emu: Emulator) -> None:
    emu.inject(Fault(endpoint="quota", kind="drop", times=1))
    reader, writer = await asyncio.open_connection(running.host, running.port)
    writer.write(b"GET /v2/bot/message/quota HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer c\r\n\r\n")
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert received == b""  # EOF before any status line, as from a crashed server


async def test_drop_after_accept_is_a_connection_error_but_delivered(
    http: aiohttp.ClientSession, emu: Emulator, channel: str, text: Text
) -> None:
    emu.inject(Fault(endpoint="multicast", kind="drop_after_accept", times=1))
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.post("/v2/bot/message/multicast", json={"to": ["U1", "U2"], "messages": text("x")}):
            pass
    [record] = emu.requests("multicast")
    assert (record.status, record.accepted) == (None, True)
    assert emu.deliveries(channel) == {"U1": 1, "U2": 1}
    assert emu.usage(channel) == 2


async def test_probability_faults_hit_some_requests(http: aiohttp.ClientSession, emu: Emulator) -> None:
    emu.inject(Fault(endpoint="quota", kind="error", probability=0.5))
    statuses = []
    for _ in range(40):
        async with http.get("/v2/bot/message/quota") as resp:
            statuses.append(resp.status)
    assert 5 < statuses.count(500) < 35
    assert statuses.count(500) + statuses.count(200) == 40


async def test_duration_bounds_a_fault(http: aiohttp.ClientSession, emu: Emulator) -> None:
    emu.inject(Fault(endpoint="*", kind="error", duration_s=0.2))
    async with http.get("/v2/bot/message/quota") as resp:
        assert resp.status == 500
    await asyncio.sleep(0.25)
    async with http.get("/v2/bot/message/quota") as resp:
        assert resp.status == 200
