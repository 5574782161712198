"""The official line-bot-sdk v3 async client (the one the sender uses) against the emulator."""

from __future__ import annotations

import uuid

import pytest
from linebot.v3.messaging import (
    AsyncApiClient,
    AsyncMessagingApi,
    BroadcastRequest,
    Configuration,
    MulticastRequest,
    NarrowcastRequest,
    PushMessageRequest,
    ReplyMessageRequest,
    TextMessage,
)
from linebot.v3.messaging.exceptions import ApiException

from tagline_line_emulator import Emulator, RunningEmulator


async def test_sdk_push_multicast_quota_and_errors(
    running: RunningEmulator, emu: Emulator, channel: str
) -> None:
    emu.set_quota(channel, 1000)
    configuration = Configuration(host=running.url, access_token=channel)
    async with AsyncApiClient(configuration) as client:
        api = AsyncMessagingApi(client)
        key = str(uuid.uuid4())
        pushed = await api.push_message(
            PushMessageRequest(to="U1", messages=[TextMessage(text="hello")]), x_line_retry_key=key
        )
        assert len(pushed.sent_messages) == 1
        await api.multicast(MulticastRequest(to=["U2", "U3"], messages=[TextMessage(text="sale")]))
        quota = await api.get_message_quota()
        assert (quota.type, quota.value) == ("limited", 1000)
        consumption = await api.get_message_quota_consumption()
        assert consumption.total_usage == 3
        with pytest.raises(ApiException) as conflict:
            await api.push_message(
                PushMessageRequest(to="U1", messages=[TextMessage(text="hello")]), x_line_retry_key=key
            )
        assert conflict.value.status == 409
        assert conflict.value.headers["X-Line-Accepted-Request-Id"] == emu.requests("push")[0].request_id
        emu.set_usage(channel, 1000)
        with pytest.raises(ApiException) as limited:
            await api.push_message(PushMessageRequest(to="U4", messages=[TextMessage(text="x")]))
        assert limited.value.status == 429
        assert "monthly limit" in str(limited.value.body)
    assert emu.deliveries(channel) == {"U1": 1, "U2": 1, "U3": 1}


async def test_sdk_reply_broadcast_narrowcast_progress_and_profile(
    running: RunningEmulator, emu: Emulator, channel: str
) -> None:
    emu.set_friends(channel, ["U1", "U2"])
    async with AsyncApiClient(Configuration(host=running.url, access_token=channel)) as client:
        api = AsyncMessagingApi(client)
        token = emu.issue_reply_token(channel, "U1")
        replied = await api.reply_message(
            ReplyMessageRequest(reply_token=token, messages=[TextMessage(text="hi")])
        )
        assert len(replied.sent_messages) == 1
        await api.broadcast(BroadcastRequest(messages=[TextMessage(text="all")]))
        sent = await api.narrowcast_with_http_info(NarrowcastRequest(messages=[TextMessage(text="some")]))
        assert sent.status_code == 202
        progress = await api.get_narrowcast_progress(sent.headers["X-Line-Request-Id"])
        assert (progress.phase, progress.success_count, progress.target_count) == ("succeeded", 2, 2)
        profile = await api.get_profile("U2")
        assert profile.user_id == "U2"
        assert profile.display_name
    assert emu.deliveries(channel) == {"U1": 3, "U2": 2}
