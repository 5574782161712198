"""Fixtures for the emulator's tests: one real server on loopback for the session, reset before each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tagline_line_emulator import Emulator, EmulatorConfig, RunningEmulator, serve

CHANNEL = "1656000001"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_emulator(clock: FakeClock) -> Callable[..., Emulator]:
    """``make_emulator(**config)``: an emulator on the fake ``clock`` (no HTTP), for rule-level tests."""

    def make(**config: Any) -> Emulator:
        return Emulator(EmulatorConfig(**config), clock=clock)

    return make


@pytest.fixture(scope="session")
async def running() -> AsyncIterator[RunningEmulator]:
    async with serve(Emulator()) as server:
        yield server


@pytest.fixture
def channel() -> str:
    return CHANNEL


@pytest.fixture
def emu(running: RunningEmulator) -> Emulator:
    """The served emulator, reset (no state, default limits, no faults)."""
    running.emulator.reset()
    return running.emulator


@pytest.fixture
async def http(running: RunningEmulator, emu: Emulator, channel: str) -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session on the served emulator, authenticated as ``channel``."""
    async with aiohttp.ClientSession(
        base_url=running.url, headers={"Authorization": f"Bearer {channel}"}
    ) as session:
        yield session


@pytest.fixture
def text() -> Callable[[str], list[dict[str, str]]]:
    """``text("hi")``: a ``messages`` list with one text message."""

    def make(value: str) -> list[dict[str, str]]:
        return [{"type": "text", "text": value}]

    return make
