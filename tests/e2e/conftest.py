"""The whole system as users run it: every service as its own process (tagline_testing.stack)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tagline_platform.mongo import create_mongo_client
from tagline_testing.stack import SERVICES, Stack, StackConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def unstarted_stack(
    kafka_bootstrap: str, mongodb_url: str, namespace: str, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    """Emulator, ingest, tagger, sender and liveshop on fresh topics and databases, not started yet (the test
    starts them); the ones started are stopped (SIGTERM) afterwards and must exit 0.

    Each service logs to ``.local/e2e/<test>/<service>.log`` (replaced by the next run of the test).
    """
    workdir = ROOT / ".local" / "e2e" / request.node.name
    shutil.rmtree(workdir, ignore_errors=True)
    running = Stack(
        StackConfig(
            kafka_bootstrap=kafka_bootstrap, mongodb_url=mongodb_url, namespace=namespace, workdir=workdir
        )
    )
    try:
        yield running
    finally:
        started = [name for name in reversed(SERVICES) if running.procs[name].process is not None]
        codes = {name: running.terminate(name) for name in started}
        client: Any = create_mongo_client(mongodb_url, app_name="tagline-e2e")
        try:
            for service in ("tagger", "sender", "liveshop"):
                await client.drop_database(running.database(service))
        finally:
            await client.close()
    # graceful shutdown is part of the contract: every service exits 0 on SIGTERM
    assert codes == dict.fromkeys(started, 0), (codes, running.errors_in_logs())


@pytest.fixture
async def stack(unstarted_stack: Stack) -> Stack:
    """Emulator, ingest, tagger, sender and liveshop, started and ready; stopped (SIGTERM) afterwards."""
    await unstarted_stack.start()
    return unstarted_stack
