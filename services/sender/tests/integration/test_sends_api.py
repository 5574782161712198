"""GET /sends?state= agrees with GET /sends/{channel}/{key}: a send is listed under its own state and under
every state one of its deliveries is in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tagline_sender.domain.delivery import DeliveryState

pytestmark = pytest.mark.integration

CHANNEL = "1234567890"
Eventually = Callable[..., Awaitable[None]]


def marketing(key: str, user_ids: list[str]) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "category": "marketing",
        "messages": [{"type": "text", "text": "週年慶"}],
        "target": {"kind": "users", "user_ids": user_ids},
    }


async def test_the_state_filter_lists_sends_by_their_deliveries_states(
    start_sender: Any, publish: Any, line: Any, eventually: Eventually
) -> None:
    # one message a month: "mixed" gets its lone push out and its multicast of 500 deferred; "held" waits
    channel = {"monthly_limit": 1, "marketing_headroom_ratio": 0}
    async with start_sender(channel=channel) as sender:
        await publish.send(marketing("mixed", [f"U{i:03d}" for i in range(501)]))
        await eventually(lambda: line.emu.usage(CHANNEL) == 1, what="the push of the lone recipient")
        await publish.send(marketing("held", ["V1"]))

        async def two_deferred() -> bool:
            return bool(await sender.service.store.count_deliveries(CHANNEL, DeliveryState.DEFERRED) == 2)

        await eventually(two_deferred, what="both held back by the quota")

        async def listed(**params: str) -> list[str]:
            answer = await sender.client.get("/sends", params=params)
            assert answer.status_code == 200, answer.text
            return [send["key"] for send in answer.json()]

        async def shown(key: str) -> set[str]:
            send = (await sender.client.get(f"/sends/{CHANNEL}/{key}")).json()
            return {send["state"], *send["deliveries"]}

        assert await shown("mixed") == {"planned", "sent", "deferred"}
        assert await shown("held") == {"planned", "deferred"}
        assert await listed(state="deferred") == ["held", "mixed"]  # newest first
        assert await listed(state="deferred", channel_id=CHANNEL, limit="1") == ["held"]
        assert await listed(state="sent") == ["mixed"]
        assert await listed(state="planned") == ["held", "mixed"]
        assert await listed(state="failed") == await listed(state="planning") == []
        assert await listed(state="deferred", channel_id="other") == []
        for state in ("pending", "sending", "sent", "deferred", "failed", "planning", "planned"):
            for key in await listed(state=state):
                assert state in await shown(key), (state, key)
        bad = await sender.client.get("/sends", params={"state": "held-back"})
        assert bad.status_code == 422 and "state" in bad.text
