"""``python -m tagline_line_emulator``: starts, logs its URL, serves its channels, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from tagline_line_emulator.__main__ import BadChannels, configured_channels, parse_channels

ROOT = Path(__file__).resolve().parents[3]
MESSAGE = [{"type": "text", "text": "hi"}]


@asynccontextmanager
async def standalone(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[aiohttp.ClientSession]:
    """The emulator as its own process on a free port (from a directory outside the repository); SIGTERM at
    the end must stop it with exit code 0."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TAGLINE_EMULATOR_")}
    environment |= {"TAGLINE_EMULATOR_PORT": "0", **(env or {})}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tagline_line_emulator", "--host", "127.0.0.1", *args,
        env=environment, stderr=asyncio.subprocess.PIPE, cwd="/",
    )  # fmt: skip
    assert process.stderr is not None
    try:
        line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert found, line
        async with aiohttp.ClientSession(base_url=found.group(1)) as session:
            for _ in range(50):  # the socket is bound before the log line; serving starts right after
                try:
                    async with session.get("/_emulator/health") as resp:
                        assert resp.status == 200
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            yield session
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_standalone_server_logs_its_url_serves_and_stops_on_sigterm() -> None:
    async with standalone(env={"TAGLINE_EMULATOR_REPLY_TOKEN_TTL_S": "5"}) as session:
        async with session.post(
            "/_emulator/channels/1234567890/reply-tokens", json={"userId": "U1", "token": "t1"}
        ) as resp:
            assert resp.status == 200
        async with session.post(
            "/v2/bot/message/reply",
            json={"replyToken": "t1", "messages": MESSAGE},
            headers={"Authorization": "Bearer dev-token-1234567890"},
        ) as resp:
            assert resp.status == 200


async def test_the_dev_stack_channel_is_one_key_for_pushes_and_points() -> None:
    """The sender's dev settings (token ``dev-token-1234567890``) and liveshop's POINTS grants (channel id in
    the body) meet under the channel id, given the sender's own channels file."""
    sender_channels = ROOT / "deploy" / "local" / "dev-sender-channels.json"
    token = json.loads(sender_channels.read_text())["1234567890"]["access_token"]
    async with standalone("--channels-file", str(sender_channels)) as session:
        push = {"to": "U1", "messages": MESSAGE}
        async with session.post(
            "/v2/bot/message/push", json=push, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status == 200
        grant = {"channelId": "1234567890", "userId": "U1", "amount": 5, "reference": "o-1"}
        async with session.post("/v1/points/grants", json=grant, headers={"Idempotency-Key": "k"}) as resp:
            assert resp.status == 200
        async with session.get("/_emulator/channels/1234567890/deliveries") as resp:
            assert (await resp.json())["deliveries"] == {"U1": 1}
        async with session.get("/_emulator/channels/1234567890/points") as resp:
            assert len((await resp.json())["grants"]) == 1
        async with session.get(f"/_emulator/channels/{token}/deliveries") as resp:
            assert resp.status == 404
        async with session.get("/v2/bot/message/quota", headers={"Authorization": "Bearer other"}) as resp:
            assert resp.status == 401


async def test_channels_from_the_environment_replace_the_dev_channel() -> None:
    async with standalone(env={"TAGLINE_EMULATOR_CHANNELS": '{"1656000001": "tok-1"}'}) as session:
        async with session.get("/v2/bot/message/quota", headers={"Authorization": "Bearer tok-1"}) as resp:
            assert resp.status == 200
        auth = {"Authorization": "Bearer dev-token-1234567890"}
        async with session.get("/v2/bot/message/quota", headers=auth) as resp:
            assert resp.status == 401


def test_channel_settings_shapes_and_errors(tmp_path: Path) -> None:
    assert configured_channels(None, None) == {"1234567890": "dev-token-1234567890"}
    assert parse_channels('{"1": "a", "2": {"access_token": "b", "plan": "high"}}', "x") == {
        "1": "a",
        "2": "b",
    }
    file = tmp_path / "channels.json"
    file.write_text('{"1": "from-file"}')
    assert configured_channels('{"1": "inline", "2": "two"}', str(file)) == {"1": "from-file", "2": "two"}
    bad: Sequence[tuple[str, str]] = [
        ("[1]", "JSON object"),
        ("{", "not JSON"),
        ('{"1": {"plan": "high"}}', "'1' has no access token"),
        ('{"1": ""}', "'1' has no access token"),
    ]
    for text, message in bad:
        with pytest.raises(BadChannels, match=message):
            parse_channels(text, "x")
    with pytest.raises(BadChannels, match="channels file"):
        configured_channels(None, str(tmp_path / "missing.json"))
