"""``python -m tagline_line_emulator``: starts, logs its URL, serves, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import aiohttp


async def test_standalone_server_logs_its_url_serves_and_stops_on_sigterm() -> None:
    env = {**os.environ, "TAGLINE_EMULATOR_PORT": "0", "TAGLINE_EMULATOR_REPLY_TOKEN_TTL_S": "5"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tagline_line_emulator", "--host", "127.0.0.1",
        env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert found, line
        url = found.group(1)
        async with aiohttp.ClientSession(base_url=url) as session:
            for _ in range(50):  # the socket is bound before the log line; serving starts right after
                try:
                    async with session.get("/_emulator/health") as resp:
                        assert resp.status == 200
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            async with session.post(
                "/_emulator/channels/c1/reply-tokens", json={"userId": "U1", "token": "t1"}
            ) as resp:
                assert resp.status == 200
            async with session.post(
                "/v2/bot/message/reply",
                json={"replyToken": "t1", "messages": [{"type": "text", "text": "hi"}]},
                headers={"Authorization": "Bearer c1"},
            ) as resp:
                assert resp.status == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
