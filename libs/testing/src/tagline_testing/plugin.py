"""pytest plugin (entry point ``tagline``): real Kafka and MongoDB for integration tests; hung tests fail.

Fixtures: ``infra`` (session), ``kafka_bootstrap``, ``mongodb_url``, ``namespace`` (a unique prefix per test
for topic and database names), ``mongo_db`` (a fresh database per test, dropped afterwards),
``kafka_producer`` (an idempotent ``acks=all`` producer) and ``eventually``
(:func:`tagline_testing.waiting.eventually`).

Timeouts: pytest-timeout gives every test a limit (``timeout`` in ``[tool.pytest.ini_options]``, a
``@pytest.mark.timeout(s)`` for the few longer ones; tests marked ``bench`` or ``chaos`` get
:data:`LONG_TIMEOUT_S`, fuzz tests :data:`FUZZ_TIMEOUT_S`). What happens on expiry is ours,
through pytest-timeout's timer hooks: pytest-timeout's own SIGALRM handler prints the stacks of the threads
but not of the event loop's tasks, and a hung async test waits in a task (its thread only shows the loop's
``select()``). :class:`tagline_testing.hangs.Watchdog` prints both, cancels the test's task so it unwinds
and fails, and makes sure the run goes on or ends within a minute (see :mod:`tagline_testing.hangs`).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from pymongo.asynchronous.database import AsyncDatabase

from tagline_contracts.envelope import new_event_id
from tagline_platform.mongo import create_mongo_client
from tagline_testing.envvars import fuzz_scale
from tagline_testing.hangs import Watchdog
from tagline_testing.infra import Infra, InfraNotFound, provide_infra
from tagline_testing.waiting import eventually as wait_for

LONG_TIMEOUT_S = 3600.0
"""The per-test timeout of benchmarks and the fault drill (marked ``bench`` / ``chaos``)."""

FUZZ_TIMEOUT_S = 600.0
"""The per-test timeout of tests under a ``fuzz/`` directory, times ``TAGLINE_FUZZ_SCALE`` (the slowest, a
schemathesis run over every operation of an API, takes about 70 s on a quiet machine)."""

_WATCHDOG = pytest.StashKey[Watchdog]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Benchmarks and the fault drill get :data:`LONG_TIMEOUT_S`, fuzz tests :data:`FUZZ_TIMEOUT_S` (an
    explicit ``@pytest.mark.timeout`` wins)."""
    for item in items:
        if item.get_closest_marker("timeout") is not None:
            continue
        if item.get_closest_marker("bench") is not None or item.get_closest_marker("chaos") is not None:
            item.add_marker(pytest.mark.timeout(LONG_TIMEOUT_S))
        elif "fuzz" in Path(str(item.path)).parts:
            item.add_marker(pytest.mark.timeout(FUZZ_TIMEOUT_S * fuzz_scale()))


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """Our :class:`~tagline_testing.hangs.Watchdog` instead of pytest-timeout's SIGALRM handler. Where
    pytest-timeout would use its thread method (asked for, or not in the main thread), it does so itself."""
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None
    watchdog = Watchdog(item, settings.timeout, detect_debugger=not settings.disable_debugger_detection)
    item.stash[_WATCHDOG] = watchdog
    watchdog.arm()
    return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A test whose timeout fired fails, even if its task swallowed the cancellation and then finished."""
    report = yield
    watchdog = item.stash.get(_WATCHDOG, None)
    if watchdog is not None and watchdog.fired and not watchdog.reported and report.passed:
        report.outcome = "failed"
        report.longrepr = (
            f"Timeout: the test ran longer than {watchdog.timeout_s:g} s (its stacks are printed above); it"
            " swallowed the cancellation and finished later"
        )
    if watchdog is not None and watchdog.fired and report.failed:
        watchdog.reported = True
    return report


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool | None:
    watchdog = item.stash.get(_WATCHDOG, None)
    if watchdog is None:
        return None
    watchdog.disarm()
    del item.stash[_WATCHDOG]
    return True


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
