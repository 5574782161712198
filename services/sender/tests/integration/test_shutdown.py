"""A sender's shutdown ends even when one of its clients never finishes closing, and says which one."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from tagline_platform import tasks
from tagline_sender.adapters.line import SdkLineGateway
from tagline_sender.app import create_app
from tagline_sender.settings import SenderSettings

CHANNEL = "1234567890"


class CloseNeverReturns(SdkLineGateway):
    async def close(self) -> None:
        await super().close()
        await asyncio.Event().wait()  # a client whose close never returns


async def test_a_client_close_that_never_returns_does_not_hang_the_shutdown(
    line: Any,
    namespace: str,
    mongo_db: AsyncDatabase[dict[str, Any]],
    kafka_bootstrap: str,
    mongodb_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(tasks, "STOP_TIMEOUT_S", 1.0)
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "mongodb_url": mongodb_url,
        "channels": {CHANNEL: {"access_token": CHANNEL}},
        "line_api_url": line.url,
        "database": mongo_db.name,
        "topic_namespace": namespace,
        "topic_partitions": 3,
        "group_id": f"{namespace}sender",
    }
    settings = SenderSettings(**values)
    app = create_app(settings, line=CloseNeverReturns(line.url, timeout_s=1.0, pool_size=2))
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    with caplog.at_level(logging.INFO):
        stopping = asyncio.create_task(lifespan.__aexit__(None, None, None))
        done, _ = await asyncio.wait({stopping}, timeout=60)
    assert stopping in done, "the sender's shutdown is still waiting"
    late = [r for r in caplog.records if "did not finish in time" in r.getMessage()]
    assert [r.__dict__["step"] for r in late] == ["LINE client close"]
    assert any("in close" in line for line in late[0].__dict__["waiting_in"])
    assert any(r.getMessage().startswith("stopped, but not every step finished") for r in caplog.records)
    assert not any(r.getMessage() == "stopped cleanly" for r in caplog.records)
