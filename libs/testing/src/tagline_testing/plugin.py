"""pytest plugin (entry point ``tagline``): real Kafka and MongoDB for integration tests.

Fixtures: ``infra`` (session), ``kafka_bootstrap``, ``mongodb_url``, ``namespace`` (a unique prefix per test
for topic and database names), ``mongo_db`` (a fresh database per test, dropped afterwards),
``kafka_producer`` (an idempotent ``acks=all`` producer) and ``eventually``
(:func:`tagline_testing.waiting.eventually`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from pymongo.asynchronous.database import AsyncDatabase

from tagline_contracts.envelope import new_event_id
from tagline_platform.mongo import create_mongo_client
from tagline_testing.infra import Infra, InfraNotFound, provide_infra
from tagline_testing.waiting import eventually as wait_for


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    try:
        with provide_infra() as found:
            yield found
    except InfraNotFound as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def kafka_bootstrap(infra: Infra) -> str:
    return infra.kafka_bootstrap


@pytest.fixture(scope="session")
def mongodb_url(infra: Infra) -> str:
    return infra.mongodb_url


@pytest.fixture
def namespace() -> str:
    """A unique prefix (``t<ulid>.``) so each test has its own topics and database."""
    return f"t{new_event_id().lower()}."


@pytest.fixture
async def mongo_db(mongodb_url: str, namespace: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client = create_mongo_client(mongodb_url, app_name="tagline-tests")
    name = namespace.rstrip(".").replace(".", "_")
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


@pytest.fixture
async def kafka_producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer (idempotent, ``acks=all``) for tests that publish inputs."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@pytest.fixture
def eventually() -> Callable[..., Awaitable[None]]:
    """``await eventually(lambda: cond, timeout_s, what)``: poll a (sync or async) condition until true."""
    return wait_for
