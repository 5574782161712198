"""Fixtures of the storage conformance suite: only a MongoDB-wire server, the one ``MONGODB_URL`` names.

The rest of the tests take Kafka and MongoDB together (``tagline_testing.infra``), and without both in the
environment they look for the test servers' env file or start containers of their own. This suite needs no
Kafka, and it must judge exactly the server it is pointed at (``MONGODB_URL=mongodb://… pytest
tests/storage`` against a real MongoDB), so a ``MONGODB_URL`` in the environment wins here; without one the
usual servers are found the usual way.

A server that stops answering (FerretDB 1.24 unpatched wedges on a big bulk write) must fail this suite in
seconds, not hang it test after test until each one's timeout: so the suite's own ``mongo_db`` checks that
the server answers a ping first, and its clients give up on a reply after :data:`REPLY_TIMEOUT_MS`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from tagline_platform.mongo import create_mongo_client

Doc = dict[str, Any]

RACERS = 4
"""Clients (each with its own connection pool) that the racing operations are spread over."""

REPLY_TIMEOUT_MS = 30_000
"""No single operation of this suite takes more than a few seconds where it works."""

PING_TIMEOUT_S = 5.0


@pytest.fixture(scope="session")
def mongodb_url(request: pytest.FixtureRequest) -> str:
    """``MONGODB_URL`` when set (no Kafka needed), else the test servers' (the plugin's ``infra``)."""
    url = os.environ.get("MONGODB_URL")
    if url:
        return url
    found: str = request.getfixturevalue("infra").mongodb_url
    return found


@pytest.fixture(scope="session")
async def is_ferretdb(mongodb_url: str) -> bool:
    """Whether the server is FerretDB (its ``buildInfo`` names its own version), not MongoDB."""
    client = create_mongo_client(mongodb_url, app_name="tagline-storage-probe")
    try:
        info = await client.admin.command("buildInfo")
    finally:
        await client.close()
    return "ferretdbVersion" in info


@pytest.fixture
async def mongo_db(mongodb_url: str, namespace: str) -> AsyncIterator[AsyncDatabase[Doc]]:
    """A fresh database, dropped afterwards (as the plugin's ``mongo_db``), on a server that answers."""
    client = create_mongo_client(mongodb_url, app_name="tagline-storage", socketTimeoutMS=REPLY_TIMEOUT_MS)
    name = namespace.rstrip(".").replace(".", "_")
    try:
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                await client.admin.command("ping")
        except TimeoutError:
            pytest.fail(
                f"the server at {mongodb_url} does not answer a ping within {PING_TIMEOUT_S:g} s (an earlier"
                " test may have wedged it)",
                pytrace=False,
            )
        yield client[name]
        await client.drop_database(name)
    finally:
        await client.close()


@pytest.fixture
async def racers(mongodb_url: str, mongo_db: AsyncDatabase[Doc]) -> AsyncIterator[list[AsyncDatabase[Doc]]]:
    """The test's database (``mongo_db``) through :data:`RACERS` separate clients."""
    clients = [
        create_mongo_client(mongodb_url, app_name=f"tagline-storage-{i}", socketTimeoutMS=REPLY_TIMEOUT_MS)
        for i in range(RACERS)
    ]
    try:
        yield [client[mongo_db.name] for client in clients]
    finally:
        for client in clients:
            await client.close()
