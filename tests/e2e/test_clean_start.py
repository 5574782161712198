"""A clean start, as ``make run`` does it: every service as its own process on fresh topics.

It logs no error, and ``/readyz`` says ready only once the service would process a record: every one of its
consumers has joined its group and received its first partition assignment. Until then it answers 503 and
says why (tagline_platform.readiness), which a held-up rebalance makes visible for as long as it lasts.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from tagline_contracts import topics
from tagline_platform.kafka import ensure_topics
from tagline_testing.stack import SERVICES, Stack

RANGE, ROUND_ROBIN = RangePartitionAssignor, RoundRobinPartitionAssignor
CONSUMER_GROUPS = {  # suffixes of the services' group ids (their prefix is the test's namespace)
    "tagger": {"tagger", "tagger-results"},
    "sender": {"sender", "sender-members", "sender-journeys", "sender-journeys-results", "sender-welcome"},
    "liveshop": {"liveshop"},
}


def _assigned_groups(stack: Stack, name: str) -> set[str]:
    """The consumer groups whose first assignment ``name`` has logged (FastStream logs each one)."""
    groups = set()
    for line in stack.procs[name].log_path.read_text(encoding="utf-8").splitlines():
        entry: Any = json.loads(line) if line.startswith("{") else {}
        if "assigned to partitions" in str(entry.get("msg")):
            groups.add(str(entry["group_id"]).removeprefix(stack.config.namespace))
    return groups


@pytest.mark.timeout(600)
async def test_a_clean_start_logs_no_error_and_is_ready_only_once_every_group_is_assigned(
    unstarted_stack: Stack,
) -> None:
    stack = unstarted_stack
    first_ready: dict[str, set[str]] = {}  # service -> the groups it had logged as assigned at its first 200
    answers: dict[str, list[int]] = {name: [] for name in SERVICES}

    async def watch(name: str, http: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                status = (await http.get(stack.url(name) + "/readyz")).status_code
            except httpx.HTTPError:
                status = 0  # not listening yet
            answers[name].append(status)
            if status == 200:
                first_ready[name] = _assigned_groups(stack, name) if name in CONSUMER_GROUPS else set()
                return
            await asyncio.sleep(0.05)

    async with httpx.AsyncClient(timeout=2.0) as http:
        await asyncio.gather(stack.start(), *(watch(name, http) for name in SERVICES))

    assert set(first_ready) == set(SERVICES), answers
    for name, groups in CONSUMER_GROUPS.items():
        assert first_ready[name] >= groups, f"{name} said ready before {groups - first_ready[name]} joined"
        assert {s for s in answers[name] if s != 200} <= {0, 503}, answers[name]
    assert stack.errors_in_logs() == {}


class HoldRebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """A member that does not rejoin until released: a new member's join waits for it (Kafka's rebalance)."""

    def __init__(self, release: asyncio.Event) -> None:
        self._release = release
        self._joined = False

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if self._joined:  # aiokafka calls this before its first join too
            await self._release.wait()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._joined = True


@pytest.mark.timeout(600)
async def test_readyz_is_503_until_the_first_assignment_and_200_after(unstarted_stack: Stack) -> None:
    """A consumer of each service's group that does not rejoin until released holds up the service's join:
    meanwhile ``/readyz`` says 503 and names the group; once it is released and the group assigned, 200."""
    stack = unstarted_stack
    ns, partitions = stack.config.namespace, stack.config.partitions
    held = {  # one group of each service: its topics and the assignor the service uses
        "tagger": (f"{ns}tagger", [topics.LINE_EVENTS, topics.MEMBER_ATTRIBUTES, topics.SHOP_ORDERS], RANGE),
        "sender": (f"{ns}sender", [topics.SEND_REQUESTS], ROUND_ROBIN),
        "liveshop": (
            f"{ns}liveshop",
            [topics.LIVE_COMMENTS, topics.LINE_EVENTS, topics.SHOP_ORDER_STATUS],
            ROUND_ROBIN,
        ),
    }
    await ensure_topics(
        stack.config.kafka_bootstrap,
        {f"{ns}{topic}" for _group, names, _assignor in held.values() for topic in names},
        partitions=partitions,
    )
    releases = {name: asyncio.Event() for name in held}
    holders = {
        name: AIOKafkaConsumer(
            bootstrap_servers=stack.config.kafka_bootstrap,
            group_id=group,
            partition_assignment_strategy=(assignor,),
            heartbeat_interval_ms=300,  # learns of the service's join at once
            session_timeout_ms=30_000,
            rebalance_timeout_ms=120_000,  # how long Kafka waits for it to rejoin (aiokafka: the session's)
        )
        for name, (group, _names, assignor) in held.items()
    }

    async def readyz(http: httpx.AsyncClient, name: str) -> tuple[int, str]:
        try:
            answer = await http.get(stack.url(name) + "/readyz")
        except httpx.HTTPError:
            return 0, "not listening yet"
        return answer.status_code, str(answer.json().get("detail", ""))

    async def hold_then_release(http: httpx.AsyncClient, name: str) -> None:
        group = held[name][0]
        deadline = time.monotonic() + 90
        while True:  # until the service is joining its groups and waits for the held one
            status, detail = await readyz(http, name)
            assert status in (0, 503), (name, status, detail)
            if "joining consumer group" in detail and group in detail:
                break
            assert time.monotonic() < deadline, f"{name} never got to joining {group}: {detail}"
            await asyncio.sleep(0.1)
        for _ in range(5):  # and stays unready while its join is held up
            await asyncio.sleep(0.2)
            status, detail = await readyz(http, name)
            assert status == 503, (name, status, detail)
            assert f"no partition assignment yet for consumer group {group}" in detail, detail
        releases[name].set()
        await stack.ready(name, timeout_s=45)
        assert await readyz(http, name) == (200, "")

    try:
        for name, (_group, names, _assignor) in held.items():
            holders[name].subscribe(
                [f"{ns}{topic}" for topic in names], listener=HoldRebalance(releases[name])
            )
            await asyncio.wait_for(holders[name].start(), 30)
        await stack.start("line-emu")
        for name in held:
            stack.spawn(name)
        async with httpx.AsyncClient(timeout=2.0) as http:
            await asyncio.gather(*(hold_then_release(http, name) for name in held))
    finally:
        for name, holder in holders.items():
            releases[name].set()
            await holder.stop()
