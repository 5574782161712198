"""Readiness: ``/readyz`` is 503 with the reasons until the start finished, every consumer group had its first
assignment and the servers answer; the start runs in the background so the probe answers meanwhile."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from aiokafka import ConsumerRebalanceListener, TopicPartition
from fastapi import FastAPI

from tagline_platform.consumers import ConsumerMetrics
from tagline_platform.metrics import Metrics
from tagline_platform.readiness import NotReady, Readiness, add_readyz, start_in_background


class Recorder(ConsumerRebalanceListener):  # type: ignore[misc]
    """A service's own rebalance listener (the sender's PartitionListener, the tagger's cache reset)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, set[TopicPartition]]] = []

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.calls.append(("revoked", revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.calls.append(("assigned", assigned))


async def test_ready_only_once_started_and_every_group_had_its_first_assignment() -> None:
    consumers = ConsumerMetrics(Metrics("test"))
    members = consumers.group("g-members", ["line.events.v1"])
    results = consumers.group("g-results", ["send.results.v1"])
    own = Recorder()
    members_listener, results_listener = members.listener(own), results.listener()
    readiness = Readiness(consumers)
    readiness.starting("creating topics")

    assert await readiness.problems() == [
        "starting (creating topics)",
        "no partition assignment yet for consumer group g-members, g-results",
    ]

    partition = TopicPartition("line.events.v1", 0)
    await members_listener.on_partitions_revoked(set())
    await members_listener.on_partitions_assigned({partition})
    assert own.calls == [
        ("revoked", set()),
        ("assigned", {partition}),
    ]  # the service's own listener still runs
    readiness.starting("joining consumer groups")
    assert await readiness.problems() == [
        "starting (joining consumer groups)",
        "no partition assignment yet for consumer group g-results",
    ]

    # more instances than partitions: this one joined and got nothing, which counts as joined
    await results_listener.on_partitions_assigned(set())
    assert await readiness.problems() == ["starting (joining consumer groups)"]
    readiness.started()
    assert await readiness.problems() == []


async def test_once_started_every_server_must_answer() -> None:
    readiness = Readiness(probe_timeout_s=0.2)

    async def answers() -> None:
        return None

    async def refuses() -> bool:
        return False

    async def raises() -> None:
        raise ConnectionError("connection refused")

    async def hangs() -> None:
        await asyncio.sleep(10)

    readiness.probe("MongoDB", answers)
    readiness.probe("Kafka", refuses)
    assert await readiness.problems() == ["starting (starting)"]  # servers are asked once started only
    readiness.started()
    assert await readiness.problems() == ["Kafka does not answer"]
    readiness.probe("Kafka", raises)
    assert await readiness.problems() == ["Kafka does not answer: ConnectionError('connection refused')"]
    readiness.probe("Kafka", hangs)
    assert await readiness.problems() == ["Kafka does not answer within 0.2s"]
    readiness.probe("Kafka", answers)
    assert await readiness.problems() == []


async def test_readyz_answers_503_with_the_reasons_while_the_start_runs_in_the_background() -> None:
    consumers = ConsumerMetrics(Metrics("test"))
    group = consumers.group("g", ["t.v1"])
    listener = group.listener()
    readiness = Readiness(consumers)
    may_finish = asyncio.Event()
    log: list[str] = []

    async def start() -> None:
        readiness.starting("joining consumer groups")
        await may_finish.wait()
        await listener.on_partitions_assigned({TopicPartition("t.v1", 0)})  # as aiokafka does in its start

    async def stop() -> None:
        log.append("stopped")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with start_in_background(readiness, start, stop):
            yield

    api = FastAPI(lifespan=lifespan)
    add_readyz(api, readiness, lambda: {"cached": 3})
    async with (
        api.router.lifespan_context(api),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://svc") as client,
    ):
        answer = await client.get("/readyz")  # the lifespan has returned: the HTTP server would answer now
        assert answer.status_code == 503
        detail = answer.json()["detail"]
        assert detail.startswith("not ready: starting (")
        assert detail.endswith("; no partition assignment yet for consumer group g")
        may_finish.set()
        await readiness.wait(timeout_s=5)
        answer = await client.get("/readyz")
        assert (answer.status_code, answer.json()) == (200, {"status": "ready", "cached": 3})
    assert log == ["stopped"]


async def test_a_failed_start_is_reported_and_what_started_is_stopped() -> None:
    readiness = Readiness()
    log: list[str] = []

    async def start() -> None:
        raise ConnectionError("Kafka at 127.0.0.1:1 does not answer")

    async def stop() -> None:
        log.append("stopped")

    async with start_in_background(readiness, start, stop):
        with pytest.raises(NotReady, match="the start failed") as failure:
            await readiness.wait(timeout_s=5)
        assert isinstance(failure.value.__cause__, ConnectionError)
        assert await readiness.problems() == [
            "start failed: ConnectionError('Kafka at 127.0.0.1:1 does not answer')"
        ]
    assert log == ["stopped"]


async def test_a_shutdown_during_the_start_cancels_it_and_still_stops() -> None:
    readiness = Readiness()
    log: list[str] = []

    async def start() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            log.append("start cancelled")

    async def stop() -> None:
        log.append("stopped")

    async with start_in_background(readiness, start, stop):
        await asyncio.sleep(0.05)
    assert log == ["start cancelled", "stopped"]
    with pytest.raises(NotReady, match="not started within"):
        await readiness.wait(timeout_s=0.05)


def test_stop_process_ends_a_service_process_with_the_status_given() -> None:
    """In a service process (``exit_zero_on_sigterm`` installed) a failed start exits 1, through SIGTERM."""
    code = (
        "from tagline_platform.shutdown import exit_zero_on_sigterm, stop_process\n"
        "stop_process(1)\n"  # not installed yet: nothing happens
        "exit_zero_on_sigterm()\n"
        "stop_process(1)\n"
        "raise SystemExit(7)\n"  # not reached
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, timeout=60)  # noqa: S603 - our own code
    assert done.returncode == 1
